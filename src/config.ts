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
  /** Seeds the demo school on an empty embedded database. */
  seedDemo: boolean
  version: string
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
    seedDemo: !databaseUrl && env.BAGSH_DEMO !== '0',
    version: packageVersion(),
    ...overrides,
  }
}
