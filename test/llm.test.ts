import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { ConfigError, loadConfig } from '../src/config.ts'
import { CircuitBreaker } from '../src/services/llm/breaker.ts'
import {
  kindForStatus,
  parseCompletionStream,
  parseErrorBody,
  parseRetryAfter,
  ProviderError,
  requestBody,
  type StreamPart,
} from '../src/services/llm/openai-compatible.ts'
import { estimateCostUsd } from '../src/services/llm/prices.ts'
import { SseDecoder } from '../src/services/llm/sse.ts'
import { AllProvidersFailed, createLlm, LlmRequestRejected, type ChatEvent, type ChatRequest, type DoneEvent, type Llm } from '../src/services/llm/index.ts'
import { fakeCost, fakeTokens, startFakeOpenRouter, type FakeOpenRouter } from './fakes/openrouter.ts'

const M1 = 'google/gemini-2.5-flash'
const M2 = 'deepseek/deepseek-chat-v3-0324'
const M3 = 'openai/gpt-4o-mini'
const SECRET = 'x'.repeat(32)
const OR_KEY = 'sk-or-v1-test-secret'
const GEMINI_KEY = 'gemini-test-secret'
const QUESTION: ChatRequest = {
  messages: [
    { role: 'system', content: 'Чи тэвчээртэй багш.' },
    { role: 'user', content: 'Фотосинтез гэж юу вэ?' },
  ],
}

// ---------------------------------------------------------------------------------------------
// The streaming parser, fed raw bytes

async function* chunksOf(...parts: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield typeof p === 'string' ? Buffer.from(p) : p
}

async function parse(...parts: (string | Uint8Array)[]): Promise<StreamPart[]> {
  const out: StreamPart[] = []
  for await (const part of parseCompletionStream(chunksOf(...parts))) out.push(part)
  return out
}

function tokensOf(parts: StreamPart[]): string {
  return parts.map((p) => (p.type === 'token' ? p.text : '')).join('')
}

const chunk = (content: string, finish: string | null = null) =>
  JSON.stringify({ id: 'gen-1', provider: 'OpenAI', model: M3, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content }, finish_reason: finish }] })

const WIRE =
  ': OPENROUTER PROCESSING\n\n' +
  `data: ${chunk('Сайн')}\n\n` +
  ': OPENROUTER PROCESSING\n\n' +
  `data: ${chunk(' байна уу? Өө, үү — ✓', 'stop')}\n\n` +
  `data: ${JSON.stringify({ id: 'gen-1', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], usage: { prompt_tokens: 42, completion_tokens: 2, cost: 0.0000075 } })}\n\n` +
  'data: [DONE]\n\n'

test('parser: Cyrillic split at every byte boundary, comments dropped, finish reason kept from the content chunk', async () => {
  const bytes = Buffer.from(WIRE)
  const oneByOne = await parse(...Array.from(bytes, (b) => Uint8Array.of(b)))
  assert.equal(tokensOf(oneByOne), 'Сайн байна уу? Өө, үү — ✓')
  assert.deepEqual(
    oneByOne.filter((p) => p.type !== 'token'),
    [{ type: 'finish', reason: 'stop' }, { type: 'usage', usage: { prompt_tokens: 42, completion_tokens: 2, cost: 0.0000075 } }, { type: 'done' }],
  )
  // Random split points give the same parts.
  for (let round = 0; round < 20; round++) {
    const pieces: Uint8Array[] = []
    for (let i = 0; i < bytes.length; ) {
      const n = 1 + Math.floor(Math.random() * 7)
      pieces.push(bytes.subarray(i, i + n))
      i += n
    }
    assert.deepEqual(await parse(...pieces), oneByOne)
  }
})

test('parser: CRLF line endings, including a CR and its LF in different chunks', async () => {
  const crlf = WIRE.replace(/\n/g, '\r\n')
  const whole = await parse(crlf)
  assert.equal(tokensOf(whole), 'Сайн байна уу? Өө, үү — ✓')
  const cut = crlf.indexOf('\r\n\r\n') + 1 // between CR and LF
  assert.deepEqual(await parse(crlf.slice(0, cut), crlf.slice(cut)), whole)
  // Bare CR line endings are SSE too.
  assert.deepEqual(await parse(WIRE.replace(/\n/g, '\r')), whole)
})

