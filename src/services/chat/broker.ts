import { sql, type Kysely } from 'kysely'
import { BACKGROUND } from '../../db/prepared.ts'
import type { AnswerKind, Citation, DB } from '../../db/schema.ts'
import type { Embedder } from '../embeddings/embedder.ts'
import { AllProvidersFailed, LlmError, LlmRequestRejected, type Llm } from '../llm/types.ts'
import type { LearningEventBatcher } from '../learning/events.ts'
import { retrievePassages, type Passage } from '../retrieval/retrieve.ts'
import { answerState, loadHistory, releaseAnswers, requeueAnswer, storeAnswer, type AnswerJob } from './answers.ts'
import { ANSWER_LEASE_SECONDS } from './questions.ts'
import { countAttempts, type ChatMetrics } from './metrics.ts'
import { offlineAnswer } from './offline.ts'
import { buildChatRequest } from './prompt.ts'

/**
 * The answer broker: generating an answer is decoupled from watching it. `start(job)` runs the
 * retrieval and the LLM stream for one answer in this process; tokens are kept, numbered, in an
 * AnswerStream so any number of watchers (a page's SSE connection, its reconnects with
 * Last-Event-ID) replay and follow it. The answer completes and is stored whether or not anyone
 * watches. Answers generated elsewhere (another instance, or the worker later) are watched by
 * polling their row, one query per poll for all of them.
 */


/** At most this much answer text is kept (max_tokens 2048 is ~10 000 characters). */
export const MAX_ANSWER_CHARS = 30_000

/**
 * One attempt at an answer (retrieval and every model the LLM chain tries) ends within this; then
 * it is aborted and queued for a retry like an answer no provider gave. A long "more detail"
 * answer (2048 tokens) takes under a minute at a usual 40 tokens/s. The deadline must end well
 * before the answer's lease (ANSWER_LEASE_SECONDS, 5 minutes), so that no other instance's worker
 * takes over an answer still running here; the constructor refuses a deadline that does not.
 */
export const ANSWER_DEADLINE_MS = 3 * 60_000
/** Room between the deadline and the lease's end: storing the answer, or queueing it, after it. */
export const LEASE_MARGIN_MS = 60_000

export interface FinalAnswer {
  status: 'done' | 'failed'
  content: string
  citations: Citation[]
  kind: AnswerKind | null
  cached: boolean
}

/**
 * token: answer text to append · reset: drop the text shown so far (another model starts over) ·
 * status: 'slow' (no token for a while, or queued for a retry) · done: the final answer.
 */
export type StreamEvent =
  | { id: number; type: 'token'; text: string }
  | { id: number; type: 'reset' }
  | { id: number; type: 'status'; status: 'slow' | 'working' }
  | { id: number; type: 'done'; answer: FinalAnswer }

type StreamListener = (event: StreamEvent) => void

/** One answer's events in order, with ids 1, 2, 3… for resuming. */
export class AnswerStream {
  readonly answerId: number
  private readonly events: StreamEvent[] = []
  private readonly listeners = new Set<StreamListener>()
  private nextId = 1
  private finishedAt: number | null = null
  /** Generated in this process right now (else: watched by polling the database). */
  generating = false
  /** Whose answer it is, when generated here: lets a watcher be checked without a database read. */
  owner: { userId: number; conversationId: number; detail: boolean } | null = null
  /** Tokens of the current attempt, so late watchers and the no-JS page see the text so far. */
  text = ''
  slow = false

  constructor(answerId: number) {
    this.answerId = answerId
  }

  get lastId(): number {
    return this.nextId - 1
  }

  get final(): FinalAnswer | null {
    const last = this.events.at(-1)
    return last?.type === 'done' ? last.answer : null
  }

  get finished(): boolean {
    return this.finishedAt !== null
  }

  get finishedFor(): number {
    return this.finishedAt === null ? 0 : Date.now() - this.finishedAt
  }

  get watchers(): number {
    return this.listeners.size
  }

  private emit(event: StreamEvent): void {
    this.events.push(event)
    for (const listener of this.listeners) listener(event)
  }

