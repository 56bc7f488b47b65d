import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { i18n } from 'i18next'
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fixedTranslators, pickLanguage, type Language, type Translate } from '../services/i18n.ts'
import { navFor } from '../services/web/paths.ts'

export const LANG_COOKIE = 'bagsh_lang'
export const HTMX_VERSION = '1.9.12'

declare module 'fastify' {
  interface FastifyRequest {
    lang: Language
    t: Translate
    /** True for htmx requests: answer with the fragment, not the whole page. */
    isHtmx: boolean
  }
  interface FastifyReply {
    /** Renders a view inside the base layout with the locals every page needs. */
    page(template: string, data?: Record<string, unknown>, status?: number): Promise<FastifyReply>
  }
}

export interface RenderOptions {
  i18n: i18n
  staticDir: string
}

/** URLs of our static files carry a content hash, so they can be cached forever. */
function assetVersions(staticDir: string): Map<string, string> {
  const versions = new Map<string, string>()
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).isDirectory()) walk(path)
      else versions.set('/' + relative(staticDir, path).split('\\').join('/'), createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 10))
    }
  }
  walk(staticDir)
  return versions
}

export default fp<RenderOptions>(async (app, opts) => {
  const versions = assetVersions(opts.staticDir)
  const asset = (path: string) => {
    const v = versions.get(path)
    if (!v) throw new Error(`unknown static asset ${path}`)
    return `/static${path}?v=${v}`
  }
  const htmxUrl = `/static/vendor/htmx.min.js?v=${HTMX_VERSION}`
  const sseUrl = `/static/vendor/ext/sse.js?v=${HTMX_VERSION}`

  const translators = fixedTranslators(opts.i18n)
  app.decorateRequest('lang', 'mn')
  app.decorateRequest('t', null as unknown as Translate)
  app.decorateRequest('isHtmx', false)

  app.addHook('onRequest', async (request) => {
    request.lang = pickLanguage(request.cookies[LANG_COOKIE], request.headers['accept-language'])
    request.t = translators[request.lang]
    request.isHtmx = request.headers['hx-request'] === 'true'
  })

  app.decorateReply('page', async function (this: FastifyReply, template: string, data = {}, status = 200) {
    const request: FastifyRequest = this.request
    const html = await this.viewAsync(template, {
      t: request.t,
      lang: request.lang,
      user: request.user,
      csrf: request.csrfToken(this),
      path: request.url,
      navItems: request.user ? navFor(request.user.role, request.url) : [],
      asset,
      htmxUrl,
      sseUrl,
      ...data,
    })
    return this.code(status)
      .header('Content-Type', 'text/html; charset=utf-8')
      .header('Cache-Control', 'no-store')
      .header('Vary', 'HX-Request, Cookie, Accept-Language')
      .send(html)
  })
})
