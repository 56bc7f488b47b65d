import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, makeStudents, postHtmx, waitForAnswers } from './helpers/chat.ts'
import { makeUser } from './helpers/factories.ts'

/**
 * The student's home page (/student) is where the tutor starts: a new-question form (subject,
 * grade preset to the student's own, question) that works without JavaScript, the student's
 * recent conversations, and the way to the library.
 */

const mn = JSON.parse(readFileSync(new URL('../locales/mn.json', import.meta.url), 'utf8'))
const en = JSON.parse(readFileSync(new URL('../locales/en.json', import.meta.url), 'utf8'))

let t: TestApp
let schoolCode: number
let schoolId: number
let students: { id: number; username: string; password: string }[]

before(async () => {
  t = await buildTestApp()
  await importSamples(t.database.db, ['biology-7.md'])
  const made = await makeStudents(t.database.db, 3, 8)
  schoolCode = made.school.code
  schoolId = made.school.id
  students = made.students
})

after(async () => {
  await t?.close()
})

async function clientFor(i: number): Promise<TestClient> {
  const c = new TestClient(t.app)
  await c.login(schoolCode, students[i]!.username, students[i]!.password)
  return c
}

test('an empty home: the new-question form with the student\'s grade chosen, no questions yet, the library', async () => {
  const c = await clientFor(0)
  const home = await c.get('/student')
  assert.equal(home.statusCode, 200)
  const body = home.body
  assert.ok(!body.includes('Удахгүй'), 'no "soon" any more')
  // The same form as /chat: a plain POST (with CSRF) that htmx may take over.
  assert.match(body, /<form method="post" action="\/chat" data-hx-post="\/chat"/)
  assert.match(body, /<input type="hidden" name="_csrf" value="[^"]+">/)
  assert.match(body, /<select id="chat-subject" name="subject" required>/)
  assert.match(body, /<option value="biology">Биологи<\/option>/)
  assert.match(body, /<option value="8" selected>8<\/option>/, 'the grade is the student\'s own')
  assert.equal((body.match(/ selected>/g) ?? []).length, 1, 'no subject is chosen for them')
  assert.match(body, /<label for="chat-question">/)
  assert.match(body, /<textarea id="chat-question" name="question"/)
  assert.ok(body.includes(mn.student.recent))
  assert.ok(body.includes(mn.chat.list.empty))
  assert.ok(!body.includes('href="/chat"><'), 'no link to a list that is empty')
  assert.match(body, /<a href="\/library">/)
  assert.ok(body.includes(mn.student.library.title))
  assert.match(body, /<script src="\/static\/js\/chat\.js\?v=\w+" defer><\/script>/)
  // Headings in order: h1, then the sections' h2s.
  assert.deepEqual([...body.matchAll(/<h(\d)[ >]/g)].map((m) => m[1]), ['1', '2', '2', '2'])
  const english = await c.get('/student', { 'accept-language': 'en' })
  assert.ok(english.body.includes(en.student.recent) && english.body.includes(en.student.library.link))
})

test('JS off: asking from the home page stores the question, 303 to the conversation, which gets its answer; the home lists it', async () => {
  const c = await clientFor(1)
  await c.get('/student')
  const res = await c.post('/chat', { subject: 'biology', grade: '8', question: 'фотосинтез гэж юу вэ' })
  assert.equal(res.statusCode, 303)
  const id = conversationIdOf(res.headers.location)
  const page = await waitForAnswers(c, `/chat/${id}`)
  assert.ok(page.body.includes(mn.chat.offline.label))
  const home = await c.get('/student')
  assert.match(home.body, new RegExp(`<a href="/chat/${id}">фотосинтез гэж юу вэ</a>`))
  assert.match(home.body, /<a href="\/chat">/, 'and the way to all of them')
  // An empty submit from the home form gets the form back with its errors (on /chat).
  const empty = await c.post('/chat', { subject: '', grade: '8', question: '' })
  assert.equal(empty.statusCode, 422)
  assert.ok(empty.body.includes(mn.chat.errors.subjectRequired) && empty.body.includes(mn.chat.errors.questionRequired))
  assert.match(empty.body, /<option value="8" selected>8<\/option>/, 'the chosen grade is kept')
})

test('JS on: the home form posts with htmx and the conversation replaces the page content', async () => {
  const c = await clientFor(1)
  await c.get('/student')
  const res = await postHtmx(c, '/chat', { subject: 'biology', grade: '8', question: 'хлорофилл гэж юу вэ' })
  assert.equal(res.statusCode, 200)
  assert.match(String(res.headers['hx-push-url']), /^\/chat\/\d+$/)
  assert.ok(res.body.includes('<ol class="turns" id="turns">'))
  await waitForAnswers(c, String(res.headers['hx-push-url']))
})

test('the five most recent conversations, newest first, only the student\'s own', async () => {
  const db = t.database.db
  const mine = students[2]!
  for (let i = 1; i <= 7; i++) {
    await db
      .insertInto('conversations')
      .values({ user_id: mine.id, school_id: schoolId, subject: 'biology', grade: 8, title: `Миний асуулт ${i}`, updated_at: new Date(Date.now() - (100 - i) * 1000) })
      .execute()
  }
  const c = await clientFor(2)
  const home = await c.get('/student')
  const titles = [...home.body.matchAll(/<a href="\/chat\/\d+">([^<]+)<\/a>/g)].map((m) => m[1])
  assert.deepEqual(titles, ['Миний асуулт 7', 'Миний асуулт 6', 'Миний асуулт 5', 'Миний асуулт 4', 'Миний асуулт 3'])
  // Another student of the same class sees none of them.
  const other = await clientFor(0)
  assert.ok(!(await other.get('/student')).body.includes('Миний асуулт'))
})

test('only students have this home; others get 404, anonymous visitors the login page', async () => {
  const teacher = await makeUser(t.database.db, 'teacher', schoolId)
  const tc = new TestClient(t.app)
  await tc.login(schoolCode, teacher.username, teacher.password)
  assert.equal((await tc.get('/student')).statusCode, 404)
  const anon = new TestClient(t.app)
  const res = await anon.get('/student')
  assert.equal(res.statusCode, 303)
  assert.match(String(res.headers.location), /^\/login/)
})