  token(text: string): void {
    if (this.finished || !text) return
    this.text += text
    if (this.slow) this.status('working')
    this.emit({ id: this.nextId++, type: 'token', text })
  }

  /** Starts the text over. Earlier tokens are dropped from the replay buffer. */
  reset(): void {
    if (this.finished) return
    this.text = ''
    const id = this.nextId++
    this.events.splice(0, this.events.length)
    this.emit({ id, type: 'reset' })
  }

  status(status: 'slow' | 'working'): void {
    if (this.finished || this.slow === (status === 'slow')) return
    this.slow = status === 'slow'
    this.emit({ id: this.nextId++, type: 'status', status })
  }

  finish(answer: FinalAnswer): void {
    if (this.finished) return
    this.finishedAt = Date.now()
    this.generating = false
    this.emit({ id: this.nextId++, type: 'done', answer })
    this.listeners.clear()
  }

  /**
   * Sends the events after `afterId` to `listener` at once (consecutive tokens merged into one),
   * then every new one. Returns the unsubscribe function.
   */
  subscribe(listener: StreamListener, afterId = 0): () => void {
    const final = this.events.at(-1)
    if (this.finished && final && final.id > afterId) {
      // The final answer replaces whatever was shown: nothing before it is worth sending.
      listener(final)
      return () => {}
    }
    let merged: { id: number; type: 'token'; text: string } | null = null
    for (const event of this.events) {
      if (event.id <= afterId) continue
      if (event.type === 'token') {
        merged = merged ? { id: event.id, type: 'token', text: merged.text + event.text } : { ...event }
        continue
      }
      if (merged) listener(merged)
      merged = null
      listener(event)
    }
    if (merged) listener(merged)
    if (this.finished) return () => {}
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
}

export interface BrokerLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export interface BrokerOptions {
  db: Kysely<DB>
  /** null: offline mode (answers are textbook passages). */
  llm: Llm | null
  embedder: Embedder
  metrics: ChatMetrics
  events: LearningEventBatcher
  log: BrokerLogger
  /** No token for this long: watchers are told the connection is slow (PRODUCT.md: 30 s). */
  slowAfterMs?: number
  /** How often answers generated elsewhere are checked in the database. */
  pollMs?: number
  /** Finished streams stay replayable this long (reconnects, the no-JS refresh). */
  keepFinishedMs?: number
  /** ANSWER_DEADLINE_MS, shortened by tests. */
  deadlineMs?: number
}

class ShutdownAbort extends Error {}
class DeadlineAbort extends Error {}

export class AnswerBroker {
  private readonly db: Kysely<DB>
  private readonly llm: Llm | null
  private readonly embedder: Embedder
  private readonly metrics: ChatMetrics
  private readonly events: LearningEventBatcher
  private readonly log: BrokerLogger
  private readonly slowAfterMs: number
  private readonly pollMs: number
  private readonly keepFinishedMs: number
  private readonly deadlineMs: number
  private readonly streams = new Map<number, AnswerStream>()
  private readonly running = new Map<number, { controller: AbortController; done: Promise<void> }>()
  private subjectNames: Map<string, string> | null = null
  private pollTimer: NodeJS.Timeout | null = null
  private sweepTimer: NodeJS.Timeout
  private closing = false

  constructor(options: BrokerOptions) {
    this.db = options.db
    this.llm = options.llm
    this.embedder = options.embedder
    this.metrics = options.metrics
    this.events = options.events
    this.log = options.log
    this.slowAfterMs = options.slowAfterMs ?? 30_000
    this.pollMs = options.pollMs ?? 3000
    this.keepFinishedMs = options.keepFinishedMs ?? 120_000
    this.deadlineMs = options.deadlineMs ?? ANSWER_DEADLINE_MS
    if (this.deadlineMs > ANSWER_LEASE_SECONDS * 1000 - LEASE_MARGIN_MS) throw new Error(`an answer's deadline (${this.deadlineMs} ms) must end well before its lease`)
    this.sweepTimer = setInterval(() => this.sweep(), 15_000)
    this.sweepTimer.unref()
  }

  get offline(): boolean {
    return this.llm === null
  }

