import { test, before, after, describe } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import { sql } from 'kysely'
import { buildApp } from '../src/app.ts'
import { loadConfig, type Config, type LlmConfig } from '../src/config.ts'
import type { Database } from '../src/db/index.ts'
import { estimateCostUsd } from '../src/services/llm/prices.ts'
import { freshDatabase } from './helpers/db.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, llmConfigFor, makeStudents, noscriptRefresh, waitForAnswers } from './helpers/chat.ts'
import { fakeCost, fakeTokens, startFakeOpenRouter, type FakeOpenRouter, type Script } from './fakes/openrouter.ts'

/**
 * Issue 4, "what it must show" 3, through the real chat: a student asks (POST /chat, no JS), the
 * first model fails in each way the fake OpenRouter can fail, and the answer still arrives from
 * the next model — one clean answer, stored with the name of the model that gave it. OpenRouter
 * down as a whole: the fallback provider (LLM_FALLBACK_*) answers. Everything down: the question
 * waits in the queue, and a fresh app instance on the same database answers it once a provider
 * is back. And /metrics carries exactly the metrics issue 4 names.
 */

const mn = JSON.parse(readFileSync(new URL('../locales/mn.json', import.meta.url), 'utf8'))
const M1 = 'google/gemini-2.5-flash'
const M2 = 'deepseek/deepseek-chat-v3-0324'
const M3 = 'openai/gpt-4o-mini'
const GEMINI = 'gemini-2.5-flash'
const TOKENS = 30
const FULL = fakeTokens(TOKENS).join('')

let database: Database
let openrouter: FakeOpenRouter
let gemini: FakeOpenRouter
let schoolCode: number
let students: { id: number; username: string; password: string }[]
let nextStudent = 0
const running = new Set<FastifyInstance>()

/** The LLM config: OpenRouter at `url`, Gemini's endpoint as the fallback provider, short timeouts. */
function llmFor(url: string): LlmConfig {
  return llmConfigFor(url, {
    LLM_FIRST_TOKEN_TIMEOUT_MS: '800',
    LLM_IDLE_TIMEOUT_MS: '600',
    LLM_BREAKER_COOLDOWN_MS: '100',
    LLM_FALLBACK_BASE_URL: gemini.url,
    LLM_FALLBACK_MODELS: GEMINI,
    LLM_FALLBACK_NAME: 'gemini',
  })
}

/** One app instance on the shared database (several may run, like instances of a deployment). */
async function startApp(llm: LlmConfig): Promise<FastifyInstance> {
  const config: Config = {
    ...loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }, { sessionSecret: 'test-secret-0123456789-0123456789-abcdef', rateLimitPerMinute: 100_000, seedDemo: false }),
    llm,
  }
  const app = await buildApp({ config, database, logger: false })
  await app.ready()
  running.add(app)
  return app
}

async function stopApp(app: FastifyInstance): Promise<void> {
  running.delete(app)
  await app.close()
}

/** A student who has not asked anything yet (the limits are per student: 30 a minute). */
async function newStudent(app: FastifyInstance): Promise<{ c: TestClient; id: number }> {
  const s = students[nextStudent++]!
  const c = new TestClient(app)
  await c.login(schoolCode, s.username, s.password)
  return { c, id: s.id }
}

async function answerOf(conversationId: number) {
  return database.db
    .selectFrom('messages')
    .selectAll()
    .where('conversation_id', '=', conversationId)
    .where('role', '=', 'assistant')
    .orderBy('id', 'desc')
    .executeTakeFirstOrThrow()
}

async function scrape(app: FastifyInstance): Promise<string> {
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  assert.equal(res.statusCode, 200)
  return res.body
}

/** The value of one sample of /metrics (0 when absent). Labels in the order prom-client prints them. */
function sample(metrics: string, name: string, labels: Record<string, string> = {}): number {
  const inner = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')
  const line = metrics.split('\n').find((l) => l.startsWith(inner ? `${name}{${inner}} ` : `${name} `))
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0
}

