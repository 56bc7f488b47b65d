import { sql, type Kysely } from 'kysely'
import type { DB } from '../db/schema.ts'
import { pruneLoginFailures } from './auth/login.ts'

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
  private readonly intervalMs: number
  private timer: NodeJS.Timeout | null = null
  private round: Promise<void> | null = null

  constructor(db: Kysely<DB>, log: HousekeeperLog, options: { intervalMs?: number } = {}) {
    this.db = db
    this.log = log
    this.intervalMs = options.intervalMs ?? 15 * 60 * 1000
  }

  start(): void {
    if (this.timer) return
    // Jitter: instances started together do not sweep in lockstep.
    this.timer = setInterval(() => void this.tick(), this.intervalMs + Math.floor(Math.random() * 30_000))
    this.timer.unref()
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.round
  }

  async tick(): Promise<void> {
    if (this.round) return this.round
    this.round = (async () => {
      try {
        const { sessions } = await sweepExpired(this.db)
        if (sessions) this.log.info({ sessions }, 'expired sessions deleted')
      } catch (err) {
        this.log.warn({ err }, 'housekeeping round failed')
      }
    })()
    try {
      await this.round
    } finally {
      this.round = null
    }
  }
}
