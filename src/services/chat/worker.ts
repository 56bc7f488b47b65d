import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { claimDueAnswers, hasDueAnswers, pruneAnswerCache } from './answers.ts'
import type { AnswerBroker, BrokerLogger } from './broker.ts'
import { PeriodicRounds } from '../periodic.ts'

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
  private readonly batch: number
  private readonly maxActive: number
  private readonly rounds: PeriodicRounds
  private prunedAt = Date.now()

  constructor(db: Kysely<DB>, broker: AnswerBroker, log: BrokerLogger, options: WorkerOptions = {}) {
    this.db = db
    this.broker = broker
    this.log = log
    this.batch = options.batch ?? 10
    this.maxActive = options.maxActive ?? 500
    this.rounds = new PeriodicRounds({ intervalMs: options.intervalMs ?? 5000, jitterMs: 500 }, () => this.tick())
  }

  start(): void {
    this.rounds.start()
  }

  stop(): Promise<void> {
    return this.rounds.stop()
  }

  /** One round: claim what is due and start answering it. Returns how many were claimed (0 while a round runs). */
  tick(): Promise<number> {
    if (!this.broker.accepting) return Promise.resolve(0)
    return this.rounds.run(async () => {
      try {
        const room = Math.min(this.batch, this.maxActive - this.broker.active)
        if (room <= 0) return 0
        if (Date.now() - this.prunedAt > PRUNE_EVERY_MS) {
          this.prunedAt = Date.now()
          await pruneAnswerCache(this.db)
        }
        if (!(await hasDueAnswers(this.db))) return 0
        const jobs = await claimDueAnswers(this.db, room)
        for (const job of jobs) this.broker.start(job)
        if (jobs.length) this.log.info({ answers: jobs.map((j) => j.answerId) }, 'retrying queued answers')
        return jobs.length
      } catch (err) {
        this.log.warn({ err }, 'answer worker round failed')
        return 0
      }
    }, 0)
  }
}
