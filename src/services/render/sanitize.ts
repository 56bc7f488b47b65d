import sanitizeHtml, { type Attributes, type IOptions } from 'sanitize-html'
import { GENERATED_CLASS, styleToClasses, type ConversionStats } from './katex-styles.ts'
import { katexCssClasses } from './assets.ts'

/**
 * The last step of rendering an answer: an allowlist of what markdown-it and KaTeX produce.
 * markdown-it already escapes the model's raw HTML (html: false), so this is the second wall:
 * no script-capable tag or attribute, no `style` (KaTeX's inline styles become classes here),
 * only http(s) and same-origin links, external links marked rel="noopener noreferrer nofollow".
 */

export const EXTERNAL_REL = 'noopener noreferrer nofollow'

/**
 * Whether an href may stay: http(s) URLs and relative references. Rejects every other scheme
 * (javascript:, data:, vbscript:, mailto:…), protocol-relative `//host`, and `/\host` or
 * anything with backslashes, whitespace or control characters (browsers strip or reinterpret
 * those, which is how scheme filters get bypassed).
 */
export function isSafeHref(href: string): boolean {
  if (!href || href.length > 2048) return false
  if (/[\u0000-\u0020\u007f-\u009f\\]/.test(href)) return false
  if (href.startsWith('//')) return false
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(href)
  if (scheme) return /^https?:\/\/[^/]/i.test(href)
  // A colon before any / ? # would make a browser read a scheme we did not recognise.
  const firstDelimiter = href.search(/[/?#]/)
  const colon = href.indexOf(':')
  return colon < 0 || (firstDelimiter >= 0 && colon > firstDelimiter)
}

export const isExternalHref = (href: string) => /^https?:/i.test(href)

/** Classes of our own markup (see math.ts and answer.ts). */
const OWN_CLASSES = ['math', 'math-source', 'katex-error']

function withoutStyle(attribs: Attributes, stats?: ConversionStats): Attributes {
  if (attribs.style === undefined) return attribs
  const { style, ...rest } = attribs
  const classes = styleToClasses(style, stats)
  if (classes.length) rest.class = rest.class ? `${rest.class} ${classes.join(' ')}` : classes.join(' ')
  return rest
}

const SVG_LENGTH = /^(?:\d+(?:\.\d+)?(?:em|%)?)$/
const SVG_PATH = /^[0-9MmLlHhVvCcSsQqTtAaZz.,\s-]*$/

function options(stats?: ConversionStats): IOptions {
  const katexClasses = [...katexCssClasses()]
  return {
    allowedTags: [
      'p', 'br', 'strong', 'em', 's', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li',
      'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'table', 'thead', 'tbody', 'tr', 'th', 'td',
      'a', 'span', 'div', 'svg', 'path', 'line',
    ],
    allowedAttributes: {
      a: ['href', 'rel', 'title'],
      ol: ['start'],
      th: [{ name: 'scope', multiple: false, values: ['col', 'row'] }],
      span: ['title', { name: 'role', multiple: false, values: ['img'] }, { name: 'aria-hidden', multiple: false, values: ['true'] }, 'aria-label'],
      div: [{ name: 'role', multiple: false, values: ['img'] }, 'aria-label'],
      svg: [{ name: 'xmlns', multiple: false, values: ['http://www.w3.org/2000/svg'] }, 'width', 'height', 'viewbox', 'preserveaspectratio'],
      path: ['d'],
      line: ['x1', 'y1', 'x2', 'y2', 'stroke-width'],
    },
    allowedClasses: {
      span: [...katexClasses, GENERATED_CLASS, ...OWN_CLASSES],
      svg: [GENERATED_CLASS],
      div: ['math'],
      a: ['cite'],
      p: ['answer-note'],
      pre: ['math-source'],
      code: ['math-source', /^language-[a-z0-9_+#-]{1,24}$/],
      th: ['al-c', 'al-r', 'al-l'],
      td: ['al-c', 'al-r', 'al-l'],
    },
    allowedSchemes: ['http', 'https'],
    allowedSchemesByTag: {},
    allowedSchemesAppliedToAttributes: ['href'],
    allowProtocolRelative: false,
    disallowedTagsMode: 'discard',
    enforceHtmlBoundary: false,
    parseStyleAttributes: false,
    transformTags: {
      span: (tagName, attribs) => ({ tagName, attribs: withoutStyle(attribs, stats) }),
      svg: (tagName, attribs) => {
        const a = withoutStyle(attribs, stats)
        for (const name of ['width', 'height']) if (a[name] !== undefined && !SVG_LENGTH.test(a[name])) delete a[name]
        return { tagName, attribs: a }
      },
      path: (tagName, attribs) => ({ tagName, attribs: (SVG_PATH.test(attribs.d ?? '') ? { d: attribs.d } : {}) as Attributes }),
      a: (tagName, attribs) => {
        const href = attribs.href
        // A link we would not keep becomes plain text.
        if (href === undefined || !isSafeHref(href)) return { tagName: 'span', attribs: {} }
        const out: Attributes = { href }
        if (attribs.title) out.title = attribs.title
        if (attribs.class) out.class = attribs.class
        if (isExternalHref(href)) out.rel = EXTERNAL_REL
        return { tagName, attribs: out }
      },
    },
  }
}

let defaultOptions: IOptions | undefined

/** Sanitizes rendered answer HTML; pass `stats` to learn which KaTeX styles had no class (tests, vocabulary checks). */
export function sanitizeAnswerHtml(html: string, stats?: ConversionStats): string {
  defaultOptions ??= options()
  // sanitize-html writes void elements XHTML-style; a literal `<br />` can only come from it (text `<` is escaped).
  return sanitizeHtml(html, stats ? options(stats) : defaultOptions).replace(/<(br|hr) \/>/g, '<$1>')
}
