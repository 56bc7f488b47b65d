import type { FastifyPluginAsync } from 'fastify'
import type { RouteOptions } from '../index.ts'

/** Liveness plus a DB round trip. 503 when the database does not answer, so the platform can tell. */
const healthRoutes: FastifyPluginAsync<RouteOptions> = async (app, { config, database }) => {
  app.get('/health', { logLevel: 'warn', config: { rateLimit: false } }, async (_request, reply) => {
    const started = performance.now()
    let db: { ok: boolean; latency_ms?: number; embedded: boolean; error?: string }
    try {
      await database.ping(2000)
      db = { ok: true, latency_ms: Math.round((performance.now() - started) * 10) / 10, embedded: database.embedded }
    } catch {
      db = { ok: false, embedded: database.embedded, error: 'unreachable' }
    }
    return reply
      .code(db.ok ? 200 : 503)
      .header('Cache-Control', 'no-store')
      .send({ status: db.ok ? 'ok' : 'degraded', db, version: config.version })
  })
}
export default healthRoutes
