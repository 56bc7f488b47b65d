import { createHash } from 'node:crypto'
import { normalizeText } from '../retrieval/normalize.ts'

/**
 * The answer cache shares answers to the same first question between students of the same
 * grade, subject and textbook context. Only questions that say nothing about the asker are
 * cached: no first person, no names, no numbers that look like contact details. A follow-up
 * depends on its conversation and is never cached. Entries live 24 hours; an answer is stored
 * in its entry (and served) only once the question has been answered twice, so one-off questions
 * never fill the table with answers nobody reuses.
 */

export const CACHE_TTL_HOURS = 24
/** Answers needed before an entry serves: the third asker gets the cached answer. */
export const CACHE_MIN_SEEN = 2

// Words that make a question about the asker (Mongolian first person, "my teacher", "our class").
const PERSONAL_WORDS = new Set(
  `би миний минийх надад надаас намайг надтай над манай манайх бидний бид биднийг бидэнд бидэнтэй
  өөрийн өөрийгөө өөртөө my mine me i we our us
  bi minii miniih nadad nadaas namaig namayg nadtai nad manai manaih bidnii bid bidniig bidend oorin ooriin`.split(/\s+/).filter(Boolean),
)
// An e-mail, a phone number (6+ digits), or an address-like "байр 12 тоот".
const CONTACT = /[^\s@]+@[^\s@]+\.[^\s@]+|\d[\d\s-]{5,}\d|\bтоот\b/iu

export interface CacheContext {
  question: string
  grade: number
  subject: string
  textbookId: number | null
  sectionPath: string | null
}

/** Whether the question talks about the asker, so its answer must not be shared. */
export function isPersonal(question: string, askerName?: string): boolean {
  if (CONTACT.test(question)) return true
  const words = normalizeText(question).split(' ')
  if (words.some((w) => PERSONAL_WORDS.has(w))) return true
  if (askerName) {
    const names = normalizeText(askerName).split(' ').filter((n) => n.length >= 3)
    if (names.some((n) => words.includes(n))) return true
  }
  return false
}

/**
 * The question as the cache compares it: case, spacing and closing punctuation do not matter,
 * every other character does. Retrieval's normalizeText drops operators and signs, which would
 * make "2+3 хэд вэ?" and "2-3 хэд вэ?" the same question.
 */
export function cacheNormalize(question: string): string {
  return question
    .normalize('NFKC')
    .toLowerCase()
    .replace(/ё/g, 'е')
    .replace(/[«»"“”„]/g, '')
    .replace(/,\s/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[\s?!.,;:…？！。]+$/u, '')
    .trim()
}

/** The cache key of a first question, or null when it must not be cached. */
export function cacheKeyFor(context: CacheContext, options: { firstQuestion: boolean; askerName?: string; hasImage?: boolean }): string | null {
  if (!options.firstQuestion || options.hasImage) return null
  if (isPersonal(context.question, options.askerName)) return null
  const normalized = cacheNormalize(context.question)
  if (!normalized) return null
  const parts = [normalized, context.grade, context.subject, context.textbookId ?? '', context.sectionPath ?? '']
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url')
}