  /** Answers being generated in this process. */
  get active(): number {
    return this.running.size
  }

  get accepting(): boolean {
    return !this.closing
  }

  stream(answerId: number): AnswerStream | undefined {
    return this.streams.get(answerId)
  }

  /** Starts generating an answer here, unless it already is. Watchers of it keep their stream. */
  start(job: AnswerJob): AnswerStream {
    let stream = this.streams.get(job.answerId)
    if (!stream || stream.finished) {
      stream = new AnswerStream(job.answerId)
      this.streams.set(job.answerId, stream)
    }
    if (this.running.has(job.answerId) || this.closing) return stream
    if (stream.text) stream.reset()
    stream.generating = true
    stream.owner = { userId: job.userId, conversationId: job.conversationId, detail: job.detail }
    const controller = new AbortController()
    const done = this.generate(job, stream, controller.signal).finally(() => {
      this.running.delete(job.answerId)
      stream.generating = false
    })
    this.running.set(job.answerId, { controller, done })
    return stream
  }

  /**
   * Follows an answer from event `afterId` on. Answers not generated here are looked up in the
   * database (finished: their `done` event at once) and then polled until they finish or this
   * process starts generating them. Returns the unsubscribe function.
   */
  async watch(answerId: number, afterId: number, listener: StreamListener): Promise<() => void> {
    let stream = this.streams.get(answerId)
    if (!stream) {
      const row = await answerState(this.db, answerId)
      stream = this.streams.get(answerId)
      if (!stream) {
        stream = new AnswerStream(answerId)
        this.streams.set(answerId, stream)
        if (row && (row.status === 'done' || row.status === 'failed')) {
          stream.finish({ status: row.status, content: row.content, citations: row.citations, kind: row.kind, cached: row.cached })
        } else if (row?.status === 'queued') {
          stream.status('slow')
        }
      }
    }
    const unsubscribe = stream.subscribe(listener, afterId)
    if (!stream.finished) this.ensurePolling()
    return () => {
      unsubscribe()
      if (stream.watchers === 0 && !stream.generating && !stream.finished && this.streams.get(answerId) === stream) this.streams.delete(answerId)
    }
  }

