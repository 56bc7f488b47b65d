import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import type { Kysely } from 'kysely'
import type { DB, Role } from '../db/schema.ts'
import {
  createSession,
  generateSessionToken,
  invalidateSession,
  validateSessionToken,
  type Session,
  type SessionUser,
} from '../services/auth/sessions.ts'
import { NotFoundError } from '../services/errors.ts'

export const SESSION_COOKIE = 'bagsh_session'

declare module 'fastify' {
  interface FastifyRequest {
    user: SessionUser | null
    session: Session | null
  }
  interface FastifyReply {
    startSession(userId: number, role: Role): Promise<void>
    endSession(): Promise<void>
  }
}

export interface AuthOptions {
  db: Kysely<DB>
  secureCookies: boolean
  /** Trust a validated session from memory this long (src/services/auth/sessions.ts); 0: off. */
  sessionCacheMs?: number
}

/** Reads the session cookie on every request; routes declare who may enter with `requireRole`. */
export default fp<AuthOptions>(async (app, opts) => {
  const { db } = opts
  app.decorateRequest('user', null)
  app.decorateRequest('session', null)

  const setCookie = (reply: FastifyReply, token: string, session: Session) => {
    reply.setCookie(SESSION_COOKIE, token, {
      path: '/',
      httpOnly: true,
      sameSite: 'lax',
      secure: opts.secureCookies,
      // Students: a browser-session cookie, gone when the lab PC's browser closes.
      expires: session.idleTimeout ? undefined : session.expiresAt,
    })
  }

  app.addHook('onRequest', async (request, reply) => {
    if (request.url.startsWith('/static/')) return
    const token = request.cookies[SESSION_COOKIE]
    if (!token) return
    const result = await validateSessionToken(db, token, { cacheMs: opts.sessionCacheMs ?? 0 })
    if (!result) {
      reply.clearCookie(SESSION_COOKIE, { path: '/' })
      return
    }
    request.user = result.user
    request.session = result.session
    if (!result.session.idleTimeout) setCookie(reply, token, result.session)
  })

  app.decorateReply('startSession', async function (this: FastifyReply, userId: number, role: Role) {
    // A new token on every login: no session fixation.
    const token = generateSessionToken()
    const session = await createSession(db, token, userId, role)
    setCookie(this, token, session)
  })

  app.decorateReply('endSession', async function (this: FastifyReply) {
    const session = this.request.session
    if (session) await invalidateSession(db, session.id)
    this.request.user = null
    this.request.session = null
    this.clearCookie(SESSION_COOKIE, { path: '/' })
  })
})

/**
 * Route guard. Anonymous visitors are sent to the login page; signed-in people without the role
 * get the same 404 as for a page that does not exist, so URLs reveal nothing.
 */
export function requireRole(...roles: Role[]): preHandlerAsyncHookHandler {
  return async function (request: FastifyRequest, reply: FastifyReply) {
    if (!request.user) {
      const next = request.method === 'GET' ? `?next=${encodeURIComponent(request.url)}` : ''
      return reply.redirect(`/login${next}`, 303)
    }
    if (!roles.includes(request.user.role)) throw new NotFoundError()
  }
}
