import type { FastifyPluginAsync } from 'fastify'
import type { ServerResponse } from 'node:http'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import type { Database } from '../../db/index.ts'
import type { AnswerBroker, StreamEvent } from '../../services/chat/broker.ts'
import { presentAnswer } from '../../services/chat/present.ts'
import type { AnswerRenderer } from '../../services/chat/renderer.ts'
import { findAnswerForStudent, hasLaterMessages, parseId } from '../../services/chat/conversations.ts'
import { HEARTBEAT_MS, SSE_HEADERS, SSE_HEARTBEAT, SSE_PREAMBLE, parseEventId, sseEvent } from '../../services/chat/sse.ts'
import { escapeHtml } from '../../services/retrieval/snippet.ts'
import { doneView, partialLocals } from './views.ts'

/**
 * GET /chat/:id/messages/:mid/stream — one answer as server-sent events (FRONTEND.md):
 * `token` (HTML to append), `reset` (a fresh, empty text element: another model starts over),
 * `status` (thinking / slow connection), and `done` (the answer partial in its final state, which
 * replaces the streaming element and so ends the stream on the client). Every event but the
 * first status line has an id; a reconnect with Last-Event-ID resumes after it, and gets 204
 * once the answer is finished. Watching never drives generation: the broker answers either way.
 */

const StreamQuery = Type.Object({ after: Type.Optional(Type.String({ maxLength: 15 })) })
const RESET_HTML = '<div class="answer-text" data-sse-swap="token" data-hx-swap="beforeend"></div>'

/**
 * Tokens are written at most every TOKEN_FLUSH_MS per stream: the first at once, those that come
 * meanwhile merged into one event (with the id of the last, so a resume never repeats one). At
 * ~40 tokens/s that is a quarter of the writes (and of the old browser's DOM swaps), and no one
 * reads faster than 10 updates a second.
 */
export const TOKEN_FLUSH_MS = 100

/**
 * Open streams per student on one instance. A page opens one per pending answer and browsers
 * hold at most 6 connections per host, so this is enough for a few tabs; beyond it (a broken
 * client, a script) the stream gets 429, which EventSource does not retry, and the page offers
 * its link to the plain answer page.
 */
export const MAX_STREAMS_PER_STUDENT = 6

// A span keeps leading spaces: htmx parses each token as HTML, where they would be dropped.
const tokenEvent = (text: string, id: number) => sseEvent('token', `<span>${escapeHtml(text)}</span>`, id)