  /**
   * Shutdown: new answers are refused; running ones get `graceMs` to finish, then are aborted
   * and put back in the queue (due at once) for the next instance to answer.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.closing = true
    clearInterval(this.sweepTimer)
    if (this.pollTimer) clearInterval(this.pollTimer)
    this.pollTimer = null
    const all = () => Promise.allSettled([...this.running.values()].map((r) => r.done))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([all(), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))])
    clearTimeout(timer)
    const unfinished = [...this.running.keys()]
    for (const r of this.running.values()) r.controller.abort(new ShutdownAbort('shutting down'))
    await all()
    if (unfinished.length) {
      try {
        await releaseAnswers(this.db, unfinished)
        this.log.info({ answers: unfinished.length }, 'unfinished answers queued for another instance')
      } catch (err) {
        // Their leases run out and the worker of another instance takes them over.
        this.log.error({ err }, 'could not queue unfinished answers')
      }
    }
  }

  private async generate(job: AnswerJob, stream: AnswerStream, signal: AbortSignal): Promise<void> {
    const started = performance.now()
    let slowTimer: NodeJS.Timeout | undefined
    // The attempt's deadline (ANSWER_DEADLINE_MS): the LLM request is aborted, the answer queued.
    const deadline = new AbortController()
    const deadlineTimer = setTimeout(() => deadline.abort(new DeadlineAbort(`no answer within ${this.deadlineMs} ms`)), this.deadlineMs)
    try {
      const history = job.cacheKey ? [] : (job.history ?? (await loadHistory(this.db, job.conversationId, job.questionId)))
      // "More detail" is about the previous question: search for that one.
      const query = job.detail ? ([...history].reverse().find((m) => m.role === 'user')?.content ?? job.question) : job.question
      const passages = await this.retrieve(job, query)
      const retrieved = performance.now()
      this.metrics.turnPhase.observe({ phase: 'retrieve' }, (retrieved - started) / 1000)
      if (job.attempts === 0) this.recordQuestion(job, passages)

      if (!this.llm) {
        const { content, citations } = offlineAnswer(passages)
        const latencyMs = Math.round(performance.now() - started)
        const stored = await storeAnswer(this.db, {
          answerId: job.answerId, schoolId: job.schoolId, content, citations, kind: 'offline', provider: null, model: null,
          promptTokens: null, completionTokens: null, costUsd: null, latencyMs, firstTokenMs: null, cacheKey: null,
        })
        await this.finishStored(stream, stored, { status: 'done', content, citations, kind: 'offline', cached: false })
        if (stored) this.metrics.turns.inc({ outcome: 'offline' })
        return
      }

      const { request, citations } = buildChatRequest({
        question: job.question,
        grade: job.grade,
        subjectName: await this.subjectName(job.subject),
        passages,
        history,
        detail: job.detail,
      })
      request.signal = AbortSignal.any([signal, deadline.signal])
      const armSlow = () => {
        // One timer per answer, pushed back at each token (a new timer per token cost more).
        if (slowTimer) slowTimer.refresh()
        else slowTimer = setTimeout(() => stream.status('slow'), this.slowAfterMs)
      }
      armSlow()
      let text = ''
      const asked = performance.now()
      this.metrics.turnPhase.observe({ phase: 'prompt' }, (asked - retrieved) / 1000)
      let firstToken = true
      for await (const event of this.llm.streamChat(request)) {
        if (event.type === 'token') {
          armSlow()
          if (firstToken) {
            firstToken = false
            const now = performance.now()
            this.metrics.turnPhase.observe({ phase: 'model' }, (now - asked) / 1000)
            if (job.askedAt !== undefined) this.metrics.turnPhase.observe({ phase: 'first_token' }, (now - job.askedAt) / 1000)
          }
          // A provider ignoring max_tokens: what is beyond the cap is dropped, never stored (the
          // column holds 100 000 characters; an answer that cannot be stored would be retried).
          if (text.length >= MAX_ANSWER_CHARS) continue
          const piece = event.text.slice(0, MAX_ANSWER_CHARS - text.length)
          text += piece
          stream.token(piece)
        } else if (event.type === 'restart') {
          text = ''
          stream.reset()
        } else {
          clearTimeout(slowTimer)
          clearTimeout(deadlineTimer)
          countAttempts(this.metrics, event.attempts)
          this.metrics.firstToken.observe(event.firstTokenMs / 1000)
          const stored = await storeAnswer(this.db, {
            answerId: job.answerId,
            schoolId: job.schoolId,
            content: text,
            citations,
            kind: 'llm',
            provider: event.provider,
            model: event.model,
            promptTokens: event.usage.promptTokens,
            completionTokens: event.usage.completionTokens,
            costUsd: event.usage.costUsd,
            latencyMs: Math.round(performance.now() - started),
            firstTokenMs: Math.round(event.firstTokenMs),
            cacheKey: job.cacheKey,
          })
          await this.finishStored(stream, stored, { status: 'done', content: text, citations, kind: 'llm', cached: false })
          if (stored) this.metrics.turns.inc({ outcome: 'answered' })
        }
      }
    } catch (err) {
      clearTimeout(slowTimer)
      if (signal.aborted) return // shutdown: released to the queue by shutdown()
      await this.failed(job, stream, err)
    } finally {
      clearTimeout(slowTimer)
      clearTimeout(deadlineTimer)
    }
  }

  /**
   * Ends the stream with the answer generated here, or — when storing it found the answer
   * already stored (another instance finished it first) — with the one stored, which is what
   * the page shows from now on.
   */
  private async finishStored(stream: AnswerStream, stored: boolean, own: FinalAnswer): Promise<void> {
    if (!stored) {
      const row = await answerState(this.db, stream.answerId).catch(() => undefined)
      if (row && (row.status === 'done' || row.status === 'failed')) {
        this.log.info({ answerId: stream.answerId }, 'answer already stored by another instance')
        stream.finish({ status: row.status, content: row.content, citations: row.citations, kind: row.kind, cached: row.cached })
        return
      }
    }
    stream.finish(own)
  }

