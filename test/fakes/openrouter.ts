import { randomBytes } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'

/**
 * A fake OpenRouter (or Gemini OpenAI-compatible endpoint) on loopback, speaking the wire format
 * of ../shared/reference/external-apis.md (B.3, B.4, C.1, D) over real HTTP. Each request runs a
 * Script chosen by the `x-fake-script` header (JSON), else the queue set for its model, else the
 * queue for '*', else a normal stream.
 *
 *   const fake = await startFakeOpenRouter({ tps: 40, tokens: 300 })
 *   fake.setScript('google/gemini-2.5-flash', { status: 429, retryAfter: 2 })
 *   fake.setScript('*', { firstTokenDelayMs: 500 }, {})   // first request slow, then normal
 *   ... createLlm({ ...openrouter: { baseUrl: fake.url, … } }) ...
 *   fake.requests[0].body.max_tokens; fake.requests[0].outcome === 'client-closed'
 *
 * CLI (manual runs, load benchmarks):
 *   npx node test/fakes/openrouter.ts --port 4010 --tps 40 --tokens 300 [--flavor gemini] [--key K]
 */
export interface Script {
  /** HTTP status; anything but 200 sends an error body (B.4 envelope, or C.1's array). */
  status?: number
  /** Retry-After header on an error: seconds, or an HTTP date. */
  retryAfter?: number | string
  errorShape?: 'openrouter' | 'gemini'
  errorMessage?: string
  /** Delay before the response headers (errors too). */
  delayMs?: number
  /** Never answer; hold the connection until the client goes away. */
  hang?: boolean
  /** Destroy the socket without any response. */
  resetBeforeHeaders?: boolean
  /** How many tokens (words), or the exact token strings. */
  tokens?: number | string[]
  /** Tokens per second; 0 = as fast as possible. */
  tps?: number
  /** After the headers, before the first token (comment lines keep flowing meanwhile). */
  firstTokenDelayMs?: number
  /** `: OPENROUTER PROCESSING` before the first event, every 10 tokens and every 100 ms of waiting. */
  comments?: boolean
  /** Where usage goes: a final chunk with a repeated empty choice (real captures), with `choices: []` (docs), on the last content chunk, or nowhere. */
  usage?: 'repeated-choices' | 'empty-choices' | 'on-last-chunk' | 'none'
  /** usage.cost; null leaves it out (Gemini sends none). Default: a deterministic small number. */
  cost?: number | null
  /** End with `data: [DONE]`. */
  done?: boolean
  finishReason?: string
  crlf?: boolean
  /** Write the body in pieces of this many bytes, 1 ms apart (splits UTF-8 characters). */
  chunkBytes?: number
  /** After N tokens, one event with a top-level `error` and finish_reason "error" (B.3). */
  midStreamError?: { afterTokens: number; code?: number | string; message?: string; done?: boolean }
  /** After N tokens, go silent (comments continue if enabled) until the client leaves. */
  stallAfterTokens?: number
  /** After N tokens, destroy the socket. */
  disconnectAfterTokens?: number
}

export interface FakeRequest {
  model: string
  body: Record<string, unknown>
  headers: IncomingHttpHeaders
  path: string
  receivedAt: number
  tokensSent: number
  /** 'client-closed': the client aborted (the connection closed before the response ended). */
  outcome: 'pending' | 'completed' | 'client-closed' | 'server-closed'
}

export interface FakeOptions {
  port?: number
  host?: string
  /** 'openrouter' (default): comments, cost, `provider` field, base /api/v1. 'gemini': no comments, no cost, array errors, base /v1beta/openai. */
  flavor?: 'openrouter' | 'gemini'
  /** Default tokens per response. */
  tokens?: number
  /** Default tokens per second (0 = no pacing). */
  tps?: number
  /** When set, requests must carry `Authorization: Bearer <apiKey>` (401 otherwise, with OpenRouter's observed bodies). */
  apiKey?: string
  /** Keep only this many recorded requests (benchmarks); default unlimited. */
  maxRecorded?: number
}

