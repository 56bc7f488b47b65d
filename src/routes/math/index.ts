import type { FastifyPluginAsync } from 'fastify'
import fastifyStatic from '@fastify/static'
import type { RouteOptions } from '../index.ts'
import { FONT_FILE, KATEX_FONTS_DIR, MATH_CSS_PATH, MATH_FONTS_PREFIX, mathStylesheet } from '../../services/render/assets.ts'

const IMMUTABLE = 'public, max-age=31536000, immutable'

/**
 * The math stylesheet (KaTeX's CSS + the classes replacing its inline styles) and KaTeX's
 * woff2/woff fonts, from our origin with immutable caching. Pages link the stylesheet only when
 * an answer has math: `mathStylesheetUrl()` from services/render/assets.ts.
 */
const mathRoutes: FastifyPluginAsync<RouteOptions> = async (app) => {
  const sheet = mathStylesheet()
  app.get(MATH_CSS_PATH, { logLevel: 'warn' }, async (request, reply) => {
    reply.header('Content-Type', 'text/css; charset=utf-8').header('Cache-Control', IMMUTABLE).header('ETag', sheet.etag).header('Vary', 'Accept-Encoding')
    if (request.headers['if-none-match'] === sheet.etag) return reply.code(304).send()
    // Served pre-gzipped: the app has no compression of its own and this file is mostly repetition.
    if (/\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) return reply.header('Content-Encoding', 'gzip').send(sheet.gzip)
    return reply.send(sheet.css)
  })
  await app.register(fastifyStatic, {
    root: KATEX_FONTS_DIR,
    prefix: MATH_FONTS_PREFIX,
    decorateReply: false,
    immutable: true,
    maxAge: '365d',
    index: false,
    allowedPath: (path) => FONT_FILE.test(path.replace(/^\//, '')),
  })
}
export default mathRoutes
