import type { CircuitBreaker } from './breaker.ts'
import { ProviderError, type ChatProvider, type CompletionRequest, type RawUsage } from './openai-compatible.ts'
import { estimateCostUsd, type ModelPrice } from './prices.ts'
import {
  AllProvidersFailed,
  LlmRequestRejected,
  type AttemptRecord,
  type ChatEvent,
  type ChatMessage,
  type ChatRequest,
  type DoneEvent,
  type FailureKind,
  type Llm,
  type Usage,
} from './types.ts'

/** One provider in the chain, its models in order of preference, and its circuit breaker. */
export interface ChainProvider {
  provider: ChatProvider
  models: string[]
  breaker: CircuitBreaker
}

export interface LlmLogger {
  warn(obj: object, msg: string): void
}

export interface ChainOptions {
  /** Default answer length when a request does not say. */
  maxTokens: number
  /** From sending the request to the first answer token. */
  firstTokenTimeoutMs: number
  /** Longest gap between two answer tokens (keep-alive comments do not count). */
  idleTimeoutMs: number
  /** Price overrides for the cost estimate (src/services/llm/prices.ts). */
  prices?: Readonly<Record<string, ModelPrice>>
  logger?: LlmLogger
  /** Called by `close()`: releases the connection pool. */
  onClose?: () => Promise<void>
}

/** After the finish reason, how long to wait for the usage chunk and the end of the body. */
const AFTER_FINISH_MS = 2000
/** A Retry-After beyond this is not believed: a model is never benched for longer. */
const MAX_RETRY_AFTER_MS = 10 * 60_000

type AttemptResult =
  | { ok: true; record: AttemptRecord; done: Omit<DoneEvent, 'attempts' | 'latencyMs'> }
  | { ok: false; record: AttemptRecord; kind: FailureKind; retryAfterMs: number | null }

/** Per request: did the consumer see tokens of an answer that then failed? */
interface Progress {
  startedAt: number
  /** Tokens of the current attempt have been yielded. */
  shown: boolean
  /** A failed attempt's tokens were shown: the next answer starts with `restart`. */
  mustRestart: boolean
}

/**
 * The fallback chain (decision record docs/decisions/006-llm-fallback-chain.md):
 * - providers in order (OpenRouter, then an optional second endpoint), each with its models;
 *   a provider whose circuit is open is skipped; so is a model inside its Retry-After;
 * - a timeout (first token or idle) is retried once on the same model, then the next model;
 * - 429/5xx/408, a mid-stream error, a broken or empty stream: the next model at once;
 * - 401/402 open the provider's circuit and move to the next provider; so does a network
 *   failure (the host is unreachable, its other models would be too);
 * - 400/413/422 from one model go to the next model (it may be that model's own validation:
 *   context length, output limit, a parameter its endpoint refuses); a second rejection, or a
 *   rejection with no other model left, stops the chain with LlmRequestRejected: the request
 *   itself is wrong, and sending it everywhere or retrying it later would not help;
 * - when a model fails after tokens were shown, the next answer begins with a `restart` event.
 */
export class LlmChain implements Llm {
  private readonly providers: ChainProvider[]
  private readonly options: ChainOptions
  /** `provider\0model` → epoch ms before which the model is not asked again (Retry-After). */
  private readonly cooldowns = new Map<string, number>()

  constructor(providers: ChainProvider[], options: ChainOptions) {
    this.providers = providers
    this.options = options
  }

  async close(): Promise<void> {
    await this.options.onClose?.()
  }

