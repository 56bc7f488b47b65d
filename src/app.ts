import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import compress from '@fastify/compress'
import cookie from '@fastify/cookie'
import formbody from '@fastify/formbody'
import rateLimit from '@fastify/rate-limit'
import fastifyStatic from '@fastify/static'
import view from '@fastify/view'
import { Eta } from 'eta'
import { fileURLToPath } from 'node:url'
import { randomUUID } from 'node:crypto'
import type { Config } from './config.ts'
import type { Database } from './db/index.ts'
import { createI18n } from './services/i18n.ts'
import security from './plugins/security.ts'
import auth from './plugins/auth.ts'
import render from './plugins/render.ts'
import metrics from './plugins/metrics.ts'
import errors from './plugins/errors.ts'
import routes from './routes/index.ts'

const VIEWS_DIR = fileURLToPath(new URL('./views/', import.meta.url))
const STATIC_DIR = fileURLToPath(new URL('../static/', import.meta.url))
const HTMX_DIR = fileURLToPath(new URL('../node_modules/htmx.org/dist/', import.meta.url))

export interface AppDeps {
  config: Config
  database: Database
  logger?: FastifyServerOptions['logger']
}

/** JSON logs with request ids; cookies (session tokens) and authorization headers never reach them. */
export function loggerOptions(level: string) {
  return {
    level,
    redact: { paths: ['req.headers.cookie', 'req.headers.authorization', 'res.headers["set-cookie"]'], remove: true },
  }
}

/** Builds the whole app: config → external plugins → our plugins → routes → error handlers. */
export async function buildApp({ config, database, logger }: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: logger ?? loggerOptions(config.logLevel),
    genReqId: (req) => {
      const incoming = req.headers['x-request-id']
      return typeof incoming === 'string' && /^[\w-]{1,64}$/.test(incoming) ? incoming : randomUUID()
    },
    // Fly's proxy terminates TLS and sets X-Forwarded-*.
    trustProxy: config.production,
    bodyLimit: 1024 * 1024,
    routerOptions: { ignoreTrailingSlash: true },
  })
  const secureCookies = config.production

  // Rural links: gzip every text response over 1 KB. SSE streams are hijacked, so never compressed.
  await app.register(compress, { global: true, threshold: 1024, encodings: ['gzip', 'deflate'] })
  await app.register(cookie)
  await app.register(formbody)
  await app.register(rateLimit, {
    max: config.rateLimitPerMinute,
    timeWindow: 60_000,
    allowList: (req) => req.url.startsWith('/static/') || req.url === '/health',
    errorResponseBuilder: (_req, ctx) => ({ statusCode: 429, rateLimited: true, retryAfterSeconds: Math.ceil(ctx.ttl / 1000) }),
  })
  await app.register(view, {
    engine: { eta: new Eta({ views: VIEWS_DIR, cache: config.production, autoTrim: [false, 'nl'] }) },
    templates: VIEWS_DIR,
    production: config.production,
  })
  await app.register(fastifyStatic, {
    root: STATIC_DIR,
    prefix: '/static/',
    immutable: true,
    maxAge: '365d',
    index: false,
  })
  await app.register(fastifyStatic, {
    root: HTMX_DIR,
    prefix: '/static/vendor/',
    decorateReply: false,
    immutable: true,
    maxAge: '365d',
    index: false,
    allowedPath: (path) => path === '/htmx.min.js' || path === '/ext/sse.js',
  })

  await app.register(security, { secret: config.sessionSecret, secureCookies })
  await app.register(metrics, { pool: database.pool, token: config.metricsToken })
  // Language and `reply.page` come before the session lookup, so even a database failure there gets a localized page.
  await app.register(render, { i18n: createI18n(), staticDir: STATIC_DIR })
  await app.register(auth, { db: database.db, secureCookies, sessionCacheMs: config.sessionCacheMs })
  await app.register(errors)
  await app.register(routes, { config, database, secureCookies })
  return app
}
