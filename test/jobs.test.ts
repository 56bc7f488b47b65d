import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Database } from '../src/db/index.ts'
import {
  claimNextJob,
  enqueueJob,
  getJob,
  INTERRUPTED_ERROR,
  JobRunner,
  retryDelayMs,
  type Job,
  type JobFailure,
  type JobHandler,
} from '../src/services/jobs/queue.ts'
import { freshDatabase } from './helpers/db.ts'

// The durable job queue on a real (embedded) Postgres: claims, leases, retries, crashes and
// shutdown. Every test uses its own job kind, so the tests do not see each other's jobs.

let database: Database
before(async () => {
  database = await freshDatabase()
})
after(async () => {
  await database.close()
})

let kinds = 0
const newKind = () => `test_job_${++kinds}`

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await sleep(20)
  }
}

test('a job runs once, stores its result, and throttles its progress writes', async () => {
  const kind = newKind()
  const seen: Job[] = []
  const runner = new JobRunner(database.db, {
    [kind]: {
      async run(job, ctx) {
        seen.push(job)
        for (let i = 1; i <= 2000; i++) ctx.progress({ stage: 'pages', done: i, total: 2000 })
        return { answer: 42 }
      },
    },
  })
  const id = await enqueueJob(database.db, kind, { hello: 'мир' })
  const job = await runner.runOnce()
  assert.equal(job?.id, id)
  assert.equal(job.status, 'done')
  assert.deepEqual(job.result, { answer: 42 })
  assert.deepEqual(job.progress, { stage: 'done', done: 2000, total: 2000 })
  assert.equal(job.attempts, 1)
  assert.equal(job.locked_by, null)
  assert.ok(job.finished_at)
  assert.deepEqual(seen[0]!.payload, { hello: 'мир' })
  // 2000 reports: the first (new stage) and the last (done = total) are written, not each one.
  assert.ok(runner.progressWrites <= 3, `${runner.progressWrites} progress writes`)
  assert.equal(await runner.runOnce(), null, 'nothing left to do')
})

test('a failing job is retried with backoff, then failed for good with its error', async () => {
  const kind = newKind()
  let calls = 0
  const failures: JobFailure[] = []
  const runner = new JobRunner(
    database.db,
    {
      [kind]: {
        async run() {
          calls++
          throw new Error(`embedding service down (${calls})`)
        },
        async onFailed(_job, failure) {
          failures.push(failure)
        },
      },
    },
    { retryBaseMs: 200 },
  )
  const id = await enqueueJob(database.db, kind, {}, { maxAttempts: 2 })
  let job = (await runner.runOnce())!
  assert.equal(job.status, 'queued')
  assert.equal(job.attempts, 1)
  assert.equal(job.error, 'embedding service down (1)')
  assert.ok(new Date(job.run_after).getTime() > Date.now(), 'waits before the retry')
  assert.equal(await runner.runOnce(), null, 'not due yet')
  await sleep(250)
  job = (await runner.runOnce())!
  assert.equal(job.id, id)
  assert.equal(job.status, 'failed')
  assert.equal(job.attempts, 2)
  assert.equal(job.error, 'embedding service down (2)')
  assert.deepEqual(failures, [{ error: 'embedding service down (2)', params: null }])
  assert.equal(retryDelayMs(1, 1000), 1000)
  assert.equal(retryDelayMs(3, 1000), 9000)
  assert.equal(retryDelayMs(20, 1000), 600_000)
})

test('a permanent error fails the job at once with its i18n key and params', async () => {
  const kind = newKind()
  const failures: JobFailure[] = []
  const runner = new JobRunner(database.db, {
    [kind]: {
      async run() {
        throw Object.assign(new Error('bad input'), { key: 'ingest.errors.scanned', params: { pages: '2–4' }, permanent: true })
      },
      async onFailed(_job, failure) {
        failures.push(failure)
      },
    },
  })
  await enqueueJob(database.db, kind, {})
  const job = (await runner.runOnce())!
  assert.equal(job.status, 'failed')
  assert.equal(job.attempts, 1)
  assert.equal(job.error, 'ingest.errors.scanned')
  assert.deepEqual(job.error_params, { pages: '2–4' })
  assert.equal(failures.length, 1)
})

