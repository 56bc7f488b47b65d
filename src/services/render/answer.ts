import markdownIt, { type Env, type MarkdownIt, type StateCore, type Token } from 'markdown-it'
import { createI18n, type Translate } from '../i18n.ts'
import { MATH_MARKER, mathPlugin, type MathEnv } from './math.ts'
import { EXTERNAL_REL, isExternalHref, isSafeHref, sanitizeAnswerHtml } from './sanitize.ts'

/**
 * Model output (markdown + LaTeX math, untrusted) → small, safe HTML for an answer.
 * markdown-it (no raw HTML, linkify, no typographer, newlines kept as <br>), math typeset on the
 * server by KaTeX, `[n]` citation markers linked to textbook pages, then sanitize-html with an
 * allowlist. Bounded: input, expressions and nesting are capped, with a visible note.
 */

export interface Citation {
  /** The number the model writes, `[n]`. */
  n: number
  /** Where it leads, e.g. `/library/12?page=34#p-34`; must be relative or http(s). */
  href: string
  /** Shown as the link's tooltip, e.g. the textbook title and page. */
  label: string
}

export interface RenderAnswerOptions {
  citations?: Citation[]
  /** Translations for the notes (truncation); Mongolian when omitted. */
  t?: Translate
  /** The level the answer's top heading becomes (default 3: the page has its h1, the conversation h2). */
  headingLevel?: number
}

export interface RenderedAnswer {
  html: string
  /** The HTML uses KaTeX: link `mathStylesheetUrl()` on the page. */
  hasMath: boolean
  /** Something was cut or left as source because of the limits (a note says so in the HTML). */
  truncated: boolean
}

/** Longer input is cut (at a line break when one is near): ~5× a 1024-token answer. */
export const MAX_INPUT_CHARS = 24_000
/** Deeper nesting (lists, quotes, emphasis) is dropped by markdown-it. */
export const MAX_NESTING = 20