  /** No answer this time: queue it for the worker (or give up on a request no model accepts). */
  private async failed(job: AnswerJob, stream: AnswerStream, err: unknown): Promise<void> {
    if (err instanceof LlmError) countAttempts(this.metrics, err.attempts)
    const attempts = job.attempts + 1
    const rejected = err instanceof LlmRequestRejected
    const retryAfterMs = err instanceof AllProvidersFailed ? err.retryAfterMs : null
    this.log.warn({ answerId: job.answerId, attempts, err: err instanceof Error ? err.message : String(err) }, rejected ? 'answer rejected' : 'answer queued for retry')
    try {
      const outcome = await requeueAnswer(this.db, job.answerId, rejected ? Number.MAX_SAFE_INTEGER : attempts, err instanceof Error ? err.message : String(err), retryAfterMs)
      if (outcome === 'failed') {
        stream.finish({ status: 'failed', content: '', citations: [], kind: null, cached: false })
        this.metrics.turns.inc({ outcome: 'failed' })
        return
      }
      this.metrics.turns.inc({ outcome: 'queued' })
    } catch (dbErr) {
      // The lease runs out and the worker retries it.
      this.log.error({ err: dbErr, answerId: job.answerId }, 'could not queue answer for retry')
    }
    if (stream.text) stream.reset()
    stream.status('slow')
    this.ensurePolling()
  }

  private async retrieve(job: AnswerJob, query: string): Promise<Passage[]> {
    try {
      return await retrievePassages(
        this.db,
        { query, grade: job.grade, subject: job.subject, textbookId: job.textbookId, sectionPath: job.sectionPath, limit: 5 },
        this.embedder,
      )
    } catch (err) {
      // The tutor still answers (and says the textbook had nothing) rather than failing.
      this.log.warn({ err, answerId: job.answerId }, 'retrieval failed')
      return []
    }
  }

  private recordQuestion(job: AnswerJob, passages: Passage[]): void {
    const best = passages[0]
    this.events.record({
      userId: job.userId,
      schoolId: job.schoolId,
      kind: 'question',
      subject: job.subject,
      grade: job.grade,
      topic: best ? `${best.textbook.id}:${best.section.path}` : null,
      data: { answerId: job.answerId, detail: job.detail },
    })
  }

  private async subjectName(code: string): Promise<string> {
    if (!this.subjectNames) {
      const rows = await this.db.selectFrom('subjects').select(['code', 'name_mn']).execute()
      this.subjectNames = new Map(rows.map((r) => [r.code, r.name_mn]))
    }
    return this.subjectNames.get(code) ?? code
  }

  /** Polls, in one query, the answers watched here but generated elsewhere (or waiting in the queue). */
  private ensurePolling(): void {
    if (this.pollTimer || this.closing) return
    this.pollTimer = setInterval(() => void this.poll(), this.pollMs)
    this.pollTimer.unref()
  }

  private async poll(): Promise<void> {
    const waiting = [...this.streams.values()].filter((s) => !s.generating && !s.finished)
    if (!waiting.length) {
      if (this.pollTimer) clearInterval(this.pollTimer)
      this.pollTimer = null
      return
    }
    try {
      const rows = await this.db
        .selectFrom('messages')
        .select(['id', 'status', 'content', 'citations', 'kind', 'cached'])
        .where('id', 'in', waiting.map((s) => String(s.answerId)))
        .where('status', 'in', ['done', 'failed'])
        .modifyEnd(sql.raw(BACKGROUND))
        .execute()
      for (const row of rows) {
        const stream = this.streams.get(Number(row.id))
        if (!stream || stream.generating) continue
        stream.finish({ status: row.status as 'done' | 'failed', content: row.content, citations: row.citations, kind: row.kind, cached: row.cached })
      }
    } catch (err) {
      this.log.warn({ err }, 'polling answers failed')
    }
  }

  /** Forgets finished streams after a while, and idle ones nobody watches. */
  private sweep(): void {
    for (const [id, stream] of this.streams) {
      if (stream.finished ? stream.finishedFor > this.keepFinishedMs : !stream.generating && stream.watchers === 0) this.streams.delete(id)
    }
  }
}
