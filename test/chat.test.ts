import { test, before, after, describe } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeClass, makeSchool, makeUser } from './helpers/factories.ts'
import { chatRuntime } from '../src/routes/chat/index.ts'
import { conversationIdOf, importSamples, makeStudents, noscriptRefresh, postHtmx, waitForAnswers } from './helpers/chat.ts'

/**
 * The tutor chat without an LLM (offline mode: answers are cited textbook passages), with and
 * without JavaScript; who may see which conversation; and what bad input gets.
 */

const mn = JSON.parse(readFileSync(new URL('../locales/mn.json', import.meta.url), 'utf8'))

let t: TestApp
let books: Map<string, number>
let schoolCode: number
let student: { username: string; password: string; id: number }
let client: TestClient

before(async () => {
  t = await buildTestApp()
  books = await importSamples(t.database.db, ['biology-7.md', 'physics-8.md'])
  const { school, students } = await makeStudents(t.database.db, 1)
  schoolCode = school.code
  student = students[0]!
  client = new TestClient(t.app)
  await client.login(schoolCode, student.username, student.password)
})

after(async () => {
  await t?.close()
})

async function startConversation(c: TestClient, question: string, extra: Record<string, string> = {}): Promise<number> {
  const res = await c.post('/chat', { subject: 'biology', grade: '7', question, ...extra })
  assert.equal(res.statusCode, 303, res.body.slice(0, 500))
  return conversationIdOf(res.headers.location)
}