interface AnswerEnv {
  math: MathEnv
  citations: Map<number, Citation>
  headingLevel: number
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')

/** Links we would not keep lose their link (their text stays); external ones get rel. */
function safeLinks(state: StateCore): void {
  for (const block of state.tokens) {
    if (block.type !== 'inline' || !block.children) continue
    let hiding = false
    for (const token of block.children) {
      if (token.type === 'link_open') {
        const href = String(token.attrGet('href') ?? '')
        hiding = !isSafeHref(href)
        token.hidden = hiding
        if (!hiding && isExternalHref(href)) token.attrSet('rel', EXTERNAL_REL)
      } else if (token.type === 'link_close') {
        token.hidden = hiding
        hiding = false
      }
    }
  }
}

export const CITATION = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g

/** `[1]`, `[1, 2]` in text (not in code, math or links) become links when the caller knows those numbers. */
function citations(state: StateCore): void {
  const env = state.env as unknown as AnswerEnv
  if (!env.citations.size) return
  for (const block of state.tokens) {
    if (block.type !== 'inline' || !block.children) continue
    const out: Token[] = []
    let inLink = 0
    for (const token of block.children) {
      if (token.type === 'link_open') inLink++
      if (token.type === 'link_close') inLink--
      if (token.type !== 'text' || inLink > 0 || !token.content.includes('[')) {
        out.push(token)
        continue
      }
      let last = 0
      const text = token.content
      for (const m of text.matchAll(CITATION)) {
        const numbers = m[1].split(',').map((s) => Number(s.trim()))
        if (!numbers.every((n) => env.citations.has(n))) continue
        if (m.index > last) out.push(textToken(state, text.slice(last, m.index)))
        if (numbers.length === 1) {
          out.push(citeToken(state, numbers[0], `[${numbers[0]}]`))
        } else {
          out.push(textToken(state, '['))
          numbers.forEach((n, i) => {
            if (i) out.push(textToken(state, ', '))
            out.push(citeToken(state, n, String(n)))
          })
          out.push(textToken(state, ']'))
        }
        last = m.index + m[0].length
      }
      if (last === 0) out.push(token)
      else if (last < text.length) out.push(textToken(state, text.slice(last)))
    }
    block.children = out
  }
}

function textToken(state: StateCore, content: string): Token {
  const t = new state.Token('text', '', 0)
  t.content = content
  return t
}

function citeToken(state: StateCore, n: number, text: string): Token {
  const t = new state.Token('cite', 'a', 0)
  t.content = text
  t.meta = { n }
  return t
}

const ALIGN_CLASS: Record<string, string> = { 'text-align:left': 'al-l', 'text-align:center': 'al-c', 'text-align:right': 'al-r' }

/**
 * Headings go under the page's own: the answer's highest level becomes `headingLevel`, and no
 * heading is more than one level deeper than the one before (the validator rejects skips).
 * Table alignment becomes classes (CSP forbids style=""), header cells get a scope.
 */
function structure(state: StateCore): void {
  const env = state.env as unknown as AnswerEnv
  const levels = [...new Set(state.tokens.filter((t) => t.type === 'heading_open').map((t) => Number(t.tag.slice(1))))].sort()
  let previous = env.headingLevel - 1
  let inHead = false
  for (const token of state.tokens) {
    if (token.type === 'heading_open') {
      const wanted = env.headingLevel + levels.indexOf(Number(token.tag.slice(1)))
      previous = Math.min(6, wanted, previous + 1)
      token.tag = `h${previous}`
    } else if (token.type === 'heading_close') token.tag = `h${previous}`
    else if (token.type === 'thead_open') inHead = true
    else if (token.type === 'thead_close') inHead = false
    else if (token.type === 'th_open' || token.type === 'td_open') {
      const style = String(token.attrGet('style') ?? '')
      token.attrs = null
      if (style && ALIGN_CLASS[style]) token.attrSet('class', ALIGN_CLASS[style])
      if (token.type === 'th_open') token.attrSet('scope', inHead ? 'col' : 'row')
    }
  }
}

function createMarkdown(): MarkdownIt {
  const md = markdownIt('default', { html: false, linkify: true, typographer: false, breaks: true, maxNesting: MAX_NESTING })
  md.linkify.set({ fuzzyEmail: false })
  // No images: an external one would leak the reader to a third party (and CSP blocks it anyway).
  md.disable(['image'])
  md.use(mathPlugin)
  // Every link is judged in `safeLinks`, which keeps a refused link's text rather than its markdown source.
  md.validateLink = () => true
  md.core.ruler.push('bagsh_safe_links', safeLinks)
  md.core.ruler.push('bagsh_citations', citations)
  md.core.ruler.push('bagsh_structure', structure)
  md.renderer.rules.cite = (tokens, idx, _o, env) => {
    const token = tokens[idx]
    const citation = (env as unknown as AnswerEnv).citations.get(token.meta?.n as number)
    if (!citation || !isSafeHref(citation.href)) return escapeHtml(token.content)
    return `<a class="cite" href="${escapeHtml(citation.href)}" title="${escapeHtml(citation.label)}">${escapeHtml(token.content)}</a>`
  }
  return md
}

let md: MarkdownIt | undefined
let mongolian: Translate | undefined

/** Cuts at the limit, preferring a line break in the last 2,000 characters, never inside a surrogate pair. */
function cut(text: string, limit: number): string {
  let end = text.lastIndexOf('\n', limit)
  if (end < limit - 2000) end = limit
  const code = text.charCodeAt(end - 1)
  if (code >= 0xd800 && code <= 0xdbff) end--
  return text.slice(0, end)
}

export function renderAnswer(markdown: string, opts: RenderAnswerOptions = {}): RenderedAnswer {
  md ??= createMarkdown()
  const t = opts.t ?? (mongolian ??= createI18n().getFixedT('mn'))
  let source = typeof markdown === 'string' ? markdown : String(markdown ?? '')
  let truncated = false
  if (source.length > MAX_INPUT_CHARS) {
    source = cut(source, MAX_INPUT_CHARS)
    truncated = true
  }
  // Control characters (other than tab and newline) have no business in an answer.
  source = source.replace(/\r\n?/g, '\n').replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '')
  const citations = new Map<number, Citation>()
  for (const c of opts.citations ?? []) if (Number.isInteger(c.n) && c.n > 0) citations.set(c.n, c)
  const headingLevel = Math.max(2, Math.min(6, Math.trunc(opts.headingLevel ?? 3)))
  // Formulas come back as markers, sanitized apart (math.ts, typesetMath) and put back after the rest is.
  const env: AnswerEnv = { math: { count: 0, chars: 0, html: 0, used: false, skipped: 0, fragments: [] }, citations, headingLevel }

  let html = md.render(source, env as unknown as Env)
  if (truncated) html += `<p class="answer-note">${escapeHtml(t('render.truncated'))}</p>\n`
  if (env.math.skipped) html += `<p class="answer-note">${escapeHtml(t('render.mathLimited', { count: env.math.skipped }))}</p>\n`
  const fragments = env.math.fragments!
  const safe = sanitizeAnswerHtml(html).replace(MATH_MARKER, (_, i: string) => fragments[Number(i)] ?? '')
  return { html: safe, hasMath: env.math.used, truncated: truncated || env.math.skipped > 0 }
}
