import { request, type Dispatcher } from 'undici'
import { SseDecoder } from './sse.ts'
import type { ChatMessage, FailureKind } from './types.ts'

/**
 * One provider speaking OpenAI's streaming `POST {base}/chat/completions`: OpenRouter, Gemini's
 * compatibility endpoint, or a self-hosted server. Wire details follow
 * ../shared/reference/external-apis.md (B.1–B.4, C.1). This file knows URLs, keys and headers;
 * nothing outside src/services/llm does.
 */
export interface ProviderOptions {
  /** Shown in usage rows, metrics and logs: 'openrouter', 'gemini', … */
  name: string
  /** e.g. https://openrouter.ai/api/v1 or https://generativelanguage.googleapis.com/v1beta/openai */
  baseUrl: string
  /** Sent as a Bearer token, never logged. */
  apiKey: string | null
  /** 'openrouter' adds attribution headers and OpenRouter's `reasoning` switch; 'openai' is plain. */
  dialect: 'openrouter' | 'openai'
  /** OpenRouter attribution: HTTP-Referer (omitted when null) and X-OpenRouter-Title / X-Title. */
  appUrl?: string | null
  appTitle?: string
  dispatcher?: Dispatcher
}

export interface CompletionRequest {
  messages: ChatMessage[]
  maxTokens: number
  temperature?: number
}

export interface RawUsage {
  prompt_tokens?: unknown
  completion_tokens?: unknown
  cost?: unknown
}

/** What a stream says, in order: tokens, then a finish reason, usage, and maybe `[DONE]`. */
export type StreamPart =
  | { type: 'token'; text: string }
  | { type: 'finish'; reason: string }
  | { type: 'usage'; usage: RawUsage }
  | { type: 'done' }

export interface OpenedStream {
  /** OpenRouter's X-Generation-Id header. */
  generationId: string | null
  parts: AsyncIterable<StreamPart>
}

export interface ChatProvider {
  readonly name: string
  /**
   * Sends the request; resolves once a 2xx response has started, with its parts. Rejects with
   * ProviderError for an HTTP error or network failure; `parts` throws ProviderError for a
   * mid-stream error or a broken stream. Aborting `signal` closes the connection.
   */
  open(model: string, request: CompletionRequest, signal: AbortSignal): Promise<OpenedStream>
}

/** One attempt failed. `message` is the provider's wording (never the key). */
export class ProviderError extends Error {
  readonly kind: FailureKind
  readonly status: number | null
  readonly retryAfterMs: number | null
  constructor(kind: FailureKind, status: number | null, message: string, retryAfterMs: number | null = null) {
    super(message)
    this.name = 'ProviderError'
    this.kind = kind
    this.status = status
    this.retryAfterMs = retryAfterMs
  }
}

const MAX_ERROR_BODY = 4000

