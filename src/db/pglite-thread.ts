import { EventEmitter } from 'node:events'
import { Worker } from 'node:worker_threads'
import type pg from 'pg'
import { serialize } from 'pg-protocol'
import { Parser } from 'pg-protocol/dist/parser.js'
import { BACKGROUND, PreparingClient } from './prepared.ts'

/**
 * The embedded database (PGlite) in a worker thread, so that Postgres's own CPU work — the
 * query plans, index scans and page I/O of WASM Postgres — runs on another core than the HTTP
 * server, and a busy database never stalls the event loop (token streams, page renders).
 *
 * The worker (pglite-worker.ts) owns the PGlite instance and answers raw wire-protocol bytes
 * with raw wire-protocol bytes. On this side, `threadPgConfig` gives node-postgres a connection
 * object (the same shape as PGlite's own `createPgConfig`) that batches the messages of one
 * query (Parse/Bind/Describe/Execute/Sync) into one round trip and parses the reply with
 * pg-protocol's parser, so node-postgres sees exactly what it would see from a socket.
 *
 * PGlite is one Postgres session. The pool still has many connections, so that the next
 * statements already wait in the thread while this one runs: a connection stays taken until the
 * event loop has read its reply, and under load that takes longer than the statement did, so
 * with few connections the database idled while statements queued in the pool. The thread runs
 * them one at a time, foreground before background (pglite-worker.ts), and while one connection
 * is inside a transaction block it runs only that connection's statements, so a transaction sees
 * nothing of the others — as if it held the only connection. Session state (SET without LOCAL,
 * temp tables) would be shared between the connections: we use none. Named prepared statements
 * (prepared.ts) carry their connection's id, and go when it goes.
 */

export interface PGliteThreadOptions {
  /** On-disk data directory (else in memory). */
  dataDir?: string
  /** Start from a dumped data dir (tests). */
  loadDataDir?: Blob
  /** Print per-statement waits and run times to stderr every 10 s (pglite-worker.ts). */
  stats?: boolean
}

type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string }

export class PGliteThread {
  private readonly worker: Worker
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private nextId = 1
  private dead: Error | null = null
  readonly ready: Promise<void>

  private constructor(options: PGliteThreadOptions) {
    this.worker = new Worker(new URL('./pglite-worker.ts', import.meta.url), { workerData: options })
    // Only in-flight requests keep the process alive (a CLI's last query must not be cut short,
    // and an idle database must not keep a finished process running).
    this.worker.unref()
    this.worker.on('message', (reply: Reply) => {
      const waiter = this.pending.get(reply.id)
      if (!waiter) return
      this.pending.delete(reply.id)
      if (this.pending.size === 0) this.worker.unref()
      if (reply.ok) waiter.resolve(reply.value)
      else waiter.reject(new Error(reply.message))
    })
    const fail = (err: Error) => {
      this.dead ??= err
      for (const waiter of this.pending.values()) waiter.reject(err)
      this.pending.clear()
    }
    this.worker.on('error', fail)
    this.worker.on('exit', (code) => fail(new Error(`the database thread exited (code ${code})`)))
    this.ready = this.call('ready') as Promise<void>
  }

  static async create(options: PGliteThreadOptions = {}): Promise<PGliteThread> {
    const thread = new PGliteThread(options)
    try {
      await thread.ready
    } catch (err) {
      await thread.worker.terminate()
      throw err
    }
    return thread
  }

  private call(op: string, arg?: unknown, transfer: ArrayBuffer[] = []): Promise<unknown> {
    if (this.dead) return Promise.reject(this.dead)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref()
      this.pending.set(id, { resolve, reject })
      // `at`: when it was sent (the thread's clock counts from another origin), for background's wait.
      this.worker.postMessage({ id, op, arg, at: performance.timeOrigin + performance.now() }, transfer)
    })
  }

  /**
   * Wire-protocol messages of connection `conn` in, the backend's reply bytes out. `background`:
   * the thread runs it after the foreground statements waiting with it (see pglite-worker.ts).
   */
  exec(conn: number, message: Uint8Array, background = false): Promise<Uint8Array> {
    return this.call('exec', { conn, message, background }, [message.buffer as ArrayBuffer]) as Promise<Uint8Array>
  }

  /** A connection is gone: a transaction it left open is rolled back, so the others can go on. */
  release(conn: number): Promise<void> {
    return this.call('release', conn) as Promise<void>
  }

  dumpDataDir(): Promise<Blob> {
    return this.call('dump') as Promise<Blob>
  }

  async close(): Promise<void> {
    if (!this.dead) await this.call('close')
    await this.worker.terminate()
  }
}