test('parser: the usage chunk with `choices: []` (docs) and with a repeated empty choice (captures); [DONE] optional', async () => {
  const usage = { prompt_tokens: 10, completion_tokens: 1, cost: 0.001 }
  const empty = await parse(`data: ${chunk('Тийм', 'stop')}\n\ndata: ${JSON.stringify({ choices: [], usage })}\n\n`)
  assert.deepEqual(empty, [{ type: 'token', text: 'Тийм' }, { type: 'finish', reason: 'stop' }, { type: 'usage', usage }])
  const repeated = await parse(
    `data: ${chunk('Тийм', 'stop')}\n\ndata: ${JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], usage })}\n\n`,
  )
  assert.deepEqual(repeated, empty, 'a null finish_reason in the usage chunk does not add a part')
  // The last event without its closing blank line still counts.
  assert.deepEqual(await parse(`data: ${chunk('Тийм', 'stop')}`), [{ type: 'token', text: 'Тийм' }, { type: 'finish', reason: 'stop' }])
})

test('parser: a mid-stream error frame throws, with a numeric or a string code', async () => {
  const frame = (code: number | string) =>
    `data: ${JSON.stringify({ id: 'gen-abc', model: 'openai/gpt-4o', error: { code, message: 'Rate limit exceeded', metadata: { error_type: 'rate_limit_exceeded' } }, choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error' }] })}\n\n`
  for (const code of [429, 'server_error']) {
    const seen: StreamPart[] = []
    await assert.rejects(
      (async () => {
        for await (const p of parseCompletionStream(chunksOf(`data: ${chunk('Эхлэл')}\n\n`, frame(code)))) seen.push(p)
      })(),
      (err: unknown) => err instanceof ProviderError && err.kind === 'stream-error' && err.message.includes('Rate limit exceeded') && err.message.includes(String(code)),
    )
    assert.deepEqual(seen, [{ type: 'token', text: 'Эхлэл' }])
  }
  // finish_reason "error" without a top-level error object is an error too.
  await assert.rejects(parse(`data: ${chunk('', 'error')}\n\n`), (err: unknown) => err instanceof ProviderError && err.kind === 'stream-error')
  // Gemini's array-wrapped error inside a stream.
  await assert.rejects(
    parse(`data: ${JSON.stringify([{ error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } }])}\n\n`),
    (err: unknown) => err instanceof ProviderError && err.kind === 'stream-error' && err.message.includes('overloaded'),
  )
  // Garbage is a broken stream, not a crash.
  await assert.rejects(parse('data: {"choices": [\n\n'), (err: unknown) => err instanceof ProviderError && err.kind === 'truncated')
})

test('SSE decoder: data without a space, multi-line data, other fields, and events joined without a blank line', () => {
  const d = new SseDecoder()
  assert.deepEqual(d.push(Buffer.from('event: x\nid: 1\nretry: 5\ndata:a\ndata: b\n\n:c\n\n')), ['a\nb'])
  assert.deepEqual(d.end(), [])
  // Two JSON chunks whose blank line went missing still parse, one by one.
  return parse(`data: ${chunk('А')}\ndata: ${chunk('Б', 'stop')}\n\n`).then((parts) => assert.equal(tokensOf(parts), 'АБ'))
})

test('error bodies: OpenRouter envelope, Gemini array, plain text; statuses and Retry-After', () => {
  assert.deepEqual(parseErrorBody('{"error":{"code":402,"message":"Insufficient credits","metadata":{"error_type":"payment_required"}}}'), {
    message: 'Insufficient credits',
    code: 402,
    type: 'payment_required',
  })
  assert.deepEqual(parseErrorBody('[{"error":{"code":400,"message":"Invalid JSON payload received. Unknown name \\"x\\"","status":"INVALID_ARGUMENT"}}]'), {
    message: 'Invalid JSON payload received. Unknown name "x"',
    code: 400,
    type: 'INVALID_ARGUMENT',
  })
  assert.equal(parseErrorBody('<html>Bad   gateway</html>').message, '<html>Bad gateway</html>')
  assert.deepEqual([400, 401, 402, 403, 404, 408, 413, 429, 500, 502, 503, 529].map(kindForStatus), [
    'rejected', 'auth', 'credits', 'refused', 'not-found', 'unavailable', 'rejected', 'rate-limited', 'unavailable', 'unavailable', 'unavailable', 'unavailable',
  ])
  const now = Date.parse('2026-01-01T00:00:00Z')
  assert.equal(parseRetryAfter('2', now), 2000)
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000)
  assert.equal(parseRetryAfter('soon', now), null)
  assert.equal(parseRetryAfter(null, now), null)
})