test('two runners never claim the same job', async () => {
  const kind = newKind()
  const ran: { job: number; worker: string }[] = []
  const handler = (worker: string): JobHandler => ({
    async run(job) {
      ran.push({ job: job.id, worker })
      await sleep(30)
    },
  })
  const a = new JobRunner(database.db, { [kind]: handler('a') }, { workerId: 'a' })
  const b = new JobRunner(database.db, { [kind]: handler('b') }, { workerId: 'b' })
  const ids = [await enqueueJob(database.db, kind, {}), await enqueueJob(database.db, kind, {}), await enqueueJob(database.db, kind, {})]
  await Promise.all([a.runOnce(), b.runOnce(), a.runOnce().then(() => b.runOnce()), b.runOnce()])
  assert.deepEqual(ran.map((r) => r.job).sort((x, y) => x - y), ids, 'each job ran exactly once')
  assert.deepEqual(new Set(ran.map((r) => r.worker)), new Set(['a', 'b']))
})

test('a job whose runner died is resumed by another once its lease expires', async () => {
  const kind = newKind()
  const id = await enqueueJob(database.db, kind, {})
  // A runner claims it, saves a checkpoint, then its process "dies": nobody renews the lease.
  const dead = await claimNextJob(database.db, 'dead-worker', { kinds: [kind], leaseMs: 300 })
  assert.equal(dead?.id, id)
  await database.db.updateTable('jobs').set({ checkpoint: JSON.stringify({ page: 120 }) }).where('id', '=', id).execute()
  const resumedFrom: unknown[] = []
  const runner = new JobRunner(database.db, {
    [kind]: {
      async run(job) {
        resumedFrom.push(job.checkpoint)
        return { resumedAt: job.attempts }
      },
    },
  })
  assert.equal(await runner.runOnce(), null, 'the lease is still held')
  await sleep(350)
  const job = (await runner.runOnce())!
  assert.equal(job.id, id)
  assert.equal(job.status, 'done')
  assert.equal(job.attempts, 2)
  assert.deepEqual(resumedFrom, [{ page: 120 }])
})

test('a job that keeps crashing fails with "interrupted" once its attempts are used up', async () => {
  const kind = newKind()
  const failures: JobFailure[] = []
  const runner = new JobRunner(database.db, {
    [kind]: {
      async run() {
        throw new Error('never runs')
      },
      async onFailed(_job, failure) {
        failures.push(failure)
      },
    },
  })
  const id = await enqueueJob(database.db, kind, {}, { maxAttempts: 1 })
  await claimNextJob(database.db, 'dead-worker', { kinds: [kind], leaseMs: 50 })
  await sleep(80)
  assert.equal(await runner.runOnce(), null)
  const job = (await getJob(database.db, id))!
  assert.equal(job.status, 'failed')
  assert.equal(job.error, INTERRUPTED_ERROR)
  assert.deepEqual(failures, [{ error: INTERRUPTED_ERROR, params: null }])
})

test('a live runner keeps its lease while a handler works longer than the lease', async () => {
  const kind = newKind()
  const runner = new JobRunner(database.db, { [kind]: { run: () => sleep(700).then(() => ({ ok: true })) } }, { leaseMs: 240 })
  const other = new JobRunner(database.db, { [kind]: { run: async () => ({ stolen: true }) } })
  const id = await enqueueJob(database.db, kind, {})
  const running = runner.runOnce()
  await sleep(450)
  assert.equal(await other.runOnce(), null, 'the heartbeat renewed the lease')
  const job = (await running)!
  assert.equal(job.id, id)
  assert.deepEqual(job.result, { ok: true })
})

test('stop() aborts the running handler and gives its job back; the next start finishes it', async () => {
  const kind = newKind()
  let started = false
  const first = new JobRunner(database.db, {
    [kind]: {
      async run(_job, ctx) {
        started = true
        ctx.progress({ stage: 'embedding', done: 3, total: 10 })
        await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)))
      },
    },
  }, { pollMs: 20 })
  const id = await enqueueJob(database.db, kind, {})
  first.start()
  await until(async () => started)
  await first.stop()
  let job = (await getJob(database.db, id))!
  assert.equal(job.status, 'queued')
  assert.equal(job.attempts, 0, 'an attempt cut short by a shutdown does not count')
  assert.equal(job.locked_by, null)

  const second = new JobRunner(database.db, { [kind]: { run: async () => ({ finished: true }) } }, { pollMs: 20 })
  second.start()
  await until(async () => (await getJob(database.db, id))!.status === 'done')
  await second.stop()
  job = (await getJob(database.db, id))!
  assert.deepEqual(job.result, { finished: true })
  assert.equal(job.attempts, 1)
})

test('a started runner picks up new work when woken', async () => {
  const kind = newKind()
  const runner = new JobRunner(database.db, { [kind]: { run: async () => ({ ok: 1 }) } }, { pollMs: 60_000 })
  runner.start()
  await sleep(50)
  const id = await enqueueJob(database.db, kind, {})
  runner.wake()
  await until(async () => (await getJob(database.db, id))!.status === 'done', 3000)
  await runner.stop()
})
