import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { sql, type Kysely, type Selectable } from 'kysely'
import { BACKGROUND } from '../../db/prepared.ts'
import type { DB, JobProgress, JobTable } from '../../db/schema.ts'

/**
 * Durable background jobs in Postgres (migrations/20261128_0003_jobs.sql).
 *
 * A runner claims one job at a time with `FOR UPDATE SKIP LOCKED` (several app instances never
 * run the same job) and holds it under a lease it renews every third of the lease. A job whose
 * lease expired — its process died — is claimed again and its handler resumes from what it had
 * saved. Progress is written at most once a second, not once per page.
 *
 * The embedded database has one connection (docs/decisions/001-embedded-database.md): nothing
 * here holds a transaction while a handler works, and a handler must never await `ctx.flush()`
 * inside a transaction callback (the write would wait for the connection the callback holds).
 */

export type Job = Selectable<JobTable>

/** An error a job reports: `key` is an i18n key (ingest.errors.*) with its {{params}}. */
export interface JobFailure {
  /** i18n key, or a plain message for unexpected errors. */
  error: string
  params: Record<string, string | number> | null
}

export interface JobContext {
  db: Kysely<DB>
  /** Aborted on shutdown or when another runner took the job over; check it between steps. */
  signal: AbortSignal
  /** Records progress (and optionally where to resume); written at most every progressIntervalMs. */
  progress(progress: JobProgress, checkpoint?: Record<string, unknown>): void
  /** Writes pending progress now. Never inside a transaction callback. */
  flush(): Promise<void>
}

export interface JobHandler {
  /** Does the work; what it returns is stored as the job's result. Throws to fail or retry. */
  run(job: Job, ctx: JobContext): Promise<Record<string, unknown> | void>
  /** Called once when the job has failed for good (permanent error, attempts used up, crashed too often). */
  onFailed?(job: Job, failure: JobFailure, db: Kysely<DB>): Promise<void>
}

export interface JobLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

/** What runners write when a job's lease ran out max_attempts times (its process kept dying). */
export const INTERRUPTED_ERROR = 'ingest.errors.interrupted'

/**
 * An error that retrying will not fix (bad input). Any error with `permanent: true` counts; `key`
 * and `params` become the job's error.
 */
export function isPermanent(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { permanent?: unknown }).permanent === true
}

export function failureOf(err: unknown): JobFailure {
  const e = err as { key?: unknown; params?: unknown; message?: unknown }
  if (typeof e?.key === 'string') {
    return { error: e.key, params: e.params && typeof e.params === 'object' ? (e.params as Record<string, string | number>) : null }
  }
  const message = err instanceof Error ? err.message : String(err)
  return { error: message.slice(0, 2000) || 'error', params: null }
}

export async function enqueueJob(
  db: Kysely<DB>,
  kind: string,
  payload: Record<string, unknown>,
  options: { maxAttempts?: number } = {},
): Promise<number> {
  const row = await db
    .insertInto('jobs')
    .values({ kind, payload: JSON.stringify(payload), max_attempts: options.maxAttempts ?? 3 })
    .returning('id')
    .executeTakeFirstOrThrow()
  return row.id
}

export async function getJob(db: Kysely<DB>, id: number): Promise<Job | undefined> {
  return db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst()
}

/**
 * Claims the oldest due job of these kinds (or just `jobId`): a queued job whose run_after has
 * come, or a running one whose lease expired with attempts left. Returns it with the lease taken.
 */
export async function claimNextJob(
  db: Kysely<DB>,
  workerId: string,
  options: { kinds: string[]; leaseMs: number; jobId?: number },
): Promise<Job | null> {
  const only = options.jobId ?? null
  const { rows } = await sql<Job>`
    UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = ${workerId},
                    locked_until = now() + ${options.leaseMs} * interval '1 millisecond', updated_at = now()
    WHERE id = (
      SELECT id FROM jobs
      WHERE kind = ANY(${options.kinds}::text[])
        AND (${only}::int IS NULL OR id = ${only}::int)
        AND ((status = 'queued' AND run_after <= now())
             OR (status = 'running' AND locked_until < now() AND attempts < max_attempts))
      ORDER BY id
      LIMIT 1
      FOR UPDATE SKIP LOCKED)
    RETURNING * ${sql.raw(BACKGROUND)}`.execute(db)
  return rows[0] ?? null
}

