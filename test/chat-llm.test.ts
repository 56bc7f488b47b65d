import { test, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { sql } from 'kysely'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, llmConfigFor, makeStudents, noscriptRefresh, postHtmx, waitForAnswers } from './helpers/chat.ts'
import { startFakeOpenRouter, type FakeOpenRouter } from './fakes/openrouter.ts'
import { chatRuntime } from '../src/routes/chat/index.ts'
import { statementKind } from '../src/services/chat/metrics.ts'
import { MAX_ANSWER_CHARS } from '../src/services/chat/broker.ts'

/**
 * The tutor with an LLM: a fake OpenRouter on loopback streams the answers. Usage is stored per
 * answer, the third identical first question comes from the cache, a question no provider can
 * answer waits in the queue until the worker gets it answered, and a question costs at most two
 * write round trips.
 */

const mn = JSON.parse(readFileSync(new URL('../locales/mn.json', import.meta.url), 'utf8'))
const M1 = 'google/gemini-2.5-flash'
const M2 = 'deepseek/deepseek-chat-v3-0324'

let fake: FakeOpenRouter
let t: TestApp
let schoolCode: number
let students: { id: number; username: string; password: string }[]

before(async () => {
  fake = await startFakeOpenRouter({ tps: 0, tokens: 12 })
  t = await buildTestApp({ llm: llmConfigFor(fake.url, { LLM_FIRST_TOKEN_TIMEOUT_MS: '2000', LLM_IDLE_TIMEOUT_MS: '2000' }) })
  await importSamples(t.database.db, ['biology-7.md'])
  const made = await makeStudents(t.database.db, 6)
  schoolCode = made.school.code
  students = made.students
})

after(async () => {
  await t?.close()
  await fake?.close()
})

beforeEach(() => fake.reset())

async function clientFor(i: number): Promise<TestClient> {
  const c = new TestClient(t.app)
  await c.login(schoolCode, students[i]!.username, students[i]!.password)
  return c
}

async function answerRow(conversationId: number) {
  return t.database.db
    .selectFrom('messages')
    .selectAll()
    .where('conversation_id', '=', conversationId)
    .where('role', '=', 'assistant')
    .orderBy('id', 'desc')
    .executeTakeFirstOrThrow()
}

test('citations written as [1, 2] list both sources under the answer', async () => {
  fake.setScript('*', { tokens: ['Фотосинтез ', 'навчинд ', 'явагдана ', '[1, 2].'] })
  const c = await clientFor(0)
  const res = await c.post('/chat', { subject: 'biology', grade: '7', question: 'Фотосинтез хаана явагддаг вэ?' })
  const page = await waitForAnswers(c, `/chat/${conversationIdOf(res.headers.location)}`)
  const sources = page.body.slice(page.body.indexOf(mn.chat.sources))
  assert.equal((sources.match(/<li/g) ?? []).length, 2, 'both cited passages are listed')
})

test('the answer streams from the model and is stored with its usage and citations', async () => {
  fake.setScript('*', { tokens: 40 })
  const c = await clientFor(0)
  const res = await c.post('/chat', { subject: 'biology', grade: '7', question: 'Фотосинтез гэж юу вэ?' })
  const id = conversationIdOf(res.headers.location)
  const page = await waitForAnswers(c, `/chat/${id}`)
  assert.ok(page.body.includes('Фотосинтез бол ногоон ургамал'))
  assert.ok(page.body.includes(mn.chat.sources))
  assert.ok(!page.body.includes(mn.chat.offline.label))
  // Markdown and math rendered on the server; the math stylesheet linked; [1] leads to the page.
  assert.match(page.body, /<link rel="stylesheet" href="\/static\/math\/katex\.css\?v=\w+">/)
  assert.match(page.body, /class="katex"/)
  assert.match(page.body, /<a href="\/library\/\d+\?page=\d+#p-\d+"[^>]*>\[?1\]?<\/a>|<a href="\/library\/\d+\?page=\d+#p-\d+"[^>]*>1<\/a>/)
  const row = await answerRow(id)
  assert.equal(row.status, 'done')
  assert.equal(row.kind, 'llm')
  assert.equal(row.provider, 'openrouter')
  assert.equal(row.model, M1)
  assert.ok(row.prompt_tokens! > 100, 'the prompt carries the passages')
  assert.equal(row.completion_tokens, 40)
  assert.ok(Number(row.cost_usd) > 0)
  assert.ok(row.latency_ms !== null && row.first_token_ms !== null)
  assert.equal(row.cached, false)
  assert.ok(row.citations.length >= 1)
  // What the model was asked: the Mongolian system prompt with numbered passages, 1024 tokens.
  const sent = fake.requests[0]!.body as { max_tokens: number; messages: { role: string; content: string }[] }
  assert.equal(sent.max_tokens, 1024)
  assert.equal(sent.messages[0]!.role, 'system')
  assert.match(sent.messages[0]!.content, /7-р ангийн сурагчид «Биологи»/)
  assert.match(sent.messages[0]!.content, /Сократын аргаар/)
  assert.match(sent.messages[0]!.content, /\[1\] Биологи 7, 2\.1 Фотосинтез, х\. \d+/)
  assert.deepEqual(sent.messages.at(-1), { role: 'user', content: 'Фотосинтез гэж юу вэ?' })
  const usage = await t.database.db.selectFrom('chat_usage_daily').selectAll().executeTakeFirstOrThrow()
  assert.ok(usage.answers >= 1 && Number(usage.completion_tokens) >= 12)
})

