import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

/** Everything the app reads from the environment, validated once. `process.env` appears nowhere else. */
export interface Config {
  port: number
  host: string
  databaseUrl: string | null
  dataDir: string
  logLevel: string
  sessionSecret: string
  production: boolean
  /** Requests per minute per IP across the whole app. */
  rateLimitPerMinute: number
  /**
   * How long a validated session is trusted from memory (SESSION_CACHE_SECONDS, default 10, 0–60;
   * 0 under NODE_ENV=test, where tests change rows directly). Other instances see a logout within it.
   */
  sessionCacheMs: number
  /** Seeds the demo school on an empty embedded database. */
  seedDemo: boolean
  /** Largest textbook PDF the admin upload form takes (PDF_MAX_MB, default and most 200). */
  pdfMaxBytes: number
  /** PDFs one admin may upload through the form per hour (PDF_UPLOADS_PER_HOUR, default 2). */
  pdfUploadsPerHour: number
  version: string
  /**
   * METRICS_TOKEN: when set, /metrics wants `Authorization: Bearer <token>`. Unset: /metrics answers
   * only direct requests from loopback or private addresses (a scraper inside the network, such as
   * Fly's), never requests that came through a proxy. Everyone else gets 404.
   */
  metricsToken: string | null
  /** BAGSH_DB_STATS=1: the embedded database thread prints per-statement waits and run times to stderr every 10 s (diagnostics). */
  dbStats: boolean
  embeddings: EmbeddingsConfig
  chat: ChatConfig
  llm: LlmConfig
}

/** The LLM fallback chain (src/services/llm). No provider configured: offline mode. */
export interface LlmConfig {
  /** OpenRouter; null without OPENROUTER_API_KEY. */
  openrouter: LlmProviderConfig | null
  /** An optional second OpenAI-compatible endpoint, used when OpenRouter is down. */
  fallback: LlmProviderConfig | null
  /** Default answer length (LLM_MAX_TOKENS, 1024). */
  maxTokens: number
  firstTokenTimeoutMs: number
  idleTimeoutMs: number
  /** Consecutive failures that open a provider's circuit, and how long it stays open. */
  breakerFailures: number
  breakerCooldownMs: number
  /** LLM_PRICES: per-model $/M input and output tokens, over the defaults in src/services/llm/prices.ts. */
  prices: Record<string, { inputPerMillion: number; outputPerMillion: number }>
  /** Sent to OpenRouter as HTTP-Referer (app attribution); omitted when unset. */
  appUrl: string | null
}

export interface LlmProviderConfig {
  name: string
  baseUrl: string
  /** Never logged. */
  apiKey: string | null
  models: string[]
}

/** Limits of the tutor chat (src/services/chat); schools may override the per-student numbers. */
export interface ChatConfig {
  /** Questions per student per minute (CHAT_PER_MINUTE, default 30). */
  perMinute: number
  /** Questions per student per day, Asia/Ulaanbaatar (CHAT_PER_DAY, default 50). */
  perDay: number
}

/** Which embedder turns textbook passages and questions into vectors (src/services/embeddings). */
export interface EmbeddingsConfig {
  /** 'local' (built in, offline) unless EMBEDDINGS_BASE_URL is set. */
  provider: 'local' | 'openai-compatible'
  baseUrl: string | null
  /** Never logged. */
  apiKey: string | null
  /** The remote model id; 'local' for the built-in embedder (which names its own version). */
  model: string
  /** 768 or 1536: the chunk table has an HNSW-indexed column for each. */
  dimensions: number
}

export class ConfigError extends Error {}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}"`)
  }
  return n
}

/** The embedded mode keeps its session secret next to its data, so restarts keep people logged in. */
function persistedSecret(dataDir: string): string {
  const file = join(dataDir, 'session-secret')
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    mkdirSync(dataDir, { recursive: true })
    const secret = randomBytes(32).toString('base64url')
    writeFileSync(file, secret + '\n', { mode: 0o600 })
    return secret
  }
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