describe('offline mode (no LLM configured)', () => {
  test('JS off: the question is stored, the page refreshes until cited textbook passages are there', async () => {
    const res = await client.post('/chat', { subject: 'biology', grade: '7', question: 'фотосинтез гэж юу вэ' })
    assert.equal(res.statusCode, 303)
    const id = conversationIdOf(res.headers.location)
    const page = await waitForAnswers(client, `/chat/${id}`)
    assert.equal(page.statusCode, 200)
    assert.equal(noscriptRefresh(page), null)
    assert.match(page.body, /<h1>фотосинтез гэж юу вэ<\/h1>/)
    assert.ok(page.body.includes(mn.chat.offline.label), 'labelled as textbook passages, not an AI answer')
    assert.ok(page.body.includes('<blockquote>'))
    const bio = books.get('biology-7.md')!
    assert.match(page.body, new RegExp(`<a href="/library/${bio}\\?page=\\d+#p-\\d+">Биологи 7, 2\\.1 Фотосинтез, х\\. \\d+</a>`))
    assert.match(page.body, /\[1\]/)
    // The stored answer says where it came from.
    const row = await t.database.db.selectFrom('messages').selectAll().where('conversation_id', '=', id).where('role', '=', 'assistant').executeTakeFirstOrThrow()
    assert.equal(row.status, 'done')
    assert.equal(row.kind, 'offline')
    assert.ok(row.citations.length >= 1)
    assert.ok(row.latency_ms !== null)
  })

  test('while the answer is pending the page says "Бодож байна…" and refreshes every 3 s without JS (noscript, no Refresh header)', async () => {
    // Ask, and look before the broker can have finished (retrieval takes a few ms at least).
    const res = await client.post('/chat', { subject: 'biology', grade: '7', question: 'эсийн бүтэц ямар вэ' })
    const id = conversationIdOf(res.headers.location)
    const page = await client.get(`/chat/${id}`)
    if (noscriptRefresh(page) !== null) {
      assert.equal(noscriptRefresh(page), '3')
      assert.match(page.body, /<ol class="turns" id="turns" data-refresh="3">/, 'chat.js reloads browsers that cannot stream')
      assert.ok(page.body.includes(mn.chat.thinking))
      assert.match(page.body, /data-sse-connect="\/chat\/\d+\/messages\/\d+\/stream"/)
    }
    await waitForAnswers(client, `/chat/${id}`)
  })

  test('JS on (htmx): a follow-up returns the question and a streaming placeholder; the page then has the answer', async () => {
    const id = await startConversation(client, 'хлоропласт гэж юу вэ')
    await waitForAnswers(client, `/chat/${id}`)
    const res = await postHtmx(client, `/chat/${id}/messages`, { question: 'ургамал яаж амьсгалдаг вэ' })
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers.vary), /HX-Request/)
    assert.doesNotMatch(res.body, /<html|<main/, 'a fragment, not a page')
    assert.match(res.body, /^<li class="turn" id="turn-\d+">/)
    assert.ok(res.body.includes('ургамал яаж амьсгалдаг вэ'))
    // Either still streaming (placeholder wired to SSE) or already answered in full.
    if (res.body.includes('answer pending')) {
      assert.match(res.body, /data-hx-ext="sse" data-sse-connect="\/chat\/\d+\/messages\/\d+\/stream" data-sse-swap="done" data-hx-swap="outerHTML"/)
      assert.match(res.body, /data-sse-swap="token" data-hx-swap="beforeend"/)
      assert.match(res.body, /hidden><a href="\/chat\/\d+\?answer=\d+#answer-\d+">/, 'fallback link, hidden until JS shows it')
    }
    const page = await waitForAnswers(client, `/chat/${id}`)
    assert.equal((page.body.match(/class="answer offline"/g) ?? []).length, 2)
  })

  test('JS on (htmx): starting a conversation swaps the conversation in and pushes its URL', async () => {
    await client.get('/chat')
    const res = await postHtmx(client, '/chat', { subject: 'biology', grade: '7', question: 'митохондри юу хийдэг вэ' })
    assert.equal(res.statusCode, 200)
    const pushed = String(res.headers['hx-push-url'])
    assert.match(pushed, /^\/chat\/\d+$/)
    assert.match(res.body, /^<title>митохондри юу хийдэг вэ — /)
    assert.ok(res.body.includes('<ol class="turns" id="turns">'))
    assert.equal(noscriptRefresh(res), null, 'no refresh for htmx')
    await waitForAnswers(client, pushed)
    // Back button: htmx (no history cache) asks for the pushed URL again and needs the whole page.
    const restored = await client.get(pushed, { 'hx-request': 'true', 'hx-history-restore-request': 'true' })
    assert.match(restored.body, /^<!DOCTYPE html>/)
    const fragment = await client.get(pushed, { 'hx-request': 'true' })
    assert.match(fragment.body, /^<title>/)
  })

  test('a question nothing in the textbooks matches says so', async () => {
    const id = await startConversation(client, 'qwzx vbnm')
    const page = await waitForAnswers(client, `/chat/${id}`)
    assert.ok(page.body.includes(mn.chat.offline.none))
  })

  test('"ask about this section" from the library: the conversation keeps the textbook and section', async () => {
    const bio = books.get('biology-7.md')!
    const form = await client.get(`/chat?textbook=${bio}&section=2.1`)
    assert.equal(form.statusCode, 200)
    assert.ok(form.body.includes(`name="textbook" value="${bio}"`))
    assert.ok(form.body.includes('name="section" value="2.1"'))
    const res = await client.post('/chat', { question: 'энэ хэсгийг товчлоод хэлээч', textbook: String(bio), section: '2.1' })
    assert.equal(res.statusCode, 303)
    const id = conversationIdOf(res.headers.location)
    const row = await t.database.db.selectFrom('conversations').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
    assert.deepEqual([row.textbook_id, row.section_path, row.subject, row.grade], [bio, '2.1', 'biology', 7])
    const page = await waitForAnswers(client, `/chat/${id}`)
    // Retrieval stayed inside section 2.1 of that book.
    for (const m of page.body.matchAll(/<li value="\d+"><a href="[^"]+">([^<]+)<\/a>/g)) assert.match(m[1]!, /^Биологи 7, 2\.1 /)
  })

  test('the list shows the student\'s conversations, newest first, paginated', async () => {
    const c = new TestClient(t.app)
    const { school, students } = await makeStudents(t.database.db, 1)
    await c.login(school.code, students[0]!.username, students[0]!.password)
    const empty = await c.get('/chat')
    assert.ok(empty.body.includes(mn.chat.list.empty))
    // 21 conversations, written directly (the page size is 20).
    const db = t.database.db
    for (let i = 1; i <= 21; i++) {
      await db
        .insertInto('conversations')
        .values({ user_id: students[0]!.id, school_id: school.id, subject: 'math', grade: 7, title: `Асуулт ${i}`, updated_at: new Date(Date.now() - (100 - i) * 1000) })
        .execute()
    }
    const first = await c.get('/chat')
    const titles = [...first.body.matchAll(/<a href="\/chat\/\d+">(Асуулт \d+)<\/a>/g)].map((m) => m[1])
    assert.equal(titles.length, 20)
    assert.equal(titles[0], 'Асуулт 21')
    assert.ok(first.body.includes('href="/chat?page=2"'))
    const second = await c.get('/chat?page=2')
    assert.deepEqual([...second.body.matchAll(/<a href="\/chat\/\d+">(Асуулт \d+)<\/a>/g)].map((m) => m[1]), ['Асуулт 1'])
    assert.equal((await c.get('/chat?page=abc')).statusCode, 200)
  })

  test('learning events are written in batches', async () => {
    await chatRuntime(t.app).events.flush()
    const rows = await t.database.db.selectFrom('learning_events').selectAll().where('user_id', '=', student.id).execute()
    assert.ok(rows.length >= 3)
    const photo = rows.find((r) => r.kind === 'question' && r.subject === 'biology' && r.topic?.endsWith(':2.1'))
    assert.ok(photo, 'the question about photosynthesis is recorded with its textbook section as topic')
  })
})