test('request body: max_tokens, stream, thinking off for Gemini 2.5 Flash as each endpoint documents it', () => {
  const req = { messages: QUESTION.messages, maxTokens: 1024 }
  assert.deepEqual(requestBody('openrouter', M1, req), { model: M1, messages: req.messages, stream: true, max_tokens: 1024, reasoning: { enabled: false } })
  assert.deepEqual(requestBody('openrouter', M2, req), { model: M2, messages: req.messages, stream: true, max_tokens: 1024 })
  assert.deepEqual(requestBody('openai', 'gemini-2.5-flash', { ...req, temperature: 0.3 }), {
    model: 'gemini-2.5-flash',
    messages: req.messages,
    stream: true,
    max_tokens: 1024,
    temperature: 0.3,
    stream_options: { include_usage: true },
    reasoning_effort: 'none',
  })
  assert.equal(requestBody('openai', 'gemini-3-flash-preview', req).reasoning_effort, undefined)
})

test('circuit breaker: opens after N consecutive failures, one probe when half-open, closes on success', () => {
  let now = 1000
  const b = new CircuitBreaker({ failureThreshold: 3, cooldownMs: 500, now: () => now })
  assert.equal(b.tryAcquire(), 'pass')
  b.recordFailure()
  b.recordFailure()
  b.recordSuccess() // not consecutive
  b.recordFailure()
  b.recordFailure()
  assert.equal(b.state, 'closed')
  b.recordFailure()
  assert.equal(b.state, 'open')
  assert.equal(b.tryAcquire(), null)
  assert.equal(b.retryAfterMs(), 500)
  now += 500
  assert.equal(b.state, 'half-open')
  assert.equal(b.tryAcquire(), 'probe')
  assert.equal(b.tryAcquire(), null, 'only one probe at a time')
  b.recordFailure() // the probe failed: open again for a full cool-down
  assert.equal(b.state, 'open')
  assert.equal(b.retryAfterMs(), 500)
  now += 500
  assert.equal(b.tryAcquire(), 'probe')
  b.release() // the probe was aborted: someone else may probe
  assert.equal(b.tryAcquire(), 'probe')
  b.recordSuccess()
  assert.equal(b.state, 'closed')
  b.trip()
  assert.equal(b.state, 'open', 'trip opens at once (bad key, no credits)')
})

test('prices: a table estimate only for known models, overridable', () => {
  assert.equal(estimateCostUsd(M1, 1_000_000, 1_000_000), 2.8)
  assert.equal(estimateCostUsd('unknown/model', 10, 10), null)
  assert.equal(estimateCostUsd('unknown/model', 1_000_000, 0, { 'unknown/model': { inputPerMillion: 1, outputPerMillion: 2 } }), 1)
})

test('config: defaults, no key means no LLM, LLM_PRICES and bad values', () => {
  const base = loadConfig({}, { sessionSecret: SECRET }).llm
  assert.equal(base.openrouter, null)
  assert.equal(base.fallback, null)
  assert.equal(base.maxTokens, 1024)
  assert.equal(base.firstTokenTimeoutMs, 30_000)
  assert.equal(createLlm(base), null, 'offline mode')
  const full = loadConfig(
    {
      OPENROUTER_API_KEY: OR_KEY,
      LLM_FALLBACK_BASE_URL: 'https://generativelanguage.googleapis.com/v1beta/openai/',
      LLM_FALLBACK_API_KEY: GEMINI_KEY,
      LLM_PRICES: 'openai/gpt-4o-mini=0.2:0.8, deepseek/deepseek-chat-v3.1:free=0:0',
    },
    { sessionSecret: SECRET },
  ).llm
  assert.deepEqual(full.openrouter, { name: 'openrouter', baseUrl: 'https://openrouter.ai/api/v1', apiKey: OR_KEY, models: [M1, M2, M3] })
  assert.deepEqual(full.fallback?.models, ['gemini-2.5-flash'])
  assert.equal(full.fallback?.name, 'gemini')
  assert.deepEqual(full.prices, {
    'openai/gpt-4o-mini': { inputPerMillion: 0.2, outputPerMillion: 0.8 },
    'deepseek/deepseek-chat-v3.1:free': { inputPerMillion: 0, outputPerMillion: 0 },
  })
  for (const env of [
    { LLM_PRICES: 'gpt=cheap' },
    { LLM_PRICES: 'gpt=1:2:3' },
    { LLM_MODELS: ' , ' },
    { LLM_MODELS: 'a b' },
    { OPENROUTER_BASE_URL: 'ftp://x' },
    { LLM_FALLBACK_BASE_URL: 'http://127.0.0.1:1/v1' }, // models required for a non-Gemini endpoint
    { LLM_FIRST_TOKEN_TIMEOUT_MS: '0' },
  ]) {
    assert.throws(() => loadConfig(env, { sessionSecret: SECRET }), ConfigError, JSON.stringify(env))
  }
})