export function createOpenAiCompatibleProvider(options: ProviderOptions): ChatProvider {
  const url = options.baseUrl.replace(/\/+$/, '') + '/chat/completions'
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' }
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`
  if (options.dialect === 'openrouter') {
    if (options.appUrl) headers['http-referer'] = options.appUrl
    const title = options.appTitle ?? 'Bagsh'
    headers['x-openrouter-title'] = title
    headers['x-title'] = title // the legacy name, still accepted
  }
  return {
    name: options.name,
    async open(model, req, signal) {
      const body = JSON.stringify(requestBody(options.dialect, model, req))
      let res: Dispatcher.ResponseData
      try {
        // Our own first-token and idle timers govern; undici's would fire with less context.
        res = await request(url, {
          method: 'POST',
          headers,
          body,
          signal,
          dispatcher: options.dispatcher,
          headersTimeout: 0,
          bodyTimeout: 0,
        })
      } catch (err) {
        if (signal.aborted) throw err
        // Unreachable host: its other models are unreachable too. A reset on a reused
        // keep-alive connection is not that, and only costs this model its turn.
        throw new ProviderError(unreachable(err) ? 'network' : 'unavailable', null, networkMessage(err))
      }
      const generationId = headerValue(res.headers['x-generation-id'])
      if (res.statusCode < 200 || res.statusCode >= 300) {
        let text = ''
        try {
          text = (await res.body.text()).slice(0, MAX_ERROR_BODY)
        } catch (err) {
          if (signal.aborted) throw err
        }
        const detail = parseErrorBody(text)
        const retryAfterMs = parseRetryAfter(headerValue(res.headers['retry-after']), Date.now())
        throw new ProviderError(kindForStatus(res.statusCode), res.statusCode, detail.message, retryAfterMs)
      }
      const type = headerValue(res.headers['content-type']) ?? ''
      // A server that ignored `stream: true` answers with one JSON document; read it the same way.
      const parts = type.includes('application/json') ? jsonParts(res.body) : parseCompletionStream(res.body)
      return { generationId, parts }
    },
  }
}

/**
 * Gemini 2.5 Flash thinks by default; thinking tokens are billed as output and delay the first
 * visible token, so the tutor turns it off (reference B.1 `reasoning`, C.1 `reasoning_effort`).
 * Gemini 3 uses thinking levels instead and is left alone.
 */
function thinksByDefault(model: string): boolean {
  return /(^|\/)gemini-2\.5-flash/.test(model)
}

export function requestBody(dialect: ProviderOptions['dialect'], model: string, req: CompletionRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { model, messages: req.messages, stream: true, max_tokens: req.maxTokens }
  if (req.temperature !== undefined) body.temperature = req.temperature
  if (dialect === 'openrouter') {
    // Usage (with cost) is always sent by OpenRouter; `usage.include` is deprecated (B.3).
    if (thinksByDefault(model)) body.reasoning = { enabled: false }
  } else {
    body.stream_options = { include_usage: true }
    if (thinksByDefault(model)) body.reasoning_effort = 'none'
  }
  return body
}

/**
 * Reads an SSE chat-completion body (reference B.3) into parts. (`for … of` + `yield`, not
 * `yield*`: delegating to a sync generator from an async one costs several times more per token.)
 */
export async function* parseCompletionStream(body: AsyncIterable<Uint8Array>): AsyncGenerator<StreamPart> {
  const decoder = new SseDecoder()
  try {
    for await (const chunk of body) {
      for (const payload of decoder.push(chunk)) for (const part of partsOf(payload)) yield part
    }
  } catch (err) {
    if (err instanceof ProviderError) throw err
    throw new ProviderError('truncated', null, `stream broke: ${networkMessage(err)}`)
  }
  for (const payload of decoder.end()) for (const part of partsOf(payload)) yield part
}

async function* jsonParts(body: AsyncIterable<Uint8Array>): AsyncGenerator<StreamPart> {
  const chunks: Uint8Array[] = []
  for await (const chunk of body) chunks.push(chunk)
  yield* partsOf(Buffer.concat(chunks).toString('utf8'))
  yield { type: 'done' }
}

interface WireChunk {
  error?: unknown
  choices?: {
    delta?: { content?: unknown }
    message?: { content?: unknown }
    finish_reason?: unknown
    error?: unknown
  }[]
  usage?: unknown
}

function* partsOf(payload: string): Generator<StreamPart> {
  if (payload === '[DONE]') {
    yield { type: 'done' }
    return
  }
  let json: unknown
  try {
    json = JSON.parse(payload)
  } catch {
    // Some servers omit the blank line between events, which joins their data lines.
    if (payload.includes('\n')) {
      for (const line of payload.split('\n')) if (line) yield* partsOf(line)
      return
    }
    throw new ProviderError('truncated', null, 'the stream sent a chunk that is not JSON')
  }
  // Gemini wraps errors in an array: [{"error":{…}}].
  const chunk = (Array.isArray(json) ? json[0] : json) as WireChunk | null
  if (!chunk || typeof chunk !== 'object') throw new ProviderError('truncated', null, 'the stream sent an unexpected chunk')
  if (chunk.error) throw midStreamError(chunk.error)
  // The usage chunk comes with `choices: []` (docs) or a repeated empty choice (real captures).
  const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : undefined
  if (choice) {
    const content = choice.delta?.content ?? choice.message?.content
    if (typeof content === 'string' && content !== '') yield { type: 'token', text: content }
    if (choice.finish_reason === 'error') throw midStreamError(choice.error ?? { message: 'finish_reason "error"' })
    if (typeof choice.finish_reason === 'string' && choice.finish_reason) yield { type: 'finish', reason: choice.finish_reason }
  }
  if (chunk.usage && typeof chunk.usage === 'object') yield { type: 'usage', usage: chunk.usage as RawUsage }
}

function midStreamError(error: unknown): ProviderError {
  const detail = errorDetail(error)
  // `code` is a number in current docs and a string ("server_error") in older ones.
  const code = detail.code === null ? '' : ` (${detail.code})`
  return new ProviderError('stream-error', null, `${detail.message}${code}`)
}

export interface ErrorDetail {
  message: string
  code: string | number | null
  /** OpenRouter's `error.metadata.error_type` or Gemini's `error.status`. */
  type: string | null
}

function errorDetail(error: unknown): ErrorDetail {
  if (typeof error === 'string') return { message: error.slice(0, 300), code: null, type: null }
  const e = (error ?? {}) as { message?: unknown; code?: unknown; status?: unknown; metadata?: { error_type?: unknown } }
  const message = typeof e.message === 'string' ? e.message : 'unknown error'
  const code = typeof e.code === 'number' || typeof e.code === 'string' ? e.code : null
  const type = typeof e.metadata?.error_type === 'string' ? e.metadata.error_type : typeof e.status === 'string' ? e.status : null
  return { message: message.slice(0, 300), code, type }
}

/** OpenRouter's `{"error":{…}}`, Gemini's `[{"error":{…}}]`, or a plain-text body. */
export function parseErrorBody(text: string): ErrorDetail {
  try {
    const json = JSON.parse(text) as unknown
    const first = (Array.isArray(json) ? json[0] : json) as { error?: unknown } | null
    if (first && typeof first === 'object' && first.error) return errorDetail(first.error)
  } catch {
    // not JSON: fall through
  }
  return { message: text.replace(/\s+/g, ' ').trim().slice(0, 300) || 'no error body', code: null, type: null }
}

/**
 * What an HTTP error means for the chain (reference B.4): 400-class request problems stop it,
 * 401/402 take the whole provider out, 403/404 skip the model, 408/429/5xx try the next model.
 */
export function kindForStatus(status: number): FailureKind {
  if (status === 400 || status === 413 || status === 422) return 'rejected'
  if (status === 401) return 'auth'
  if (status === 402) return 'credits'
  if (status === 403) return 'refused'
  if (status === 404) return 'not-found'
  if (status === 429) return 'rate-limited'
  return 'unavailable'
}

/** Retry-After as seconds or an HTTP date, in ms from `nowMs`; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, nowMs: number): number | null {
  if (!value) return null
  const seconds = Number(value)
  if (value.trim() !== '' && Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isFinite(date) ? Math.max(0, date - nowMs) : null
}

function headerValue(value: string | string[] | undefined): string | null {
  return (Array.isArray(value) ? value[0] : value) ?? null
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

function errorCode(err: unknown): string | null {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null
  if (typeof e?.code === 'string') return e.code
  return typeof e?.cause?.code === 'string' ? e.cause.code : null
}

function unreachable(err: unknown): boolean {
  const code = errorCode(err)
  return code !== null && (UNREACHABLE.has(code) || /CERT|TLS|SELF_SIGNED/.test(code))
}

function networkMessage(err: unknown): string {
  const code = errorCode(err)
  const message = err instanceof Error ? err.message : String(err)
  return (code ? `${code}: ${message}` : message).slice(0, 300)
}
