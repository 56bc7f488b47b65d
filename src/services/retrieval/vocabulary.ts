import { sql, type Kysely, type Transaction } from 'kysely'
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
  /** Corpus words that share most trigrams with the resolved word, most similar first. */
  similar: (VocabularyWord & { similarity: number })[]
}

/** pg_trgm similarity threshold for "looks like the query word" (фотосинтезийн ~ фотосинтез is 0.67). */
const SIMILARITY_THRESHOLD = 0.4
const MAX_SIMILAR = 8
const MAX_PREFIX_WORDS = 200

function spellingsOf(token: QueryToken): string[] {
  // A Latin word may also be printed as is (CO2, pH, LED).
  return token.latin ? [...token.variants, token.text] : [token.text]
}

function prefixesOf(spelling: string): string[] {
  return [...new Set([spelling, ...stemPrefixes(spelling)])]
}

/**
 * Resolves and expands query words: inflected forms (and, for Latin-script words, the Cyrillic
 * reading) from the vocabulary. `similar` stays empty; findSimilarWords fills it.
 */
export async function expandQueryWords(db: Kysely<DB>, tokens: QueryToken[]): Promise<ExpandedWord[]> {
  // Latin words have up to 16 candidate spellings; a few corpus words per prefix tell which exist.
  const limits = new Map<string, number>()
  for (const t of tokens) {
    for (const spelling of spellingsOf(t)) {
      for (const p of prefixesOf(spelling)) limits.set(p, Math.max(limits.get(p) ?? 0, t.latin ? 40 : MAX_PREFIX_WORDS))
    }
  }
  const { rows } = await sql<{ prefix: string; word: string; chunks: number }>`
    SELECT p.prefix, w.word, w.chunks
    FROM unnest(${[...limits.keys()]}::text[], ${[...limits.values()]}::int[]) AS p(prefix, n)
    CROSS JOIN LATERAL (
      SELECT word, chunks FROM search_words
      WHERE word >= p.prefix COLLATE "C" AND word < (p.prefix || chr(1114111)) COLLATE "C"
      ORDER BY word LIMIT p.n
    ) AS w`.execute(db)
  const byPrefix = new Map<string, VocabularyWord[]>()
  for (const r of rows) {
    const list = byPrefix.get(r.prefix) ?? []
    list.push({ word: r.word, chunks: r.chunks })
    byPrefix.set(r.prefix, list)
  }
  const formsOf = (spelling: string): VocabularyWord[] => {
    const found = new Map<string, VocabularyWord>()
    for (const p of prefixesOf(spelling)) {
      for (const w of byPrefix.get(p) ?? []) if (isInflectedForm(p, w.word)) found.set(w.word, w)
    }
    return [...found.values()]
  }

  const expanded = tokens.map((token): ExpandedWord => {
    if (!token.latin) return { token, resolved: token.text, forms: formsOf(token.text), similar: [] }
    // The likeliest reading that the textbooks actually use: "fotosintez" → фотосинтез, not фотосинтэз.
    const reading = token.variants.find((v) => formsOf(v).length > 0)
    return {
      token,
      resolved: reading ?? token.variants[0] ?? token.text,
      forms: [...(reading ? formsOf(reading) : []), ...formsOf(token.text)],
      similar: [],
    }
  })

  return expanded
}

/**
 * Fills `similar` of each expanded word: the corpus words most trigram-similar to its resolved
 * spelling. Call it inside a transaction: `%` takes its candidates from the trigram index at
 * pg_trgm.similarity_threshold, which is set here for the transaction to our threshold. At
 * pg_trgm's default (0.3) the index hands back ~4× as many words, each fetched and rechecked
 * only to fail the similarity filter (bench/retrieval-latency.ts: the slowest step at 10k chunks).
 * The filter below keeps the result the same whatever the setting.
 */
export async function findSimilarWords(trx: Transaction<DB>, expanded: ExpandedWord[]): Promise<void> {
  const terms = [...new Set(expanded.map((e) => e.resolved).filter((t) => t.length >= 4 && /^\p{L}+$/u.test(t)))]
  if (!terms.length) return
  await sql`SELECT set_config('pg_trgm.similarity_threshold', ${String(SIMILARITY_THRESHOLD)}, true)`.execute(trx)
  const { rows: similar } = await sql<{ term: string; word: string; chunks: number; similarity: number }>`
    SELECT t.term, w.word, w.chunks, w.similarity
    FROM unnest(${terms}::text[]) AS t(term)
    CROSS JOIN LATERAL (
      SELECT word, chunks, similarity(word, t.term) AS similarity FROM search_words
      WHERE word % t.term AND similarity(word, t.term) >= ${SIMILARITY_THRESHOLD}
      ORDER BY similarity DESC, word LIMIT ${MAX_SIMILAR}
    ) AS w`.execute(trx)
  for (const e of expanded) {
    e.similar = similar.filter((r) => r.term === e.resolved).map((r) => ({ word: r.word, chunks: r.chunks, similarity: r.similarity }))
  }
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
