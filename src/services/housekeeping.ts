import { sql, type Kysely } from 'kysely'
import type { DB } from '../db/schema.ts'
import { pruneLoginFailures } from './auth/login.ts'
import { PeriodicRounds } from './periodic.ts'

/**
 * Deletes what nobody will read again: sessions past their expiry (a session is otherwise only
 * deleted when its browser comes back with it, and a lab PC's student often never does) and login
 * failures older than the throttle window. Safe on several instances at once: each statement is an
 * idempotent DELETE of a bounded batch, so a large backlog is worked off over a few rounds instead
 * of in one long statement.
 */
export async function sweepExpired(db: Kysely<DB>, batch = 10_000): Promise<{ sessions: number }> {
  const deleted = await sql<{ n: number }>`
    WITH gone AS (
      DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < now() LIMIT ${batch})
      RETURNING 1
    )
    SELECT count(*)::int AS n FROM gone`.execute(db)
  await pruneLoginFailures(db)
  return { sessions: deleted.rows[0]?.n ?? 0 }
}

export interface HousekeeperLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

/** Runs sweepExpired every `intervalMs` (default 15 minutes, with jitter) in the server process. */
export class Housekeeper {
  private readonly db: Kysely<DB>
  private readonly log: HousekeeperLog
  private readonly rounds: PeriodicRounds

  constructor(db: Kysely<DB>, log: HousekeeperLog, options: { intervalMs?: number } = {}) {
    this.db = db
    this.log = log
    this.rounds = new PeriodicRounds({ intervalMs: options.intervalMs ?? 15 * 60 * 1000, jitterMs: 30_000 }, () => this.tick())
  }

  start(): void {
    this.rounds.start()
  }

  stop(): Promise<void> {
    return this.rounds.stop()
  }

  /** One sweep (none while one runs). */
  tick(): Promise<void> {
    return this.rounds.run(async () => {
      try {
        const { sessions } = await sweepExpired(this.db)
        if (sessions) this.log.info({ sessions }, 'expired sessions deleted')
      } catch (err) {
        this.log.warn({ err }, 'housekeeping round failed')
      }
    }, undefined)
  }
}