const streamRoutes: FastifyPluginAsync<{ database: Database; broker: AnswerBroker; renderer: AnswerRenderer }> = async (app, { database, broker, renderer }) => {
  const { db } = database
  const open = new Set<ServerResponse>()
  const openPerStudent = new Map<number, number>()
  // Shutdown: browsers reconnect (to another instance) instead of holding this one open.
  app.addHook('preClose', async () => {
    for (const res of open) res.end()
  })

  app.get<{ Params: { id: string; mid: string }; Querystring: Static<typeof StreamQuery> }>(
    '/chat/:id/messages/:mid/stream',
    { preHandler: requireRole('student'), schema: { querystring: StreamQuery } },
    async (request, reply) => {
      const user = request.user!
      const conversationId = parseId(request.params.id)
      const answerId = parseId(request.params.mid, 'message')
      // An answer generated here knows its owner: no database read while the database is busiest.
      const local = broker.stream(answerId)
      const answer =
        user.role === 'student' && local?.owner && local.owner.userId === user.id && local.owner.conversationId === conversationId
          ? { id: answerId, status: local.finished ? 'done' : 'answering', detail: local.owner.detail }
          : await findAnswerForStudent(db, user, conversationId, answerId)
      const lastEventId = parseEventId(request.headers['last-event-id'])
      const finished = answer.status === 'done' || answer.status === 'failed'
      if (finished && lastEventId !== null) {
        const stream = broker.stream(answer.id)
        if (!stream || stream.lastId <= lastEventId) return reply.code(204).header('Cache-Control', 'no-store').send()
      }
      // ?after= comes from a page rendered while the answer was being generated. Once it is
      // finished, the final answer replaces whatever the page shows: send it whatever its id (a
      // stream rebuilt from the database, on another instance or after a restart, numbers anew).
      const after = lastEventId ?? (finished ? 0 : parseEventId(request.query.after)) ?? 0
      const locals = partialLocals(request, reply)
      const t = request.t
      // Counted and checked with no await in between, so simultaneous requests cannot all pass.
      const opened = openPerStudent.get(user.id) ?? 0
      if (opened >= MAX_STREAMS_PER_STUDENT) {
        return reply.code(429).header('Cache-Control', 'no-store').type('text/plain; charset=utf-8').send(t('chat.tooManyStreams'))
      }
      openPerStudent.set(user.id, opened + 1)

      reply.hijack()
      const res = reply.raw
      res.writeHead(200, SSE_HEADERS)
      res.write(SSE_PREAMBLE)
      open.add(res)
      let ended = false
      // Tokens not written yet (see TOKEN_FLUSH_MS).
      let tokens: { id: number; text: string } | null = null
      let lastWrite = 0
      let flushTimer: NodeJS.Timeout | null = null
      let unsubscribe: () => void = () => {}
      const heartbeat = setInterval(() => res.write(SSE_HEARTBEAT), HEARTBEAT_MS)
      const end = () => {
        if (ended) return
        ended = true
        clearInterval(heartbeat)
        if (flushTimer) clearTimeout(flushTimer)
        unsubscribe()
        open.delete(res)
        const left = (openPerStudent.get(user.id) ?? 1) - 1
        if (left > 0) openPerStudent.set(user.id, left)
        else openPerStudent.delete(user.id)
        res.end()
      }
      res.on('close', end)
      // Gone during the read above: 'close' has fired already, and the stream must not stay counted.
      if (res.destroyed) return end()

      // Something arrives at once, so the page knows the stream flows (static/js/chat.js).
      const slow = broker.stream(answer.id)?.slow ?? answer.status === 'queued'
      res.write(sseEvent('status', t(slow ? 'chat.slow' : 'chat.thinking')))

      const flushTokens = () => {
        if (flushTimer) clearTimeout(flushTimer)
        flushTimer = null
        if (!tokens || ended) return
        res.write(tokenEvent(tokens.text, tokens.id))
        tokens = null
        lastWrite = performance.now()
      }
      const send = (event: StreamEvent) => {
        if (ended) return
        if (event.type === 'token') {
          tokens = tokens ? { id: event.id, text: tokens.text + event.text } : { id: event.id, text: event.text }
          const wait = lastWrite + TOKEN_FLUSH_MS - performance.now()
          if (wait <= 0) flushTokens()
          else flushTimer ??= setTimeout(flushTokens, wait)
          return
        }
        flushTokens()
        if (event.type === 'reset') res.write(sseEvent('reset', RESET_HTML, event.id))
        else if (event.type === 'status') res.write(sseEvent('status', t(event.status === 'slow' ? 'chat.slow' : 'chat.thinking'), event.id))
        else {
          const final = event.answer
          // Rendered in the renderer's thread (answers finishing together would stall this one), else here.
          const presented =
            final.status === 'done'
              ? renderer.present(final.content, final.citations, request.lang).catch((err: unknown) => {
                  request.log.warn({ err }, 'answer renderer failed; rendering here')
                  return presentAnswer(final.content, final.citations, t)
                })
              : Promise.resolve(undefined)
          // "More detail" only where the page shows it: on the latest answer (nothing asked since).
          const canMore =
            final.status === 'done' && final.kind === 'llm' && !answer.detail
              ? hasLaterMessages(db, conversationId, answer.id).then((later) => !later, () => false)
              : Promise.resolve(false)
          Promise.all([presented, canMore])
            .then(([rendered, more]) => app.view('chat/_answer', { ...locals, conversationId, answer: doneView(answer.id, final, more, t, rendered) }))
            .then((html: string) => {
              if (!ended) res.write(sseEvent('done', html, event.id))
            })
            .catch((err: unknown) => request.log.error({ err }, 'could not render the finished answer'))
            .finally(end)
        }
      }
      try {
        unsubscribe = await broker.watch(answer.id, after, send)
        if (ended) unsubscribe()
      } catch (err) {
        request.log.error({ err }, 'could not watch answer')
        end()
      }
    },
  )
}
export default streamRoutes