// ---------------------------------------------------------------------------------------------
// The chain, against fake servers over real HTTP

interface Setup {
  llm: Llm
  or: FakeOpenRouter
  gemini: FakeOpenRouter | null
  logs: string[]
}

async function setup(t: TestContext, options: { env?: Record<string, string>; fallback?: boolean; orUrl?: string } = {}): Promise<Setup> {
  const or = await startFakeOpenRouter({ apiKey: OR_KEY })
  const gemini = options.fallback ? await startFakeOpenRouter({ flavor: 'gemini', apiKey: GEMINI_KEY }) : null
  const env: Record<string, string> = {
    OPENROUTER_API_KEY: OR_KEY,
    OPENROUTER_BASE_URL: options.orUrl ?? or.url,
    LLM_FIRST_TOKEN_TIMEOUT_MS: '300',
    LLM_IDLE_TIMEOUT_MS: '200',
    LLM_APP_URL: 'https://bagsh.example.mn',
    ...(gemini ? { LLM_FALLBACK_BASE_URL: gemini.url, LLM_FALLBACK_API_KEY: GEMINI_KEY, LLM_FALLBACK_MODELS: 'gemini-2.5-flash', LLM_FALLBACK_NAME: 'gemini' } : {}),
    ...options.env,
  }
  const logs: string[] = []
  const llm = createLlm(loadConfig(env, { sessionSecret: SECRET }).llm, { logger: { warn: (obj, msg) => logs.push(JSON.stringify(obj) + ' ' + msg) } })!
  t.after(async () => {
    await llm.close()
    await or.close()
    await gemini?.close()
    for (const line of logs) assert.ok(!line.includes(OR_KEY) && !line.includes(GEMINI_KEY), 'keys never reach the logs')
  })
  return { llm, or, gemini, logs }
}

interface Collected {
  events: ChatEvent[]
  /** What the student ends up seeing: tokens since the last restart. */
  text: string
  done: DoneEvent | null
  error: unknown
  ms: number
}

async function collect(llm: Llm, request: ChatRequest = QUESTION): Promise<Collected> {
  const started = performance.now()
  const out: Collected = { events: [], text: '', done: null, error: null, ms: 0 }
  try {
    for await (const e of llm.streamChat(request)) {
      out.events.push(e)
      if (e.type === 'token') out.text += e.text
      else if (e.type === 'restart') out.text = ''
      else out.done = e
    }
  } catch (err) {
    out.error = err
  }
  out.ms = performance.now() - started
  return out
}

async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(10)
  }
}

const FULL = fakeTokens(20).join('')

