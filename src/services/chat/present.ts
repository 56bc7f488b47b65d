import type { Citation } from '../../db/schema.ts'
import type { Translate } from '../i18n.ts'
import { renderAnswer } from '../render/answer.ts'
import { mathStylesheetUrl } from '../render/assets.ts'

/**
 * How an answer looks on the page: its markdown and math rendered and sanitized by
 * src/services/render (model output is untrusted), `[n]` markers linked to the cited textbook
 * pages, and the math stylesheet's URL when the answer has math.
 */
export interface PresentedAnswer {
  html: string
  /** The stylesheet to link when the answer has math, else null. */
  mathCss: string | null
}

/** The pages of a citation as printed: "14" or "14–15". */
export function citationPages(c: Citation): string {
  return c.pageStart === c.pageEnd ? String(c.pageStart) : `${c.pageStart}–${c.pageEnd}`
}

/** The library page a citation points to. */
export function citationUrl(c: Citation): string {
  return `/library/${c.textbookId}?page=${c.pageStart}#p-${c.pageStart}`
}

export function presentAnswer(markdown: string, citations: Citation[], t?: Translate): PresentedAnswer {
  const rendered = renderAnswer(markdown, {
    t,
    citations: citations.map((c) => ({ n: c.n, href: citationUrl(c), label: `${c.title}, ${citationPages(c)}` })),
  })
  return { html: rendered.html, mathCss: rendered.hasMath ? mathStylesheetUrl() : null }
}
