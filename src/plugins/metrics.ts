import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type pg from 'pg'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry
  }
}

/** Headers a reverse proxy adds: a request carrying one came from outside, whatever its socket says. */
const PROXY_HEADERS = ['x-forwarded-for', 'forwarded', 'fly-client-ip', 'x-real-ip', 'cf-connecting-ip']

/** Loopback, RFC 1918, link-local, IPv6 unique-local (Fly's private network is fdaa::/16). */
export function isPrivateAddress(address: string | undefined): boolean {
  if (!address) return false
  const ip = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address
  if (isIP(ip) === 4) {
    const [a, b] = ip.split('.').map(Number) as [number, number]
    return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254)
  }
  if (isIP(ip) === 6) {
    const lower = ip.toLowerCase()
    return lower === '::1' || /^f[cd][0-9a-f]{2}:/.test(lower) || /^fe[89ab][0-9a-f]:/.test(lower)
  }
  return false
}

const digest = (value: string) => createHash('sha256').update(value).digest()

/** May this request read /metrics? See Config.metricsToken. */
export function mayReadMetrics(request: FastifyRequest, token: string | null): boolean {
  if (token) {
    const header = request.headers.authorization ?? ''
    const given = header.startsWith('Bearer ') ? header.slice(7).trim() : ''
    return given !== '' && timingSafeEqual(digest(given), digest(token))
  }
  if (PROXY_HEADERS.some((h) => request.headers[h] !== undefined)) return false
  return isPrivateAddress(request.socket.remoteAddress)
}

/** Prometheus text at /metrics: requests by route and status, durations, the DB pool. */
export default fp<{ pool: pg.Pool; token: string | null }>(async (app, opts) => {
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

  app.get('/metrics', { logLevel: 'warn' }, async (request, reply) => {
    // 404 like any unknown path: the public internet is not told there is something here.
    if (!mayReadMetrics(request, opts.token)) return reply.callNotFound()
    reply.header('Content-Type', registry.contentType)
    return registry.metrics()
  })
})
