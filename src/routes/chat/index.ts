import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import { FormError } from '../../services/errors.ts'
import { createEmbedder } from '../../services/embeddings/index.ts'
import { createLlm } from '../../services/llm/index.ts'
import { LearningEventBatcher } from '../../services/learning/events.ts'
import { listSubjectNames, subjectNamer, type Subject } from '../../services/library/catalog.ts'
import { AnswerBroker } from '../../services/chat/broker.ts'
import { AnswerWorker } from '../../services/chat/worker.ts'
import { AnswerRenderer } from '../../services/chat/renderer.ts'
import { askTutor } from '../../services/chat/ask.ts'
import { createChatMetrics, statementKind } from '../../services/chat/metrics.ts'
import {
  MAX_QUESTION_LENGTH,
  findConversationForStudent,
  findQuestionAndAnswer,
  findTextbookContext,
  listConversations,
  listMessages,
  parseId,
  validateNewConversation,
  validateQuestion,
  type Conversation,
  type TextbookContext,
} from '../../services/chat/conversations.ts'
import type { StoreQuestionResult } from '../../services/chat/questions.ts'
import type { RouteOptions } from '../index.ts'
import { answerView, dateFormatter, startedAnswerView, turnsOf } from './views.ts'
import streamRoutes from './stream.ts'

export interface ChatRuntime {
  broker: AnswerBroker
  worker: AnswerWorker
  events: LearningEventBatcher
}
// Keyed by the app's HTTP server, the one object every plugin context of an app shares.
const runtimes = new WeakMap<object, ChatRuntime>()

/** The tutor's moving parts of an app (tests drive the worker and flush events through it). */
export function chatRuntime(app: FastifyInstance): ChatRuntime {
  const runtime = runtimes.get(app.server)
  if (!runtime) throw new Error('the chat routes are not registered on this app')
  return runtime
}

// Shapes only (strings, generous lengths); the business rules answer with localized messages.
const NewBody = Type.Object({
  subject: Type.Optional(Type.String({ maxLength: 50 })),
  grade: Type.Optional(Type.String({ maxLength: 20 })),
  question: Type.Optional(Type.String({ maxLength: 20_000 })),
  textbook: Type.Optional(Type.String({ maxLength: 20 })),
  section: Type.Optional(Type.String({ maxLength: 60 })),
  _csrf: Type.Optional(Type.String()),
})
const AskBody = Type.Object({
  question: Type.Optional(Type.String({ maxLength: 20_000 })),
  detail: Type.Optional(Type.String({ maxLength: 5 })),
  _csrf: Type.Optional(Type.String()),
})
const ListQuery = Type.Object({
  page: Type.Optional(Type.String({ maxLength: 6 })),
  textbook: Type.Optional(Type.String({ maxLength: 20 })),
  section: Type.Optional(Type.String({ maxLength: 60 })),
})
// `answer`: set by the streaming answer's fallback link only so that it is a real page load
// (the htmx-pushed URL is the same page); the page ignores it.
const ConversationQuery = Type.Object({ before: Type.Optional(Type.String({ maxLength: 15 })), answer: Type.Optional(Type.String({ maxLength: 15 })) })
type IdParams = { Params: { id: string } }

/**
 * While an answer is pending, the page without JavaScript reloads itself (FRONTEND.md); slower
 * when queued. Never a Refresh header: a browser with JavaScript streams the answer, and a reload
 * would throw away what the student is typing. So it is a <noscript> meta refresh, and
 * static/js/chat.js reloads only browsers that cannot stream (no EventSource).
 */
const REFRESH_SECONDS = 3
const REFRESH_QUEUED_SECONDS = 10

