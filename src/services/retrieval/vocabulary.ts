import { sql, type RawBuilder, type Transaction } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { isInflectedForm, stemPrefixes, type QueryToken } from './normalize.ts'

/**
 * The vocabulary of ready textbooks (table search_words: word → number of chunks containing
 * it). Retrieval looks query words up here instead of scanning chunk texts: inflected forms for
 * the keyword leg, trigram-similar words for the trigram leg, the Cyrillic spelling of a word
 * typed in Latin letters, and document frequencies for IDF. Each lookup is an index probe on
 * short strings, so its cost does not grow with the number of chunks.
 */

export interface VocabularyWord {
  word: string
  /** Chunks (of ready textbooks) containing the word. */
  chunks: number
}

export interface ExpandedWord {
  token: QueryToken
  /** The Cyrillic spelling searched: the token itself, or the chosen reading of a Latin word. */
  resolved: string
  /** Corpus words that are the resolved word with an inflectional ending (or without one). */
  forms: VocabularyWord[]
}

/** pg_trgm similarity threshold for "looks like the query word" (фотосинтезийн ~ фотосинтез is 0.67). */
export const SIMILARITY_THRESHOLD = 0.4
const MAX_SIMILAR = 8
const MAX_PREFIX_WORDS = 200

function spellingsOf(token: QueryToken): string[] {
  // A Latin word may also be printed as is (CO2, pH, LED).
  return token.latin ? [...token.variants, token.text] : [token.text]
}

function prefixesOf(spelling: string): string[] {
  return [...new Set([spelling, ...stemPrefixes(spelling)])]
}

/** Vocabulary prefixes to look up for the query words, with how many corpus words to fetch for each. */
export function prefixLookups(tokens: QueryToken[]): Map<string, number> {
  // Latin words have up to 16 candidate spellings; a few corpus words per prefix tell which exist.
  const limits = new Map<string, number>()
  for (const t of tokens) {
    for (const spelling of spellingsOf(t)) {
      for (const p of prefixesOf(spelling)) limits.set(p, Math.max(limits.get(p) ?? 0, t.latin ? 40 : MAX_PREFIX_WORDS))
    }
  }
  return limits
}

/**
 * The corpus words starting with each prefix, as one JSON array of [prefix, word, chunks] in
 * prefix order, then word order (a scalar subquery: retrieval folds it into the statement that
 * also reads the filters).
 */
export function prefixLookupJson(limits: Map<string, number>): RawBuilder<unknown> {
  return sql`(
    SELECT coalesce(json_agg(json_build_array(p.prefix, w.word, w.chunks) ORDER BY p.i, w.word), '[]'::json)
    FROM unnest(${[...limits.keys()]}::text[], ${[...limits.values()]}::int[]) WITH ORDINALITY AS p(prefix, n, i)
    CROSS JOIN LATERAL (
      SELECT word, chunks FROM search_words
      WHERE word >= p.prefix COLLATE "C" AND word < (p.prefix || chr(1114111)) COLLATE "C"
      ORDER BY word LIMIT p.n
    ) AS w
  )`
}

/**
 * Resolves and expands query words from the rows prefixLookupJson returned: inflected forms
 * (and, for Latin-script words, the Cyrillic reading). Trigram-similar words are found in SQL,
 * by the search statement itself (similarWordsSql).
 */
export function expandQueryWords(tokens: QueryToken[], rows: [prefix: string, word: string, chunks: number][]): ExpandedWord[] {
  const byPrefix = new Map<string, VocabularyWord[]>()
  for (const [prefix, word, chunks] of rows) {
    const list = byPrefix.get(prefix) ?? []
    list.push({ word, chunks })
    byPrefix.set(prefix, list)
  }
  const formsOf = (spelling: string): VocabularyWord[] => {
    const found = new Map<string, VocabularyWord>()
    for (const p of prefixesOf(spelling)) {
      for (const w of byPrefix.get(p) ?? []) if (isInflectedForm(p, w.word)) found.set(w.word, w)
    }
    return [...found.values()]
  }

  return tokens.map((token): ExpandedWord => {
    if (!token.latin) return { token, resolved: token.text, forms: formsOf(token.text) }
    // The likeliest reading that the textbooks actually use: "fotosintez" → фотосинтез, not фотосинтэз.
    const reading = token.variants.find((v) => formsOf(v).length > 0)
    return {
      token,
      resolved: reading ?? token.variants[0] ?? token.text,
      forms: [...(reading ? formsOf(reading) : []), ...formsOf(token.text)],
    }
  })
}