const llmRequests = (metrics: string, provider: string, model: string, outcome: string) =>
  sample(metrics, 'bagsh_llm_requests_total', { provider, model, outcome })

before(async () => {
  openrouter = await startFakeOpenRouter({ tps: 0, tokens: TOKENS })
  gemini = await startFakeOpenRouter({ flavor: 'gemini', tps: 0, tokens: TOKENS })
  database = await freshDatabase()
  await importSamples(database.db, ['biology-7.md'])
  const made = await makeStudents(database.db, 40)
  schoolCode = made.school.code
  students = made.students
})

after(async () => {
  for (const app of [...running]) await stopApp(app)
  await database?.close()
  await openrouter?.close()
  await gemini?.close()
})

interface Case {
  name: string
  /** What the first model (or, with '*', every OpenRouter model) does. */
  scripts: Record<string, Script>
  /** The outcome the chain records for each request to the first model. */
  firstModel: string[]
  /** Who answers. */
  answeredBy: { provider: 'openrouter' | 'gemini'; model: string }
  /** The models OpenRouter was asked, in order. */
  asked: string[]
  /** Waited after the case (a Retry-After, an open circuit), so the next case starts clean. */
  settleMs?: number
}

const CASES: Case[] = [
  { name: 'pre-stream 400 (that model refuses the request)', scripts: { [M1]: { status: 400 } }, firstModel: ['rejected'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M2] },
  { name: 'pre-stream 502', scripts: { [M1]: { status: 502 } }, firstModel: ['unavailable'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M2] },
  { name: 'pre-stream 503', scripts: { [M1]: { status: 503 } }, firstModel: ['unavailable'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M2] },
  { name: 'killed: the connection drops before any response', scripts: { [M1]: { resetBeforeHeaders: true } }, firstModel: ['unavailable'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M2] },
  { name: 'no response at all (first-token timeout, one retry)', scripts: { [M1]: { hang: true } }, firstModel: ['timeout-first-token', 'timeout-first-token'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M1, M2] },
  { name: 'slow first token, keep-alive comments only (first-token timeout, one retry)', scripts: { [M1]: { firstTokenDelayMs: 5000 } }, firstModel: ['timeout-first-token', 'timeout-first-token'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M1, M2] },
  { name: 'mid-stream error frame', scripts: { [M1]: { midStreamError: { afterTokens: 4 } } }, firstModel: ['stream-error'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M2] },
  { name: 'stall mid-stream (idle timeout, one retry)', scripts: { [M1]: { stallAfterTokens: 3 } }, firstModel: ['timeout-idle', 'timeout-idle'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M1, M2] },
  { name: 'disconnect mid-stream', scripts: { [M1]: { disconnectAfterTokens: 5 } }, firstModel: ['truncated'], answeredBy: { provider: 'openrouter', model: M2 }, asked: [M1, M2] },
  {
    name: 'pre-stream 429 with Retry-After',
    scripts: { [M1]: { status: 429, retryAfter: 1 } },
    firstModel: ['rate-limited'],
    answeredBy: { provider: 'openrouter', model: M2 },
    asked: [M1, M2],
    settleMs: 1100,
  },
  {
    name: 'every OpenRouter model answering 503: the fallback provider answers',
    scripts: { '*': { status: 503 } },
    firstModel: ['unavailable'],
    answeredBy: { provider: 'gemini', model: GEMINI },
    asked: [M1, M2, M3],
  },
  // A bad key or no credits holds for every OpenRouter model: its circuit opens, the fallback provider answers.
  { name: 'pre-stream 401 (bad key)', scripts: { [M1]: { status: 401 } }, firstModel: ['auth'], answeredBy: { provider: 'gemini', model: GEMINI }, asked: [M1], settleMs: 200 },
  { name: 'pre-stream 402 (no credits)', scripts: { [M1]: { status: 402 } }, firstModel: ['credits'], answeredBy: { provider: 'gemini', model: GEMINI }, asked: [M1], settleMs: 200 },
]