export interface FakeOpenRouter {
  /** Base URL for OPENROUTER_BASE_URL / LLM_FALLBACK_BASE_URL, e.g. http://127.0.0.1:4010/api/v1 */
  url: string
  port: number
  requests: FakeRequest[]
  /** Queue scripts for a model ('*' = any model). Each request takes the next; the last one sticks. */
  setScript(model: string, ...scripts: Script[]): void
  /** Forget scripts and recorded requests. */
  reset(): void
  close(): Promise<void>
}

const WORDS = (
  'Фотосинтез бол ногоон ургамал нарны гэрлийн энергийг ашиглан нүүрсхүчлийн хий ба уснаас ' +
  'глюкоз үүсгэж хүчилтөрөгч ялгаруулах үйл явц юм. Энэ нь навчны хлоропластад явагддаг ' +
  '[1]. Томъёо: $6CO_2 + 6H_2O \\to C_6H_{12}O_6 + 6O_2$. Өөрөө бодоод үзээрэй: ургамалд юу хэрэгтэй вэ?'
).split(' ')

export function fakeTokens(n: number): string[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? '' : ' ') + WORDS[i % WORDS.length])
}

/** The cost the fake reports when a script does not set one. */
export function fakeCost(promptTokens: number, completionTokens: number): number {
  return (promptTokens * 0.3 + completionTokens * 2.5) / 1_000_000
}