const chatRoutes: FastifyPluginAsync<RouteOptions> = async (app, { config, database }) => {
  const { db } = database
  const metrics = createChatMetrics(app.metrics)
  const stopCounting = database.onStatement((sql) => metrics.dbStatements.inc({ kind: statementKind(sql) }))
  const events = new LearningEventBatcher(db, { onError: (err, pending) => app.log.warn({ err, pending }, 'learning events not written yet') })
  const llm = createLlm(config.llm, { logger: app.log })
  const broker = new AnswerBroker({ db, llm, embedder: createEmbedder(config.embeddings), metrics, events, log: app.log })
  const worker = new AnswerWorker(db, broker, app.log)
  const renderer = new AnswerRenderer()
  runtimes.set(app.server, { broker, worker, events })
  app.addHook('onReady', async () => worker.start())
  app.addHook('preClose', async () => worker.stop())
  app.addHook('onClose', async () => {
    // Running answers get a few seconds, then go back to the queue (server.ts exits after 15 s).
    await broker.shutdown(8000)
    await events.close()
    await llm?.close()
    await renderer.close()
    stopCounting()
  })

  const student = { preHandler: requireRole('student') }
  const deps = { broker, metrics, events }
  const limits = config.chat
  let subjects: Subject[] | null = null
  const loadSubjects = async () => (subjects ??= await listSubjectNames(db))

  interface NewFormState {
    form: { subject: string; grade: string; question: string }
    context: TextbookContext | null
    error?: FormError
    limit?: StoreQuestionResult
  }
  const limitLocals = (limit?: StoreQuestionResult) => ({
    wait: limit?.outcome === 'wait' ? limit.seconds : null,
    daily: limit?.outcome === 'daily' ? limit.limit : null,
  })
  const statusFor = (s: { error?: FormError; limit?: StoreQuestionResult }) => (s.error ? 422 : s.limit ? 429 : 200)
  const retryAfter = (reply: FastifyReply, limit?: StoreQuestionResult) => {
    if (limit?.outcome === 'wait') reply.header('Retry-After', String(limit.seconds))
  }

  const showList = async (reply: FastifyReply, page: number, state: NewFormState) => {
    const user = reply.request.user!
    const [subjectList, list] = await Promise.all([loadSubjects(), listConversations(db, user.id, page)])
    const data = {
      form: state.form,
      context: state.context,
      subjects: subjectList,
      subjectName: subjectNamer(subjectList, reply.request.lang),
      formatDate: dateFormatter(reply.request.lang),
      conversations: list.items,
      hasNext: list.hasNext,
      page,
      fields: state.error?.fields,
      params: state.error?.params,
      maxQuestion: MAX_QUESTION_LENGTH,
      ...limitLocals(state.limit),
    }
    retryAfter(reply, state.limit)
    if (reply.request.isHtmx && (state.error || state.limit)) {
      // htmx: the form is swapped in place of itself (static/js/chat.js lets 422/429 swap).
      reply.header('HX-Retarget', '#new-chat').header('HX-Reswap', 'outerHTML')
      return reply.page('chat/_new', data, statusFor(state))
    }
    return reply.page('chat/index', data, statusFor(state))
  }

  interface AskState {
    question?: string
    error?: FormError
    limit?: StoreQuestionResult
    before?: number | null
  }
  // htmx restoring history (back button, no history cache) wants the whole page, not the fragment.
  const wantsFragment = (reply: FastifyReply) => reply.request.isHtmx && !reply.request.headers['hx-history-restore-request']

  const showConversation = async (reply: FastifyReply, conversation: Conversation, state: AskState = {}) => {
    const [subjectList, { messages, olderBefore }] = await Promise.all([loadSubjects(), listMessages(db, conversation.id, state.before ?? null)])
    const turns = turnsOf(conversation.id, messages, broker, reply.request.t, state.before == null)
    const pending = turns.filter((t) => t.answer.status === 'pending')
    // Not on older turns, nor over a draft the form gives back (a 422 or 429: a reload would lose it).
    const refreshes = pending.length && !wantsFragment(reply) && state.before == null && !state.error && !state.limit
    const refresh = refreshes ? (pending.some((t) => t.answer.slow) ? REFRESH_QUEUED_SECONDS : REFRESH_SECONDS) : null
    const data = {
      conversation,
      turns,
      olderBefore,
      subjectName: subjectNamer(subjectList, reply.request.lang),
      form: { question: state.question ?? '' },
      fields: state.error?.fields,
      params: state.error?.params,
      maxQuestion: MAX_QUESTION_LENGTH,
      fragment: wantsFragment(reply),
      noscriptRefresh: refresh,
      ...limitLocals(state.limit),
    }
    retryAfter(reply, state.limit)
    if (reply.request.isHtmx && (state.error || state.limit)) {
      reply.header('HX-Retarget', '#ask').header('HX-Reswap', 'outerHTML')
      return reply.page('chat/_ask', data, statusFor(state))
    }
    return reply.page(wantsFragment(reply) ? 'chat/_conversation' : 'chat/conversation', data, statusFor(state))
  }

  /** The new turn as an htmx fragment (appended to the conversation), or 303 to the page. */
  const afterAsk = async (reply: FastifyReply, result: StoreQuestionResult & { outcome: 'stored' | 'duplicate' }, question: string) => {
    const { conversationId, answerId } = result
    if (!reply.request.isHtmx) return reply.redirect(`/chat/${conversationId}#answer-${answerId}`, 303)
    const t = reply.request.t
    if (result.outcome === 'stored' && !result.cached) {
      // Just started: everything the fragment shows is known, no need to read it back.
      const answer = startedAnswerView(conversationId, answerId, broker, t)
      return reply.page('chat/_turn', { conversationId, question: { id: result.questionId, content: question }, answer })
    }
    const found = await findQuestionAndAnswer(db, conversationId, answerId)
    return reply.page('chat/_turn', { conversationId, question: found.question, answer: answerView(conversationId, found.answer, broker, true, t) })
  }

  app.get<{ Querystring: Static<typeof ListQuery> }>('/chat', { ...student, schema: { querystring: ListQuery } }, async (request, reply) => {
    const page = /^\d{1,4}$/.test(request.query.page ?? '') ? Math.max(1, Number(request.query.page)) : 1
    const context = await findTextbookContext(db, request.query.textbook, request.query.section)
    const form = { subject: context?.subject ?? '', grade: String(context?.grade ?? request.user!.grade ?? ''), question: '' }
    return showList(reply, page, { form, context })
  })

  app.post<{ Body: Static<typeof NewBody> }>('/chat', { ...student, schema: { body: NewBody } }, async (request, reply) => {
    const body = request.body
    const form = { subject: body.subject ?? '', grade: body.grade ?? '', question: body.question ?? '' }
    const context = await findTextbookContext(db, body.textbook, body.section)
    let created
    try {
      created = await validateNewConversation(db, body, await loadSubjects())
    } catch (err) {
      if (err instanceof FormError) return showList(reply, 1, { form, context, error: err })
      throw err
    }
    const result = await askTutor(db, deps, { user: request.user!, limits, conversation: created, question: created.question })
    if (result.outcome === 'wait' || result.outcome === 'daily') return showList(reply, 1, { form, context, limit: result })
    if (!request.isHtmx) return reply.redirect(`/chat/${result.conversationId}`, 303)
    // htmx: the new conversation replaces the page's main content, and the URL follows.
    reply.header('HX-Push-Url', `/chat/${result.conversationId}`)
    return showConversation(reply, await findConversationForStudent(db, request.user!, result.conversationId))
  })

  app.get<IdParams & { Querystring: Static<typeof ConversationQuery> }>(
    '/chat/:id',
    { ...student, schema: { querystring: ConversationQuery } },
    async (request, reply) => {
      const conversation = await findConversationForStudent(db, request.user!, parseId(request.params.id))
      const before = request.query.before === undefined ? null : parseId(request.query.before, 'message')
      return showConversation(reply, conversation, { before })
    },
  )

  app.post<IdParams & { Body: Static<typeof AskBody> }>('/chat/:id/messages', { ...student, schema: { body: AskBody } }, async (request, reply) => {
    const id = parseId(request.params.id)
    // The conversation is read only to show it again; storing the question checks that it is the student's.
    const conversation = () => findConversationForStudent(db, request.user!, id)
    const detail = request.body.detail === '1'
    const raw = detail ? request.t('chat.detail.question') : request.body.question
    let question: string
    try {
      question = validateQuestion(raw)
    } catch (err) {
      if (err instanceof FormError) return showConversation(reply, await conversation(), { question: raw, error: err })
      throw err
    }
    const result = await askTutor(db, deps, { user: request.user!, limits, conversation: { id }, question, detail })
    if (result.outcome === 'wait' || result.outcome === 'daily') return showConversation(reply, await conversation(), { question: detail ? '' : question, limit: result })
    // A double submit: the turn is already on the page (htmx) or one redirect away.
    if (result.outcome === 'duplicate' && request.isHtmx) return reply.code(204).send()
    return afterAsk(reply, result, question)
  })

  await app.register(streamRoutes, { database, broker, renderer })
}

export default chatRoutes
