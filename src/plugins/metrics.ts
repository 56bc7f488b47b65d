import fp from 'fastify-plugin'
import type pg from 'pg'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry
  }
}

/** Prometheus text at /metrics: requests by route and status, durations, the DB pool. */
export default fp<{ pool: pg.Pool }>(async (app, opts) => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'bagsh_' })
  const requests = new Counter({
    name: 'bagsh_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  })
  const durations = new Histogram({
    name: 'bagsh_http_request_duration_seconds',
    help: 'HTTP request duration by method and route',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  const pool = opts.pool
  new Gauge({
    name: 'bagsh_db_pool_connections',
    help: 'Database pool connections by state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.set({ state: 'total' }, pool.totalCount)
      this.set({ state: 'idle' }, pool.idleCount)
      this.set({ state: 'waiting' }, pool.waitingCount)
    },
  })
  app.decorate('metrics', registry)

  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, never the raw URL: ids would explode the label set.
    const route = request.routeOptions.url ?? 'unmatched'
    requests.inc({ method: request.method, route, status: String(reply.statusCode) })
    durations.observe({ method: request.method, route }, reply.elapsedTime / 1000)
  })

  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    reply.header('Content-Type', registry.contentType)
    return registry.metrics()
  })
})