test('a follow-up carries the conversation; "more detail" asks again with more tokens', async () => {
  const c = await clientFor(1)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Эс гэж юу вэ?' })).headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  await c.post(`/chat/${id}/messages`, { question: 'Бөөм юу хийдэг вэ?' })
  const page = await waitForAnswers(c, `/chat/${id}`)
  assert.equal((page.body.match(/name="detail" value="1"/g) ?? []).length, 1, '"more detail" on the latest answer only')
  const followUp = fake.requests[1]!.body as { messages: { role: string; content: string }[] }
  assert.deepEqual(followUp.messages.slice(1).map((m) => m.role), ['user', 'assistant', 'user'])
  assert.equal(followUp.messages[1]!.content, 'Эс гэж юу вэ?')
  const more = await c.post(`/chat/${id}/messages`, { detail: '1' })
  assert.equal(more.statusCode, 303)
  await waitForAnswers(c, `/chat/${id}`)
  const detail = fake.requests[2]!.body as { max_tokens: number; messages: { role: string; content: string }[] }
  assert.equal(detail.max_tokens, 2048)
  assert.equal(detail.messages.at(-1)!.content, mn.chat.detail.question)
  assert.match(detail.messages[0]!.content, /илүү дэлгэрэнгүй/)
})

test('the third identical first question is served from the cache; personal ones never are', async () => {
  const q = 'Хлорофилл гэж юу вэ?'
  const ids: number[] = []
  for (const i of [2, 3]) {
    const c = await clientFor(i)
    const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: q })).headers.location)
    await waitForAnswers(c, `/chat/${id}`)
    ids.push(id)
  }
  assert.equal(fake.requests.length, 2)
  const third = await clientFor(4)
  const res = await third.post('/chat', { subject: 'biology', grade: '7', question: '  хлорофилл гэж юу вэ  ' })
  const id = conversationIdOf(res.headers.location)
  // Instantly: no pending answer, no refresh, no LLM request.
  const page = await third.get(`/chat/${id}`)
  assert.equal(noscriptRefresh(page), null)
  assert.ok(page.body.includes(mn.chat.cached))
  assert.ok(page.body.includes('Фотосинтез бол ногоон ургамал'))
  assert.equal(fake.requests.length, 2)
  const row = await answerRow(id)
  assert.equal(row.cached, true)
  assert.equal(row.kind, 'cache')
  assert.ok(row.citations.length >= 1)
  const entry = await t.database.db.selectFrom('answer_cache').selectAll().where('key', '=', row.cache_key!).executeTakeFirstOrThrow()
  assert.deepEqual([entry.seen_count, entry.hit_count], [2, 1])
  // Other grade: another key.
  const other = await clientFor(4)
  const otherId = conversationIdOf((await other.post('/chat', { subject: 'biology', grade: '8', question: q })).headers.location)
  await waitForAnswers(other, `/chat/${otherId}`)
  assert.equal((await answerRow(otherId)).cached, false)
  // Personal questions and follow-ups get no key at all.
  const personal = await clientFor(5)
  const pid = conversationIdOf((await personal.post('/chat', { subject: 'biology', grade: '7', question: 'Миний ургамал яагаад шарлаад байна вэ?' })).headers.location)
  await waitForAnswers(personal, `/chat/${pid}`)
  assert.equal((await answerRow(pid)).cache_key, null)
  await personal.post(`/chat/${pid}/messages`, { question: q })
  await waitForAnswers(personal, `/chat/${pid}`)
  const followUp = await answerRow(pid)
  assert.equal(followUp.cache_key, null)
  assert.equal(followUp.cached, false)
  const metrics = await t.app.inject({ method: 'GET', url: '/metrics' })
  assert.match(metrics.body, /bagsh_cache_hits_total 1\b/)
  assert.match(metrics.body, /bagsh_chat_turns_total\{outcome="cached"\} 1\b/)
})