describe('who sees which conversation', () => {
  let id: number
  before(async () => {
    id = await startConversation(client, 'эс гэж юу вэ')
    await waitForAnswers(client, `/chat/${id}`)
  })

  test('another student of the same class, another class, another school: 404 on every chat URL', async () => {
    const db = t.database.db
    const mine = await db.selectFrom('users').select(['class_id', 'school_id']).where('id', '=', student.id).executeTakeFirstOrThrow()
    const sameClass = await makeUser(db, 'student', mine.school_id, { grade: 7, classId: mine.class_id! })
    const otherClass = await makeUser(db, 'student', mine.school_id, { grade: 7, classId: (await makeClass(db, mine.school_id!, null, 7)).id })
    const otherSchool = await makeSchool(db)
    const far = await makeUser(db, 'student', otherSchool.id, { grade: 7, classId: (await makeClass(db, otherSchool.id, null, 7)).id })
    const answer = await db.selectFrom('messages').select('id').where('conversation_id', '=', id).where('role', '=', 'assistant').executeTakeFirstOrThrow()
    const cases: [string, number, typeof sameClass][] = [
      ['same class', schoolCode, sameClass],
      ['other class', schoolCode, otherClass],
      ['other school', otherSchool.code, far],
    ]
    for (const [label, code, who] of cases) {
      const c = new TestClient(t.app)
      await c.login(code, who.username, who.password)
      assert.equal((await c.get(`/chat/${id}`)).statusCode, 404, label)
      assert.equal((await c.get(`/chat/${id}/messages/${answer.id}/stream`)).statusCode, 404, label)
      const post = await c.post(`/chat/${id}/messages`, { question: 'хулгайн асуулт' })
      assert.equal(post.statusCode, 404, label)
      const list = await c.get('/chat')
      assert.ok(!list.body.includes(`/chat/${id}"`), `${label}: not in their list`)
    }
    const count = await db.selectFrom('messages').select((eb) => eb.fn.countAll<string>().as('n')).where('conversation_id', '=', id).executeTakeFirstOrThrow()
    assert.equal(Number(count.n), 2, 'nothing was added to the conversation')
  })

  test('teachers and admins have no chat; anonymous visitors go to the login page', async () => {
    const db = t.database.db
    const school = await db.selectFrom('users').select('school_id').where('id', '=', student.id).executeTakeFirstOrThrow()
    const teacher = await makeUser(db, 'teacher', school.school_id)
    const c = new TestClient(t.app)
    await c.login(schoolCode, teacher.username, teacher.password)
    assert.equal((await c.get('/chat')).statusCode, 404)
    assert.equal((await c.get(`/chat/${id}`)).statusCode, 404)
    const anon = new TestClient(t.app)
    const res = await anon.get(`/chat/${id}`)
    assert.equal(res.statusCode, 303)
    assert.match(String(res.headers.location), /^\/login\?next=/)
  })

  test('an answer id from another conversation of the same student is a 404', async () => {
    const other = await startConversation(client, 'бөөм гэж юу вэ')
    await waitForAnswers(client, `/chat/${other}`)
    const answer = await t.database.db.selectFrom('messages').select('id').where('conversation_id', '=', other).where('role', '=', 'assistant').executeTakeFirstOrThrow()
    assert.equal((await client.get(`/chat/${id}/messages/${answer.id}/stream`)).statusCode, 404)
  })

  test('garbage ids are 404, never 500', async () => {
    for (const url of ['/chat/abc', '/chat/0', '/chat/99999999', '/chat/2147483648', '/chat/999999999999', `/chat/9999999999/messages/${id}/stream`, '/chat/1e3', "/chat/1'--", `/chat/${id}/messages/x/stream`, `/chat/${id}?before=x`]) {
      const res = await client.get(url)
      assert.equal(res.statusCode, 404, url)
    }
    const res = await client.post('/chat/9999999999/messages', { question: 'Сайн уу' })
    assert.equal(res.statusCode, 404)
  })
})