  async *streamChat(request: ChatRequest): AsyncGenerator<ChatEvent> {
    const progress: Progress = { startedAt: performance.now(), shown: false, mustRestart: false }
    const body: CompletionRequest = {
      messages: request.messages,
      maxTokens: request.maxTokens ?? this.options.maxTokens,
      temperature: request.temperature,
    }
    const attempts: AttemptRecord[] = []
    let rejection: AttemptRecord | null = null
    let retryAfterMs: number | null = null
    const noteRetryAfter = (ms: number | null) => {
      if (ms !== null) retryAfterMs = retryAfterMs === null ? ms : Math.min(retryAfterMs, ms)
    }

    for (const entry of this.providers) {
      const { provider, breaker } = entry
      request.signal?.throwIfAborted()
      const lease = breaker.tryAcquire()
      if (lease === null) {
        attempts.push(skipped(provider.name, '*', 'skipped-circuit-open', 'circuit open'))
        noteRetryAfter(breaker.retryAfterMs())
        continue
      }
      let verdict = false
      try {
        models: for (const model of entry.models) {
          const wait = this.cooldownLeft(provider.name, model)
          if (wait > 0) {
            attempts.push(skipped(provider.name, model, 'skipped-retry-after', `Retry-After: ${Math.ceil(wait / 1000)} s left`))
            noteRetryAfter(wait)
            continue
          }
          for (let tries = 0; tries < 2; tries++) {
            request.signal?.throwIfAborted()
            const result = yield* this.attempt(entry, model, body, request.signal, progress)
            attempts.push(result.record)
            if (result.ok) {
              breaker.recordSuccess()
              verdict = true
              yield { ...result.done, attempts, latencyMs: Math.round(performance.now() - progress.startedAt) }
              return
            }
            this.options.logger?.warn(
              { provider: provider.name, model, outcome: result.kind, status: result.record.status, detail: result.record.message },
              'LLM attempt failed',
            )
            if (progress.shown) {
              progress.mustRestart = true
              progress.shown = false
            }
            if (result.retryAfterMs !== null) {
              const ms = Math.min(result.retryAfterMs, MAX_RETRY_AFTER_MS)
              this.cooldowns.set(cooldownKey(provider.name, model), Date.now() + ms)
              noteRetryAfter(ms)
            }
            verdict = true
            switch (result.kind) {
              case 'rejected':
                breaker.recordSuccess()
                if (rejection) throw new LlmRequestRejected(result.record.status ?? 400, result.record.message ?? '', attempts)
                rejection = result.record
                continue models
              case 'refused':
              case 'not-found':
              case 'empty':
                // The provider works; this model cannot answer this request.
                breaker.recordSuccess()
                continue models
              case 'auth':
              case 'credits':
                breaker.trip()
                noteRetryAfter(breaker.retryAfterMs())
                break models
              case 'network':
                breaker.recordFailure()
                break models
              default:
                breaker.recordFailure()
            }
            if (breaker.state === 'open') {
              noteRetryAfter(breaker.retryAfterMs())
              break models
            }
            const timedOut = result.kind === 'timeout-first-token' || result.kind === 'timeout-idle'
            if (!timedOut) continue models
          }
        }
      } finally {
        if (lease === 'probe' && !verdict) breaker.release()
      }
    }
    // A rejection and no other model configured: a retry later would be rejected too. (Models
    // skipped for now — circuit open, Retry-After — may accept it later: that goes to the queue.)
    if (rejection && attempts.every((a) => a.outcome === 'rejected')) {
      throw new LlmRequestRejected(rejection.status ?? 400, rejection.message ?? '', attempts)
    }
    throw new AllProvidersFailed(attempts, retryAfterMs)
  }

