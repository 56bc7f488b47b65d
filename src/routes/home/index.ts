import type { FastifyPluginAsync } from 'fastify'
import { requireRole } from '../../plugins/auth.ts'
import { homePathFor } from '../../services/web/paths.ts'
import type { RouteOptions } from '../index.ts'

const homeRoutes: FastifyPluginAsync<RouteOptions> = async (app) => {
  app.get('/', async (request, reply) => {
    return reply.redirect(request.user ? homePathFor(request.user.role) : '/login', 303)
  })

  app.get('/student', { preHandler: requireRole('student') }, async (_request, reply) => {
    return reply.page('home/student')
  })
}
export default homeRoutes
