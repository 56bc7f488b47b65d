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
 * Letters a look-alike shares with a word the vocabulary knows: 3 for words of up to six letters,
 * 4 for longer ones (Mongolian inflects at the end of the stem: хувь → хувийн, ургамал → ургамлын).
 */
export function lookalikePrefix(term: string): string {
  return term.slice(0, term.length <= 6 ? 3 : 4)
}

/** A similar-word lookup: the term, and '' or the prefix its look-alikes are searched under (see similarWordsSql). */
export interface SimilarityLookup {
  term: string
  prefix: string
}

/**
 * How each term's look-alikes are searched: among the words starting like it (`prefix`) when the
 * vocabulary has forms of it, through the whole vocabulary's trigram index ('') when it has none.
 */
export function similarityLookups(expanded: ExpandedWord[], terms: string[]): SimilarityLookup[] {
  return terms.map((term) => {
    const known = expanded.some((e) => e.resolved === term && e.forms.length > 0)
    return { term, prefix: known ? lookalikePrefix(term) : '' }
  })
}

/**
 * The SELECT of a CTE (term, word, chunks, similarity): for each term, the corpus words most
 * trigram-similar to it (similarity ≥ SIMILARITY_THRESHOLD, the MAX_SIMILAR best).
 *
 * Two ways to find them. A word the vocabulary knows (the keyword leg found forms of it) looks
 * among the words that start with its first letters (lookalikePrefix: a btree range on the
 * primary key, tens to hundreds of words): its look-alikes are its own forms and relatives. A
 * word the vocabulary does not know — misspelled, a Latin reading gone wrong ("амисгал" for
 * амьсгал) — is where look-alikes matter most, and searches all words: `%` takes candidates from
 * the trigram index. At a 1.3M-word vocabulary a five-to-seven-letter word with common trigrams
 * makes that index hand back ~6,000 candidates, each rechecked on the heap (~45 ms in wasm);
 * the prefix range costs a few ms (docs/decisions/010, "Look-alikes of known words").
 *
 * `%` uses pg_trgm.similarity_threshold, which the statement sets to SIMILARITY_THRESHOLD first:
 * `settings` is the CTE that calls set_config, and referring to its column makes every lookup
 * run after it (see retrieve.ts). At pg_trgm's default (0.3) the index hands back ~4× as many
 * words, each fetched and rechecked only to fail the similarity filter. The filter below keeps
 * the result the same whatever the setting.
 */
export function similarWordsSql(lookups: SimilarityLookup[], settings: { table: RawBuilder<unknown>; column: RawBuilder<unknown> }): RawBuilder<unknown> {
  const everywhere = lookups.filter((l) => !l.prefix).map((l) => l.term)
  const byPrefix = lookups.filter((l) => l.prefix)
  const parts: RawBuilder<unknown>[] = []
  if (everywhere.length || !byPrefix.length) {
    parts.push(sql`
    SELECT t.term, w.word, w.chunks, w.similarity
    FROM ${settings.table} CROSS JOIN unnest(${everywhere}::text[]) AS t(term)
    CROSS JOIN LATERAL (
      SELECT word, chunks, similarity(word, t.term) AS similarity FROM search_words
      WHERE ${settings.column} IS NOT NULL AND word % t.term AND similarity(word, t.term) >= ${SIMILARITY_THRESHOLD}
      ORDER BY similarity DESC, word LIMIT ${MAX_SIMILAR}
    ) AS w`)
  }
  if (byPrefix.length) {
    parts.push(sql`
    SELECT t.term, w.word, w.chunks, w.similarity
    FROM ${settings.table} CROSS JOIN unnest(${byPrefix.map((l) => l.term)}::text[], ${byPrefix.map((l) => l.prefix)}::text[]) AS t(term, prefix)
    CROSS JOIN LATERAL (
      SELECT word, chunks, similarity(word, t.term) AS similarity FROM search_words
      WHERE ${settings.column} IS NOT NULL AND word >= t.prefix COLLATE "C" AND word < (t.prefix || chr(1114111)) COLLATE "C"
        AND similarity(word, t.term) >= ${SIMILARITY_THRESHOLD}
      ORDER BY similarity DESC, word LIMIT ${MAX_SIMILAR}
    ) AS w`)
  }
  return sql.join(parts, sql` UNION ALL `)
}

/** A corpus word trigram-similar to a query term (a row of the similar-word lookup). */
export interface SimilarWord {
  term: string
  word: string
  chunks: number
  /** pg_trgm similarity, a float4 as Postgres printed it. */
  similarity: number
}

/**
 * The similar-word lookups are the dearest part of a search on a large vocabulary (thousands of
 * trigram candidates rechecked per query word at 1.3M words), and their result depends only on
 * the term and the vocabulary. The vocabulary changes only when a book becomes ready or leaves
 * (markReady, deleteTextbook), so the ready books' ids and chunk counts — which the lookup
 * statement reads anyway — identify it: the cache key. Per database handle (tests open several
 * databases in one process), at most MAX_CACHED_TERMS terms, dropped whole when the key changes.
 */
const MAX_CACHED_TERMS = 20_000
interface SimilarCache {
  key: string
  terms: Map<string, SimilarWord[]>
}
let similarCaches = new WeakMap<object, SimilarCache>()

/** The cache key of a vocabulary: its ready books as "id:chunks", by id (vocabularyKeySql computes the same in SQL). */
export function vocabularyKey(books: readonly { id: number; chunkCount: number }[]): string {
  return [...books].sort((a, b) => a.id - b.id).map((b) => `${b.id}:${b.chunkCount}`).join(',')
}

/** The same key, read in the statement that looks the words up (so it names the vocabulary they came from). */
export const vocabularyKeySql = (): RawBuilder<string> =>
  sql<string>`(SELECT coalesce(string_agg(id::text || ':' || chunk_count::text, ',' ORDER BY id), '') FROM textbooks WHERE status = 'ready')`

/** The cached similar words of `terms` under vocabulary `key`, and the terms still to look up. */
export function cachedSimilarWords(handle: object, key: string, terms: string[]): { known: SimilarWord[]; missing: string[] } {
  const cache = similarCaches.get(handle)
  const known: SimilarWord[] = []
  const missing: string[] = []
  for (const term of terms) {
    const words = cache?.key === key ? cache.terms.get(term) : undefined
    if (words) known.push(...words)
    else missing.push(term)
  }
  return { known, missing }
}

/** Remembers the similar words looked up for `terms` (a term with none is remembered too). */
export function rememberSimilarWords(handle: object, key: string, terms: string[], rows: SimilarWord[]): void {
  let cache = similarCaches.get(handle)
  if (!cache || cache.key !== key) similarCaches.set(handle, (cache = { key, terms: new Map() }))
  for (const term of terms) {
    if (cache.terms.size >= MAX_CACHED_TERMS) cache.terms.delete(cache.terms.keys().next().value!)
    cache.terms.set(term, rows.filter((r) => r.term === term))
  }
}

/** Forgets every cached similar word (benchmarks: measure the lookups themselves). */
export function clearSimilarWordsCache(handle?: object): void {
  if (handle) similarCaches.delete(handle)
  else similarCaches = new WeakMap()
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