describe('the first model fails: the answer still arrives from the next', () => {
  let app: FastifyInstance
  let base: string
  before(async () => {
    app = await startApp(llmFor(openrouter.url))
    await app.listen({ host: '127.0.0.1', port: 0 })
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  })

  test('over SSE (JS on): the failed model\'s tokens are dropped with a reset, and one clean answer follows', async () => {
    openrouter.reset()
    // Slow enough that the watcher sees the first model's tokens before it fails.
    openrouter.setScript(M1, { tps: 20, midStreamError: { afterTokens: 6 } })
    openrouter.setScript(M2, { tps: 200 })
    const { c } = await newStudent(app)
    const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Хлоропласт хаана байдаг вэ?' })).headers.location)
    const answer = await answerOf(id)
    const cookie = [...c.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    const res = await fetch(`${base}/chat/${id}/messages/${answer.id}/stream`, { headers: { cookie }, signal: AbortSignal.timeout(20_000) })
    assert.equal(res.status, 200)
    const events: { event: string; data: string }[] = []
    for (const block of (await res.text()).split('\n\n')) {
      const event = /^event: (.*)$/m.exec(block)?.[1]
      const data = [...block.matchAll(/^data: (.*)$/gm)].map((m) => m[1]).join('\n')
      if (event) events.push({ event, data })
    }
    const kinds = events.map((e) => e.event)
    const reset = kinds.indexOf('reset')
    assert.ok(reset > 0 && kinds.slice(0, reset).includes('token'), `tokens, then a reset: ${kinds.join(',')}`)
    assert.equal(kinds.lastIndexOf('reset'), reset, 'one reset')
    const text = (list: typeof events) => list.filter((e) => e.event === 'token').map((e) => e.data.replace(/^<span>|<\/span>$/g, '')).join('')
    assert.equal(text(events.slice(reset)), FULL, 'after the reset: the whole answer of the next model, once')
    assert.equal(kinds.at(-1), 'done')
    assert.equal(events.at(-1)!.data.split('Фотосинтез бол ногоон ургамал').length - 1, 1, 'the final answer, clean')
    assert.equal((await answerOf(id)).model, M2)
  })

  test('a 429 keeps the first model out until Retry-After has passed', async () => {
    openrouter.reset()
    openrouter.setScript(M1, { status: 429, retryAfter: 3 })
    const { c } = await newStudent(app)
    const first = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Навч ямар өнгөтэй вэ?' })).headers.location)
    await waitForAnswers(c, `/chat/${first}`)
    openrouter.setScript(M1, {})
    const second = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Үндэс юу хийдэг вэ?' })).headers.location)
    await waitForAnswers(c, `/chat/${second}`)
    assert.equal((await answerOf(second)).model, M2)
    assert.deepEqual(openrouter.requests.map((r) => r.model), [M1, M2, M2], 'the first model was not asked inside its Retry-After')
    // Retry-After counts from the 429 response.
    await sleep(Math.max(0, openrouter.requests[0]!.receivedAt + 3300 - Date.now()))
    const third = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Иш юу хийдэг вэ?' })).headers.location)
    await waitForAnswers(c, `/chat/${third}`)
    assert.equal((await answerOf(third)).model, M1, 'asked again once Retry-After has passed')
  })

  test('a request every model rejects (400 twice) is not retried for ever: the student is told at once', async () => {
    openrouter.reset()
    gemini.reset()
    openrouter.setScript('*', { status: 400 })
    const { c } = await newStudent(app)
    const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Цэцэг яагаад үнэртэй вэ?' })).headers.location)
    const page = await waitForAnswers(c, `/chat/${id}`)
    assert.ok(page.body.includes(mn.chat.failed))
    const row = await answerOf(id)
    assert.equal(row.status, 'failed')
    assert.equal(row.run_after, null)
    assert.match(row.error ?? '', /HTTP 400/)
    assert.deepEqual(openrouter.requests.map((r) => r.model), [M1, M2], 'two rejections are enough')
    assert.equal(gemini.requests.length, 0)
    openrouter.setScript('*', {})
  })

  for (const [i, k] of CASES.entries()) {
    test(k.name, async () => {
      openrouter.reset()
      gemini.reset()
      for (const [model, script] of Object.entries(k.scripts)) openrouter.setScript(model, script)
      const before = await scrape(app)
      const { c } = await newStudent(app)
      // JS off: the question is stored, 303 to the conversation, which refreshes until the answer is there.
      const res = await c.post('/chat', { subject: 'biology', grade: '7', question: `Фотосинтез хаана явагддаг вэ? (${i + 1})` })
      assert.equal(res.statusCode, 303)
      const id = conversationIdOf(res.headers.location)
      const page = await waitForAnswers(c, `/chat/${id}`)
      assert.equal(page.statusCode, 200)

      // One clean answer, from the next model, on the page and in the database.
      const row = await answerOf(id)
      assert.equal(row.status, 'done')
      assert.equal(row.kind, 'llm')
      assert.equal(row.provider, k.answeredBy.provider)
      assert.equal(row.model, k.answeredBy.model)
      assert.equal(row.content, FULL, 'nothing of the failed attempt is left in the answer')
      assert.equal(row.attempts, 0, 'answered at once, not through the retry queue')
      assert.equal(row.completion_tokens, TOKENS)
      assert.ok(row.prompt_tokens! > 100)
      // Cost: the provider's usage.cost (OpenRouter), else the price table (Gemini's endpoint sends none).
      const expectedCost =
        k.answeredBy.provider === 'openrouter' ? fakeCost(row.prompt_tokens!, row.completion_tokens!) : estimateCostUsd(GEMINI, row.prompt_tokens!, row.completion_tokens!)!
      assert.ok(Math.abs(Number(row.cost_usd) - expectedCost) <= 1e-8, `${row.cost_usd} vs ${expectedCost}`)
      assert.ok(row.latency_ms !== null && row.first_token_ms !== null)
      assert.ok(page.body.includes('Фотосинтез бол ногоон ургамал'))
      assert.equal(page.body.split('Фотосинтез бол ногоон ургамал').length - 1, 1)
      assert.ok(!page.body.includes(mn.chat.failed) && !page.body.includes(mn.chat.slow))
      assert.ok(page.body.includes(mn.chat.sources), 'with its citations')

      // Who was asked, and what the metrics say happened to the first model.
      assert.deepEqual(openrouter.requests.map((r) => r.model), k.asked)
      assert.equal(gemini.requests.length, k.answeredBy.provider === 'gemini' ? 1 : 0)
      const after = await scrape(app)
      for (const outcome of new Set(k.firstModel)) {
        const n = k.firstModel.filter((o) => o === outcome).length
        assert.equal(llmRequests(after, 'openrouter', M1, outcome) - llmRequests(before, 'openrouter', M1, outcome), n, `${M1} ${outcome}`)
      }
      assert.equal(llmRequests(after, k.answeredBy.provider, k.answeredBy.model, 'ok') - llmRequests(before, k.answeredBy.provider, k.answeredBy.model, 'ok'), 1)
      assert.equal(sample(after, 'bagsh_chat_turns_total', { outcome: 'answered' }) - sample(before, 'bagsh_chat_turns_total', { outcome: 'answered' }), 1)
      // Thinking is off for Gemini 2.5 Flash in each provider's own dialect (reference B.1, C.1).
      assert.deepEqual(openrouter.requests[0]!.body.reasoning, { enabled: false })
      assert.equal(openrouter.requests[0]!.body.max_tokens, 1024)
      if (k.answeredBy.provider === 'gemini') {
        assert.equal(gemini.requests[0]!.body.reasoning_effort, 'none')
        assert.equal(gemini.requests[0]!.body.max_tokens, 1024)
      } else {
        assert.equal(openrouter.requests.at(-1)!.body.reasoning, undefined, 'other models get no thinking switch')
      }
      if (k.settleMs) await sleep(k.settleMs)
    })
  }

  test('/metrics has exactly the metrics issue 4 names, with their labels', async () => {
    openrouter.reset()
    // A rate-limited question, in a school that allows one a minute.
    const limited = await makeStudents(database.db, 1)
    await database.db.updateTable('schools').set({ chat_per_minute: 1 }).where('id', '=', limited.school.id).execute()
    const c = new TestClient(app)
    await c.login(limited.school.code, limited.students[0]!.username, limited.students[0]!.password)
    const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Ургамал яаж ургадаг вэ?' })).headers.location)
    await waitForAnswers(c, `/chat/${id}`)
    assert.equal((await c.post(`/chat/${id}/messages`, { question: 'Бас нэг асуулт' })).statusCode, 429)

    const metrics = await scrape(app)
    const types = new Map([...metrics.matchAll(/^# TYPE (bagsh_\S+) (\w+)$/gm)].map((m) => [m[1]!, m[2]!]))
    const expected: [string, string, string[]][] = [
      ['bagsh_chat_turns_total', 'counter', ['outcome']],
      ['bagsh_llm_requests_total', 'counter', ['provider', 'model', 'outcome']],
      ['bagsh_llm_first_token_seconds', 'histogram', []],
      ['bagsh_cache_hits_total', 'counter', []],
      ['bagsh_rate_limited_total', 'counter', ['limit']],
      ['bagsh_db_statements_total', 'counter', ['kind']],
    ]
    for (const [name, type, labels] of expected) {
      assert.equal(types.get(name), type, name)
      const samples = metrics.split('\n').filter((l) => new RegExp(`^${name}(_bucket|_sum|_count)?[{ ]`).test(l))
      assert.ok(samples.length > 0, `${name} has samples`)
      for (const line of samples) {
        const keys = [...(/^[^{ ]+\{([^}]*)\}/.exec(line)?.[1] ?? '').matchAll(/(\w+)="/g)].map((m) => m[1]).filter((k) => k !== 'le')
        assert.deepEqual(keys, labels, line)
      }
    }
    assert.ok(sample(metrics, 'bagsh_chat_turns_total', { outcome: 'answered' }) >= CASES.length)
    assert.ok(sample(metrics, 'bagsh_chat_turns_total', { outcome: 'rate_limited' }) >= 1)
    assert.ok(sample(metrics, 'bagsh_chat_turns_total', { outcome: 'failed' }) >= 1)
    assert.ok(llmRequests(metrics, 'openrouter', M1, 'ok') >= 1)
    assert.ok(llmRequests(metrics, 'gemini', GEMINI, 'ok') >= 3)
    assert.ok(sample(metrics, 'bagsh_llm_first_token_seconds_count') >= CASES.length)
    assert.ok(sample(metrics, 'bagsh_llm_first_token_seconds_bucket', { le: '+Inf' }) >= CASES.length)
    assert.equal(sample(metrics, 'bagsh_cache_hits_total'), 0)
    assert.equal(sample(metrics, 'bagsh_rate_limited_total', { limit: 'minute' }), 1)
    assert.ok(sample(metrics, 'bagsh_db_statements_total', { kind: 'write' }) >= 2 * CASES.length)
    assert.ok(sample(metrics, 'bagsh_db_statements_total', { kind: 'read' }) > 0)
  })

  after(async () => {
    await stopApp(app)
  })
})

test('OpenRouter unreachable (its whole base URL down): the fallback provider answers, cost from the price table', async () => {
  const dead = createServer()
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
  const port = (dead.address() as AddressInfo).port
  await new Promise<void>((resolve) => dead.close(() => resolve()))
  gemini.reset()
  const app = await startApp(llmFor(`http://127.0.0.1:${port}/api/v1`))
  try {
    for (const question of ['Эс гэж юу вэ?', 'Хлоропласт гэж юу вэ?']) {
      const { c } = await newStudent(app)
      const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question })).headers.location)
      const page = await waitForAnswers(c, `/chat/${id}`)
      assert.ok(page.body.includes('Фотосинтез бол ногоон ургамал'))
      const row = await answerOf(id)
      assert.equal(row.status, 'done')
      assert.deepEqual([row.provider, row.model], ['gemini', GEMINI])
      assert.equal(row.content, FULL)
      assert.ok(Math.abs(Number(row.cost_usd) - estimateCostUsd(GEMINI, row.prompt_tokens!, row.completion_tokens!)!) <= 1e-8)
    }
    assert.equal(gemini.requests.length, 2)
    assert.equal(gemini.requests[0]!.path, '/v1beta/openai/chat/completions')
    const metrics = await scrape(app)
    // An unreachable host is the whole provider: its other models are not tried one by one.
    assert.equal(llmRequests(metrics, 'openrouter', M1, 'network'), 2)
    assert.equal(llmRequests(metrics, 'openrouter', M2, 'network'), 0)
    assert.equal(llmRequests(metrics, 'gemini', GEMINI, 'ok'), 2)
  } finally {
    await stopApp(app)
  }
})

test('every provider down: the question is queued; after a restart, a fresh instance on the same database answers it', { timeout: 60_000 }, async () => {
  openrouter.reset()
  gemini.reset()
  openrouter.setScript('*', { status: 503 })
  gemini.setScript('*', { status: 503 })
  const first = await startApp(llmFor(openrouter.url))
  const { c } = await newStudent(first)
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'Амьсгал гэж юу вэ?' })).headers.location)
  let row = await answerOf(id)
  for (let i = 0; i < 400 && row.status !== 'queued'; i++) {
    await sleep(25)
    row = await answerOf(id)
  }
  assert.equal(row.status, 'queued')
  assert.equal(row.attempts, 1)
  assert.ok(row.run_after && row.run_after.getTime() > Date.now(), 'retried after a backoff')
  assert.deepEqual(openrouter.requests.map((r) => r.model), [M1, M2, M3])
  assert.equal(gemini.requests.length, 1)
  // The student is told, in PRODUCT.md's words, and the page keeps refreshing (no JS).
  const waiting = await c.get(`/chat/${id}`)
  assert.ok(waiting.body.includes(mn.chat.slow))
  assert.equal(mn.chat.slow, 'Холболт удааширлаа. Бага хүлээнэ үү.')
  assert.equal(noscriptRefresh(waiting), '10')

  // The instance goes away (a deploy, a crash after the row was written): nothing is in memory any more.
  await stopApp(first)
  // The providers come back, and the backoff has passed (moved here instead of waiting 15 s).
  openrouter.setScript('*', {})
  gemini.setScript('*', {})
  await sql`UPDATE messages SET run_after = now() - interval '1 second' WHERE id = ${row.id}`.execute(database.db)

  // A new instance starts; its own worker (no test hook) finds the queued answer and answers it.
  const second = await startApp(llmFor(openrouter.url))
  const again = new TestClient(second)
  for (const [k, v] of c.cookies) again.cookies.set(k, v)
  const page = await waitForAnswers(again, `/chat/${id}`, 30_000)
  assert.ok(page.body.includes('Фотосинтез бол ногоон ургамал'))
  assert.ok(!page.body.includes(mn.chat.slow))
  row = await answerOf(id)
  assert.equal(row.status, 'done')
  assert.equal(row.attempts, 1)
  assert.deepEqual([row.provider, row.model], ['openrouter', M1])
  assert.equal(row.content, FULL)
  // Still one question and one answer: nothing lost, nothing doubled.
  const messages = await database.db.selectFrom('messages').select(['role', 'status']).where('conversation_id', '=', id).orderBy('id').execute()
  assert.deepEqual(messages, [{ role: 'user', status: 'done' }, { role: 'assistant', status: 'done' }])
  await stopApp(second)
})
