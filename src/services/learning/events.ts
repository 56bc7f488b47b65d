import { sql, type Kysely } from 'kysely'
import { BACKGROUND } from '../../db/prepared.ts'
import type { DB } from '../../db/schema.ts'

/**
 * Learning events (a question asked, its subject and topic; later quiz answers) feed the learning
 * model. They are never written one by one: a batcher collects them and writes each batch with
 * one multi-row INSERT — every few seconds, when a batch is full, and on shutdown.
 */

export interface LearningEvent {
  userId: number
  schoolId: number | null
  kind: string
  subject?: string | null
  grade?: number | null
  topic?: string | null
  data?: Record<string, unknown>
  at?: Date
}

export interface BatcherOptions {
  /** Most events per INSERT; a full batch is written at once. */
  maxBatch?: number
  /** How often a partial batch is written. */
  intervalMs?: number
  /** Events kept while the database is unreachable; the oldest are dropped beyond this. */
  maxPending?: number
  onError?: (err: unknown, pending: number) => void
}

export class LearningEventBatcher {
  private readonly db: Kysely<DB>
  private readonly maxBatch: number
  private readonly maxPending: number
  private readonly onError: (err: unknown, pending: number) => void
  private queue: LearningEvent[] = []
  private timer: NodeJS.Timeout | null
  private flushing: Promise<void> | null = null
  private droppedCount = 0

  constructor(db: Kysely<DB>, options: BatcherOptions = {}) {
    this.db = db
    this.maxBatch = options.maxBatch ?? 500
    this.maxPending = options.maxPending ?? 20_000
    this.onError = options.onError ?? (() => {})
    this.timer = setInterval(() => void this.flush(), options.intervalMs ?? 5000)
    this.timer.unref()
  }

  get pending(): number {
    return this.queue.length
  }

  /** Events lost because the database stayed unreachable too long. */
  get dropped(): number {
    return this.droppedCount
  }

  record(event: LearningEvent): void {
    this.queue.push({ ...event, at: event.at ?? new Date() })
    if (this.queue.length > this.maxPending) {
      const extra = this.queue.length - this.maxPending
      this.queue.splice(0, extra)
      this.droppedCount += extra
    }
    if (this.queue.length >= this.maxBatch) void this.flush()
  }

  /** Writes everything pending (one INSERT per full batch). A failed batch is kept for the next try. */
  async flush(): Promise<void> {
    if (this.flushing) return this.flushing
    this.flushing = (async () => {
      try {
        while (this.queue.length) {
          const batch = this.queue.slice(0, this.maxBatch)
          try {
            await this.db
              .insertInto('learning_events')
              .values(
                batch.map((e) => ({
                  user_id: e.userId,
                  school_id: e.schoolId,
                  kind: e.kind,
                  subject: e.subject ?? null,
                  grade: e.grade ?? null,
                  topic: e.topic?.slice(0, 200) ?? null,
                  data: JSON.stringify(e.data ?? {}),
                  at: e.at!,
                })),
              )
              // Nobody waits on it: the embedded database runs it after waiting questions.
              .modifyEnd(sql.raw(BACKGROUND))
              .execute()
          } catch (err) {
            this.onError(err, this.queue.length)
            return
          }
          this.queue.splice(0, batch.length)
        }
      } finally {
        this.flushing = null
      }
    })()
    return this.flushing
  }

  /** Stops the timer and writes what is left (shutdown). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.flush()
  }
}