test('chain: a normal stream — tokens, usage and cost from the provider, request as documented', async (t) => {
  const { llm, or } = await setup(t)
  or.setScript('*', { tokens: 20, tps: 200 })
  const r = await collect(llm)
  assert.equal(r.error, null)
  assert.equal(r.text, FULL)
  assert.equal(r.events.filter((e) => e.type === 'token').length, 20, 'one event per token, as they arrive')
  const done = r.done!
  assert.equal(r.events.at(-1), done)
  assert.equal(done.provider, 'openrouter')
  assert.equal(done.model, M1)
  assert.equal(done.finishReason, 'stop')
  const promptTokens = Math.ceil(JSON.stringify(QUESTION.messages).length / 4)
  assert.deepEqual(done.usage, { promptTokens, completionTokens: 20, costUsd: fakeCost(promptTokens, 20), estimated: false })
  assert.ok(done.firstTokenMs >= 0 && done.firstTokenMs <= done.latencyMs)
  assert.ok(done.latencyMs >= 90, 'paced at 200 tokens/s')
  assert.match(done.generationId!, /^gen-/)
  assert.deepEqual(done.attempts.map((a) => [a.model, a.outcome]), [[M1, 'ok']])

  const req = or.requests[0]!
  assert.equal(or.requests.length, 1)
  assert.equal(req.path, '/api/v1/chat/completions')
  assert.deepEqual(req.body, { model: M1, messages: QUESTION.messages, stream: true, max_tokens: 1024, reasoning: { enabled: false } })
  assert.equal(req.headers.authorization, `Bearer ${OR_KEY}`)
  assert.equal(req.headers['http-referer'], 'https://bagsh.example.mn')
  assert.equal(req.headers['x-title'], 'Bagsh')
  assert.equal(req.headers['x-openrouter-title'], 'Bagsh')
  assert.equal(req.outcome, 'completed')

  // "More detail" asks for more.
  await collect(llm, { ...QUESTION, maxTokens: 2048 })
  assert.equal(or.requests[1]!.body.max_tokens, 2048)
})

test('chain: usage without cost uses the price table; no usage at all is estimated; other wire variants', async (t) => {
  const { llm, or } = await setup(t)
  // Odd-sized network pieces split the two-byte Cyrillic letters and the CRLF pairs.
  or.setScript('*', { tokens: 6, cost: null, usage: 'empty-choices', done: false, crlf: true, chunkBytes: 7 })
  const a = await collect(llm)
  assert.equal(a.text, fakeTokens(6).join(''))
  const u = a.done!.usage
  assert.equal(u.costUsd, estimateCostUsd(M1, u.promptTokens, u.completionTokens))
  assert.equal(u.estimated, false)

  or.setScript('*', { usage: 'none', comments: false })
  const b = await collect(llm)
  assert.equal(b.text, FULL)
  assert.equal(b.done!.usage.estimated, true)
  assert.equal(b.done!.usage.completionTokens, Math.ceil(FULL.length / 4))

  or.setScript('*', { usage: 'on-last-chunk', finishReason: 'length' })
  const c = await collect(llm)
  assert.equal(c.done!.finishReason, 'length', 'the consumer can offer "more detail"')
  assert.equal(c.done!.usage.completionTokens, 20)
})

test('chain: 429 goes to the next model at once, and the model is not asked again before Retry-After', async (t) => {
  const { llm, or } = await setup(t)
  or.setScript(M1, { status: 429, retryAfter: 1 }, {})
  const first = await collect(llm)
  assert.equal(first.text, FULL)
  assert.equal(first.done!.model, M2)
  assert.ok(first.ms < 900, `no waiting for Retry-After: ${first.ms} ms`)
  assert.deepEqual(first.done!.attempts.map((a) => [a.model, a.outcome, a.status]), [[M1, 'rate-limited', 429], [M2, 'ok', 200]])
  assert.equal(first.done!.attempts[0]!.message, 'Rate limit exceeded')

  const second = await collect(llm)
  assert.equal(second.done!.model, M2)
  assert.deepEqual(second.done!.attempts.map((a) => a.outcome), ['skipped-retry-after', 'ok'])
  assert.deepEqual(or.requests.map((r) => r.model), [M1, M2, M2], 'M1 was not called inside its Retry-After')

  await sleep(1050)
  const third = await collect(llm)
  assert.equal(third.done!.model, M1, 'asked again once Retry-After has passed')
})

test('chain: 502 and 503 (and a connection dropped before headers) go to the next model', async (t) => {
  const { llm, or } = await setup(t)
  or.setScript(M1, { status: 502 })
  or.setScript(M2, { status: 503, retryAfter: 30 })
  const r = await collect(llm)
  assert.equal(r.text, FULL)
  assert.equal(r.done!.model, M3)
  assert.deepEqual(r.done!.attempts.map((a) => [a.outcome, a.status]), [['unavailable', 502], ['unavailable', 503], ['ok', 200]])

  or.setScript(M1, { resetBeforeHeaders: true })
  const r2 = await collect(llm)
  assert.equal(r2.done!.model, M3)
  assert.deepEqual(r2.done!.attempts.map((a) => a.outcome), ['unavailable', 'skipped-retry-after', 'ok'])
})

