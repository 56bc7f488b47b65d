import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { claimDueAnswers, hasDueAnswers, pruneAnswerCache } from './answers.ts'
import type { AnswerBroker, BrokerLogger } from './broker.ts'

/**
 * The durable side of "never lose a question": answers queued after every provider failed (or
 * left behind by a process that died mid-answer) wait in Postgres. This worker, one per app
 * instance, looks for due ones every few seconds with a cheap read, claims a few with
 * FOR UPDATE SKIP LOCKED and a lease (so instances never take the same one), and hands them to
 * the broker, which answers them like fresh questions.
 */
/** Expired answer-cache entries are deleted this often. */
const PRUNE_EVERY_MS = 10 * 60_000

export interface WorkerOptions {
  intervalMs?: number
  /** Most answers claimed per round. */
  batch?: number
  /** Most answers this instance generates at once; the worker claims only below it. */
  maxActive?: number
}

export class AnswerWorker {
  private readonly db: Kysely<DB>
  private readonly broker: AnswerBroker
  private readonly log: BrokerLogger
  private readonly intervalMs: number
  private readonly batch: number
  private readonly maxActive: number
  private timer: NodeJS.Timeout | null = null
  private round: Promise<void> | null = null
  private prunedAt = Date.now()

  constructor(db: Kysely<DB>, broker: AnswerBroker, log: BrokerLogger, options: WorkerOptions = {}) {
    this.db = db
    this.broker = broker
    this.log = log
    this.intervalMs = options.intervalMs ?? 5000
    this.batch = options.batch ?? 10
    this.maxActive = options.maxActive ?? 500
  }

  start(): void {
    if (this.timer) return
    // A little jitter so instances started together do not poll in lockstep.
    this.timer = setInterval(() => void this.tick(), this.intervalMs + Math.floor(Math.random() * 500))
    this.timer.unref()
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.round
  }

  /** One round: claim what is due and start answering it. Returns how many were claimed. */
  async tick(): Promise<number> {
    if (this.round || !this.broker.accepting) return 0
    let claimed = 0
    this.round = (async () => {
      try {
        const room = Math.min(this.batch, this.maxActive - this.broker.active)
        if (room <= 0) return
        if (Date.now() - this.prunedAt > PRUNE_EVERY_MS) {
          this.prunedAt = Date.now()
          await pruneAnswerCache(this.db)
        }
        if (!(await hasDueAnswers(this.db))) return
        const jobs = await claimDueAnswers(this.db, room)
        claimed = jobs.length
        for (const job of jobs) this.broker.start(job)
        if (jobs.length) this.log.info({ answers: jobs.map((j) => j.answerId) }, 'retrying queued answers')
      } catch (err) {
        this.log.warn({ err }, 'answer worker round failed')
      }
    })()
    try {
      await this.round
    } finally {
      this.round = null
    }
    return claimed
  }
}
