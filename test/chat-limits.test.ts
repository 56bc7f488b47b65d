import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { sql } from 'kysely'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, makeStudents, postHtmx, waitForAnswers } from './helpers/chat.ts'

/**
 * Chat limits (PRODUCT.md: 30 questions a minute, 50 a day per student, per-school override),
 * counted from the questions already stored: over the limit the student sees a countdown or the
 * daily message, keeps the draft, and nothing is stored or queued — twice or at all.
 */

const mn = JSON.parse(readFileSync(new URL('../locales/mn.json', import.meta.url), 'utf8'))

let t: TestApp

before(async () => {
  t = await buildTestApp()
  await importSamples(t.database.db, ['biology-7.md'])
})

after(async () => {
  await t?.close()
})

async function newStudent() {
  const { school, students } = await makeStudents(t.database.db, 1)
  const c = new TestClient(t.app)
  await c.login(school.code, students[0]!.username, students[0]!.password)
  const res = await c.post('/chat', { subject: 'biology', grade: '7', question: 'Эс гэж юу вэ?' })
  const id = conversationIdOf(res.headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  return { c, id, school, student: students[0]! }
}

/** Questions "already asked": stored rows, `secondsAgo` old, in the student's conversation. */
async function pastQuestions(userId: number, conversationId: number, count: number, secondsAgo: number) {
  await sql`
    INSERT INTO messages (conversation_id, user_id, role, content, status, created_at)
    SELECT ${conversationId}, ${userId}, 'user', 'өмнөх асуулт ' || g, 'done', now() - make_interval(secs => ${secondsAgo})
    FROM generate_series(1, ${count}) AS g`.execute(t.database.db)
}

async function questionCount(userId: number): Promise<number> {
  const row = await t.database.db.selectFrom('messages').select((eb) => eb.fn.countAll<string>().as('n')).where('user_id', '=', userId).where('role', '=', 'user').executeTakeFirstOrThrow()
  return Number(row.n)
}

test('the 31st question in a minute shows "Бага хүлээнэ үү (N секунд)" with a countdown, keeps the draft, stores nothing', async () => {
  const { c, id, student } = await newStudent()
  await pastQuestions(student.id, id, 29, 20) // + the first question = 30 within the minute
  const before = await questionCount(student.id)
  const res = await c.post(`/chat/${id}/messages`, { question: 'Гучин нэг дэх асуулт' })
  assert.equal(res.statusCode, 429)
  const seconds = Number(res.headers['retry-after'])
  assert.ok(seconds >= 1 && seconds <= 60, String(seconds))
  assert.ok(res.body.includes(`Бага хүлээнэ үү (${seconds} секунд)`), 'the exact text of PRODUCT.md')
  // The countdown without JS: a bar emptying over the N seconds (CSS); chat.js also ticks the number.
  assert.match(res.body, new RegExp(`class="wait wait-${seconds}" role="alert" data-wait="${seconds}"`))
  assert.ok(res.body.includes('class="wait-bar"'))
  assert.ok(res.body.includes('>Гучин нэг дэх асуулт</textarea>'))
  assert.equal(await questionCount(student.id), before)
  const css = readFileSync(new URL('../static/css/app.css', import.meta.url), 'utf8')
  assert.ok(css.includes(`.wait-${seconds} .wait-bar span{animation-duration:${seconds}s}`))
  // htmx gets the form with the wait, swapped in place of itself.
  const htmx = await postHtmx(c, `/chat/${id}/messages`, { question: 'Гучин нэг дэх асуулт' })
  assert.equal(htmx.statusCode, 429)
  assert.equal(htmx.headers['hx-retarget'], '#ask')
  assert.match(htmx.body, /^<section id="ask"/)
  const metrics = await t.app.inject({ method: 'GET', url: '/metrics' })
  assert.match(metrics.body, /bagsh_rate_limited_total\{limit="minute"\} 2\b/)
})

test('the wait is counted from the oldest question of the minute', async () => {
  const { c, id, student } = await newStudent()
  await pastQuestions(student.id, id, 29, 45)
  const res = await c.post(`/chat/${id}/messages`, { question: 'Дахиад' })
  assert.equal(res.statusCode, 429)
  // The first question is a second old, the 29 others 45 s: room again once the 30th-newest ages out.
  const seconds = Number(res.headers['retry-after'])
  assert.ok(seconds >= 13 && seconds <= 16, String(seconds))
})

test('the 51st question of the day gets the daily-limit message, a new conversation too', async () => {
  const { c, id, student } = await newStudent()
  // 49 more earlier today, just out of the minute window (the day starts at midnight in Mongolia).
  await pastQuestions(student.id, id, 49, 61)
  const res = await c.post(`/chat/${id}/messages`, { question: 'Тавин нэг дэх асуулт' })
  assert.equal(res.statusCode, 429)
  assert.ok(res.body.includes(mn.chat.daily.replace('{{limit}}', '50')))
  assert.equal(res.headers['retry-after'], undefined)
  const fresh = await c.post('/chat', { subject: 'biology', grade: '7', question: 'Шинэ яриа' })
  assert.equal(fresh.statusCode, 429)
  assert.ok(fresh.body.includes(mn.chat.daily.replace('{{limit}}', '50')))
  assert.ok(fresh.body.includes('>Шинэ яриа</textarea>'))
  const conversations = await t.database.db.selectFrom('conversations').select('id').where('user_id', '=', student.id).execute()
  assert.equal(conversations.length, 1, 'no conversation was created')
})

test('a school can set its own limits', async () => {
  const { c, id, school, student } = await newStudent()
  await t.database.db.updateTable('schools').set({ chat_per_minute: 2 }).where('id', '=', school.id).execute()
  const second = await c.post(`/chat/${id}/messages`, { question: 'Хоёр дахь' })
  assert.equal(second.statusCode, 303)
  await waitForAnswers(c, `/chat/${id}`)
  const third = await c.post(`/chat/${id}/messages`, { question: 'Гурав дахь' })
  assert.equal(third.statusCode, 429)
  assert.equal(await questionCount(student.id), 2)
  await t.database.db.updateTable('schools').set({ chat_per_minute: null, chat_per_day: 2 }).where('id', '=', school.id).execute()
  const daily = await c.post(`/chat/${id}/messages`, { question: 'Гурав дахь' })
  assert.equal(daily.statusCode, 429)
  assert.ok(daily.body.includes(mn.chat.daily.replace('{{limit}}', '2')))
})

test('a double submit stores the question once (nothing is queued twice)', async () => {
  const { c, id, student } = await newStudent()
  const before = await questionCount(student.id)
  const first = await c.post(`/chat/${id}/messages`, { question: 'Нэг л удаа' })
  const again = await c.post(`/chat/${id}/messages`, { question: 'Нэг л удаа' })
  assert.equal(first.statusCode, 303)
  assert.equal(again.statusCode, 303)
  assert.equal(again.headers.location, first.headers.location)
  assert.equal(await questionCount(student.id), before + 1)
  const htmx = await postHtmx(c, `/chat/${id}/messages`, { question: 'Нэг л удаа' })
  assert.equal(htmx.statusCode, 204, 'htmx: the turn is already on the page')
  // A new conversation sent twice is one conversation.
  const a = await c.post('/chat', { subject: 'biology', grade: '7', question: 'Давхар яриа' })
  const b = await c.post('/chat', { subject: 'biology', grade: '7', question: 'Давхар яриа' })
  assert.equal(conversationIdOf(a.headers.location), conversationIdOf(b.headers.location))
  await waitForAnswers(c, `/chat/${id}`)
})

test('limits are per student', async () => {
  const one = await newStudent()
  await pastQuestions(one.student.id, one.id, 29, 10)
  assert.equal((await one.c.post(`/chat/${one.id}/messages`, { question: 'Би' })).statusCode, 429)
  const two = await newStudent()
  assert.equal((await two.c.post(`/chat/${two.id}/messages`, { question: 'Би ч гэсэн' })).statusCode, 303)
  await waitForAnswers(two.c, `/chat/${two.id}`)
})
