import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, makeStudents, postHtmx, waitForAnswers } from './helpers/chat.ts'
import { Lookahead } from '../src/services/chat/lookahead.ts'

/**
 * A follow-up's passages are looked up while its question is stored (src/services/chat/
 * lookahead.ts): the two wait for the database together. Looking ahead never costs a student
 * more searches a minute than the per-minute limit allows questions, however often they post.
 */

const PER_MINUTE = 3
let t: TestApp

before(async () => {
  t = await buildTestApp({ chat: { perMinute: PER_MINUTE, perDay: 50 } })
  await importSamples(t.database.db, ['biology-7.md'])
})

after(async () => {
  await t?.close()
})

async function conversation() {
  const { school, students } = await makeStudents(t.database.db, 1)
  const c = new TestClient(t.app)
  await c.login(school.code, students[0]!.username, students[0]!.password)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Эс гэж юу вэ?' })).headers.location)
  await waitForAnswers(c, `/chat/${id}`)
  return { c, id }
}

/** Statements in the order they finished, while `run` runs. */
async function recording(run: () => Promise<void>): Promise<string[]> {
  const statements: string[] = []
  const stop = t.database.onStatement((text) => statements.push(text))
  try {
    await run()
  } finally {
    stop()
  }
  return statements
}

const isLookup = (s: string) => s.includes('json_build_array(id, grade, chunk_count')
const isStore = (s: string) => /INSERT INTO messages/.test(s)

test("a follow-up's passages are looked up before its question is stored, and its answer cites them", async () => {
  const { c, id } = await conversation()
  const statements = await recording(async () => {
    assert.equal((await postHtmx(c, `/chat/${id}/messages`, { question: 'Фотосинтез гэж юу вэ?' })).statusCode, 200)
    await waitForAnswers(c, `/chat/${id}`)
  })
  const lookup = statements.findIndex(isLookup)
  const store = statements.findIndex(isStore)
  assert.ok(lookup >= 0 && store >= 0, statements.join('\n---\n'))
  assert.ok(lookup < store, 'the lookup finished before the store: they were sent together')
  assert.equal(statements.filter(isLookup).length, 1, 'one search, not two')
  const page = await c.get(`/chat/${id}`)
  assert.match(page.body, /фотосинтез/i)
  assert.match(page.body, /href="\/library\/\d+\?page=\d+/)
})

test('a student posting past the per-minute limit costs at most that many searches a minute', async () => {
  const { c, id } = await conversation()
  const statuses: number[] = []
  const statements = await recording(async () => {
    for (let i = 1; i <= PER_MINUTE + 3; i++) {
      const res = await c.post(`/chat/${id}/messages`, { question: `Ургамлын эс ${i}-р асуулт юу вэ?` })
      statuses.push(res.statusCode)
    }
    await waitForAnswers(c, `/chat/${id}`)
  })
  // The first question (a new conversation) counts too: PER_MINUTE - 1 follow-ups are stored.
  assert.deepEqual(statuses, [...Array(PER_MINUTE - 1).fill(303), ...Array(4).fill(429)])
  assert.equal(statements.filter(isLookup).length, PER_MINUTE, statements.filter(isLookup).join('\n'))
})

test("another student's conversation id gets no look-ahead from this one's context", () => {
  const ahead = new Lookahead()
  const context = { grade: 7, subject: 'biology', textbookId: null, sectionPath: null }
  ahead.remember(10, 1, context)
  assert.deepEqual(ahead.contextOf(10, 1), context)
  assert.equal(ahead.contextOf(10, 2), undefined)
  assert.equal(ahead.contextOf(11, 1), undefined)
})

test('the look-ahead budget is the per-minute limit, renewed each minute', () => {
  const ahead = new Lookahead()
  const start = 1_000_000
  assert.deepEqual([1, 2, 3, 4].map(() => ahead.take(7, 3, start)), [true, true, true, false])
  assert.equal(ahead.take(8, 3, start), true, 'per student')
  assert.equal(ahead.take(7, 3, start + 59_999), false)
  assert.equal(ahead.take(7, 3, start + 60_000), true)
})
