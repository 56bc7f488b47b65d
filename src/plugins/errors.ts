import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { DomainError } from '../services/errors.ts'

const DB_DOWN_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '53300', '08000', '08003', '08006'])
const SHOWN_STATUSES = new Set([400, 403, 404, 413, 422, 429, 500, 503])

function isDatabaseDown(error: unknown): boolean {
  const err = error as { code?: string; message?: string }
  return (
    (typeof err.code === 'string' && DB_DOWN_CODES.has(err.code)) ||
    /Connection terminated|timeout exceeded when trying to connect|database ping timed out/i.test(err.message ?? '')
  )
}

/** Maps every failure to a localized page with the right status. Never a stack trace. */
export default fp(async (app) => {
  const show = async (request: FastifyRequest, reply: FastifyReply, status: number, message?: string) => {
    const shown = SHOWN_STATUSES.has(status) ? status : status >= 500 ? 500 : 400
    const t = request.t
    if (t) {
      try {
        return await reply.page('errors/error', { status: shown, title: t(`errors.${shown}.title`), message: message ?? t(`errors.${shown}.message`) }, shown)
      } catch (err) {
        request.log.error({ err }, 'error page failed to render')
      }
    }
    // Last resort: still localized-neutral, never a stack trace.
    return reply.code(shown).type('text/plain; charset=utf-8').send(`${shown}`)
  }

  app.setNotFoundHandler(async (request, reply) => show(request, reply, 404))

  app.setErrorHandler(async (error: FastifyError & { rateLimited?: boolean; retryAfterSeconds?: number }, request, reply) => {
    if (error instanceof DomainError) {
      return show(request, reply, error.status, request.t?.(error.messageKey, error.params))
    }
    if (error.rateLimited) {
      const seconds = error.retryAfterSeconds ?? 60
      reply.header('Retry-After', String(seconds))
      return show(request, reply, 429, request.t?.('errors.429.wait', { seconds }))
    }
    if (error.validation) return show(request, reply, 400)
    if (isDatabaseDown(error)) {
      request.log.error({ err: error }, 'database unavailable')
      reply.header('Retry-After', '10')
      return show(request, reply, 503)
    }
    const status = error.statusCode ?? 500
    if (status >= 500) request.log.error({ err: error }, 'request failed')
    else request.log.info({ code: error.code, status }, 'request rejected')
    // 415 (wrong content type) and friends are bad requests from a person's point of view.
    return show(request, reply, status === 413 ? 413 : status)
  })
})