describe('bad input', () => {
  test('an empty question: 422 with the message tied to the field, nothing stored', async () => {
    const db = t.database.db
    const before = await db.selectFrom('conversations').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
    const res = await client.post('/chat', { subject: 'biology', grade: '7', question: '   ' })
    assert.equal(res.statusCode, 422)
    assert.match(res.body, /<textarea id="chat-question"[^>]*aria-describedby="chat-question-hint chat-question-error"[^>]* aria-invalid="true"/)
    assert.ok(res.body.includes(mn.chat.errors.questionRequired))
    const after = await db.selectFrom('conversations').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
    assert.equal(after.n, before.n)
  })

  test('4000 characters are fine, 4001 are not (and the draft is kept)', async () => {
    const id = await startConversation(client, 'ф'.repeat(4000))
    await waitForAnswers(client, `/chat/${id}`)
    const res = await client.post(`/chat/${id}/messages`, { question: 'ф'.repeat(4001) })
    assert.equal(res.statusCode, 422)
    assert.ok(res.body.includes('4001'))
    assert.ok(res.body.includes('ф'.repeat(4001) + '</textarea>'))
    const htmx = await postHtmx(client, `/chat/${id}/messages`, { question: 'ф'.repeat(4001) })
    assert.equal(htmx.statusCode, 422)
    assert.equal(htmx.headers['hx-retarget'], '#ask')
    assert.match(htmx.body, /^<section id="ask"/)
  })

  test('missing subject and grade: both fields get their message', async () => {
    const res = await client.post('/chat', { question: 'асуулт', grade: '13', subject: 'alchemy' })
    assert.equal(res.statusCode, 422)
    assert.ok(res.body.includes(mn.chat.errors.subjectRequired))
    assert.ok(res.body.includes(mn.chat.errors.gradeRequired))
    assert.ok(res.body.includes('>асуулт</textarea>'))
  })

  test('wrong types and duplicate fields: a localized 400, not a 500', async () => {
    const res = await client.post('/chat', { subject: 'biology', grade: '7', question: ['нэг', 'хоёр'] })
    assert.equal(res.statusCode, 400)
    const huge = await client.post('/chat', { subject: 'biology', grade: '7', question: 'а'.repeat(30_000) })
    assert.equal(huge.statusCode, 400)
    const json = await t.app.inject({ method: 'POST', url: '/chat', payload: { question: 1 }, headers: { cookie: [...client.cookies].map(([k, v]) => `${k}=${v}`).join('; '), 'x-csrf-token': client.csrf! } })
    // JSON numbers are coerced to strings by the schema: a form error, never a 500.
    assert.ok([400, 415, 422].includes(json.statusCode), String(json.statusCode))
  })

  test('hostile text is stored and shown as text', async () => {
    const id = await startConversation(client, '<script>alert(1)</script> "><img src=x onerror=alert(2)> \'; DROP TABLE messages; --')
    const page = await waitForAnswers(client, `/chat/${id}`)
    assert.ok(!page.body.includes('<script>alert(1)'))
    assert.ok(!page.body.includes('<img src=x'))
    assert.ok(page.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'))
  })

  test('control characters are refused', async () => {
    const res = await client.post('/chat', { subject: 'biology', grade: '7', question: 'асуулт\u0000' })
    assert.equal(res.statusCode, 422)
    assert.ok(res.body.includes(mn.chat.errors.questionInvalid))
  })

  test('POST without the CSRF token is refused', async () => {
    const res = await client.post('/chat', { subject: 'biology', grade: '7', question: 'асуулт', _csrf: 'wrong' })
    assert.equal(res.statusCode, 403)
  })
})