/** A node-postgres connection backed by the database thread (see PGlite's PglitePgConnection). */
class ThreadConnection extends EventEmitter {
  _connecting = false
  readonly stream = { destroy: () => this.end() }
  parsedStatements = {}
  submittedNamedStatements = {}
  private readonly thread: PGliteThread
  private readonly id: number
  /** Named statements of this connection live in the shared session: their names end in its id (prepared.ts). */
  readonly statementSuffix: string
  private emitMessage = false
  private outbox: Buffer[] = []
  /** The statement in the outbox is marked BACKGROUND (prepared.ts). */
  private outboxBackground = false
  /** Prepared statements of this connection whose SQL is marked BACKGROUND (later calls only bind them). */
  private readonly backgroundStatements = new Set<string>()
  private flushQueued = false
  private chain: Promise<unknown> = Promise.resolve()

  constructor(thread: PGliteThread, id: number) {
    super()
    this.thread = thread
    this.id = id
    this.statementSuffix = `_c${id}`
    this.on('newListener', (event) => {
      if (event === 'message') this.emitMessage = true
    })
  }

  async connect(_port: number, _host: string): Promise<void> {
    this._connecting = true
    await this.thread.ready
    process.nextTick(() => this.emit('readyForQuery'))
  }

  // node-postgres writes a query's messages synchronously; they leave together, in one round trip.
  private send(bytes: Buffer): void {
    this.outbox.push(bytes)
    if (this.flushQueued) return
    this.flushQueued = true
    queueMicrotask(() => this.flush_())
  }

  private flush_(): void {
    this.flushQueued = false
    const parts = this.outbox
    const background = this.outboxBackground
    this.outbox = []
    this.outboxBackground = false
    const length = parts.reduce((n, p) => n + p.length, 0)
    // Its own ArrayBuffer (Buffers may share a pool), handed over to the thread without a copy.
    const message = new Uint8Array(length)
    let offset = 0
    for (const p of parts) {
      message.set(p, offset)
      offset += p.length
    }
    this.chain = this.chain
      .then(() => this.thread.exec(this.id, message, background))
      .then((reply) => {
        new Parser().parse(Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength), (msg) => {
          if (this.emitMessage) this.emit('message', msg)
          this.emit(msg.name === 'error' ? 'errorMessage' : msg.name, msg)
        })
      })
      .catch((err: unknown) => this.emit('error', err))
  }

  requestSsl(): void {}
  startup(_config: unknown): void {}
  cancel(_processId: unknown, _secretKey: unknown): void {}
  password(_password: string): void {}
  sendSASLInitialResponseMessage(mechanism: string, initialResponse: string): void {
    this.send(serialize.sendSASLInitialResponseMessage(mechanism, initialResponse))
  }
  sendSCRAMClientFinalMessage(additionalData: string): void {
    this.send(serialize.sendSCRAMClientFinalMessage(additionalData))
  }
  query(text: string): void {
    if (text.includes(BACKGROUND)) this.outboxBackground = true
    this.send(serialize.query(text))
  }
  parse(query: Parameters<typeof serialize.parse>[0]): void {
    if (query.text.includes(BACKGROUND)) {
      this.outboxBackground = true
      if (query.name) this.backgroundStatements.add(query.name)
    }
    this.send(serialize.parse(query))
  }
  bind(config: Parameters<typeof serialize.bind>[0]): void {
    if (config?.statement && this.backgroundStatements.has(config.statement)) this.outboxBackground = true
    this.send(serialize.bind(config))
  }
  execute(config: Parameters<typeof serialize.execute>[0]): void {
    this.send(serialize.execute(config))
  }
  flush(): void {
    this.send(serialize.flush())
  }
  sync(): void {
    this.send(serialize.sync())
  }
  end(): void {
    this.chain = this.chain.then(() => this.thread.release(this.id).catch(() => {})).then(() => this.emit('end'))
    for (const event of this.eventNames()) if (event !== 'newListener') this.removeAllListeners(event)
    this.emitMessage = false
  }
  close(msg: Parameters<typeof serialize.close>[0]): void {
    this.send(serialize.close(msg))
  }
  describe(msg: Parameters<typeof serialize.describe>[0]): void {
    this.send(serialize.describe(msg))
  }
  sendCopyFromChunk(chunk: Buffer): void {
    this.send(serialize.copyData(chunk))
  }
  endCopyFrom(): void {
    this.send(serialize.copyDone())
  }
  sendCopyFail(msg: string): void {
    this.send(serialize.copyFail(msg))
  }
  ref(): void {}
  unref(): void {}
}

/**
 * Connections in the pool (statements waiting in the thread; see above). Each costs little here,
 * and in the session its prepared statements (prepared.ts), which Postgres plans afresh on every
 * new connection: so the pool keeps its connections when idle (a closed one's are deallocated).
 */
export const THREAD_POOL_SIZE = 16

/** node-postgres Pool options for the database thread. */
export function threadPgConfig(thread: PGliteThread, max = THREAD_POOL_SIZE): pg.PoolConfig {
  let next = 0
  class ThreadClient extends PreparingClient {
    constructor(config?: pg.ClientConfig) {
      super({ ...config, connection: new ThreadConnection(thread, ++next) } as pg.ClientConfig)
    }
  }
  return { Client: ThreadClient, max, idleTimeoutMillis: 0, user: 'postgres', database: 'postgres', password: 'dummy', host: 'localhost', port: 5432 } as pg.PoolConfig
}
