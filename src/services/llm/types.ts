/**
 * The LLM as the rest of the app sees it: messages in, a stream of events out. Which provider,
 * URL, key or header answered is hidden behind `createLlm` (src/services/llm/index.ts).
 */

export interface TextPart {
  type: 'text'
  text: string
}

/** A photo of a worksheet: `url` is an https URL or a `data:image/jpeg;base64,…` URI. */
export interface ImagePart {
  type: 'image_url'
  image_url: { url: string }
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant'
  /** Content parts (text first, then images) are allowed in `user` messages only. */
  content: string | (TextPart | ImagePart)[]
}

export interface ChatRequest {
  messages: ChatMessage[]
  /** Answer length cap; the configured default (1024) when absent. "More detail" passes more. */
  maxTokens?: number
  temperature?: number
  /**
   * Cancels the upstream request and ends the stream by throwing `signal.reason`. Meant for
   * shutdown; a browser going away is not a reason to stop generating an answer.
   */
  signal?: AbortSignal
}

/** A piece of answer text, to append to what was shown so far. */
export interface TokenEvent {
  type: 'token'
  text: string
}

/**
 * The model that was streaming failed mid-answer and another one takes over from the start:
 * discard every token shown so far. At most one `restart` precedes each fresh answer.
 */
export interface RestartEvent {
  type: 'restart'
  provider: string
  model: string
}

export interface Usage {
  promptTokens: number
  completionTokens: number
  /** The provider's own `usage.cost` when sent, else the price table's estimate, else null. */
  costUsd: number | null
  /** True when the provider reported no usage and the token counts are estimates (chars / 4). */
  estimated: boolean
}

/** The answer is complete. Always the last event of a successful stream. */
export interface DoneEvent {
  type: 'done'
  usage: Usage
  /** Provider name from config ('openrouter', 'gemini', …) and the configured model id. */
  provider: string
  model: string
  /** 'stop', 'length' (hit maxTokens: offer "more detail"), 'content_filter', or 'unknown'. */
  finishReason: string
  /** From the start of `streamChat` to the first token of the answer that completed. */
  firstTokenMs: number
  /** From the start of `streamChat` to this event. */
  latencyMs: number
  /** The provider's generation id (OpenRouter's X-Generation-Id), if any. */
  generationId: string | null
  /** Every attempt this answer took, the successful one last (for metrics and logs). */
  attempts: AttemptRecord[]
}

export type ChatEvent = TokenEvent | RestartEvent | DoneEvent

/** Why one attempt (one HTTP request to one model) did not give an answer. */
export type FailureKind =
  | 'timeout-first-token' // nothing within the first-token timeout (retried once on the same model)
  | 'timeout-idle' // tokens stopped arriving (retried once on the same model)
  | 'rate-limited' // 429
  | 'unavailable' // 5xx, 408, or the connection dropped before an answer
  | 'auth' // 401: bad or disabled key (the whole provider is out)
  | 'credits' // 402: out of credits (the whole provider is out)
  | 'refused' // 403: moderation or guardrail on this model
  | 'not-found' // 404: unknown model id
  | 'rejected' // 400, 413, 422: the next model is tried once; a second rejection stops the chain
  | 'network' // host unreachable: connection refused, DNS, TLS (the whole provider is out)
  | 'stream-error' // an `error` event mid-stream (HTTP 200)
  | 'truncated' // the stream ended without a finish reason, or sent garbage
  | 'empty' // finished without any answer text

export type AttemptOutcome = 'ok' | FailureKind | 'skipped-circuit-open' | 'skipped-retry-after' | 'aborted'

export interface AttemptRecord {
  provider: string
  model: string
  outcome: AttemptOutcome
  /** HTTP status when the provider answered with one. */
  status: number | null
  /** The provider's error message (never a key), or why the attempt was skipped. */
  message: string | null
  /** From the start of this attempt to its first token; null when none arrived. */
  firstTokenMs: number | null
  durationMs: number
}

export class LlmError extends Error {
  readonly attempts: AttemptRecord[]
  constructor(message: string, attempts: AttemptRecord[]) {
    super(message)
    this.name = 'LlmError'
    this.attempts = attempts
  }
}

/**
 * No configured model produced an answer. The caller keeps the question and retries later;
 * `retryAfterMs`, when known, is the earliest moment a skipped model or provider becomes usable.
 */
export class AllProvidersFailed extends LlmError {
  readonly retryAfterMs: number | null
  constructor(attempts: AttemptRecord[], retryAfterMs: number | null) {
    const summary = attempts.map((a) => `${a.provider}/${a.model}: ${a.outcome}`).join(', ')
    super(`every LLM provider failed (${summary || 'none configured'})`, attempts)
    this.name = 'AllProvidersFailed'
    this.retryAfterMs = retryAfterMs
  }
}

/**
 * The request itself is malformed: two models rejected it (400/413/422), or the only model
 * there is did. Sending it to more models would fail the same way, so the chain stops;
 * retrying later will not help either.
 */
export class LlmRequestRejected extends LlmError {
  readonly status: number
  constructor(status: number, detail: string, attempts: AttemptRecord[]) {
    super(`the LLM request was rejected (HTTP ${status}): ${detail}`, attempts)
    this.name = 'LlmRequestRejected'
    this.status = status
  }
}

export interface Llm {
  /**
   * Streams one answer. Yields `token`s (possibly a `restart` and fresh tokens) and ends with
   * `done`; or throws `AllProvidersFailed`, `LlmRequestRejected`, or `signal.reason` on abort.
   * Breaking out of the loop early also cancels the upstream request.
   */
  streamChat(request: ChatRequest): AsyncIterable<ChatEvent>
  /** Closes idle upstream connections (shutdown, tests). */
  close(): Promise<void>
}
