import { Worker } from 'node:worker_threads'
import type { Citation } from '../../db/schema.ts'
import type { Language } from '../i18n.ts'
import type { PresentedAnswer } from './present.ts'

/**
 * Renders finished answers (markdown + KaTeX + sanitizing: ~2 ms for a 300-token answer whose
 * formulas were seen before, ~8 ms when they are new; see decision 007) in a worker thread (render-worker.ts), so that answers finishing together do not
 * stall every other stream and request on the event loop. One worker, started at the first
 * answer; requests are answered in order. If the worker fails, the caller renders in its own
 * thread (presentAnswer) — slower for everyone, never wrong.
 */
export class AnswerRenderer {
  private worker: Worker | null = null
  private readonly pending = new Map<number, { resolve: (v: PresentedAnswer) => void; reject: (e: Error) => void }>()
  private nextId = 1
  private closed = false

  present(markdown: string, citations: Citation[], lang: Language): Promise<PresentedAnswer> {
    if (this.closed) return Promise.reject(new Error('the answer renderer is closed'))
    const worker = this.start()
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) worker.ref()
      this.pending.set(id, { resolve, reject })
      worker.postMessage({ id, markdown, citations, lang })
    })
  }

  private start(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(new URL('./render-worker.ts', import.meta.url))
    worker.unref()
    worker.on('message', (reply: { id: number; ok: true; value: PresentedAnswer } | { id: number; ok: false; message: string }) => {
      const waiter = this.pending.get(reply.id)
      if (!waiter) return
      this.pending.delete(reply.id)
      if (this.pending.size === 0) worker.unref()
      if (reply.ok) waiter.resolve(reply.value)
      else waiter.reject(new Error(reply.message))
    })
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = null // the next answer starts a new one
      for (const waiter of this.pending.values()) waiter.reject(err)
      this.pending.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`the answer renderer exited (code ${code})`)))
    this.worker = worker
    return worker
  }

  async close(): Promise<void> {
    this.closed = true
    const worker = this.worker
    this.worker = null
    if (worker) await worker.terminate()
  }
}
