import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openDatabase, type Database } from '../../src/db/index.ts'
import { listMigrations, migrate } from '../../src/db/migrate.ts'

const CACHE_DIR = new URL('../../.cache/', import.meta.url).pathname

function templateKey(): string {
  const hash = createHash('sha256')
  for (const m of listMigrations()) hash.update(m.name).update(m.sql)
  hash.update(readFileSync(new URL('../../node_modules/@electric-sql/pglite/package.json', import.meta.url)))
  return hash.digest('hex').slice(0, 16)
}

async function sleep(ms: number) {
  await new Promise((r) => setTimeout(r, ms))
}

/**
 * A migrated embedded database, dumped once per migration set, so every test file starts from a
 * fresh copy in about a second instead of booting and migrating PGlite (~4 s).
 */
async function template(): Promise<Blob> {
  mkdirSync(CACHE_DIR, { recursive: true })
  const file = join(CACHE_DIR, `test-db-${templateKey()}.tar`)
  const lock = file + '.lock'
  for (;;) {
    if (existsSync(file)) return new Blob([readFileSync(file)])
    let fd: number
    try {
      fd = openSync(lock, 'wx')
    } catch {
      await sleep(200) // another test file is building it
      continue
    }
    closeSync(fd)
    try {
      const database = await openDatabase({ databaseUrl: null, dataDir: '', inMemory: true })
      await migrate(database.db)
      const blob = await database.dumpDataDir()
      await database.close()
      writeFileSync(file + '.tmp', Buffer.from(await blob.arrayBuffer()))
      renameSync(file + '.tmp', file)
    } finally {
      unlinkSync(lock)
    }
  }
}

/** A fresh, migrated, in-memory Postgres (PGlite) for one test file. */
export async function freshDatabase(): Promise<Database> {
  const database = await openDatabase({ databaseUrl: null, dataDir: '', loadDataDir: await template() })
  // Migrations are idempotent; this also proves the template is current.
  await migrate(database.db)
  return database
}
