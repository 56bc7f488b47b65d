import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { classesStylesheet } from './katex-styles.ts'

/**
 * The math stylesheet: KaTeX's `katex-swap.min.css` (font-display: swap) with the TrueType
 * fallbacks removed and font URLs versioned, followed by the classes that replace KaTeX's
 * inline styles. Served from our origin by src/routes/math; pages link it only when an answer
 * has math (`RenderedAnswer.hasMath`).
 */

const KATEX_DIST = new URL('../../../node_modules/katex/dist/', import.meta.url)
export const KATEX_FONTS_DIR = fileURLToPath(new URL('fonts/', KATEX_DIST))
export const MATH_CSS_PATH = '/static/math/katex.css'
export const MATH_FONTS_PREFIX = '/static/math/fonts/'
/** Only these font files are served: woff2 for everything current, woff for the rest (no ttf). */
export const FONT_FILE = /^KaTeX_[A-Za-z0-9]+-[A-Za-z0-9]+\.woff2?$/

const katexVersion = (JSON.parse(readFileSync(new URL('../package.json', KATEX_DIST), 'utf8')) as { version: string }).version

function katexCss(): string {
  return readFileSync(new URL('katex-swap.min.css', KATEX_DIST), 'utf8')
}

/** KaTeX's CSS with `,url(fonts/X.ttf) format("truetype")` removed and `?v=<katex version>` on the font URLs. */
export function katexCssWithoutTtf(css = katexCss()): string {
  return css
    .replace(/,\s*url\(fonts\/[^)]+\.ttf\)\s*format\(["']truetype["']\)/g, '')
    .replace(/url\(fonts\/([^)?]+\.woff2?)\)/g, `url(fonts/$1?v=${katexVersion})`)
}

/** Long display formulas scroll sideways inside the answer instead of widening the page on a phone. */
const EXTRA_CSS = '.katex-display>.katex{max-width:100%;overflow-x:auto;overflow-y:hidden;padding:2px 0}\n'

export interface MathStylesheet {
  css: string
  gzip: Buffer
  etag: string
  /** URL with a content hash, safe to cache forever. */
  url: string
}

let built: MathStylesheet | undefined
export function mathStylesheet(): MathStylesheet {
  if (!built) {
    const css = `${katexCssWithoutTtf()}\n${EXTRA_CSS}${classesStylesheet()}`
    const hash = createHash('sha256').update(css).digest('hex').slice(0, 10)
    built = { css, gzip: gzipSync(css, { level: 9 }), etag: `"${hash}"`, url: `${MATH_CSS_PATH}?v=${hash}` }
  }
  return built
}

/** The `href` for `<link rel="stylesheet">` on pages whose answers have math. */
export function mathStylesheetUrl(): string {
  return mathStylesheet().url
}

let cssClasses: Set<string> | undefined
/** Every class KaTeX's stylesheet styles; other KaTeX classes (mord, mbin…) have no effect and are dropped. */
export function katexCssClasses(): Set<string> {
  if (!cssClasses) {
    const css = katexCss().replace(/url\([^)]*\)/g, '')
    cssClasses = new Set([...css.matchAll(/\.([a-zA-Z_][a-zA-Z0-9_-]*)/g)].map((m) => m[1]))
  }
  return cssClasses
}