/** Fails running jobs whose lease expired after their last allowed attempt; returns them for their onFailed hooks. */
export async function failAbandonedJobs(db: Kysely<DB>, kinds: string[]): Promise<Job[]> {
  const { rows } = await sql<Job>`
    UPDATE jobs SET status = 'failed', error = ${INTERRUPTED_ERROR}, error_params = NULL, locked_by = NULL,
                    locked_until = NULL, finished_at = now(), updated_at = now()
    WHERE id IN (
      SELECT id FROM jobs
      WHERE kind = ANY(${kinds}::text[]) AND status = 'running' AND locked_until < now() AND attempts >= max_attempts
      FOR UPDATE SKIP LOCKED)
    RETURNING * ${sql.raw(BACKGROUND)}`.execute(db)
  return rows
}

/** Extends the lease; false when this worker no longer holds the job. */
export async function renewLease(db: Kysely<DB>, jobId: number, workerId: string, leaseMs: number): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({ locked_until: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'` })
    .where('id', '=', jobId)
    .where('locked_by', '=', workerId)
    .where('status', '=', 'running')
    .executeTakeFirst()
  return Number(result.numUpdatedRows) === 1
}

export async function saveProgress(
  db: Kysely<DB>,
  jobId: number,
  workerId: string,
  progress: JobProgress,
  checkpoint: Record<string, unknown> | undefined,
): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({
      progress: JSON.stringify(progress),
      ...(checkpoint !== undefined ? { checkpoint: JSON.stringify(checkpoint) } : {}),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', jobId)
    .where('locked_by', '=', workerId)
    .where('status', '=', 'running')
    .executeTakeFirst()
  return Number(result.numUpdatedRows) === 1
}

export async function completeJob(db: Kysely<DB>, jobId: number, workerId: string, result: Record<string, unknown> | null): Promise<boolean> {
  const updated = await db
    .updateTable('jobs')
    .set({
      status: 'done',
      progress: sql<string>`progress || '{"stage":"done"}'::jsonb`,
      result: result ? JSON.stringify(result) : null,
      error: null,
      error_params: null,
      locked_by: null,
      locked_until: null,
      finished_at: sql<Date>`now()`,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', jobId)
    .where('locked_by', '=', workerId)
    .executeTakeFirst()
  return Number(updated.numUpdatedRows) === 1
}

/** Records a failed attempt: queued again after `retryInMs`, or failed for good when it is null. */
export async function failJob(
  db: Kysely<DB>,
  jobId: number,
  workerId: string,
  failure: JobFailure,
  retryInMs: number | null,
): Promise<boolean> {
  const updated = await db
    .updateTable('jobs')
    .set({
      status: retryInMs === null ? 'failed' : 'queued',
      error: failure.error.slice(0, 2000),
      error_params: failure.params ? JSON.stringify(failure.params) : null,
      run_after: retryInMs === null ? sql<Date>`run_after` : sql<Date>`now() + ${retryInMs} * interval '1 millisecond'`,
      locked_by: null,
      locked_until: null,
      finished_at: retryInMs === null ? sql<Date>`now()` : null,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', jobId)
    .where('locked_by', '=', workerId)
    .executeTakeFirst()
  return Number(updated.numUpdatedRows) === 1
}

/** Gives a job back on shutdown: queued at once, and this attempt does not count. */
export async function releaseJob(db: Kysely<DB>, jobId: number, workerId: string): Promise<boolean> {
  const updated = await db
    .updateTable('jobs')
    .set({
      status: 'queued',
      attempts: sql<number>`greatest(attempts - 1, 0)`,
      run_after: sql<Date>`now()`,
      locked_by: null,
      locked_until: null,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', jobId)
    .where('locked_by', '=', workerId)
    .where('status', '=', 'running')
    .executeTakeFirst()
  return Number(updated.numUpdatedRows) === 1
}

/** Exponential backoff after the n-th failed attempt: base, 3×base, 9×base…, at most 10 minutes. */
export function retryDelayMs(attempts: number, baseMs = 10_000): number {
  return Math.min(600_000, baseMs * 3 ** Math.max(0, attempts - 1))
}

export interface JobRunnerOptions {
  workerId?: string
  /** How often an idle runner looks for work. */
  pollMs?: number
  leaseMs?: number
  progressIntervalMs?: number
  /** First retry delay (see retryDelayMs). */
  retryBaseMs?: number
  /** How long stop() waits for a running handler to notice its aborted signal. */
  stopTimeoutMs?: number
  log?: JobLog
  /** Every progress report, unthrottled (the CLI prints them). */
  onProgress?(job: Job, progress: JobProgress): void
}

class LeaseLost extends Error {}
class ShuttingDown extends Error {}

const silentLog: JobLog = { info() {}, warn() {}, error() {} }

/**
 * Polls for jobs of the kinds it has handlers for and runs them one at a time. `start()` in the
 * server, `runJob(id)` in the CLI; `stop()` aborts the running handler and gives its job back.
 */
export class JobRunner {
  readonly workerId: string
  #db: Kysely<DB>
  #handlers: Record<string, JobHandler>
  #options: Required<Omit<JobRunnerOptions, 'onProgress' | 'workerId' | 'log'>>
  #log: JobLog
  #onProgress: JobRunnerOptions['onProgress']
  #loop: Promise<void> | null = null
  #stopping = false
  #wakeUp: (() => void) | null = null
  #current: { controller: AbortController; done: Promise<unknown>; heartbeat: NodeJS.Timeout } | null = null
  /** Progress rows written (the throttle's effect is visible in tests and metrics). */
  progressWrites = 0

  constructor(db: Kysely<DB>, handlers: Record<string, JobHandler>, options: JobRunnerOptions = {}) {
    this.#db = db
    this.#handlers = handlers
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
    this.#log = options.log ?? silentLog
    this.#onProgress = options.onProgress
    this.#options = {
      pollMs: options.pollMs ?? 1000,
      leaseMs: options.leaseMs ?? 60_000,
      progressIntervalMs: options.progressIntervalMs ?? 1000,
      retryBaseMs: options.retryBaseMs ?? 10_000,
      stopTimeoutMs: options.stopTimeoutMs ?? 10_000,
    }
  }

  get kinds(): string[] {
    return Object.keys(this.#handlers)
  }

  start(): void {
    if (this.#loop) return
    this.#stopping = false
    this.#loop = this.#run()
  }

  /** Looks for work now instead of at the next poll (after enqueueing in this process). */
  wake(): void {
    this.#wakeUp?.()
  }

  /** Stops polling, aborts the running handler and gives its job back (queued, attempt not counted). */
  async stop(): Promise<void> {
    this.#stopping = true
    this.wake()
    const current = this.#current
    let finished = true
    if (current) {
      current.controller.abort(new ShuttingDown('shutting down'))
      let timer: NodeJS.Timeout | undefined
      const waited = await Promise.race([
        current.done.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.#options.stopTimeoutMs))),
      ])
      clearTimeout(timer)
      // A handler that ignores its signal keeps the job until the lease runs out; then another runner resumes it.
      finished = waited
      if (!waited) {
        clearInterval(current.heartbeat)
        this.#log.warn({ workerId: this.workerId }, 'job handler did not stop in time; its lease will expire')
      }
    }
    if (this.#loop && finished) await this.#loop
    this.#loop = null
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      let ran = false
      try {
        ran = (await this.runOnce()) !== null
      } catch (err) {
        this.#log.error({ err }, 'job runner: polling failed')
      }
      if (!ran && !this.#stopping) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.#options.pollMs)
          this.#wakeUp = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        this.#wakeUp = null
      }
    }
  }

  /**
   * Claims one due job (optionally a given one) and runs it; null when there was nothing to do.
   * The polls are BACKGROUND statements (src/db/prepared.ts): every second, found or not, they
   * wait behind students' questions in the embedded database's thread.
   */
  async runOnce(jobId?: number): Promise<Job | null> {
    for (const job of await failAbandonedJobs(this.#db, this.kinds)) {
      this.#log.warn({ jobId: job.id, kind: job.kind, attempts: job.attempts }, 'job crashed too often; failed')
      await this.#failed(job, { error: INTERRUPTED_ERROR, params: null })
    }
    if (this.#stopping && jobId === undefined) return null
    const job = await claimNextJob(this.#db, this.workerId, { kinds: this.kinds, leaseMs: this.#options.leaseMs, jobId })
    if (!job) return null
    await this.#execute(job)
    return (await getJob(this.#db, job.id)) ?? null
  }

  /**
   * Runs one job until it is done or failed for good, waiting through retry backoff, or while
   * another instance holds it. For the CLI: the job is usually one it just enqueued.
   */
  async runJob(jobId: number): Promise<Job> {
    for (;;) {
      const claimed = await this.runOnce(jobId)
      const job = claimed ?? (await getJob(this.#db, jobId))
      if (!job) throw new Error(`job ${jobId} does not exist`)
      if (job.status === 'done' || job.status === 'failed') return job
      if (this.#stopping) return job
      if (!claimed) {
        if (job.status === 'running') this.#onProgress?.(job, job.progress)
        const due = new Date(job.run_after).getTime() - Date.now()
        await new Promise((resolve) => setTimeout(resolve, Math.max(50, Math.min(this.#options.pollMs, due))))
      }
    }
  }

  async #failed(job: Job, failure: JobFailure): Promise<void> {
    try {
      await this.#handlers[job.kind]?.onFailed?.(job, failure, this.#db)
    } catch (err) {
      this.#log.error({ err, jobId: job.id }, 'job failure hook failed')
    }
  }

  async #execute(job: Job): Promise<void> {
    const handler = this.#handlers[job.kind]!
    const controller = new AbortController()
    const db = this.#db
    const workerId = this.workerId
    const { leaseMs, progressIntervalMs } = this.#options
    let pending: { progress: JobProgress; checkpoint?: Record<string, unknown> } | null = null
    let lastWrite = 0
    let lastStage: string | undefined
    let writing: Promise<void> = Promise.resolve()

    const write = (): Promise<void> => {
      if (!pending) return writing
      const { progress, checkpoint } = pending
      pending = null
      lastWrite = Date.now()
      this.progressWrites++
      writing = writing
        .then(() => saveProgress(db, job.id, workerId, progress, checkpoint))
        .then((owned) => {
          if (!owned && !controller.signal.aborted) controller.abort(new LeaseLost('lease lost'))
        })
        .catch((err) => this.#log.warn({ err, jobId: job.id }, 'job progress not saved'))
      return writing
    }

    const heartbeat = setInterval(() => {
      renewLease(db, job.id, workerId, leaseMs)
        .then((owned) => {
          if (!owned && !controller.signal.aborted) controller.abort(new LeaseLost('lease lost'))
        })
        .catch((err) => this.#log.warn({ err, jobId: job.id }, 'job lease not renewed'))
    }, Math.max(10, Math.floor(leaseMs / 3)))

    const ctx: JobContext = {
      db,
      signal: controller.signal,
      progress: (progress, checkpoint) => {
        this.#onProgress?.(job, progress)
        pending = { progress, checkpoint: checkpoint ?? pending?.checkpoint }
        const finished = progress.total !== undefined && progress.done === progress.total
        if (progress.stage !== lastStage || finished || Date.now() - lastWrite >= progressIntervalMs) {
          lastStage = progress.stage
          void write()
        }
      },
      flush: () => write(),
    }

    this.#log.info({ jobId: job.id, kind: job.kind, attempt: job.attempts }, 'job started')
    const done = (async () => {
      try {
        const result = await handler.run(job, ctx)
        await write()
        clearInterval(heartbeat)
        if (controller.signal.aborted) throw controller.signal.reason
        if (await completeJob(db, job.id, workerId, result ?? null)) this.#log.info({ jobId: job.id, kind: job.kind }, 'job done')
      } catch (err) {
        clearInterval(heartbeat)
        await writing
        const reason = controller.signal.aborted ? controller.signal.reason : null
        if (reason instanceof LeaseLost) {
          this.#log.warn({ jobId: job.id }, 'job taken over by another runner; this attempt is dropped')
          return
        }
        if (reason instanceof ShuttingDown) {
          await releaseJob(db, job.id, workerId)
          this.#log.info({ jobId: job.id }, 'job given back for the next start')
          return
        }
        const failure = failureOf(err)
        const final = isPermanent(err) || job.attempts >= job.max_attempts
        const retryIn = final ? null : retryDelayMs(job.attempts, this.#options.retryBaseMs)
        const owned = await failJob(db, job.id, workerId, failure, retryIn)
        this.#log[final ? 'error' : 'warn']({ jobId: job.id, kind: job.kind, error: failure.error, retryIn, err: isPermanent(err) ? undefined : err }, final ? 'job failed' : 'job attempt failed; will retry')
        if (owned && final) await this.#failed(job, failure)
      }
    })()
    this.#current = { controller, done, heartbeat }
    try {
      await done
    } finally {
      this.#current = null
    }
  }
}
