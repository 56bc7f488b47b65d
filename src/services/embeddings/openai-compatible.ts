import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { EmbeddingError, l2normalize, type Embedder } from './embedder.ts'

/**
 * Any OpenAI-compatible `POST {base}/embeddings`: OpenRouter, Gemini's compatibility endpoint,
 * a self-hosted server. Inputs go in batches; 429 and 5xx are retried with exponential backoff
 * (Retry-After wins when sent); every vector is checked for length and finiteness and scaled to
 * unit length (Gemini's vectors below 3072 dimensions are not normalized).
 */
export interface OpenAiCompatibleOptions {
  /** e.g. https://openrouter.ai/api/v1 or https://generativelanguage.googleapis.com/v1beta/openai */
  baseUrl: string
  apiKey: string | null
  model: string
  dimensions: number
  /** Inputs per request. */
  batchSize?: number
  /** Retries after the first attempt, for 429, 5xx and network errors. */
  maxRetries?: number
  /** First backoff; doubles each retry, with jitter. */
  retryBaseMs?: number
  /** Longest wait honoured from Retry-After or backoff. */
  maxRetryDelayMs?: number
  timeoutMs?: number
}

const RETRYABLE = new Set([408, 429, 500, 502, 503, 504, 529])

interface EmbeddingsResponse {
  data?: { index?: number; embedding?: unknown }[]
}

export function createOpenAiCompatibleEmbedder(options: OpenAiCompatibleOptions): Embedder {
  const url = options.baseUrl.replace(/\/+$/, '') + '/embeddings'
  const batchSize = options.batchSize ?? 64
  const maxRetries = options.maxRetries ?? 4
  const retryBaseMs = options.retryBaseMs ?? 500
  const maxRetryDelayMs = options.maxRetryDelayMs ?? 60_000
  const timeoutMs = options.timeoutMs ?? 60_000
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`

  async function embedBatch(input: string[]): Promise<number[][]> {
    const body = JSON.stringify({ model: options.model, input, dimensions: options.dimensions })
    for (let attempt = 0; ; attempt++) {
      let status: number
      let text: string
      let retryAfter: string | string[] | undefined
      try {
        const res = await request(url, { method: 'POST', headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
        status = res.statusCode
        retryAfter = res.headers['retry-after']
        text = await res.body.text()
      } catch (err) {
        // Network trouble (refused, reset, timeout) is as retryable as a 503.
        if (attempt < maxRetries) {
          await sleep(backoff(attempt, retryBaseMs, maxRetryDelayMs))
          continue
        }
        throw new EmbeddingError(`embeddings endpoint unreachable after ${attempt + 1} attempts: ${(err as Error).message}`)
      }
      if (status >= 200 && status < 300) return parseVectors(text, input.length, options)
      if (RETRYABLE.has(status) && attempt < maxRetries) {
        await sleep(retryDelay(retryAfter, attempt, retryBaseMs, maxRetryDelayMs))
        continue
      }
      const detail = errorMessage(text)
      const tries = attempt > 0 ? ` after ${attempt + 1} attempts` : ''
      throw new EmbeddingError(`embeddings endpoint answered HTTP ${status}${tries}${detail ? `: ${detail}` : ''}`, status)
    }
  }

  return {
    model: options.model,
    dimensions: options.dimensions,
    async embed(texts: string[]) {
      const out: number[][] = []
      for (let i = 0; i < texts.length; i += batchSize) {
        out.push(...(await embedBatch(texts.slice(i, i + batchSize))))
      }
      return out
    },
  }
}

function parseVectors(text: string, expected: number, options: OpenAiCompatibleOptions): number[][] {
  let json: EmbeddingsResponse
  try {
    json = JSON.parse(text) as EmbeddingsResponse
  } catch {
    throw new EmbeddingError('embeddings endpoint answered with something that is not JSON')
  }
  const data = Array.isArray(json?.data) ? json.data : null
  if (!data || data.length !== expected) {
    throw new EmbeddingError(`embeddings endpoint returned ${data ? data.length : 'no'} vectors for ${expected} inputs`)
  }
  const vectors = new Array<number[]>(expected)
  data.forEach((item, position) => {
    const index = typeof item.index === 'number' ? item.index : position
    const v = item.embedding
    if (!Array.isArray(v) || index < 0 || index >= expected || vectors[index]) {
      throw new EmbeddingError('embeddings endpoint returned a malformed vector list')
    }
    if (v.length !== options.dimensions) {
      throw new EmbeddingError(
        `model ${options.model} returned ${v.length}-dimensional vectors, expected ${options.dimensions} ` +
          '(check EMBEDDINGS_DIMENSIONS and that the endpoint honours the "dimensions" parameter)',
      )
    }
    if (!v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new EmbeddingError('embeddings endpoint returned a vector with non-numeric values')
    }
    vectors[index] = l2normalize([...(v as number[])])
  })
  return vectors
}

/** OpenAI-style `{"error":{"message"}}`, Gemini's `[{"error":{…}}]`, or a short text body. */
export function errorMessage(body: string): string {
  let message = ''
  try {
    const json = JSON.parse(body) as unknown
    const first = Array.isArray(json) ? json[0] : json
    const error = (first as { error?: unknown })?.error
    if (typeof error === 'string') message = error
    else if (error && typeof error === 'object') {
      const e = error as { message?: unknown; status?: unknown; code?: unknown }
      message = [e.status ?? e.code, e.message].filter((x) => typeof x === 'string' || typeof x === 'number').join(' ')
    }
  } catch {
    message = body.replace(/\s+/g, ' ').trim()
  }
  return message.slice(0, 300)
}

function backoff(attempt: number, baseMs: number, maxMs: number): number {
  const exp = baseMs * 2 ** attempt
  return Math.min(maxMs, exp / 2 + Math.random() * (exp / 2))
}

function retryDelay(header: string | string[] | undefined, attempt: number, baseMs: number, maxMs: number): number {
  const value = Array.isArray(header) ? header[0] : header
  if (value) {
    const seconds = Number(value)
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(maxMs, seconds * 1000)
    const date = Date.parse(value)
    if (Number.isFinite(date)) return Math.min(maxMs, Math.max(0, date - Date.now()))
  }
  return backoff(attempt, baseMs, maxMs)
}
