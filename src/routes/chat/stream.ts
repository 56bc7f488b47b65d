import type { FastifyPluginAsync } from 'fastify'
import type { ServerResponse } from 'node:http'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import type { Database } from '../../db/index.ts'
import type { AnswerBroker, StreamEvent } from '../../services/chat/broker.ts'
import { findAnswerForStudent, parseId } from '../../services/chat/conversations.ts'
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

// Token events are the same bytes for every watcher: serialized once.
const wire = new WeakMap<StreamEvent, string>()
function tokenWire(event: StreamEvent & { type: 'token' }): string {
  let text = wire.get(event)
  if (text === undefined) {
    // A span keeps leading spaces: htmx parses each token as HTML, where they would be dropped.
    text = sseEvent('token', `<span>${escapeHtml(event.text)}</span>`, event.id)
    wire.set(event, text)
  }
  return text
}

const streamRoutes: FastifyPluginAsync<{ database: Database; broker: AnswerBroker }> = async (app, { database, broker }) => {
  const { db } = database
  const open = new Set<ServerResponse>()
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
      const answerId = parseId(request.params.mid)
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
      const after = lastEventId ?? parseEventId(request.query.after) ?? 0
      const locals = partialLocals(request, reply)
      const t = request.t

      reply.hijack()
      const res = reply.raw
      res.writeHead(200, SSE_HEADERS)
      res.write(SSE_PREAMBLE)
      open.add(res)
      let ended = false
      let unsubscribe: () => void = () => {}
      const heartbeat = setInterval(() => res.write(SSE_HEARTBEAT), HEARTBEAT_MS)
      const end = () => {
        if (ended) return
        ended = true
        clearInterval(heartbeat)
        unsubscribe()
        open.delete(res)
        res.end()
      }
      res.on('close', end)

      // Something arrives at once, so the page knows the stream flows (static/js/chat.js).
      const slow = broker.stream(answer.id)?.slow ?? answer.status === 'queued'
      res.write(sseEvent('status', t(slow ? 'chat.slow' : 'chat.thinking')))

      const send = (event: StreamEvent) => {
        if (ended) return
        if (event.type === 'token') res.write(tokenWire(event))
        else if (event.type === 'reset') res.write(sseEvent('reset', RESET_HTML, event.id))
        else if (event.type === 'status') res.write(sseEvent('status', t(event.status === 'slow' ? 'chat.slow' : 'chat.thinking'), event.id))
        else {
          const view = doneView(answer.id, event.answer, !answer.detail, t)
          app
            .view('chat/_answer', { ...locals, conversationId, answer: view })
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