test('a question costs two write round trips: the question, and the answer with usage, counters and cache', async () => {
  const c = await clientFor(3)
  await c.get('/chat')
  const statements: string[] = []
  const stop = t.database.onStatement((text) => statements.push(text))
  try {
    const res = await c.post('/chat', { subject: 'biology', grade: '7', question: 'Навчны амсар гэж юу вэ?' })
    const id = conversationIdOf(res.headers.location)
    await waitForAnswers(c, `/chat/${id}`)
    assert.equal((await answerRow(id)).status, 'done')
  } finally {
    stop()
  }
  // Session refreshes and the batched learning events are not part of a question's writes;
  // retrieval's BEGIN/COMMIT wrap reads only (a SET LOCAL for the vector index).
  const writes = statements.filter((s) => statementKind(s) === 'write' && !/\b(sessions|learning_events)\b/.test(s))
  assert.equal(writes.length, 2, writes.join('\n---\n'))
  assert.match(writes[0]!, /INSERT INTO messages/)
  assert.match(writes[1]!, /UPDATE messages SET status = 'done'/)
  assert.match(writes[1]!, /chat_usage_daily/)
  assert.match(writes[1]!, /answer_cache/)
  const metrics = await t.app.inject({ method: 'GET', url: '/metrics' })
  assert.match(metrics.body, /bagsh_db_statements_total\{kind="write"\} \d+/)
  assert.match(metrics.body, /bagsh_db_statements_total\{kind="read"\} \d+/)
})

test('a follow-up reads neither its conversation nor its history apart: both come with the question\'s one statement', async () => {
  const c = await clientFor(3)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Үндэс юу хийдэг вэ?' })).headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  const statements: string[] = []
  const stop = t.database.onStatement((text) => statements.push(text))
  try {
    assert.equal((await postHtmx(c, `/chat/${id}/messages`, { question: 'Иш юу хийдэг вэ?' })).statusCode, 200)
    // Watched in the database (not through the page, which reads the conversation to show it).
    for (let i = 0; i < 200 && (await answerRow(id)).status !== 'done'; i++) await new Promise((r) => setTimeout(r, 25))
  } finally {
    stop()
  }
  const turn = statements.slice(0, statements.findIndex((s) => /UPDATE messages SET status = 'done'/.test(s)) + 1)
  assert.ok(turn.length > 0, 'the answer was stored')
  assert.ok(!turn.some((s) => /from "conversations"/.test(s)), turn.join('\n---\n'))
  assert.ok(!turn.some((s) => /^select "role", "content" from "messages"/.test(s)), turn.join('\n---\n'))
  const sent = fake.requests.at(-1)!.body as { messages: { role: string; content: string }[] }
  assert.deepEqual(sent.messages.slice(1).map((m) => m.content.slice(0, 20)).slice(0, 1), ['Үндэс юу хийдэг вэ?'])
  assert.equal(sent.messages.at(-1)!.content, 'Иш юу хийдэг вэ?')
})

test('a model failing mid-answer: the next model answers from the start, the student gets one clean answer', async () => {
  fake.setScript(M1, { midStreamError: { afterTokens: 4 } })
  const c = await clientFor(0)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Цардуул хаана үүсдэг вэ?' })).headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  const row = await answerRow(id)
  assert.equal(row.model, M2)
  assert.equal(row.content.match(/Фотосинтез бол/g)?.length, 1, 'the first model\'s partial text is gone')
  const metrics = await t.app.inject({ method: 'GET', url: '/metrics' })
  assert.match(metrics.body, new RegExp(`bagsh_llm_requests_total\\{provider="openrouter",model="${M1}",outcome="stream-error"\\} 1`))
  assert.match(metrics.body, /bagsh_llm_first_token_seconds_count \d+/)
})