/**
 * Words shorter than this get no trigram lookup. A four-letter word shares two of its five
 * trigrams with every word that starts like it and ends in a common ending ("тийн": " т", "ийн"),
 * so the trigram index hands back ~40,000 candidate words at a 1.3M-word vocabulary (~300 ms in
 * wasm) to find look-alikes that are mostly other words; the keyword leg's stemming covers the
 * inflected forms of short words. Measured: fused hit@1 0.962 → 0.971, MRR 0.981 → 0.986.
 */
export const MIN_SIMILARITY_TERM = 5

/** The resolved spellings worth a trigram lookup: MIN_SIMILARITY_TERM letters or more, letters only. */
export function similarityTerms(expanded: ExpandedWord[]): string[] {
  return [...new Set(expanded.map((e) => e.resolved).filter((t) => t.length >= MIN_SIMILARITY_TERM && /^\p{L}+$/u.test(t)))]
}

/**
 * The SELECT of a CTE (term, word, chunks, similarity): for each term, the corpus words most
 * trigram-similar to it. `%` takes its candidates from the trigram index at
 * pg_trgm.similarity_threshold, which the statement sets to SIMILARITY_THRESHOLD first:
 * `settings` is the CTE that calls set_config, and referring to its column makes every lookup
 * run after it (see retrieve.ts). At pg_trgm's default (0.3) the index hands back ~4× as many
 * words, each fetched and rechecked only to fail the similarity filter. The filter below keeps
 * the result the same whatever the setting.
 */
export function similarWordsSql(terms: string[], settings: { table: RawBuilder<unknown>; column: RawBuilder<unknown> }): RawBuilder<unknown> {
  return sql`
    SELECT t.term, w.word, w.chunks, w.similarity
    FROM ${settings.table} CROSS JOIN unnest(${terms}::text[]) AS t(term)
    CROSS JOIN LATERAL (
      SELECT word, chunks, similarity(word, t.term) AS similarity FROM search_words
      WHERE ${settings.column} IS NOT NULL AND word % t.term AND similarity(word, t.term) >= ${SIMILARITY_THRESHOLD}
      ORDER BY similarity DESC, word LIMIT ${MAX_SIMILAR}
    ) AS w`
}

/** Adds a book's words to the vocabulary (when it becomes ready). Rows are taken in word order, so concurrent imports cannot deadlock. */
export async function addBookToVocabulary(trx: Transaction<DB>, textbookId: number): Promise<void> {
  await sql`
    INSERT INTO search_words (word, chunks)
    SELECT lexeme, count(*) FROM chunks, unnest(tsv) WHERE textbook_id = ${textbookId}
    GROUP BY lexeme ORDER BY lexeme
    ON CONFLICT (word) DO UPDATE SET chunks = search_words.chunks + excluded.chunks`.execute(trx)
}

/** Takes a book's words out of the vocabulary (before its chunks are deleted). */
export async function removeBookFromVocabulary(trx: Transaction<DB>, textbookId: number): Promise<void> {
  await sql`
    UPDATE search_words w SET chunks = greatest(0, w.chunks - gone.n)
    FROM (
      SELECT lexeme AS word, count(*)::int AS n FROM chunks, unnest(tsv) WHERE textbook_id = ${textbookId}
      GROUP BY lexeme
    ) AS gone
    WHERE w.word = gone.word COLLATE "C"`.execute(trx)
  await sql`DELETE FROM search_words WHERE chunks = 0`.execute(trx)
}
