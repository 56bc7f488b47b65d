import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ChatMessage } from '../../services/chat/conversations.ts'
import type { AnswerBroker, FinalAnswer } from '../../services/chat/broker.ts'
import { citationPages, citationUrl, presentAnswer, type PresentedAnswer } from '../../services/chat/present.ts'
import { CITATION } from '../../services/render/answer.ts'
import type { Translate } from '../../services/i18n.ts'
import type { Citation } from '../../db/schema.ts'

/** What src/views/chat/_answer.eta shows for one answer. */
export interface AnswerView {
  id: number
  status: 'pending' | 'done' | 'failed'
  /** Pending: the connection is slow or the question waits for a retry. */
  slow: boolean
  /** Pending: the text generated so far (no-JS refresh), and the stream to follow. */
  text: string
  streamUrl: string
  kind: string | null
  cached: boolean
  html: string
  /** The math stylesheet to link, when the answer has math. */
  mathCss: string | null
  citations: (Citation & { url: string; pages: string })[]
  /** The "more detail" button: on the latest answer from the LLM. */
  canMore: boolean
}

export interface TurnView {
  question: { id: number; content: string }
  answer: AnswerView
}

/** Answers still 'answering' after this long show the slow-connection notice (PRODUCT.md). */
const SLOW_AFTER_MS = 30_000

export function streamUrl(conversationId: number, answerId: number, after = 0): string {
  return `/chat/${conversationId}/messages/${answerId}/stream${after ? `?after=${after}` : ''}`
}

/** The passages the answer actually cites ([n] markers); the model may have used only some. */
function citedIn(content: string, citations: Citation[]): Citation[] {
  const cited = new Set([...content.matchAll(CITATION)].flatMap((m) => m[1]!.split(',').map((n) => Number(n.trim()))))
  return citations.filter((c) => cited.has(c.n))
}

function finalView(id: number, answer: FinalAnswer, canMore: boolean, t: Translate, presented?: PresentedAnswer): AnswerView {
  const rendered = answer.status !== 'done' ? { html: '', mathCss: null } : (presented ?? presentAnswer(answer.content, answer.citations, t))
  return {
    id,
    status: answer.status,
    slow: false,
    text: '',
    streamUrl: '',
    kind: answer.kind,
    cached: answer.cached,
    html: rendered.html,
    mathCss: rendered.mathCss,
    citations: citedIn(answer.content, answer.citations).map((c) => ({ ...c, url: citationUrl(c), pages: citationPages(c) })),
    canMore: canMore && answer.status === 'done' && answer.kind === 'llm',
  }
}

export function answerView(conversationId: number, m: ChatMessage, broker: AnswerBroker, latest: boolean, t: Translate): AnswerView {
  if (m.status === 'done' || m.status === 'failed') {
    return finalView(m.id, { status: m.status, content: m.content, citations: m.citations, kind: m.kind, cached: m.cached }, latest && !m.detail, t)
  }
  // Generated here: show the text so far, and let the stream continue after it.
  const stream = broker.stream(m.id)
  const final = stream?.final
  if (final) return finalView(m.id, final, latest && !m.detail, t)
  const text = stream?.text ?? ''
  const slow = stream ? stream.slow : m.status === 'queued' || Date.now() - m.createdAt.getTime() > SLOW_AFTER_MS
  return pendingView(m.id, slow, text, streamUrl(conversationId, m.id, text && stream ? stream.lastId : 0))
}

function pendingView(id: number, slow: boolean, text: string, url: string): AnswerView {
  return { id, status: 'pending', slow, text, streamUrl: url, kind: null, cached: false, html: '', mathCss: null, citations: [], canMore: false }
}

/** An answer the broker just started (no database read): pending, or final if it already is. */
export function startedAnswerView(conversationId: number, answerId: number, broker: AnswerBroker, t: Translate): AnswerView {
  const stream = broker.stream(answerId)
  const final = stream?.final
  if (final) return finalView(answerId, final, true, t)
  return pendingView(answerId, stream?.slow ?? false, '', streamUrl(conversationId, answerId))
}

/** The final state of a streamed answer; `presented`: its HTML rendered elsewhere (the renderer thread). */
export function doneView(answerId: number, answer: FinalAnswer, canMore: boolean, t: Translate, presented?: PresentedAnswer): AnswerView {
  return finalView(answerId, answer, canMore, t, presented)
}

/**
 * Pairs questions with their answers, oldest first. `newest`: the messages are the newest of the
 * conversation (not an older page), so the last answer is the latest one.
 */
export function turnsOf(conversationId: number, messages: ChatMessage[], broker: AnswerBroker, t: Translate, newest = true): TurnView[] {
  const answers = new Map(messages.filter((m) => m.role === 'assistant').map((m) => [m.replyTo, m]))
  const questions = messages.filter((m) => m.role === 'user' && answers.has(m.id))
  return questions.map((q, i) => ({
    question: { id: q.id, content: q.content },
    answer: answerView(conversationId, answers.get(q.id)!, broker, newest && i === questions.length - 1, t),
  }))
}

/** Dates in conversation lists, in the reader's language, on Mongolian time. */
export function dateFormatter(lang: string): (d: Date) => string {
  return (d) => d.toLocaleDateString(lang === 'en' ? 'en-GB' : 'mn-MN', { timeZone: 'Asia/Ulaanbaatar' })
}

/** The locals a chat partial needs when rendered outside `reply.page` (the SSE `done` event). */
export function partialLocals(request: FastifyRequest, reply: FastifyReply) {
  return { t: request.t, lang: request.lang, csrf: request.csrfToken(reply) }
}
