import type { Citation } from '../../db/schema.ts'
import type { Passage } from '../retrieval/retrieve.ts'
import { citationsOf } from './prompt.ts'

/**
 * Offline mode (no LLM configured, see PRODUCT.md "Graceful degradation"): the answer is the
 * textbook passages that best match the question, quoted with their citations. The page labels
 * it as textbook passages, not an AI answer; this text holds only the quotes.
 */

export const OFFLINE_PASSAGES = 3
const QUOTE_MAX_CHARS = 600

function quote(text: string): string {
  let body = text.replace(/\s+/g, ' ').trim()
  if (body.length > QUOTE_MAX_CHARS) {
    const cut = body.slice(0, QUOTE_MAX_CHARS)
    const end = cut.lastIndexOf('. ')
    body = (end > QUOTE_MAX_CHARS * 0.5 ? cut.slice(0, end + 1) : cut.trimEnd()) + ' …'
  }
  // Markdown would read a leading "1." or "#" of textbook text as a list or heading.
  return body.replace(/^([#>*+-]|\d+[.)])/, '\\$1')
}

/** Markdown quoting each passage, followed by its citation marker; empty when nothing matched. */
export function offlineAnswer(passages: Passage[]): { content: string; citations: Citation[] } {
  // Only passages that share words with the question: the vector leg always finds some
  // nearest neighbours, which for a question the books do not cover are noise.
  const chosen = passages.filter((p) => p.ranks.keyword !== undefined || p.ranks.trigram !== undefined).slice(0, OFFLINE_PASSAGES)
  const citations = citationsOf(chosen)
  const content = chosen.map((p, i) => `> ${quote(p.content)} [${i + 1}]`).join('\n\n')
  return { content, citations }
}
