import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { attemptLogin } from '../../services/auth/login.ts'
import { isLanguage } from '../../services/i18n.ts'
import { LANG_COOKIE } from '../../plugins/render.ts'
import { homePathFor, safeNextPath } from '../../services/web/paths.ts'
import type { RouteOptions } from '../index.ts'

const LoginBody = Type.Object({
  school: Type.Optional(Type.String({ maxLength: 20 })),
  username: Type.Optional(Type.String({ maxLength: 64 })),
  password: Type.Optional(Type.String({ maxLength: 200 })),
  next: Type.Optional(Type.String({ maxLength: 500 })),
  _csrf: Type.Optional(Type.String()),
})
type LoginBody = Static<typeof LoginBody>
const NextQuery = Type.Object({ next: Type.Optional(Type.String({ maxLength: 500 })) })

const authRoutes: FastifyPluginAsync<RouteOptions> = async (app, { database, secureCookies }) => {
  const { db } = database

  app.get<{ Querystring: Static<typeof NextQuery> }>('/login', { schema: { querystring: NextQuery } }, async (request, reply) => {
    if (request.user) return reply.redirect(homePathFor(request.user.role), 303)
    return reply.page('auth/login', { form: { school: '', username: '' }, next: safeNextPath(request.query.next) })
  })

  app.post<{ Body: LoginBody }>('/login', { schema: { body: LoginBody } }, async (request, reply) => {
    const form = { school: request.body.school ?? '', username: request.body.username ?? '' }
    const next = safeNextPath(request.body.next)
    const password = request.body.password ?? ''
    if (!form.username.trim() || !password) {
      const fields = { ...(form.username.trim() ? {} : { username: 'auth.required' }), ...(password ? {} : { password: 'auth.required' }) }
      return reply.page('auth/login', { form, next, fields }, 422)
    }
    const result = await attemptLogin(db, { ...form, password, ip: request.ip })
    if (!result.ok) {
      if (result.reason === 'throttled') {
        const minutes = Math.ceil(result.retryAfterSeconds / 60)
        reply.header('Retry-After', String(result.retryAfterSeconds))
        return reply.page('auth/login', { form, next, error: request.t('auth.throttled', { minutes }) }, 429)
      }
      return reply.page('auth/login', { form, next, error: request.t('auth.invalid') }, 401)
    }
    await reply.startSession(result.userId, result.role)
    return reply.redirect(next ?? homePathFor(result.role), 303)
  })

  app.post('/logout', async (request, reply) => {
    await reply.endSession()
    return reply.redirect('/login', 303)
  })

  // Switching language only sets a cookie, so a plain link is enough (works without JS).
  app.get<{ Params: { lang: string }; Querystring: Static<typeof NextQuery> }>(
    '/lang/:lang',
    { schema: { querystring: NextQuery } },
    async (request, reply) => {
      if (!isLanguage(request.params.lang)) return reply.callNotFound()
      reply.setCookie(LANG_COOKIE, request.params.lang, {
        path: '/',
        sameSite: 'lax',
        httpOnly: true,
        secure: secureCookies,
        maxAge: 365 * 24 * 3600,
      })
      return reply.redirect(safeNextPath(request.query.next) ?? '/', 303)
    },
  )
}
export default authRoutes