function embeddingsFrom(env: NodeJS.ProcessEnv): EmbeddingsConfig {
  const baseUrl = env.EMBEDDINGS_BASE_URL?.trim() || null
  const dimensions = intFrom(env, 'EMBEDDINGS_DIMENSIONS', 768, 1, 100_000)
  if (!baseUrl) {
    if (dimensions !== 768) throw new ConfigError('EMBEDDINGS_DIMENSIONS must be 768 with the built-in embedder (no EMBEDDINGS_BASE_URL)')
    return { provider: 'local', baseUrl: null, apiKey: null, model: 'local', dimensions }
  }
  if (!/^https?:\/\//.test(baseUrl)) throw new ConfigError('EMBEDDINGS_BASE_URL must start with http:// or https://')
  const model = env.EMBEDDINGS_MODEL?.trim()
  if (!model) throw new ConfigError('EMBEDDINGS_MODEL is required when EMBEDDINGS_BASE_URL is set')
  if (dimensions !== 768 && dimensions !== 1536) throw new ConfigError('EMBEDDINGS_DIMENSIONS must be 768 or 1536')
  return { provider: 'openai-compatible', baseUrl, apiKey: env.EMBEDDINGS_API_KEY?.trim() || null, model, dimensions }
}

function modelList(env: NodeJS.ProcessEnv, name: string, fallback: string): string[] {
  const models = (env[name]?.trim() || fallback).split(',').map((m) => m.trim()).filter(Boolean)
  if (models.length === 0 || models.some((m) => !/^[\w.:/@-]+$/.test(m))) {
    throw new ConfigError(`${name} must be a comma-separated list of model ids`)
  }
  return models
}

function httpUrl(env: NodeJS.ProcessEnv, name: string): string | null {
  const url = env[name]?.trim() || null
  if (url && !/^https?:\/\//.test(url)) throw new ConfigError(`${name} must start with http:// or https://`)
  return url
}

/** LLM_PRICES="openai/gpt-4o-mini=0.15:0.6,deepseek/deepseek-chat-v3.1:free=0:0" ($ per million in:out). */
function pricesFrom(raw: string | undefined): LlmConfig['prices'] {
  const prices: LlmConfig['prices'] = {}
  for (const entry of (raw ?? '').split(',').map((e) => e.trim()).filter(Boolean)) {
    const eq = entry.lastIndexOf('=')
    const [input, output, extra] = entry.slice(eq + 1).split(':').map((n) => (n.trim() === '' ? NaN : Number(n)))
    if (eq <= 0 || extra !== undefined || !(input! >= 0) || !(output! >= 0)) {
      throw new ConfigError(`LLM_PRICES entries look like model=input:output (dollars per million tokens), got "${entry}"`)
    }
    prices[entry.slice(0, eq).trim()] = { inputPerMillion: input!, outputPerMillion: output! }
  }
  return prices
}

function llmFrom(env: NodeJS.ProcessEnv): LlmConfig {
  const openrouterKey = env.OPENROUTER_API_KEY?.trim() || null
  const openrouterUrl = httpUrl(env, 'OPENROUTER_BASE_URL') ?? 'https://openrouter.ai/api/v1'
  const models = modelList(env, 'LLM_MODELS', 'google/gemini-2.5-flash,deepseek/deepseek-chat-v3-0324,openai/gpt-4o-mini')
  const fallbackUrl = httpUrl(env, 'LLM_FALLBACK_BASE_URL')
  let fallback: LlmProviderConfig | null = null
  if (fallbackUrl) {
    const gemini = new URL(fallbackUrl).hostname === 'generativelanguage.googleapis.com'
    if (!gemini && !env.LLM_FALLBACK_MODELS?.trim()) {
      throw new ConfigError('LLM_FALLBACK_MODELS is required when LLM_FALLBACK_BASE_URL is not Gemini')
    }
    const name = env.LLM_FALLBACK_NAME?.trim() || (gemini ? 'gemini' : 'fallback')
    if (!/^[a-z0-9-]{1,32}$/.test(name)) throw new ConfigError('LLM_FALLBACK_NAME must be 1–32 lowercase letters, digits or dashes')
    fallback = {
      name,
      baseUrl: fallbackUrl,
      apiKey: env.LLM_FALLBACK_API_KEY?.trim() || null,
      models: modelList(env, 'LLM_FALLBACK_MODELS', 'gemini-2.5-flash'),
    }
  }
  return {
    openrouter: openrouterKey ? { name: 'openrouter', baseUrl: openrouterUrl, apiKey: openrouterKey, models } : null,
    fallback,
    maxTokens: intFrom(env, 'LLM_MAX_TOKENS', 1024, 1, 100_000),
    firstTokenTimeoutMs: intFrom(env, 'LLM_FIRST_TOKEN_TIMEOUT_MS', 30_000, 1, 600_000),
    idleTimeoutMs: intFrom(env, 'LLM_IDLE_TIMEOUT_MS', 15_000, 1, 600_000),
    breakerFailures: intFrom(env, 'LLM_BREAKER_FAILURES', 5, 1, 1000),
    breakerCooldownMs: intFrom(env, 'LLM_BREAKER_COOLDOWN_MS', 30_000, 1, 3_600_000),
    prices: pricesFrom(env.LLM_PRICES),
    appUrl: httpUrl(env, 'LLM_APP_URL'),
  }
}

function metricsTokenFrom(env: NodeJS.ProcessEnv): string | null {
  const token = env.METRICS_TOKEN?.trim() || null
  if (token && token.length < 16) throw new ConfigError('METRICS_TOKEN must be at least 16 characters')
  return token
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const production = env.NODE_ENV === 'production'
  const databaseUrl = env.DATABASE_URL?.trim() || null
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must start with postgres:// or postgresql://')
  }
  const dataDir = resolve(env.DATA_DIR?.trim() || './data')
  const logLevel = env.LOG_LEVEL?.trim() || 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`)
  let sessionSecret = env.SESSION_SECRET?.trim() || ''
  if (sessionSecret && sessionSecret.length < 32) throw new ConfigError('SESSION_SECRET must be at least 32 characters')
  if (!sessionSecret) {
    if (production) throw new ConfigError('SESSION_SECRET is required when NODE_ENV=production')
    sessionSecret = overrides.sessionSecret ?? persistedSecret(dataDir)
  }
  return {
    port: intFrom(env, 'PORT', 3000, 0, 65535),
    host: env.HOST?.trim() || '0.0.0.0',
    databaseUrl,
    dataDir,
    logLevel,
    sessionSecret,
    production,
    rateLimitPerMinute: intFrom(env, 'RATE_LIMIT_PER_MINUTE', 100, 1, 1_000_000),
    sessionCacheMs: intFrom(env, 'SESSION_CACHE_SECONDS', env.NODE_ENV === 'test' ? 0 : 10, 0, 60) * 1000,
    seedDemo: !databaseUrl && env.BAGSH_DEMO !== '0',
    pdfMaxBytes: intFrom(env, 'PDF_MAX_MB', 200, 1, 200) * 1024 * 1024,
    pdfUploadsPerHour: intFrom(env, 'PDF_UPLOADS_PER_HOUR', 2, 1, 1000),
    version: packageVersion(),
    metricsToken: metricsTokenFrom(env),
    dbStats: env.BAGSH_DB_STATS === '1',
    embeddings: embeddingsFrom(env),
    chat: { perMinute: intFrom(env, 'CHAT_PER_MINUTE', 30, 1, 10_000), perDay: intFrom(env, 'CHAT_PER_DAY', 50, 1, 100_000) },
    llm: llmFrom(env),
    ...overrides,
  }
}
