import { buildApp } from './app.ts'
import { loadConfig, type Config } from './config.ts'
import { openDatabase } from './db/index.ts'
import { migrate } from './db/migrate.ts'
import { seedDemoIfEmpty } from './services/demo.ts'
import { Housekeeper } from './services/housekeeping.ts'
import { createEmbedder } from './services/embeddings/index.ts'
import { createJobHandlers } from './services/jobs/handlers.ts'
import { JobRunner } from './services/jobs/queue.ts'
import { enqueueSamplePdfs } from './services/textbooks/sample-pdfs.ts'

/** Opens the database, migrates, seeds the demo on a fresh embedded database, listens, and shuts down cleanly. */
export async function startServer(config: Config = loadConfig()): Promise<void> {
  // Embedded: Postgres in its own thread, so database work never stalls the event loop (docs/decisions/012).
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, thread: true, stats: config.dbStats })
  const app = await buildApp({ config, database })
  // Background jobs (PDF imports, re-indexing): started once the app listens, stopped before it closes.
  const jobs = new JobRunner(database.db, createJobHandlers({ dataDir: config.dataDir, embedder: createEmbedder(config.embeddings) }), { log: app.log })
  // Expired sessions and old login failures, deleted now and then (src/services/housekeeping.ts).
  const housekeeper = new Housekeeper(database.db, app.log)
  let closing = false
  const shutdown = async (signal: string) => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'shutting down')
    const force = setTimeout(() => process.exit(1), 15_000)
    force.unref()
    try {
      await jobs.stop()
      await housekeeper.stop()
      await app.close()
    } finally {
      await database.close()
      process.exit(0)
    }
  }
  process.on('SIGINT', () => void shutdown('SIGINT'))
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  try {
    const applied = await migrate(database.db)
    if (applied.length) app.log.info({ applied }, 'migrations applied')
    if (config.seedDemo) {
      const demo = await seedDemoIfEmpty(database.db)
      if (demo) {
        printDemoLogins(demo)
        // The sample textbooks, through the same pipeline as an upload; searchable seconds after start.
        await enqueueSamplePdfs(database.db, config.dataDir)
      }
    }
    await app.listen({ port: config.port, host: config.host })
    jobs.start()
    housekeeper.start()
    void housekeeper.tick()
  } catch (err) {
    await app.close().catch(() => {})
    await database.close().catch(() => {})
    throw err
  }
}

function printDemoLogins(demo: Awaited<ReturnType<typeof seedDemoIfEmpty>> & object): void {
  const lines = [
    '',
    'Bagsh demo accounts (created once, on an empty embedded database):',
    ...demo.accounts.map((a) => `  ${a.role.padEnd(13)} school ${String(a.school ?? '(empty)').padEnd(8)} username ${a.username.padEnd(12)} password ${a.password}`),
    '',
  ]
  process.stdout.write(lines.join('\n') + '\n')
}

if (import.meta.main) {
  startServer().catch((err) => {
    process.stderr.write(`bagsh: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  })
}