export async function startFakeOpenRouter(options: FakeOptions = {}): Promise<FakeOpenRouter> {
  const flavor = options.flavor ?? 'openrouter'
  const basePath = flavor === 'gemini' ? '/v1beta/openai' : '/api/v1'
  const queues = new Map<string, Script[]>()
  const requests: FakeRequest[] = []

  function nextScript(model: string, header: string | string[] | undefined): Script {
    if (typeof header === 'string') return JSON.parse(header) as Script
    const queue = queues.get(model) ?? queues.get('*')
    if (!queue || queue.length === 0) return {}
    return queue.length > 1 ? queue.shift()! : queue[0]!
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy())
  })

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0]!
    if (req.method !== 'POST' || !path.endsWith('/chat/completions')) {
      return sendError(res, 404, flavor, 'Not Found')
    }
    const raw = await readBody(req)
    if (options.apiKey) {
      const auth = req.headers.authorization
      if (!auth) return sendJson(res, 401, { error: { message: 'No cookie auth credentials found', code: 401 } })
      if (auth !== `Bearer ${options.apiKey}`) return sendJson(res, 401, { error: { message: 'User not found.', code: 401 } })
    }
    let body: Record<string, unknown>
    try {
      body = JSON.parse(raw) as Record<string, unknown>
    } catch {
      return sendError(res, 400, flavor, 'Invalid JSON payload received.')
    }
    const model = typeof body.model === 'string' ? body.model : ''
    const record: FakeRequest = { model, body, headers: req.headers, path, receivedAt: Date.now(), tokensSent: 0, outcome: 'pending' }
    requests.push(record)
    if (options.maxRecorded !== undefined && requests.length > options.maxRecorded) requests.shift()
    res.on('close', () => {
      if (record.outcome === 'pending') record.outcome = res.writableFinished ? 'completed' : 'client-closed'
    })
    if (!model || !Array.isArray(body.messages) || body.messages.length === 0) {
      return sendError(res, 400, flavor, 'Input required: specify "prompt" or "messages"')
    }
    let script: Script
    try {
      script = nextScript(model, req.headers['x-fake-script'])
    } catch {
      return sendError(res, 400, flavor, 'x-fake-script is not JSON')
    }
    await run(script, record, body, res, req)
  }

  async function run(script: Script, record: FakeRequest, body: Record<string, unknown>, res: ServerResponse, req: IncomingMessage): Promise<void> {
    // Aborted when the connection goes, so waits end with it.
    const gone = new AbortController()
    res.on('close', () => gone.abort())
    const wait = async (ms: number) => {
      if (ms > 0) await sleep(ms, undefined, { signal: gone.signal }).catch(() => {})
    }
    if (script.delayMs) await wait(script.delayMs)
    if (gone.signal.aborted) return
    if (script.resetBeforeHeaders) {
      record.outcome = 'server-closed'
      req.socket.destroy()
      return
    }
    if (script.hang) {
      await new Promise<void>((resolve) => gone.signal.addEventListener('abort', () => resolve(), { once: true }))
      return
    }
    const status = script.status ?? 200
    if (status !== 200) {
      const extra: Record<string, string> = {}
      if (script.retryAfter !== undefined) extra['retry-after'] = String(script.retryAfter)
      return sendError(res, status, script.errorShape ?? flavor, script.errorMessage ?? defaultMessage(status), extra)
    }

    const model = record.model
    const eol = script.crlf ? '\r\n' : '\n'
    const comments = script.comments ?? flavor === 'openrouter'
    const tokens = Array.isArray(script.tokens) ? script.tokens : fakeTokens(script.tokens ?? options.tokens ?? 20)
    const tps = script.tps ?? options.tps ?? 0
    const id = `gen-${Math.floor(Date.now() / 1000)}-${randomBytes(6).toString('hex')}`
    const created = Math.floor(Date.now() / 1000)
    const base = flavor === 'openrouter' ? { id, provider: 'FakeProvider', model, object: 'chat.completion.chunk', created } : { id, model, object: 'chat.completion.chunk', created }

    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-generation-id': id,
    })
    const write = async (text: string) => {
      if (res.destroyed) return
      if (!script.chunkBytes) {
        res.write(text)
        return
      }
      const bytes = Buffer.from(text)
      for (let i = 0; i < bytes.length && !res.destroyed; i += script.chunkBytes) {
        res.write(bytes.subarray(i, i + script.chunkBytes))
        await wait(1)
      }
    }
    const event = (data: unknown) => write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}${eol}${eol}`)
    const comment = () => write(`: OPENROUTER PROCESSING${eol}${eol}`)
    /** Waits `ms`, sending keep-alive comments every 100 ms when enabled. */
    const idle = async (ms: number) => {
      const until = Date.now() + ms
      while (!gone.signal.aborted && Date.now() < until) {
        await wait(comments ? Math.min(100, until - Date.now()) : until - Date.now())
        if (comments && !gone.signal.aborted && Date.now() < until) await comment()
      }
    }

    if (comments) await comment()
    if (script.firstTokenDelayMs) await idle(script.firstTokenDelayMs)
    const promptTokens = Math.ceil(JSON.stringify(body.messages).length / 4)
    const usageMode = script.usage ?? (flavor === 'gemini' ? 'empty-choices' : 'repeated-choices')
    const usage = () => {
      const u: Record<string, unknown> = { prompt_tokens: promptTokens, completion_tokens: record.tokensSent, total_tokens: promptTokens + record.tokensSent }
      const cost = script.cost === undefined ? (flavor === 'gemini' ? null : fakeCost(promptTokens, record.tokensSent)) : script.cost
      if (cost !== null) Object.assign(u, { cost, is_byok: false })
      return u
    }
    const choice = (content: string, finish: string | null) => ({
      index: 0,
      delta: { role: 'assistant', content },
      finish_reason: finish,
      native_finish_reason: finish,
      logprobs: null,
    })
    const gap = tps > 0 ? 1000 / tps : 0
    // Token i is due at start + i·gap, so event-loop lag under load does not slow the pace.
    const start = Date.now()
    for (let i = 0; i < tokens.length; i++) {
      if (gone.signal.aborted) return
      if (i > 0 && gap) await wait(start + i * gap - Date.now())
      if (script.disconnectAfterTokens === i) {
        // Let what was written reach the client, then cut the connection without an end.
        await new Promise<void>((resolve) => res.write('', () => resolve()))
        await wait(20)
        record.outcome = 'server-closed'
        res.destroy()
        return
      }
      if (script.stallAfterTokens === i) {
        await idle(Number.MAX_SAFE_INTEGER)
        return
      }
      if (script.midStreamError?.afterTokens === i) return midStreamError(script, event, base, res)
      const last = i === tokens.length - 1
      const finish = last ? (script.finishReason ?? 'stop') : null
      const chunk: Record<string, unknown> = { ...base, choices: [choice(tokens[i]!, finish)] }
      record.tokensSent++
      if (last && usageMode === 'on-last-chunk') chunk.usage = usage()
      await event(chunk)
      if (comments && i % 10 === 9) await comment()
    }
    if (script.midStreamError?.afterTokens === tokens.length) return midStreamError(script, event, base, res)
    if (usageMode === 'repeated-choices') await event({ ...base, choices: [choice('', null)], usage: usage() })
    if (usageMode === 'empty-choices') await event({ ...base, choices: [], usage: usage() })
    if (script.done ?? true) await event('[DONE]')
    res.end()
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const host = options.host ?? '127.0.0.1'
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}${basePath}`,
    port,
    requests,
    setScript(model, ...scripts) {
      queues.set(model, scripts.length ? [...scripts] : [{}])
    },
    reset() {
      queues.clear()
      requests.length = 0
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
    },
  }
}