  /** One HTTP request to one model; yields its tokens (after a `restart` if one is owed). */
  private async *attempt(
    entry: ChainProvider,
    model: string,
    body: CompletionRequest,
    signal: AbortSignal | undefined,
    progress: Progress,
  ): AsyncGenerator<ChatEvent, AttemptResult> {
    const name = entry.provider.name
    const started = performance.now()
    const controller = new AbortController()
    let firstTokenAt: number | null = null
    let firstTokenMs = 0
    let chars = 0
    let finishReason: string | null = null
    let sawDone = false
    let usage: RawUsage | null = null
    let generationId: string | null = null
    let bodyEnded = false
    let timedOut: 'timeout-first-token' | 'timeout-idle' | null = null
    let finishing = false // finish reason or [DONE] seen: a later timeout just ends the stream
    const onTimeout = () => {
      if (!finishing) timedOut = firstTokenAt === null ? 'timeout-first-token' : 'timeout-idle'
      controller.abort()
    }
    let timer = setTimeout(onTimeout, this.options.firstTokenTimeoutMs)
    const onAbort = () => controller.abort(signal!.reason)
    signal?.addEventListener('abort', onAbort, { once: true })

    const record = (outcome: AttemptRecord['outcome'], status: number | null, message: string | null): AttemptRecord => ({
      provider: name,
      model,
      outcome,
      status,
      message,
      firstTokenMs: firstTokenAt === null ? null : Math.round(firstTokenAt - started),
      durationMs: Math.round(performance.now() - started),
    })
    const failure = (kind: FailureKind, status: number | null, message: string, retryAfterMs: number | null = null): AttemptResult => ({
      ok: false,
      record: record(kind, status, message),
      kind,
      retryAfterMs,
    })
    const startFinishing = () => {
      if (finishing) return
      finishing = true
      clearTimeout(timer)
      timer = setTimeout(onTimeout, Math.min(AFTER_FINISH_MS, this.options.idleTimeoutMs))
    }

    try {
      try {
        const opened = await entry.provider.open(model, body, controller.signal)
        generationId = opened.generationId
        for await (const part of opened.parts) {
          if (part.type === 'token') {
            if (firstTokenAt === null) {
              firstTokenAt = performance.now()
              firstTokenMs = Math.round(firstTokenAt - progress.startedAt)
              if (!finishing) {
                clearTimeout(timer)
                timer = setTimeout(onTimeout, this.options.idleTimeoutMs)
              }
              if (progress.mustRestart) {
                progress.mustRestart = false
                yield { type: 'restart', provider: name, model }
              }
            } else if (!finishing) {
              timer.refresh()
            }
            chars += part.text.length
            progress.shown = true
            yield { type: 'token', text: part.text }
          } else if (part.type === 'finish') {
            finishReason ??= part.reason
            startFinishing()
          } else if (part.type === 'usage') {
            usage = part.usage
          } else {
            sawDone = true
            startFinishing()
          }
        }
        bodyEnded = true
      } catch (err) {
        if (signal?.aborted) throw signal.reason
        if (timedOut) return failure(timedOut, null, `no token for ${timedOut === 'timeout-first-token' ? this.options.firstTokenTimeoutMs : this.options.idleTimeoutMs} ms`)
        if (!finishing) {
          if (err instanceof ProviderError) return failure(err.kind, err.status, err.message, err.retryAfterMs)
          return failure('truncated', null, err instanceof Error ? err.message : String(err))
        }
        // The answer was complete and only the tail (usage, [DONE], end of body) went missing.
      }
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      // The consumer stopped early, or the stream failed: close the connection.
      if (!bodyEnded) controller.abort()
    }

    if (finishReason === null && !sawDone) return failure('truncated', null, 'the stream ended before the answer finished')
    if (chars === 0) return failure('empty', null, `finished (${finishReason ?? 'no reason'}) without any answer text`)
    return {
      ok: true,
      record: record('ok', 200, null),
      done: {
        type: 'done',
        usage: this.usageOf(model, body.messages, chars, usage),
        provider: name,
        model,
        finishReason: finishReason ?? 'unknown',
        firstTokenMs,
        generationId,
      },
    }
  }

  private usageOf(model: string, messages: ChatMessage[], completionChars: number, raw: RawUsage | null): Usage {
    const prompt = count(raw?.prompt_tokens)
    const completion = count(raw?.completion_tokens)
    const promptTokens = prompt ?? estimateTokens(messages)
    const completionTokens = completion ?? Math.ceil(completionChars / 4)
    const reported = typeof raw?.cost === 'number' && Number.isFinite(raw.cost) && raw.cost >= 0 ? raw.cost : null
    return {
      promptTokens,
      completionTokens,
      costUsd: reported ?? estimateCostUsd(model, promptTokens, completionTokens, this.options.prices),
      estimated: prompt === null || completion === null,
    }
  }

  private cooldownLeft(provider: string, model: string): number {
    const key = cooldownKey(provider, model)
    const until = this.cooldowns.get(key)
    if (until === undefined) return 0
    const left = until - Date.now()
    if (left <= 0) this.cooldowns.delete(key)
    return Math.max(0, left)
  }
}

function cooldownKey(provider: string, model: string): string {
  return provider + '\u0000' + model
}

function skipped(provider: string, model: string, outcome: AttemptRecord['outcome'], message: string): AttemptRecord {
  return { provider, model, outcome, status: null, message, firstTokenMs: null, durationMs: 0 }
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : null
}

/** About four characters a token; images are counted as a flat 1000. */
function estimateTokens(messages: ChatMessage[]): number {
  let chars = 0
  let images = 0
  for (const m of messages) {
    if (typeof m.content === 'string') chars += m.content.length
    else {
      for (const part of m.content) {
        if (part.type === 'text') chars += part.text.length
        else images++
      }
    }
  }
  return Math.ceil(chars / 4) + images * 1000
}
