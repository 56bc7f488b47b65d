import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { PGlite } from '@electric-sql/pglite'
import { createPgConfig } from '@electric-sql/pglite/node-postgres'
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm'
import { vector } from '@electric-sql/pglite-pgvector'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { DB } from './schema.ts'
import { acquireDataDirLock, type DataDirLock } from './lock.ts'
import { PGliteThread, threadPgConfig } from './pglite-thread.ts'
import { PreparingClient } from './prepared.ts'

export type { DB } from './schema.ts'
export { BACKGROUND, PREPARE } from './prepared.ts'

export interface Database {
  db: Kysely<DB>
  pool: pg.Pool
  embedded: boolean
  /**
   * Calls `listener` after every statement sent through `db` (transaction BEGIN/COMMIT included),
   * for the statements metric and the write-budget test. Returns a function that removes it.
   */
  onStatement(listener: StatementListener): () => void
  /** Round-trips `select 1`; throws when the database is unreachable. */
  ping(timeoutMs?: number): Promise<void>
  close(): Promise<void>
  /** Embedded only: the whole data dir as a tarball (tests start each file from a migrated copy). */
  dumpDataDir(): Promise<Blob>
}

export type StatementListener = (sql: string, failed: boolean) => void

export interface DatabaseOptions {
  databaseUrl: string | null
  dataDir: string
  /** Tests: start from a dumped, already-migrated data dir instead of files on disk. */
  loadDataDir?: Blob
  /** Tests: keep the embedded database in memory. */
  inMemory?: boolean
  poolMax?: number
  /** Embedded only: run PGlite in a worker thread (the server: Postgres work on its own core). */
  thread?: boolean
  /** With `thread`: print per-statement stats to stderr every 10 s (config.dbStats, BAGSH_DB_STATS=1). */
  stats?: boolean
}

export const PGLITE_EXTENSIONS = { vector, pg_trgm }

/**
 * One code path for production and the embedded default: Kysely → node-postgres Pool.
 * With no DATABASE_URL the pool talks to PGlite in this process (createPgConfig), so the
 * SQL, types and transactions are the same as on a real server.
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  let pool: pg.Pool
  let pglite: PGlite | PGliteThread | null = null
  let lock: DataDirLock | null = null
  if (options.databaseUrl) {
    pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolMax ?? 10, connectionTimeoutMillis: 5000, Client: PreparingClient })
  } else {
    let dataDir: string | undefined
    if (!options.inMemory && !options.loadDataDir) {
      mkdirSync(options.dataDir, { recursive: true })
      lock = acquireDataDirLock(options.dataDir)
      dataDir = join(options.dataDir, 'pgdata')
    }
    try {
      pglite = options.thread
        ? await PGliteThread.create({ dataDir, loadDataDir: options.loadDataDir, stats: options.stats })
        : await PGlite.create({ dataDir, loadDataDir: options.loadDataDir, extensions: PGLITE_EXTENSIONS })
    } catch (err) {
      lock?.release()
      throw err
    }
    pool = new pg.Pool(
      pglite instanceof PGliteThread ? threadPgConfig(pglite) : ({ ...createPgConfig(pglite), Client: PreparingClient } as unknown as pg.PoolConfig),
    )
  }
  // A dropped connection must not crash the process; the next query reconnects.
  pool.on('error', () => {})
  const listeners = new Set<StatementListener>()
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      for (const listener of listeners) listener(event.query.sql, event.level === 'error')
    },
  })
  return {
    db,
    pool,
    embedded: pglite !== null,
    onStatement(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    async ping(timeoutMs = 2000) {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('database ping timed out')), timeoutMs)
      })
      try {
        await Promise.race([sql`select 1`.execute(db), timeout])
      } finally {
        clearTimeout(timer)
      }
    },
    async dumpDataDir() {
      if (!pglite) throw new Error('dumpDataDir needs the embedded database')
      return pglite instanceof PGliteThread ? pglite.dumpDataDir() : pglite.dumpDataDir('none')
    },
    async close() {
      await db.destroy()
      if (pglite) await pglite.close()
      lock?.release()
    },
  }
}
