import katex from 'katex'
import 'katex/contrib/mhchem'
import type { Env, MarkdownIt, StateBlock, StateInline, Token } from 'markdown-it'
import { sanitizeAnswerHtml } from './sanitize.ts'

/**
 * Math in model output: `$…$`, `\(…\)` inline; `$$…$$`, `\[…\]` display (as a block of their
 * own or inside a paragraph). A small markdown-it plugin of our own: the maintained plugins pin
 * markdown-it 14 / KaTeX 0.16 (@mdit/plugin-katex) or are unmaintained (markdown-it-texmath),
 * and we need per-answer limits anyway.
 */

/** KaTeX options for untrusted input: no \href/\url/\htmlClass/\includegraphics, Cyrillic allowed, bounded macros and sizes. */
export const KATEX_OPTIONS = {
  output: 'html',
  throwOnError: false,
  trust: false,
  strict: 'ignore',
  maxSize: 20,
  maxExpand: 1000,
  errorColor: '#cc0000',
} as const

/*
 * Limits per answer (measured in docs/decisions/007-math-rendering-without-inline-styles.md): past them an
 * expression is shown as its source in <code>. KaTeX's HTML is verbose (a display fraction with
 * a root is ~3 KB) and sanitizing costs ~1 µs a byte, so the HTML KaTeX may add is capped too.
 */
/** One expression's source longer than this is shown as source, not typeset. */
export const MAX_TEX_CHARS = 1000
/** Expressions typeset per answer. */
export const MAX_EXPRESSIONS = 200
/** Total TeX characters typeset per answer. */
export const MAX_TOTAL_TEX_CHARS = 12_000
/** Total KaTeX HTML per answer (sanitized). */
export const MAX_KATEX_HTML = 150_000

export interface MathEnv {
  count: number
  chars: number
  /** KaTeX HTML produced so far. */
  html: number
  /** At least one expression went through KaTeX (the page needs the math stylesheet). */
  used: boolean
  /** Some expressions were left as source because of the limits. */
  skipped: number
  /**
   * When present, each expression's (sanitized) KaTeX HTML goes here and the rendered markdown
   * holds a marker for it instead (see mathMarker), put back after the rest is sanitized.
   */
  fragments?: string[]
}

/**
 * Stands for fragment `i` in rendered markdown. Control characters U+0001/U+0002 cannot come from
 * the model's text (renderAnswer strips them first) and pass through sanitize-html as text.
 */
export const mathMarker = (i: number) => `\u0001${i}\u0002`
export const MATH_MARKER = /\u0001(\d+)\u0002/g

/*
 * Typeset and sanitized expressions, most recently used last. KaTeX's HTML is ~90% of an answer
 * with formulas, and sanitizing it (its inline styles turned into classes) cost ~5 ms of a 300-token
 * answer's ~8 ms: an expression is sanitized on its own once, and again only when it has left
 * this cache. Students of a class ask about the same formulas.
 */
const TYPESET_CACHE_ENTRIES = 2000
const typesetCache = new Map<string, string>()

