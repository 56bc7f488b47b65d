import fp from 'fastify-plugin'
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { DomainError } from '../services/errors.ts'

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "media-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

export const CSRF_COOKIE = 'bagsh_csrf'
export const CSRF_FIELD = '_csrf'
export const CSRF_HEADER = 'x-csrf-token'

declare module 'fastify' {
  interface FastifyRequest {
    /** The token to put in forms (hidden `_csrf`) and htmx headers. */
    csrfToken(reply: FastifyReply): string
  }
  interface FastifyContextConfig {
    /** Set false only for endpoints that do not change state through a browser session. */
    csrf?: boolean
  }
}

export interface SecurityOptions {
  secret: string
  secureCookies: boolean
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Security headers on every response, and CSRF protection on every state-changing request:
 * double-submit of a random cookie, the form carrying an HMAC of it under the app secret, so
 * it works without JavaScript and a forged cookie alone is useless.
 */
export default fp<SecurityOptions>(async (app, opts) => {
  const sign = (value: string) => createHmac('sha256', opts.secret).update(`csrf:${value}`).digest('base64url')

  app.decorateRequest('csrfToken', function (this: FastifyRequest, reply: FastifyReply) {
    let value = this.cookies[CSRF_COOKIE]
    if (!value || !/^[A-Za-z0-9_-]{16,64}$/.test(value)) {
      value = randomBytes(18).toString('base64url')
      this.cookies[CSRF_COOKIE] = value
      reply.setCookie(CSRF_COOKIE, value, { path: '/', httpOnly: true, sameSite: 'lax', secure: opts.secureCookies })
    }
    return sign(value)
  })

  app.addHook('preHandler', async (request) => {
    if (SAFE_METHODS.has(request.method) || request.routeOptions.config?.csrf === false) return
    const cookie = request.cookies[CSRF_COOKIE]
    const body = request.body as Record<string, unknown> | undefined
    const sent = request.headers[CSRF_HEADER] ?? (body && typeof body === 'object' ? body[CSRF_FIELD] : undefined)
    if (!cookie || typeof sent !== 'string') throw new DomainError(403, 'errors.csrf')
    const expected = Buffer.from(sign(cookie))
    const actual = Buffer.from(sent)
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) throw new DomainError(403, 'errors.csrf')
  })

  app.addHook('onSend', async (request, reply) => {
    reply.header('X-Request-Id', request.id)
    reply.header('Content-Security-Policy', CSP)
    reply.header('X-Frame-Options', 'DENY')
    reply.header('X-Content-Type-Options', 'nosniff')
    reply.header('Referrer-Policy', 'strict-origin-when-cross-origin')
    reply.header('Permissions-Policy', 'microphone=(self), camera=()')
    reply.header('Cross-Origin-Opener-Policy', 'same-origin')
    if (request.protocol === 'https') reply.header('Strict-Transport-Security', 'max-age=31536000; includeSubDomains')
  })
})