test('chain: 401 and 402 take the whole provider out (its circuit opens) and the second provider answers', async (t) => {
  for (const status of [401, 402]) {
    const { llm, or, gemini } = await setup(t, { fallback: true })
    or.setScript('*', { status })
    const r = await collect(llm)
    assert.equal(r.text, FULL)
    assert.equal(r.done!.provider, 'gemini')
    assert.deepEqual(r.done!.attempts.map((a) => [a.provider, a.outcome]), [['openrouter', status === 401 ? 'auth' : 'credits'], ['gemini', 'ok']])
    assert.equal(or.requests.length, 1, 'the other OpenRouter models were not tried with a dead key')
    const again = await collect(llm)
    assert.equal(again.done!.provider, 'gemini')
    assert.equal(again.done!.attempts[0]!.outcome, 'skipped-circuit-open')
    assert.equal(or.requests.length, 1)
    assert.equal(gemini!.requests.length, 2)
  }
  // A wrong key against the fake gives OpenRouter's real 401 body.
  const { llm, or } = await setup(t, { env: { OPENROUTER_API_KEY: 'sk-or-wrong' } })
  const r = await collect(llm)
  assert.ok(r.error instanceof AllProvidersFailed)
  assert.equal(r.error.attempts[0]!.message, 'User not found.')
  assert.equal(or.requests.length, 0, 'refused before the body was recorded')
})

test('chain: a 400 from one model goes to the next; a second 400 stops the chain with LlmRequestRejected', async (t) => {
  const { llm, or, gemini } = await setup(t, { fallback: true })
  // One model's own validation (its output limit) refuses what the next accepts.
  or.setScript(M1, { status: 400, errorMessage: 'max_tokens is too large' })
  const one = await collect(llm)
  assert.equal(one.error, null)
  assert.equal(one.text, FULL)
  assert.deepEqual(one.done!.attempts.map((a) => [a.model, a.outcome, a.status]), [[M1, 'rejected', 400], [M2, 'ok', 200]])
  // Two models refusing it: the request itself is wrong, and other models are not hammered.
  or.reset()
  or.setScript('*', { status: 400, errorMessage: 'max_tokens is too large' })
  const r = await collect(llm)
  assert.ok(r.error instanceof LlmRequestRejected)
  assert.equal(r.error.status, 400)
  assert.match(r.error.message, /max_tokens is too large/)
  assert.deepEqual(or.requests.map((q) => q.model), [M1, M2])
  assert.equal(gemini!.requests.length, 0)
  // The provider is healthy: its circuit stays closed.
  or.setScript('*', {})
  assert.equal((await collect(llm)).done!.model, M1)
})

test('chain: the only model rejecting the request is LlmRequestRejected, not a failure to retry later', async (t) => {
  const { llm, or } = await setup(t, { env: { LLM_MODELS: M1 } })
  or.setScript(M1, { status: 422, errorMessage: 'Unprocessable' })
  const r = await collect(llm)
  assert.ok(r.error instanceof LlmRequestRejected)
  assert.equal(r.error.status, 422)
  assert.equal(or.requests.length, 1)
})

test('chain: slow first token → timeout → one retry on the same model → next model; comments do not count as tokens', async (t) => {
  const { llm, or } = await setup(t)
  or.setScript(M1, { firstTokenDelayMs: 2000 }) // keep-alive comments flow meanwhile
  const r = await collect(llm)
  assert.equal(r.text, FULL)
  assert.equal(r.done!.model, M2)
  assert.deepEqual(or.requests.map((q) => q.model), [M1, M1, M2])
  assert.deepEqual(r.done!.attempts.map((a) => a.outcome), ['timeout-first-token', 'timeout-first-token', 'ok'])
  assert.ok(r.ms >= 600 && r.ms < 2500, `two 300 ms timeouts, then an answer: ${r.ms} ms`)
  assert.ok(!r.events.some((e) => e.type === 'restart'), 'nothing was shown, so nothing to restart')
  await until(() => or.requests.slice(0, 2).every((q) => q.outcome === 'client-closed'))

  // A slow first attempt and a good retry: the same model answers.
  or.setScript(M1, { firstTokenDelayMs: 2000 }, {})
  const r2 = await collect(llm)
  assert.equal(r2.done!.model, M1)
  assert.deepEqual(r2.done!.attempts.map((a) => a.outcome), ['timeout-first-token', 'ok'])

  // No response headers at all counts against the same first-token timeout.
  or.setScript(M1, { hang: true })
  const r3 = await collect(llm)
  assert.equal(r3.done!.model, M2)
  assert.deepEqual(r3.done!.attempts.map((a) => a.outcome), ['timeout-first-token', 'timeout-first-token', 'ok'])
  await until(() => or.requests.slice(-3, -1).every((q) => q.model === M1 && q.outcome === 'client-closed'))
})

