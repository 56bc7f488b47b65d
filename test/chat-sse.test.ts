import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, llmConfigFor, makeStudents, waitForAnswers } from './helpers/chat.ts'
import { startFakeOpenRouter, type FakeOpenRouter } from './fakes/openrouter.ts'
import { MAX_STREAMS_PER_STUDENT } from '../src/routes/chat/stream.ts'

const mn = JSON.parse(readFileSync(new URL('../locales/mn.json', import.meta.url), 'utf8'))
const en = JSON.parse(readFileSync(new URL('../locales/en.json', import.meta.url), 'utf8'))

/**
 * The answer stream over real HTTP, as FRONTEND.md specifies it: headers, `retry: 5000`, ~2 KB of
 * padding, a first status line, numbered `token` events, a final `done` with the rendered answer,
 * resuming with Last-Event-ID, 204 once finished, `: hb` heartbeats — and an answer that finishes
 * although its watcher went away.
 */

let fake: FakeOpenRouter
let t: TestApp
let base: string
let client: TestClient
let cookie: string

before(async () => {
  fake = await startFakeOpenRouter({ tps: 0, tokens: 20 })
  t = await buildTestApp({ llm: llmConfigFor(fake.url, { LLM_FIRST_TOKEN_TIMEOUT_MS: '25000' }) })
  await importSamples(t.database.db, ['biology-7.md'])
  const { school, students } = await makeStudents(t.database.db, 1)
  await t.app.listen({ host: '127.0.0.1', port: 0 })
  base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`
  client = new TestClient(t.app)
  await client.login(school.code, students[0]!.username, students[0]!.password)
  cookie = [...client.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
})

after(async () => {
  await t?.close()
  await fake?.close()
})

interface SseEvent {
  id: number | null
  event: string
  data: string
}

function parseEvents(text: string): SseEvent[] {
  const out: SseEvent[] = []
  for (const block of text.split('\n\n')) {
    let id: number | null = null
    let event = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (line.startsWith('id: ')) id = Number(line.slice(4))
      else if (line.startsWith('event: ')) event = line.slice(7)
      else if (line.startsWith('data: ')) data.push(line.slice(6))
    }
    if (data.length) out.push({ id, event, data: data.join('\n') })
  }
  return out
}

/** Opens the stream with fetch and reads it as text, until `until` says stop or the server ends it. */
async function readStream(path: string, headers: Record<string, string> = {}, until?: (text: string) => boolean, timeoutMs = 20_000) {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), timeoutMs)
  const res = await fetch(base + path, { headers: { cookie, ...headers }, signal: controller.signal })
  let text = ''
  let ended = false
  try {
    if (res.body) {
      const reader = res.body.getReader()
      const decoder = new TextDecoder()
      for (;;) {
        if (until?.(text)) break
        const { value, done } = await reader.read()
        if (done) {
          ended = true
          break
        }
        text += decoder.decode(value, { stream: true })
      }
    }
  } finally {
    clearTimeout(timer)
    controller.abort()
  }
  return { res, text, ended, events: parseEvents(text) }
}

async function ask(question: string): Promise<{ conversationId: number; answerId: number; streamPath: string }> {
  const res = await client.post('/chat', { subject: 'biology', grade: '7', question })
  const conversationId = conversationIdOf(res.headers.location)
  const row = await t.database.db.selectFrom('messages').select('id').where('conversation_id', '=', conversationId).where('role', '=', 'assistant').executeTakeFirstOrThrow()
  const answerId = Number(row.id)
  return { conversationId, answerId, streamPath: `/chat/${conversationId}/messages/${answerId}/stream` }
}

const tokensText = (events: SseEvent[]) =>
  events
    .filter((e) => e.event === 'token')
    .map((e) => e.data.replace(/^<span>/, '').replace(/<\/span>$/, ''))
    .join('')

test('the stream: headers, retry, padding, a status line, numbered tokens, then done and the end', async () => {
  fake.setScript('*', { tps: 100, tokens: 30 })
  const { streamPath } = await ask('Фотосинтез гэж юу вэ?')
  const { res, text, ended, events } = await readStream(streamPath)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  assert.equal(res.headers.get('cache-control'), 'no-cache, no-transform')
  assert.equal(res.headers.get('x-accel-buffering'), 'no')
  assert.equal(res.headers.get('content-encoding'), null)
  assert.ok(text.startsWith('retry: 5000\n:'))
  const padding = text.split('\n')[1]!
  assert.ok(padding.startsWith(':') && padding.length >= 2048, `padding of ${padding.length} bytes`)
  assert.equal(events[0]!.event, 'status')
  assert.equal(events[0]!.id, null, 'the first status line has no id, so it does not move Last-Event-ID')
  const numbered = events.filter((e) => e.id !== null)
  const ids = numbered.map((e) => e.id!)
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'ids increase')
  assert.ok(numbered.some((e) => e.event === 'token'))
  const done = events.at(-1)!
  assert.equal(done.event, 'done')
  assert.match(done.data, /^<div class="answer" id="answer-\d+">/)
  assert.ok(done.data.includes('class="citations"'))
  assert.ok(ended, 'the server ends the stream after done')
  assert.match(tokensText(events), /^Фотосинтез бол ногоон ургамал/)
})

test('a reconnect with Last-Event-ID resumes after it; every token arrives exactly once', async () => {
  fake.setScript('*', { tps: 25, tokens: 40 })
  const { streamPath, answerId } = await ask('Хлорофилл юу хийдэг вэ?')
  const first = await readStream(streamPath, {}, (text) => parseEvents(text).filter((e) => e.event === 'token').length >= 5)
  const lastId = Math.max(...first.events.filter((e) => e.id !== null).map((e) => e.id!))
  const second = await readStream(streamPath, { 'last-event-id': String(lastId) })
  assert.ok(second.events.filter((e) => e.id !== null).every((e) => e.id! > lastId))
  assert.equal(second.events.at(-1)!.event, 'done')
  const row = await t.database.db.selectFrom('messages').select('content').where('id', '=', String(answerId)).executeTakeFirstOrThrow()
  assert.equal(tokensText(first.events.filter((e) => e.id !== null && e.id <= lastId)) + tokensText(second.events), row.content)
  // Finished: a reconnect that already had everything gets 204, which tells EventSource to stop.
  const doneId = second.events.at(-1)!.id!
  const finished = await fetch(base + streamPath, { headers: { cookie, 'last-event-id': String(doneId) } })
  assert.equal(finished.status, 204)
  // A page opened after the end (no Last-Event-ID) gets the final answer at once.
  const late = await readStream(streamPath)
  assert.deepEqual(late.events.map((e) => e.event), ['status', 'done'])
  // `?after=` (a page that rendered the text so far) resumes like Last-Event-ID, without the 204.
  const after = await readStream(`${streamPath}?after=3`)
  assert.ok(after.events.filter((e) => e.id !== null).every((e) => e.id! > 3))
  // A page rendered elsewhere (another instance numbers its events anew) may carry an `after`
  // beyond this stream's last id: a finished answer is still sent, never a stream that only beats.
  const beyond = await readStream(`${streamPath}?after=${doneId + 1000}`, {}, undefined, 5000)
  assert.deepEqual(beyond.events.map((e) => e.event), ['status', 'done'])
  assert.ok(beyond.ended)
})

test('the answer completes and is stored although the browser went away', async () => {
  fake.setScript('*', { tps: 50, tokens: 30 })
  const { conversationId, streamPath, answerId } = await ask('Амьсгал фотосинтезээс юугаараа ялгаатай вэ?')
  await readStream(streamPath, {}, (text) => parseEvents(text).filter((e) => e.event === 'token').length >= 2)
  await waitForAnswers(client, `/chat/${conversationId}`)
  const row = await t.database.db.selectFrom('messages').select(['status', 'completion_tokens']).where('id', '=', String(answerId)).executeTakeFirstOrThrow()
  assert.equal(row.status, 'done')
  assert.equal(row.completion_tokens, 30)
  assert.equal(fake.requests.at(-1)!.outcome, 'completed', 'the upstream request was not aborted')
})

test('a slow model: `: hb` every 15 seconds keeps the connection alive', { timeout: 40_000 }, async () => {
  fake.setScript('*', { firstTokenDelayMs: 16_000, tokens: 3 })
  const { streamPath } = await ask('Эсийн хана юунаас тогтдог вэ?')
  const started = Date.now()
  const { text } = await readStream(streamPath, {}, (s) => s.includes(': hb\n\n'), 30_000)
  assert.ok(text.includes(': hb\n\n'))
  assert.ok(Date.now() - started >= 14_000)
})

test('unknown, foreign or garbage ids: 404 before any stream starts', async () => {
  const { conversationId } = await ask('Бөөм юу хийдэг вэ?')
  for (const path of [`/chat/${conversationId}/messages/999999/stream`, `/chat/999999/messages/1/stream`, `/chat/${conversationId}/messages/abc/stream`]) {
    const res = await fetch(base + path, { headers: { cookie } })
    assert.equal(res.status, 404, path)
    await res.text()
  }
  const anonymous = await fetch(base + `/chat/${conversationId}/messages/1/stream`, { redirect: 'manual' })
  assert.equal(anonymous.status, 303)
})

test('"more detail" in the final event only on the latest answer, as on the page', async () => {
  fake.setScript('*', { tps: 0, tokens: 20 })
  const { conversationId, streamPath: firstPath } = await ask('Навч юунаас бүтдэг вэ?')
  await waitForAnswers(client, `/chat/${conversationId}`)
  // While it is the latest answer, its final event offers "more detail".
  const latest = await readStream(firstPath)
  assert.equal(latest.events.at(-1)!.event, 'done')
  assert.match(latest.events.at(-1)!.data, /name="detail" value="1"/)
  // A follow-up: the first answer is no longer the latest, on the page nor in its final event.
  const followUp = await client.post(`/chat/${conversationId}/messages`, { question: 'Навчны судал юу хийдэг вэ?' })
  assert.equal(followUp.statusCode, 303)
  const page = await waitForAnswers(client, `/chat/${conversationId}`)
  assert.equal((page.body.match(/name="detail" value="1"/g) ?? []).length, 1, 'the page shows it once, on the latest answer')
  const older = await readStream(firstPath)
  assert.equal(older.events.at(-1)!.event, 'done')
  assert.doesNotMatch(older.events.at(-1)!.data, /name="detail"/)
  const answers = await t.database.db.selectFrom('messages').select('id').where('conversation_id', '=', conversationId).where('role', '=', 'assistant').orderBy('id').execute()
  assert.equal(answers.length, 2)
  const newest = await readStream(`/chat/${conversationId}/messages/${answers[1]!.id}/stream`)
  assert.match(newest.events.at(-1)!.data, /name="detail" value="1"/)
  // An older page of the conversation (?before=) does not offer it on its last answer either.
  const question2 = await t.database.db.selectFrom('messages').select('id').where('conversation_id', '=', conversationId).where('role', '=', 'user').orderBy('id', 'desc').executeTakeFirstOrThrow()
  const olderPage = await client.get(`/chat/${conversationId}?before=${question2.id}`)
  assert.equal(olderPage.statusCode, 200)
  assert.ok(olderPage.body.includes(`id="answer-${answers[0]!.id}"`))
  assert.doesNotMatch(olderPage.body, /name="detail"/)
})

test(`at most ${MAX_STREAMS_PER_STUDENT} open streams per student: the next gets 429 with a short localized text`, async () => {
  fake.setScript('*', { tps: 4, tokens: 16 })
  const { streamPath } = await ask('Эсийн мембран юу хийдэг вэ?')
  const controllers: AbortController[] = []
  const openOne = async () => {
    const controller = new AbortController()
    controllers.push(controller)
    return fetch(base + streamPath, { headers: { cookie }, signal: controller.signal })
  }
  try {
    for (let i = 0; i < MAX_STREAMS_PER_STUDENT; i++) assert.equal((await openOne()).status, 200, `stream ${i + 1}`)
    const refused = await openOne()
    assert.equal(refused.status, 429)
    assert.equal(refused.headers.get('content-type'), 'text/plain; charset=utf-8')
    assert.equal(await refused.text(), mn.chat.tooManyStreams)
    const english = await fetch(base + streamPath, { headers: { cookie: `${cookie}; bagsh_lang=en` } })
    assert.equal(english.status, 429)
    assert.equal(await english.text(), en.chat.tooManyStreams)
    // One closes: a stream can open again.
    controllers[0]!.abort()
    let again: Response | null = null
    for (let i = 0; i < 50; i++) {
      again = await openOne()
      if (again.status === 200) break
      await again.text()
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.equal(again!.status, 200)
  } finally {
    for (const c of controllers) c.abort()
  }
})
