import { readdirSync, readFileSync } from 'node:fs'
import { sql, type Kysely } from 'kysely'

const MIGRATIONS_DIR = new URL('../../migrations/', import.meta.url)

/** Dated, forward-only SQL files in migrations/, applied in name order, each in its own transaction. */
export function listMigrations(): { name: string; sql: string }[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, sql: readFileSync(new URL(name, MIGRATIONS_DIR), 'utf8') }))
}

/** Returns the names applied by this call. Safe to run from several instances at once. */
export async function migrate(db: Kysely<any>): Promise<string[]> {
  await sql`CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`.execute(db)
  const applied: string[] = []
  for (const migration of listMigrations()) {
    const done = await db.transaction().execute(async (trx) => {
      // Instances starting together wait for each other instead of applying a file twice.
      await sql`SELECT pg_advisory_xact_lock(7361626773)`.execute(trx)
      const seen = await sql`SELECT 1 FROM schema_migrations WHERE name = ${migration.name}`.execute(trx)
      if (seen.rows.length > 0) return false
      await sql.raw(migration.sql).execute(trx)
      await sql`INSERT INTO schema_migrations (name) VALUES (${migration.name})`.execute(trx)
      return true
    })
    if (done) applied.push(migration.name)
  }
  return applied
}