test('chain: a stall mid-stream hits the idle timeout; the student sees restart and then one clean answer', async (t) => {
  const { llm, or } = await setup(t)
  or.setScript(M1, { stallAfterTokens: 3, tps: 100 })
  const r = await collect(llm)
  assert.equal(r.text, FULL)
  assert.equal(r.done!.model, M2)
  assert.deepEqual(r.done!.attempts.map((a) => a.outcome), ['timeout-idle', 'timeout-idle', 'ok'])
  const restarts = r.events.filter((e) => e.type === 'restart')
  assert.deepEqual(restarts, [
    { type: 'restart', provider: 'openrouter', model: M1 },
    { type: 'restart', provider: 'openrouter', model: M2 },
  ])
  // Each restart comes right before the first token of the attempt it names.
  const kinds = r.events.map((e) => e.type)
  assert.deepEqual(kinds.slice(0, 9), ['token', 'token', 'token', 'restart', 'token', 'token', 'token', 'restart', 'token'])
})

test('chain: a disconnect or an error frame mid-stream restarts on the next model', async (t) => {
  const { llm, or } = await setup(t)
  or.setScript(M1, { disconnectAfterTokens: 5 })
  const r = await collect(llm)
  assert.equal(r.text, FULL)
  assert.deepEqual(r.done!.attempts.map((a) => [a.model, a.outcome]), [[M1, 'truncated'], [M2, 'ok']])
  assert.equal(r.events.filter((e) => e.type === 'token').length, 25)
  assert.deepEqual(r.events[5], { type: 'restart', provider: 'openrouter', model: M2 })

  for (const done of [false, true]) {
    or.setScript(M1, { midStreamError: { afterTokens: 4, code: done ? 'server_error' : 502, done } })
    const e = await collect(llm)
    assert.equal(e.text, FULL)
    assert.deepEqual(e.done!.attempts.map((a) => [a.model, a.outcome]), [[M1, 'stream-error'], [M2, 'ok']])
    assert.match(e.done!.attempts[0]!.message!, /Provider returned error/)
  }

  // An answer that finishes without any text is no answer.
  or.setScript(M1, { tokens: [] })
  const empty = await collect(llm)
  assert.deepEqual(empty.done!.attempts.map((a) => a.outcome), ['empty', 'ok'])
  assert.ok(!empty.events.some((e) => e.type === 'restart'))
})

test('chain: the circuit opens after repeated failures, skips OpenRouter, and half-opens after the cool-down', async (t) => {
  const { llm, or } = await setup(t, { env: { LLM_BREAKER_FAILURES: '2', LLM_BREAKER_COOLDOWN_MS: '300' } })
  or.setScript('*', { status: 502 })
  const r = await collect(llm)
  assert.ok(r.error instanceof AllProvidersFailed)
  assert.deepEqual(r.error.attempts.map((a) => a.outcome), ['unavailable', 'unavailable'], 'M3 skipped once the circuit opened')
  assert.ok(r.error.retryAfterMs! > 0 && r.error.retryAfterMs! <= 300)
  assert.equal(or.requests.length, 2)

  const skipped = await collect(llm)
  assert.ok(skipped.error instanceof AllProvidersFailed)
  assert.deepEqual(skipped.error.attempts.map((a) => a.outcome), ['skipped-circuit-open'])
  assert.ok(skipped.ms < 200)
  assert.equal(or.requests.length, 2, 'an open circuit sends nothing')

  await sleep(320)
  or.setScript('*', {})
  const probe = await collect(llm)
  assert.equal(probe.done!.model, M1, 'the half-open probe went through and succeeded')
  const after = await collect(llm)
  assert.equal(after.done!.attempts.length, 1, 'closed again')
})

