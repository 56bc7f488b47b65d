import { parentPort, workerData } from 'node:worker_threads'
import { PGlite } from '@electric-sql/pglite'
import { PGLITE_EXTENSIONS } from './index.ts'
import type { PGliteThreadOptions } from './pglite-thread.ts'

/**
 * The database thread (see pglite-thread.ts): one PGlite instance; requests are answered one at
 * a time, in the order they came, except that a transaction keeps the session to itself and
 * background statements (marked BACKGROUND, prepared.ts) wait for the foreground ones.
 */

const options = workerData as PGliteThreadOptions
const port = parentPort!
let pglite: PGlite | null = null
let failed: Error | null = null
const started = PGlite.create({ dataDir: options.dataDir, loadDataDir: options.loadDataDir, extensions: PGLITE_EXTENSIONS }).then(
  (db) => {
    pglite = db
  },
  (err: Error) => {
    failed = err
  },
)

interface Job {
  id: number
  op: string
  arg: unknown
  /** When it was sent (ms since the epoch, sub-millisecond; see now()). */
  at: number
}

// Statements of all connections, in arrival order. While one connection is inside a transaction
// block, only its own run; the others wait their turn (pglite-thread.ts). Of the others, the
// oldest foreground statement runs first: background ones (a finished answer stored, learning
// events, queue polls) wait until none is left, or until they have waited BACKGROUND_MAX_WAIT_MS
// (so a busy database still gets them done). A connection has one statement here at a time, so
// a connection's own statements keep their order.
const waiting: Job[] = []
let owner: number | null = null
let running = false
const BACKGROUND_MAX_WAIT_MS = 500

function connOf(job: Job): number | null {
  return job.op === 'exec' ? (job.arg as { conn: number }).conn : null
}

function isBackground(job: Job): boolean {
  return job.op === 'exec' && (job.arg as { background?: boolean }).background === true
}

/** Index in `waiting` of the job to run next, or -1 when none may run now. */
function next(): number {
  let background = -1
  for (let i = 0; i < waiting.length; i++) {
    const job = waiting[i]!
    // A release or a request of no connection always may run; statements only outside another's transaction.
    const conn = connOf(job)
    if (owner !== null && conn !== null && conn !== owner) continue
    if (!isBackground(job)) return background >= 0 && now() - waiting[background]!.at >= BACKGROUND_MAX_WAIT_MS ? background : i
    if (background < 0) background = i
  }
  return background
}

/** The clock `at` is on: the thread's own performance.now() starts elsewhere than the app's. */
const now = () => performance.timeOrigin + performance.now()

/** Lets the messages that arrived meanwhile join `waiting` before the next pick. */
const messagesIn = () => new Promise<void>((resolve) => setImmediate(resolve))

async function run(job: Job): Promise<{ value: unknown; transfer?: ArrayBuffer[] }> {
  await started
  if (failed) throw failed
  const db = pglite!
  switch (job.op) {
    case 'ready':
      return { value: null }
    case 'exec': {
      const { conn, message } = job.arg as { conn: number; message: Uint8Array }
      try {
        const reply = await db.execProtocolRaw(message)
        return { value: reply, transfer: [reply.buffer as ArrayBuffer] }
      } finally {
        owner = db.isInTransaction() ? conn : null
      }
    }
    case 'release': {
      if (owner === job.arg) {
        if (db.isInTransaction()) await db.exec('ROLLBACK')
        owner = null
      }
      // Its prepared statements (named …_c<id>, prepared.ts) would otherwise stay in the session.
      const { rows } = await db.query<{ name: string }>(`SELECT name FROM pg_prepared_statements WHERE name LIKE $1`, [`%\\_c${job.arg}`])
      for (const { name } of rows) await db.exec(`DEALLOCATE "${name.replace(/"/g, '""')}"`)
      return { value: null }
    }
    case 'dump':
      return { value: await db.dumpDataDir('none') }
    case 'close':
      await db.close()
      return { value: null }
    default:
      throw new Error(`unknown database thread request ${job.op}`)
  }
}

// Diagnostics: with `stats` (BAGSH_DB_STATS=1, config.dbStats) prints to stderr every 10 s, per statement (its SQL's start, or
// the prepared statement's name; 'bg' when background): count, mean wait here and run time (ms),
// and the longest wait.
const STATS = options.stats === true
const stats = new Map<string, { n: number; wait: number; run: number; maxWait: number }>()
function keyOf(job: Job): string {
  if (job.op !== 'exec') return job.op
  return (isBackground(job) ? 'bg ' : '') + statementOf(job)
}
function statementOf(job: Job): string {
  const m = (job.arg as { message: Uint8Array }).message
  const b = Buffer.from(m.buffer, m.byteOffset, m.byteLength)
  const type = String.fromCharCode(b[0]!)
  if (type === 'P') {
    const nameEnd = b.indexOf(0, 5)
    const name = b.toString('utf8', 5, nameEnd)
    const qEnd = b.indexOf(0, nameEnd + 1)
    return (name ? name.slice(0, 12) + ' ' : '') + b.toString('utf8', nameEnd + 1, Math.min(qEnd, nameEnd + 1 + 300)).replace(/\s+/g, ' ').slice(0, 70)
  }
  if (type === 'B') {
    const portalEnd = b.indexOf(0, 5)
    return 'bind ' + b.toString('utf8', portalEnd + 1, b.indexOf(0, portalEnd + 1)).slice(0, 20)
  }
  if (type === 'Q') return b.toString('utf8', 5, Math.min(b.length - 1, 60))
  return type
}
if (STATS) {
  setInterval(() => {
    const rows = [...stats].sort((a, b) => b[1].run + b[1].wait - a[1].run - a[1].wait)
    console.error('DBSTATS ' + JSON.stringify(rows.slice(0, 12).map(([k, v]) => [k, v.n, Math.round(v.wait / v.n), Math.round(v.run / v.n * 10) / 10, Math.round(v.maxWait)])))
    stats.clear()
  }, 10_000).unref()
}

async function pump(): Promise<void> {
  if (running) return
  running = true
  try {
    for (;;) {
      const i = next()
      if (i < 0) return
      const job = waiting.splice(i, 1)[0]!
      const t0 = now()
      try {
        const { value, transfer } = await run(job)
        if (STATS) {
          const k = keyOf(job)
          const st = stats.get(k) ?? { n: 0, wait: 0, run: 0, maxWait: 0 }
          const wait = t0 - job.at
          st.n++
          st.wait += wait
          st.run += now() - t0
          st.maxWait = Math.max(st.maxWait, wait)
          stats.set(k, st)
        }
        port.postMessage({ id: job.id, ok: true, value }, transfer ?? [])
      } catch (err) {
        port.postMessage({ id: job.id, ok: false, message: err instanceof Error ? err.message : String(err) })
      }
      await messagesIn()
    }
  } finally {
    running = false
  }
}

port.on('message', (job: Job) => {
  waiting.push(job)
  void pump()
})