/** KaTeX HTML for `tex`, sanitized (sanitize.ts: styles become classes), from the cache when it can. */
export function typesetMath(tex: string, display: boolean): string {
  const key = (display ? 'D' : 'I') + tex
  let html = typesetCache.get(key)
  if (html !== undefined) {
    typesetCache.delete(key)
  } else {
    html = sanitizeAnswerHtml(renderKatex(tex, display))
    if (typesetCache.size >= TYPESET_CACHE_ENTRIES) typesetCache.delete(typesetCache.keys().next().value!)
  }
  typesetCache.set(key, html)
  return html
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')

/** KaTeX HTML (with its inline styles; the sanitizer turns them into classes). Never throws. */
export function renderKatex(tex: string, display: boolean): string {
  try {
    return katex.renderToString(tex, { ...KATEX_OPTIONS, displayMode: display })
  } catch (err) {
    // throwOnError:false covers parse errors; anything else KaTeX throws still must not break the answer.
    const message = err instanceof Error ? err.message : String(err)
    return `<span class="katex-error" title="${escapeHtml(message.slice(0, 300))}">${escapeHtml(tex)}</span>`
  }
}

function asSource(tex: string, markup: string, block: boolean, env: MathEnv): string {
  env.skipped++
  const closing = markup === '\\(' ? '\\)' : markup === '\\[' ? '\\]' : markup
  const source = escapeHtml(markup + tex + closing)
  return block ? `<pre class="math-source"><code>${source}</code></pre>\n` : `<code class="math-source">${source}</code>`
}

function renderMath(tex: string, markup: string, display: boolean, block: boolean, env: MathEnv): string {
  if (tex.length > MAX_TEX_CHARS || env.count >= MAX_EXPRESSIONS || env.chars + tex.length > MAX_TOTAL_TEX_CHARS || env.html >= MAX_KATEX_HTML) {
    return asSource(tex, markup, block, env)
  }
  env.count++
  env.chars += tex.length
  const html = typesetMath(tex, display)
  if (env.html + html.length > MAX_KATEX_HTML) return asSource(tex, markup, block, env)
  env.html += html.length
  env.used = true
  const label = escapeHtml(tex.trim().replace(/\s+/g, ' '))
  const inner = env.fragments ? mathMarker(env.fragments.push(html) - 1) : html
  // Display math inside a paragraph stays a span (KaTeX's .katex-display is display:block).
  return block
    ? `<div class="math" role="img" aria-label="${label}">${inner}</div>\n`
    : `<span class="math" role="img" aria-label="${label}">${inner}</span>`
}

/** Index of `close` in src[from, limit), skipping backslash pairs (so `\$` and `\\` never close); -1 if absent. */
function findClose(src: string, from: number, limit: number, close: string): number {
  const c0 = close.charCodeAt(0)
  for (let i = from; i < limit; i++) {
    const ch = src.charCodeAt(i)
    if (ch === c0 && src.startsWith(close, i)) {
      if (close !== '$') return i
      // A single closing `$` has no space before it and no digit after it ("$5 and $10" is money).
      const before = src.charCodeAt(i - 1)
      const after = src.charCodeAt(i + 1)
      if (before !== 0x20 && before !== 0x09 && before !== 0x0a && !(after >= 0x30 && after <= 0x39)) return i
    }
    if (ch === 0x5c /* \ */) i++
  }
  return -1
}

/** Search window for a closing delimiter: bounded so runs of unmatched `$` stay linear. */
const SEARCH_WINDOW = MAX_TEX_CHARS + 2

function mathInline(state: StateInline, silent: boolean): boolean {
  const src = state.src
  const start = state.pos
  const ch = src.charCodeAt(start)
  let open: string
  if (ch === 0x5c /* \ */) {
    const next = src.charCodeAt(start + 1)
    if (next === 0x28 /* ( */) open = '\\('
    else if (next === 0x5b /* [ */) open = '\\['
    else return false
  } else if (ch === 0x24 /* $ */) {
    open = src.charCodeAt(start + 1) === 0x24 ? '$$' : '$'
  } else {
    return false
  }
  const close = open === '\\(' ? '\\)' : open === '\\[' ? '\\]' : open
  const from = start + open.length
  if (open === '$') {
    const first = src.charCodeAt(from)
    if (Number.isNaN(first) || first === 0x20 || first === 0x09 || first === 0x0a || first === 0x24) return false
  }
  const end = findClose(src, from, Math.min(state.posMax, from + SEARCH_WINDOW), close)
  if (end < 0) return false
  const content = src.slice(from, end)
  if (!content.trim()) return false
  if (!silent) {
    const token = state.push('math_inline', 'math', 0)
    token.content = content
    token.markup = open
  }
  state.pos = end + close.length
  return true
}

function mathBlock(state: StateBlock, startLine: number, endLine: number, silent: boolean): boolean {
  if (state.sCount[startLine] - state.blkIndent >= 4) return false
  const src = state.src
  const pos = state.bMarks[startLine] + state.tShift[startLine]
  const open = src.startsWith('$$', pos) ? '$$' : src.startsWith('\\[', pos) ? '\\[' : ''
  if (!open) return false
  const close = open === '$$' ? '$$' : '\\]'
  let content = ''
  let line = startLine
  for (; line < endLine; line++) {
    if (line > startLine && state.sCount[line] < state.blkIndent && !state.isEmpty(line)) return false
    const from = line === startLine ? pos + open.length : state.bMarks[line] + state.tShift[line]
    const to = state.eMarks[line]
    const at = findClose(src, from, to, close)
    if (at >= 0) {
      // `$$a$$ and more text` is inline display math inside a paragraph, not a block.
      if (src.slice(at + close.length, to).trim()) return false
      content += src.slice(from, at)
      break
    }
    content += src.slice(from, to) + '\n'
    if (content.length > SEARCH_WINDOW) return false
  }
  if (line >= endLine || !content.trim()) return false
  if (silent) return true
  const token = state.push('math_block', 'math', 0)
  token.block = true
  token.content = content
  token.markup = open
  token.map = [startLine, line + 1]
  state.line = line + 1
  return true
}

/** Registers the math syntax; rendering uses `env.math` (a MathEnv) for the per-answer limits. */
export function mathPlugin(md: MarkdownIt): void {
  md.inline.ruler.before('escape', 'math_inline', mathInline)
  md.block.ruler.before('fence', 'math_block', mathBlock, { alt: ['paragraph', 'reference', 'blockquote', 'list'] })
  const mathEnv = (env: Env | undefined): MathEnv => {
    const e = (env ?? {}) as { math?: MathEnv }
    return (e.math ??= { count: 0, chars: 0, html: 0, used: false, skipped: 0 })
  }
  md.renderer.rules.math_inline = (tokens: Token[], idx: number, _o, env) => {
    const t = tokens[idx]
    return renderMath(t.content, t.markup, t.markup === '$$' || t.markup === '\\[', false, mathEnv(env))
  }
  md.renderer.rules.math_block = (tokens: Token[], idx: number, _o, env) =>
    renderMath(tokens[idx].content, tokens[idx].markup, true, true, mathEnv(env))
}
