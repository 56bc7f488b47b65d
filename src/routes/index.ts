import type { FastifyPluginAsync } from 'fastify'
import type { Config } from '../config.ts'
import type { Database } from '../db/index.ts'
import authRoutes from './auth/index.ts'
import homeRoutes from './home/index.ts'
import healthRoutes from './health/index.ts'
import teacherRoutes from './teacher/index.ts'
import schoolRoutes from './school/index.ts'
import adminRoutes from './admin/index.ts'
import mathRoutes from './math/index.ts'
import libraryRoutes from './library/index.ts'
import adminTextbookRoutes from './admin-textbooks/index.ts'
import chatRoutes from './chat/index.ts'

export interface RouteOptions {
  config: Config
  database: Database
  secureCookies: boolean
}

const routes: FastifyPluginAsync<RouteOptions> = async (app, opts) => {
  await app.register(healthRoutes, opts)
  await app.register(authRoutes, opts)
  await app.register(homeRoutes, opts)
  await app.register(teacherRoutes, opts)
  await app.register(schoolRoutes, opts)
  await app.register(adminRoutes, opts)
  await app.register(mathRoutes, opts)
  await app.register(libraryRoutes, opts)
  await app.register(adminTextbookRoutes, opts)
  await app.register(chatRoutes, opts)
}
export default routes
