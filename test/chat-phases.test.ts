import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, llmConfigFor, makeStudents, waitForAnswers } from './helpers/chat.ts'
import { startFakeOpenRouter, type FakeOpenRouter } from './fakes/openrouter.ts'
import { BACKGROUND } from '../src/db/index.ts'

/**
 * Where a turn's time before its first token goes (bagsh_chat_turn_phase_seconds, read by
 * bench/chat-load.ts), and which of a turn's statements are background work for the embedded
 * database thread (docs/decisions/012).
 */

let fake: FakeOpenRouter
let t: TestApp
let client: TestClient

before(async () => {
  fake = await startFakeOpenRouter({ tps: 0, tokens: 8 })
  t = await buildTestApp({ llm: llmConfigFor(fake.url) })
  await importSamples(t.database.db, ['biology-7.md'])
  const { school, students } = await makeStudents(t.database.db, 1)
  client = new TestClient(t.app)
  await client.login(school.code, students[0]!.username, students[0]!.password)
})

after(async () => {
  await t?.close()
  await fake?.close()
})

function count(metrics: string, phase: string): number {
  const m = new RegExp(`^bagsh_chat_turn_phase_seconds_count\\{phase="${phase}"\\} (\\d+)$`, 'm').exec(metrics)
  return m ? Number(m[1]) : 0
}

test('an answered question records each phase before its first token once; storing the answer is background work', async () => {
  const statements: string[] = []
  const stop = t.database.onStatement((text) => statements.push(text))
  let id: number
  try {
    id = conversationIdOf((await client.post('/chat', { subject: 'biology', grade: '7', question: 'Фотосинтез гэж юу вэ?' })).headers.location)
    await waitForAnswers(client, `/chat/${id}`)
    await client.post(`/chat/${id}/messages`, { question: 'Хлорофилл юунд хэрэгтэй вэ?' })
    await waitForAnswers(client, `/chat/${id}`)
  } finally {
    stop()
  }
  const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
  assert.match(metrics, /# TYPE bagsh_chat_turn_phase_seconds histogram/)
  for (const phase of ['store', 'retrieve', 'prompt', 'model', 'first_token']) assert.equal(count(metrics, phase), 2, phase)

  // The question's statement is foreground (someone waits for the first token); the answer's is not.
  const question = statements.filter((s) => /INSERT INTO messages/.test(s))
  const answer = statements.filter((s) => /UPDATE messages SET status = 'done'/.test(s))
  assert.equal(question.length, 2)
  assert.equal(answer.length, 2)
  assert.ok(question.every((s) => !s.includes(BACKGROUND)))
  assert.ok(answer.every((s) => s.includes(BACKGROUND)))
})
