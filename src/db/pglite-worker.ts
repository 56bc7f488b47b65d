import { parentPort, workerData } from 'node:worker_threads'
import { PGlite } from '@electric-sql/pglite'
import { PGLITE_EXTENSIONS } from './index.ts'
import type { PGliteThreadOptions } from './pglite-thread.ts'

/**
 * The database thread (see pglite-thread.ts): one PGlite instance; requests are answered one at
 * a time, in the order they came, except that a transaction keeps the session to itself.
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
}

// Statements of all connections, in arrival order. While one connection is inside a transaction
// block, only its own run; the others wait their turn (pglite-thread.ts).
const waiting: Job[] = []
let owner: number | null = null
let running = false

function connOf(job: Job): number | null {
  return job.op === 'exec' ? (job.arg as { conn: number }).conn : null
}

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

async function pump(): Promise<void> {
  if (running) return
  running = true
  try {
    for (;;) {
      // A release or a request of no connection always may run; statements only outside another's transaction.
      const i = waiting.findIndex((job) => owner === null || connOf(job) === null || connOf(job) === owner)
      if (i < 0) return
      const job = waiting.splice(i, 1)[0]!
      try {
        const { value, transfer } = await run(job)
        port.postMessage({ id: job.id, ok: true, value }, transfer ?? [])
      } catch (err) {
        port.postMessage({ id: job.id, ok: false, message: err instanceof Error ? err.message : String(err) })
      }
    }
  } finally {
    running = false
  }
}

port.on('message', (job: Job) => {
  waiting.push(job)
  void pump()
})