test('every provider failing: the question is queued, the student is told, and the worker answers it later', async () => {
  fake.setScript('*', { status: 503 })
  const c = await clientFor(1)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Амьсгал гэж юу вэ?' })).headers.location)
  // Wait for the chain to give up.
  let row = await answerRow(id)
  for (let i = 0; i < 200 && row.status !== 'queued'; i++) {
    await new Promise((r) => setTimeout(r, 25))
    row = await answerRow(id)
  }
  assert.equal(row.status, 'queued')
  assert.equal(row.attempts, 1)
  assert.ok(row.run_after && row.run_after.getTime() > Date.now(), 'retried after a backoff')
  const waiting = await c.get(`/chat/${id}`)
  assert.ok(waiting.body.includes(mn.chat.slow))
  assert.equal(noscriptRefresh(waiting), '10')
  // Not due yet: the worker leaves it.
  assert.equal(await chatRuntime(t.app).worker.tick(), 0)
  // Providers are back, and the backoff has passed (moved here instead of waiting 15 s).
  fake.setScript('*', {})
  await sql`UPDATE messages SET run_after = now() - interval '1 second' WHERE id = ${row.id}`.execute(t.database.db)
  assert.equal(await chatRuntime(t.app).worker.tick(), 1)
  const page = await waitForAnswers(c, `/chat/${id}`)
  assert.ok(page.body.includes('Фотосинтез бол ногоон ургамал'))
  row = await answerRow(id)
  assert.equal(row.status, 'done')
  assert.equal(row.attempts, 1)
  const metrics = await t.app.inject({ method: 'GET', url: '/metrics' })
  assert.match(metrics.body, /bagsh_chat_turns_total\{outcome="queued"\} 1\b/)
})

test('a queued answer of a school disabled meanwhile is dropped: no more model calls', async () => {
  fake.setScript('*', { status: 503 })
  const c = await clientFor(3)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Навч ямар үүрэгтэй вэ?' })).headers.location)
  let row = await answerRow(id)
  for (let i = 0; i < 200 && row.status !== 'queued'; i++) {
    await new Promise((r) => setTimeout(r, 25))
    row = await answerRow(id)
  }
  assert.equal(row.status, 'queued')
  fake.setScript('*', {})
  const db = t.database.db
  const conversation = await db.selectFrom('conversations').select('school_id').where('id', '=', id).executeTakeFirstOrThrow()
  await sql`UPDATE schools SET disabled_at = now() WHERE id = ${conversation.school_id}`.execute(db)
  await sql`UPDATE messages SET run_after = now() - interval '1 second' WHERE id = ${row.id}`.execute(db)
  const asked = fake.requests.length
  try {
    assert.equal(await chatRuntime(t.app).worker.tick(), 0)
    row = await answerRow(id)
    assert.equal(row.status, 'failed')
    assert.equal(fake.requests.length, asked, 'the model was not asked again')
  } finally {
    await sql`UPDATE schools SET disabled_at = NULL WHERE id = ${conversation.school_id}`.execute(db)
  }
})

test('a model that ignores max_tokens: the answer is cut at the cap and stored once', async () => {
  fake.setScript('*', { tokens: Array.from({ length: 40 }, (_, i) => `${i} ${'үг '.repeat(333)}`) })
  const c = await clientFor(4)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Ургамал яаж ургадаг вэ?' })).headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  const row = await answerRow(id)
  assert.equal(row.status, 'done')
  assert.equal(row.content!.length, MAX_ANSWER_CHARS)
  assert.equal(row.attempts, 0)
})

test('an answer left behind by a dead instance (lease run out) is taken over by the worker', async () => {
  const c = await clientFor(2)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Хлоропласт юу хийдэг вэ?' })).headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  // Pretend another instance had claimed a new question and died.
  const db = t.database.db
  const q = await db.selectFrom('messages').select(['id', 'conversation_id', 'user_id']).where('conversation_id', '=', id).where('role', '=', 'user').executeTakeFirstOrThrow()
  const orphan = await db
    .insertInto('messages')
    .values({ conversation_id: q.conversation_id, user_id: q.user_id, role: 'assistant', status: 'answering', reply_to: q.id, lease_until: new Date(Date.now() - 1000) })
    .returning('id')
    .executeTakeFirstOrThrow()
  assert.equal(await chatRuntime(t.app).worker.tick(), 1)
  for (let i = 0; i < 200; i++) {
    const row = await db.selectFrom('messages').select('status').where('id', '=', orphan.id).executeTakeFirstOrThrow()
    if (row.status === 'done') return
    await new Promise((r) => setTimeout(r, 25))
  }
  assert.fail('the orphaned answer was not finished')
})

test('htmx: the fragment streams, and the stored page shows the same answer', async () => {
  const c = await clientFor(5)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Ус ургамалд юунд хэрэгтэй вэ?' })).headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  fake.setScript('*', { tps: 200, tokens: 30 })
  const res = await postHtmx(c, `/chat/${id}/messages`, { question: 'Нар ургамалд юунд хэрэгтэй вэ?' })
  assert.equal(res.statusCode, 200)
  assert.match(res.body, /class="answer pending"/)
  assert.match(res.body, /data-sse-connect="\/chat\/\d+\/messages\/\d+\/stream"/)
  await waitForAnswers(c, `/chat/${id}`)
})
