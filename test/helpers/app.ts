import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.ts'
import { loadConfig, type Config } from '../../src/config.ts'
import type { Database } from '../../src/db/index.ts'
import { freshDatabase } from './db.ts'

export interface TestApp {
  app: FastifyInstance
  database: Database
  config: Config
  close(): Promise<void>
}

/** The real app on a fresh database. Nothing of ours is mocked. */
export async function buildTestApp(overrides: Partial<Config> = {}): Promise<TestApp> {
  const database = await freshDatabase()
  const config = loadConfig(
    { NODE_ENV: 'test', LOG_LEVEL: 'silent' },
    { sessionSecret: 'test-secret-0123456789-0123456789-abcdef', rateLimitPerMinute: 100_000, seedDemo: false, ...overrides },
  )
  const app = await buildApp({ config, database, logger: false })
  await app.ready()
  return {
    app,
    database,
    config,
    async close() {
      await app.close()
      await database.close()
    },
  }
}