test('chain: every provider failing ends quickly in AllProvidersFailed with each attempt listed', async (t) => {
  const { llm, or, gemini } = await setup(t, { fallback: true })
  or.setScript('*', { status: 503 })
  gemini!.setScript('*', { status: 503, errorMessage: 'The model is overloaded. Please try again later.' })
  const r = await collect(llm)
  assert.ok(r.error instanceof AllProvidersFailed)
  assert.ok(r.ms < 1000, `${r.ms} ms`)
  assert.deepEqual(r.error.attempts.map((a) => `${a.provider}/${a.model}:${a.outcome}`), [
    `openrouter/${M1}:unavailable`,
    `openrouter/${M2}:unavailable`,
    `openrouter/${M3}:unavailable`,
    'gemini/gemini-2.5-flash:unavailable',
  ])
  // Gemini's array-wrapped error body was read.
  assert.equal(r.error.attempts[3]!.message, 'The model is overloaded. Please try again later.')
  assert.equal(r.error.retryAfterMs, null)
  assert.ok(r.events.length === 0)
})

test('chain: the second provider answers when OpenRouter is unreachable, with its own dialect', async (t) => {
  const dead = createServer()
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
  const port = (dead.address() as AddressInfo).port
  await new Promise<void>((resolve) => dead.close(() => resolve()))

  const { llm, gemini } = await setup(t, { fallback: true, orUrl: `http://127.0.0.1:${port}/api/v1` })
  const r = await collect(llm)
  assert.equal(r.text, FULL)
  assert.equal(r.done!.provider, 'gemini')
  assert.equal(r.done!.model, 'gemini-2.5-flash')
  assert.deepEqual(r.done!.attempts.map((a) => [a.provider, a.model, a.outcome]), [
    ['openrouter', M1, 'network'],
    ['gemini', 'gemini-2.5-flash', 'ok'],
  ])
  const u = r.done!.usage
  assert.equal(u.costUsd, estimateCostUsd('gemini-2.5-flash', u.promptTokens, u.completionTokens), 'Gemini sends no cost: the price table fills in')
  const req = gemini!.requests[0]!
  assert.equal(req.path, '/v1beta/openai/chat/completions')
  assert.deepEqual(req.body, {
    model: 'gemini-2.5-flash',
    messages: QUESTION.messages,
    stream: true,
    max_tokens: 1024,
    stream_options: { include_usage: true },
    reasoning_effort: 'none',
  })
  assert.equal(req.headers.authorization, `Bearer ${GEMINI_KEY}`)
  assert.equal(req.headers['x-title'], undefined, 'OpenRouter attribution is not sent elsewhere')
})

test('chain: aborting the signal cancels the upstream request; so does leaving the loop early', async (t) => {
  const { llm, or } = await setup(t)
  or.setScript('*', { tokens: 200, tps: 50 })
  const controller = new AbortController()
  let tokens = 0
  const reason = new Error('shutting down')
  await assert.rejects(
    (async () => {
      for await (const e of llm.streamChat({ ...QUESTION, signal: controller.signal })) {
        if (e.type === 'token' && ++tokens === 2) controller.abort(reason)
      }
    })(),
    (err: unknown) => err === reason,
  )
  await until(() => or.requests[0]!.outcome === 'client-closed')
  assert.ok(or.requests[0]!.tokensSent < 10)
  assert.equal(or.requests.length, 1, 'an abort is not a failure: no other model is tried')

  // Aborted before anything arrived (e.g. while waiting for the first token).
  or.setScript('*', { firstTokenDelayMs: 5000 })
  const early = new AbortController()
  setTimeout(() => early.abort(), 50)
  const r = await collect(llm, { ...QUESTION, signal: early.signal })
  assert.equal((r.error as Error).name, 'AbortError')
  await until(() => or.requests[1]!.outcome === 'client-closed')
  assert.equal(or.requests.length, 2)

  or.setScript('*', { tokens: 200, tps: 50 })
  for await (const e of llm.streamChat(QUESTION)) if (e.type === 'token') break
  await until(() => or.requests[2]!.outcome === 'client-closed')
})