async function midStreamError(
  script: Script,
  event: (data: unknown) => Promise<void>,
  base: Record<string, unknown>,
  res: ServerResponse,
): Promise<void> {
  const e = script.midStreamError!
  await event({
    ...base,
    error: { code: e.code ?? 502, message: e.message ?? 'Provider returned error', metadata: { error_type: 'provider_unavailable' } },
    choices: [{ index: 0, delta: { content: '' }, finish_reason: 'error' }],
  })
  if (e.done) await event('[DONE]')
  res.end()
}

function defaultMessage(status: number): string {
  const messages: Record<number, string> = {
    400: 'Invalid request: max_tokens must be a positive integer',
    401: 'User not found.',
    402: 'Insufficient credits. Add more using https://openrouter.ai/settings/credits',
    403: 'Request blocked: prompt injection patterns detected',
    404: 'No endpoints found for this model',
    408: 'Request timed out',
    429: 'Rate limit exceeded',
    502: 'Provider returned error',
    503: 'No instances available that meet your routing requirements',
  }
  return messages[status] ?? 'Internal Server Error'
}

const GEMINI_STATUS: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
}

function sendError(res: ServerResponse, status: number, shape: 'openrouter' | 'gemini', message: string, headers: Record<string, string> = {}): void {
  const body =
    shape === 'gemini'
      ? [{ error: { code: status, message, status: GEMINI_STATUS[status] ?? 'UNKNOWN', details: [] } }]
      : { error: { code: status, message, metadata: { error_type: status === 429 ? 'rate_limit_exceeded' : 'fake' } } }
  sendJson(res, status, body, headers)
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '4010' },
      host: { type: 'string', default: '127.0.0.1' },
      tps: { type: 'string', default: '40' },
      tokens: { type: 'string', default: '300' },
      flavor: { type: 'string', default: 'openrouter' },
      key: { type: 'string' },
    },
  })
  const fake = await startFakeOpenRouter({
    port: Number(values.port),
    host: values.host,
    tps: Number(values.tps),
    tokens: Number(values.tokens),
    flavor: values.flavor === 'gemini' ? 'gemini' : 'openrouter',
    apiKey: values.key,
    maxRecorded: 1000,
  })
  console.log(`fake ${values.flavor} listening: ${fake.url} (${values.tokens} tokens at ${values.tps}/s)`)
  const stop = () => void fake.close().then(() => process.exit(0))
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
