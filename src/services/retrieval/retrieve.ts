import { sql, type Kysely, type RawBuilder } from 'kysely'
import { PREPARE } from '../../db/prepared.ts'
import type { DB } from '../../db/schema.ts'
import { vectorColumn } from '../../db/vector.ts'
import type { Embedder } from '../embeddings/embedder.ts'
import { analyzeQuery, type QueryToken } from './normalize.ts'
import { buildSnippet, snippetHtml, type SnippetSegment } from './snippet.ts'
import {
  cachedSimilarWords,
  expandQueryWords,
  prefixLookupJson,
  prefixLookups,
  rememberSimilarWords,
  similarityLookups,
  similarityTerms,
  similarWordsSql,
  SIMILARITY_THRESHOLD,
  vocabularyKey,
  vocabularyKeySql,
  type ExpandedWord,
  type SimilarWord,
} from './vocabulary.ts'

/**
 * Finds the textbook passages that answer a question. Three legs rank the same chunks —
 * keyword (the query words' inflected forms, IDF-weighted), trigram (corpus words that look like
 * the query words), and vector (cosine distance of the chunk embeddings to the query's) — and
 * their rankings are fused by reciprocal rank. A passage needs text evidence: the vector leg
 * ranks the chunks the text legs found, exactly; alone it searches the HNSW index. Only
 * textbooks with status 'ready' are searched. Every leg does bounded work whatever the corpus
 * size. Two statements per call, both prepared (src/db/prepared.ts; see search()). See
 * docs/decisions/010-mongolian-retrieval.md.
 */

export type RetrievalLeg = 'keyword' | 'trigram' | 'vector'
export const ALL_LEGS: readonly RetrievalLeg[] = ['keyword', 'trigram', 'vector']

export interface RetrieveOptions {
  query: string
  /** The student's grade. With gradeMode 'prefer' (default) its books rank first; 'only' keeps just them. */
  grade?: number | null
  gradeMode?: 'prefer' | 'only'
  subject?: string | null
  textbookId?: number | null
  /** A section ("2") and everything under it ("2.1", "2.1.3"). */
  sectionPath?: string | null
  /** Passages to return, 1–50 (default 5). */
  limit?: number
  /** Benchmarks: run only some legs. */
  legs?: readonly RetrievalLeg[]
}

export interface Passage {
  chunkId: number
  textbook: { id: number; title: string; subject: string; grade: number }
  section: { path: string; title: string }
  /** Printed page numbers (PDF page numbers when none are printed). */
  pageStart: number
  pageEnd: number
  pdfPageStart: number
  pdfPageEnd: number
  /** 0–1: 1 means ranked first by every leg that ran (the own-grade boost can lift a passage to 1 too). */
  score: number
  content: string
  /** Built when first read. */
  readonly snippet: SnippetSegment[]
  /** The snippet as escaped HTML with <mark> around hits (built when first read). */
  readonly snippetHtml: string
  /** Neighbouring chunks of the same section, for context. */
  context: { previous: string | null; next: string | null }
  /** Rank (1-based) of this chunk in each leg that found it. */
  ranks: Partial<Record<RetrievalLeg, number>>
}

/** Reciprocal rank fusion constant (Cormack et al. 2009). */
const RRF_K = 60
/** The student's own grade: its chunks' fused scores are multiplied by this. */
const OWN_GRADE_BOOST = 1.2
/** Candidates each leg hands to fusion. */
const MIN_CANDIDATES = 30
/**
 * Text legs read candidates from the GIN index for rare words only, up to this many index
 * entries in all: a common word ("нь", "ус" in a biology corpus) would otherwise make every
 * query touch thousands of rows. Common words still count when the candidates are scored.
 */
const INDEX_BUDGET = 1000
/** Candidates a text leg scores in full (detoasting their tsvector is the costly part). */
const RESCORE = 60
/**
 * When no query word is rare, stage 1 takes RESCORE chunks that contain all of them. The GIN
 * index reads every posting list to build its bitmap — a word in 90% of 100,000 chunks is a
 * 90,000-entry bitmap, ~35 ms in wasm, to take 60 of them. When the words are that common,
 * stage 1 instead reads the scope's chunks in order (COMMON_SCAN at most) and keeps the first
 * RESCORE that contain all words: chosen when the expected chunks to read (RESCORE divided by
 * the estimated share with all words) are at most half of COMMON_SCAN and cost less than the
 * index's entries (a chunk read and matched costs ~SCAN_VS_INDEX_ENTRY posting entries).
 */
const COMMON_SCAN = 1000
const SCAN_VS_INDEX_ENTRY = 150
/** hnsw.ef_search for the vector leg when it runs alone (exported for bench/retrieval-latency.ts). */
export const HNSW_EF_SEARCH = 80

/**
 * The search statement sets these first (set_config, local to the statement's own transaction):
 * the trigram threshold the vocabulary's similar-word lookups use, and for the HNSW scan of the
 * vector leg alone ef_search and iterative scan (relaxed order, so filters do not starve it).
 */
const SETTINGS = sql`settings`
const settingsCte = () => sql`
  SELECT set_config('hnsw.ef_search', ${String(HNSW_EF_SEARCH)}, true) AS hnsw,
         set_config('hnsw.iterative_scan', 'relaxed_order', true) AS iterative,
         set_config('pg_trgm.similarity_threshold', ${String(SIMILARITY_THRESHOLD)}, true) AS trgm`

export async function retrievePassages(db: Kysely<DB>, options: RetrieveOptions, embedder: Embedder): Promise<Passage[]> {
  const limit = Math.min(50, Math.max(1, Math.floor(options.limit ?? 5)))
  const legs = ALL_LEGS.filter((leg) => (options.legs ?? ALL_LEGS).includes(leg))
  const analyzed = analyzeQuery(options.query ?? '')
  if (!analyzed.tokens.length) return []
  const candidates = Math.min(100, Math.max(MIN_CANDIDATES, limit * 2))

  // Statement 1: the ready textbooks (filters; their chunk counts make the N of IDF) and the
  // corpus words the query words stand for.
  const lookup = await lookUp(db, options, analyzed.tokens)
  const books = lookup.books.filter((b) => b.allowed)
  if (!books.length) return []
  const totalChunks = Math.max(1, lookup.books.reduce((n, b) => n + b.chunkCount, 0))
  const grade = options.grade ?? null
  const allIds = books.map((b) => b.id)
  const ownIds = grade !== null ? books.filter((b) => b.grade === grade).map((b) => b.id) : []
  const section = options.sectionPath?.trim() || null
  const words = lookup.words
  // Similar words already looked up under this vocabulary come from the cache; the search
  // statement looks up the others and hands them back.
  const similar = cachedSimilarWords(db, vocabularyKey(lookup.books), similarityTerms(words))

  // The embedding may be a network call: made between the statements, holding no connection.
  const queryText = words.map((w) => w.resolved).join(' ')
  const vector = legs.includes('vector') ? (await embedder.embed([queryText]))[0]! : null

  // Statement 2: settings, similar words, the three legs, fusion and the passages' details.
  const rows = await search(db, {
    words,
    similar,
    legs,
    totalChunks,
    scope: scopeFilter(allIds, section),
    stage1Scope: stage1Scope(allIds, section),
    vector: vector && {
      vector,
      embedder,
      // The text legs search all allowed books at once (the own-grade boost in fusion
      // reorders). The vector leg alone takes the student's grade separately, as nearest
      // neighbours over everything could all come from other grades.
      scopes: (ownIds.length && ownIds.length < allIds.length ? [ownIds, allIds] : [allIds]).map((ids) => scopeFilter(ids, section)),
    },
    boosted: grade !== null && options.gradeMode !== 'only' ? ownIds : [],
    candidates,
    limit,
  })
  const meta = rows[0]
  if (meta && similar.missing.length) rememberSimilarWords(db, meta.vocab_key, similar.missing, meta.learned ?? [])
  if (!meta || meta.id === null) return []

  const maxScore = legs.length / (RRF_K + 1)
  // Highlight the words the keyword and trigram legs searched for.
  const hits = new Set([...words.flatMap((w) => [w.resolved, ...w.forms.map((f) => f.word)]), ...(rows[0]!.similar_words ?? [])])
  const isHit = (word: string) => hits.has(word)
  return rows.map((row): Passage => {
    // Built on first read: the library's results show snippets, the tutor's prompt does not
    // (in the chat benchmark they were ~5% of the main thread's CPU).
    let snippet: SnippetSegment[] | undefined
    let html: string | undefined
    const ranks: Partial<Record<RetrievalLeg, number>> = {}
    if (row.keyword_rank !== null) ranks.keyword = Number(row.keyword_rank)
    if (row.trigram_rank !== null) ranks.trigram = Number(row.trigram_rank)
    if (row.vector_rank !== null) ranks.vector = Number(row.vector_rank)
    return {
      chunkId: row.id!,
      textbook: { id: row.textbook_id, title: row.title, subject: row.subject, grade: row.grade },
      section: { path: row.section_path, title: row.section_title },
      pageStart: row.page_start,
      pageEnd: row.page_end,
      pdfPageStart: row.pdf_page_start,
      pdfPageEnd: row.pdf_page_end,
      score: Math.min(1, row.score / maxScore),
      content: row.content,
      get snippet() {
        return (snippet ??= buildSnippet(row.content, isHit))
      },
      get snippetHtml() {
        return (html ??= snippetHtml(this.snippet))
      },
      context: { previous: row.previous, next: row.next },
      ranks,
    }
  })
}

interface ReadyBook {
  id: number
  grade: number
  chunkCount: number
  /** Passes the filters. */
  allowed: boolean
}

/** Every ready textbook, flagged when it passes the filters, and the query words expanded from the vocabulary: one statement. */
async function lookUp(db: Kysely<DB>, options: RetrieveOptions, tokens: QueryToken[]): Promise<{ books: ReadyBook[]; words: ExpandedWord[] }> {
  const onlyGrade = options.gradeMode === 'only' ? (options.grade ?? null) : null
  const { rows } = await sql<{ books: [number, number, number, boolean][]; words: [string, string, number][] }>`
    SELECT (
      SELECT coalesce(json_agg(json_build_array(id, grade, chunk_count,
               (${options.subject ?? null}::text IS NULL OR subject = ${options.subject ?? null})
               AND (${options.textbookId ?? null}::int IS NULL OR id = ${options.textbookId ?? null})
               AND (${onlyGrade}::int IS NULL OR grade = ${onlyGrade}))), '[]'::json)
      FROM textbooks WHERE status = 'ready'
    ) AS books,
    ${prefixLookupJson(prefixLookups(tokens))} AS words ${sql.raw(PREPARE)}`.execute(db)
  const row = rows[0]!
  return {
    books: row.books.map(([id, grade, chunkCount, allowed]) => ({ id, grade, chunkCount, allowed })),
    words: expandQueryWords(tokens, row.words),
  }
}

function idf(df: number, total: number): number {
  return Math.log(1 + (total - df + 0.5) / (df + 0.5))
}

/** A tsquery matching any of the lexemes, built from corpus words (letters and digits only). */
function anyOf(words: string[]): string {
  return words.map((w) => `'${w.replace(/'/g, "''")}'`).join(' | ')
}

function scopeFilter(ids: number[], section: string | null): RawBuilder<unknown> {
  return sql`textbook_id = ANY(${ids}::int[])${sectionFilter(section)}`
}

/** A section ("2") and everything under it ("2.1", "2.1.3"), as ` AND …`; nothing without one. */
function sectionFilter(section: string | null): RawBuilder<unknown> {
  return section ? sql` AND (section_path = ${section} OR starts_with(section_path, ${section + '.'}))` : sql``
}

/**
 * The scope as stage 1 of a text leg filters it (see textLeg). The book ids come as an array the
 * planner cannot look into (a scalar subquery): it would otherwise estimate `textbook_id =
 * ANY(array)` element by element against the column's statistics, in each of the six stage-1
 * branches — ~9–13 ms of planning per search at 455 books, for plans that do not depend on it.
 * `gin`: for the branches the GIN index drives (rare evidence, all words), written so no index on
 * textbook_id can serve it (`textbook_id + 0`): the chunks the GIN index hands back are filtered
 * by it. A plan that does not know the scope's size (a generic plan of the prepared statement, or
 * the array hidden here) would otherwise intersect with the textbook_id index and read the index
 * entries of the whole scope for every evidence row. `scan`: the common-word scan reads the
 * scope's chunks in order, and the textbook_id index serves that at any scope size (LIMIT).
 */
function stage1Scope(ids: number[], section: string | null): { gin: RawBuilder<unknown>; scan: RawBuilder<unknown> } {
  const list = sql`(SELECT ${ids}::int[])::int[]`
  const part = sectionFilter(section)
  return { gin: sql`textbook_id + 0 = ANY(${list})${part}`, scan: sql`textbook_id = ANY(${list})${part}` }
}

interface SearchPlan {
  words: ExpandedWord[]
  /** Similar words of the terms: from the cache, and the terms the statement must look up. */
  similar: { known: SimilarWord[]; missing: string[] }
  legs: readonly RetrievalLeg[]
  totalChunks: number
  scope: RawBuilder<unknown>
  stage1Scope: { gin: RawBuilder<unknown>; scan: RawBuilder<unknown> }
  vector: { vector: number[]; embedder: Embedder; scopes: RawBuilder<unknown>[] } | null
  /** Textbooks whose chunks get the own-grade boost. */
  boosted: number[]
  candidates: number
  limit: number
}

interface PassageRow {
  /** null on the one row of a search that found nothing (it still carries `learned`). */
  id: number | null
  keyword_rank: string | number | null
  trigram_rank: string | number | null
  vector_rank: string | number | null
  score: number
  textbook_id: number
  title: string
  subject: string
  grade: number
  section_path: string
  section_title: string
  page_start: number
  page_end: number
  pdf_page_start: number
  pdf_page_end: number
  content: string
  previous: string | null
  next: string | null
  /** The trigram lookups' words (the same on every row), for highlights. */
  similar_words: string[] | null
  /** The similar words the statement looked up (the terms not cached), and the vocabulary they came from. */
  learned: SimilarWord[] | null
  vocab_key: string
}

/**
 * One statement does the rest: the settings, similar words, each leg as CTEs, reciprocal rank
 * fusion with the own-grade boost and the evidence rule, and the passages' details.
 *
 * Ordering: `settings` is a materialized CTE, and every index scan that depends on a setting
 * (the trigram lookups, an HNSW scan) sits in a LATERAL subquery that refers to one of its
 * columns, so Postgres evaluates set_config before it starts those scans. The settings are
 * transaction-local, and the statement is its own transaction: they end with it.
 *
 * Prepared (one statement per shape: legs, cached or looked-up similar words, known or unknown
 * terms, section filter, the all-words conditions' count). Postgres then plans it with the values
 * five times and keeps a generic plan when that is estimated no dearer: on small libraries it
 * is, and the search costs a third of planning it per call; at 10,000 and 100,000 chunks it keeps
 * custom plans (parsing saved). The statement is written so that a generic plan, which does not
 * know the scope's size or the words' frequencies, cannot go wrong by much: stage 1's scope is
 * never matched on the textbook_id index where the GIN index drives (stage1Scope), and the rare
 * words' index probes stay one per evidence row (OFFSET 0). Before that, at 100,000 chunks the
 * generic plans were up to 100× slower. See docs/decisions/010, "Prepared statements" and
 * "Stage 1 per word".
 */
async function search(db: Kysely<DB>, plan: SearchPlan): Promise<PassageRow[]> {
  const { words, legs, totalChunks } = plan
  const ctes: RawBuilder<unknown>[] = [sql`settings AS MATERIALIZED (${settingsCte()})`]
  const { known, missing } = plan.similar
  const lookups: RawBuilder<unknown>[] = []
  if (known.length) {
    lookups.push(sql`SELECT * FROM unnest(${known.map((k) => k.term)}::text[], ${known.map((k) => k.word)}::text[],
      ${known.map((k) => k.chunks)}::int[], ${known.map((k) => k.similarity)}::float4[]) AS k(term, word, chunks, similarity)`)
  }
  if (missing.length || !known.length) lookups.push(similarWordsSql(similarityLookups(words, missing), { table: SETTINGS, column: sql`settings.trgm` }))
  ctes.push(sql`lookalikes AS MATERIALIZED (${sql.join(lookups, sql` UNION ALL `)})`)
  const ranked: RawBuilder<unknown>[] = []
  /** The text legs' CTEs in this statement: the vector leg ranks what they found. */
  const found: RawBuilder<unknown>[] = []

  if (legs.includes('keyword')) {
    const evidence = keywordEvidence(words, totalChunks)
    if (evidence.length) {
      // Known here: the forms came with statement 1.
      ctes.push(sql`keyword_evidence AS MATERIALIZED (
        SELECT term, qt, qt::tsquery AS q, df, w, ord
        FROM unnest(${evidence.map((e) => e.term)}::int[], ${evidence.map((e) => anyOf(e.words))}::text[],
                    ${evidence.map((e) => e.df)}::int[], ${evidence.map((e) => e.weight)}::float8[]) WITH ORDINALITY AS e(term, qt, df, w, ord))`)
      const closeness = sql`0.5 * ts_rank_cd(c.tsv, ${anyOf([...new Set(evidence.flatMap((e) => e.words))])}::tsquery)`
      ctes.push(...textLeg('keyword', plan, evidence.length, closeness))
      ranked.push(sql`SELECT 1 AS leg, id, textbook_id, row_number() OVER (ORDER BY s DESC, id) AS r FROM keyword`)
      found.push(sql`SELECT id FROM keyword`)
    }
  }
  if (legs.includes('trigram')) {
    // For every query word, the corpus words that look like it, worth similarity × IDF.
    ctes.push(sql`trigram_evidence AS MATERIALIZED (
      SELECT t.term, quote_literal(s.word) AS qt, quote_literal(s.word)::tsquery AS q, s.chunks AS df,
             s.similarity::text::float8 * ln(1 + (${totalChunks}::float8 - s.chunks + 0.5) / (s.chunks::float8 + 0.5)) AS w,
             row_number() OVER (ORDER BY t.term, s.similarity DESC, s.word) AS ord
      FROM unnest(${words.map((w) => w.resolved)}::text[]) WITH ORDINALITY AS t(resolved, term)
      JOIN lookalikes s ON s.term = t.resolved)`)
    // No proximity term on the trigram leg: it measured no better fused and costs most there.
    const similarTerms = new Set(similarityTerms(words))
    ctes.push(...textLeg('trigram', plan, words.filter((w) => similarTerms.has(w.resolved)).length, null))
    ranked.push(sql`SELECT 2 AS leg, id, textbook_id, row_number() OVER (ORDER BY s DESC, id) AS r FROM trigram`)
    found.push(sql`SELECT id FROM trigram`)
  }
  const textLegsRan = legs.includes('keyword') || legs.includes('trigram')
  if (plan.vector && textLegsRan) {
    // A passage needs text evidence (below), so the vector leg ranks the text legs' candidates
    // by their exact cosine distance: no index, no approximation (docs/decisions/010).
    if (found.length) {
      ctes.push(rerankLeg(plan.vector, found, plan.candidates))
      ranked.push(sql`SELECT 3 AS leg, id, textbook_id, row_number() OVER (ORDER BY s, id) AS r FROM vector`)
    }
  } else if (plan.vector) {
    ctes.push(nearestLeg(plan.vector, plan.candidates))
    ranked.push(sql`SELECT 3 AS leg, id, textbook_id, row_number() OVER (ORDER BY s, id) AS r FROM vector`)
  }
  if (!ranked.length) return []

  // A passage needs text evidence: one of the text legs found it (docs/decisions/010, "Nothing
  // found"). The vector leg reorders what they found; alone (benchmarks) it stands by itself.
  const evidence = textLegsRan ? sql`WHERE keyword_rank IS NOT NULL OR trigram_rank IS NOT NULL` : sql``
  // Reciprocal rank fusion: 1/(k + rank) summed in leg order, then the student's own grade.
  const part = (rank: string) => sql`coalesce(1::float8 / (${RRF_K} + ${sql.ref(rank)}), 0)`
  ctes.push(sql`ranked AS (${sql.join(ranked, sql` UNION ALL `)})`)
  ctes.push(sql`fused AS (
    SELECT id, min(textbook_id) AS textbook_id,
           min(r) FILTER (WHERE leg = 1) AS keyword_rank,
           min(r) FILTER (WHERE leg = 2) AS trigram_rank,
           min(r) FILTER (WHERE leg = 3) AS vector_rank
    FROM ranked GROUP BY id)`)
  ctes.push(sql`best AS (
    SELECT id, textbook_id, keyword_rank, trigram_rank, vector_rank,
           (${part('keyword_rank')} + ${part('trigram_rank')} + ${part('vector_rank')})
             * CASE WHEN textbook_id = ANY(${plan.boosted}::int[]) THEN ${OWN_GRADE_BOOST}::float8 ELSE 1::float8 END AS score
    FROM fused ${evidence}
    ORDER BY score DESC, id LIMIT ${plan.limit})`)
  // One row at least (meta LEFT JOIN the passages): the looked-up similar words go back to the
  // cache even when nothing is found, with the vocabulary key read in this same snapshot.
  const learned = missing.length
    ? sql`(SELECT json_agg(json_build_object('term', term, 'word', word, 'chunks', chunks, 'similarity', similarity))
           FROM lookalikes WHERE term = ANY(${missing}::text[]))`
    : sql`NULL::json`
  const { rows } = await sql<PassageRow>`
    WITH ${sql.join(ctes, sql`, `)}
    SELECT b.id, b.keyword_rank, b.trigram_rank, b.vector_rank, b.score,
           c.textbook_id, t.title, t.subject, t.grade, c.section_path, c.section_title,
           c.page_start, c.page_end, c.pdf_page_start, c.pdf_page_end, c.content,
           p.content AS previous, n.content AS next,
           meta.similar_words, meta.learned, meta.vocab_key
    FROM (SELECT (SELECT array_agg(DISTINCT word) FROM lookalikes) AS similar_words, ${learned} AS learned,
                 ${vocabularyKeySql()} AS vocab_key) AS meta
    LEFT JOIN (best b
      JOIN chunks c ON c.id = b.id
      JOIN textbooks t ON t.id = c.textbook_id
      LEFT JOIN chunks p ON p.textbook_id = c.textbook_id AND p.ord = c.ord - 1 AND p.section_path = c.section_path
      LEFT JOIN chunks n ON n.textbook_id = c.textbook_id AND n.ord = c.ord + 1 AND n.section_path = c.section_path) ON true
    ORDER BY b.score DESC, b.id ${sql.raw(PREPARE)}`.execute(db)
  return rows
}

/** One corpus word (or a set of forms) that stands for query word `term`, worth `weight` to a chunk containing it. */
interface Evidence {
  term: number
  words: string[]
  /** Chunks containing any of the words (an upper bound). */
  df: number
  weight: number
}

/**
 * A text leg as three CTEs over `<leg>_evidence` (term, qt: a tsquery as text, q: the same
 * parsed, df, w, ord). Stage 1 reads
 * chunk ids from the GIN index for the rarest evidence (by df, up to INDEX_BUDGET index entries;
 * without touching the chunks' text) and sums, per chunk, the best weight for each query word.
 * Stage 2 scores the RESCORE best of them in full — all evidence, common words included, and
 * with `closeness` a little cover density (ts_rank_cd) for chunks where the words stand close
 * together. When every word is common, stage 1 takes chunks containing all of them instead
 * (from the GIN index, or when they are very common by reading the scope's chunks: COMMON_SCAN).
 * The GIN index gets one condition per query word (any of its forms), rarest first, not one
 * tsquery `(a | a2) & (b | b2) & …`: the same chunks, but with one condition per word the index
 * skips through the posting lists of the rarer words, where one combined condition checks every
 * entry of every form against the whole query — 3–4× slower for several common words with many
 * forms (~74 → ~28 ms under EXPLAIN for "хувийн нэрийг том үсгээр бичих" at 100,000 chunks).
 * `terms` is the number of query words the leg has evidence for (at most).
 */
function textLeg(leg: 'keyword' | 'trigram', plan: SearchPlan, terms: number, closeness: RawBuilder<unknown> | null): RawBuilder<unknown>[] {
  const evidence = sql.table(`${leg}_evidence`)
  const rare = sql.table(`${leg}_rare`)
  const stage1 = sql.table(`${leg}_stage1`)
  const all = sql.table(`${leg}_all`)
  return [
    // The longest run of evidence, rarest first, whose index entries fit the budget.
    sql`${rare} AS MATERIALIZED (
      SELECT * FROM (SELECT e.*, sum(e.df) OVER (ORDER BY e.df, e.ord) AS entries FROM ${evidence} e) AS e
      WHERE entries <= ${INDEX_BUDGET})`,
    // When nothing is rare: every query word (any of its evidence), and whether reading the
    // scope's chunks finds RESCORE with all of them sooner than the GIN index reads their
    // posting lists (COMMON_SCAN): the share of chunks with all of them is estimated as the
    // product of each word's commonest evidence's share, the index's work as the entries it reads.
    sql`${all} AS MATERIALIZED (
      SELECT q, per_word, coalesce(share >= ${(2 * RESCORE) / COMMON_SCAN}::float8 AND ${RESCORE}::float8 / share * ${SCAN_VS_INDEX_ENTRY} < entries, false) AS common
      FROM (
        SELECT string_agg('(' || any_form || ')', ' & ' ORDER BY term)::tsquery AS q,
               array_agg(any_form::tsquery ORDER BY entries, term) AS per_word,
               exp(sum(ln(greatest(share, 1e-9)))) AS share, sum(entries) AS entries
        FROM (
          SELECT term, string_agg(qt, ' | ' ORDER BY ord) AS any_form, least(1, max(df)::float8 / ${plan.totalChunks}) AS share,
                 sum(df)::float8 AS entries
          FROM ${evidence} GROUP BY term) AS per_term) AS estimate)`,
    sql`${stage1} AS MATERIALIZED (
      (SELECT id FROM (
        SELECT id, sum(best ORDER BY term) AS w FROM (
          SELECT hit.id, r.term, max(r.w) AS best
          FROM ${rare} r CROSS JOIN LATERAL (SELECT id FROM chunks WHERE ${plan.stage1Scope.gin} AND tsv @@ r.q OFFSET 0) AS hit
          GROUP BY hit.id, r.term
        ) AS per_term GROUP BY id ORDER BY w DESC, id LIMIT ${RESCORE}
      ) AS ranked)
      UNION ALL
      (SELECT id FROM chunks
       WHERE NOT EXISTS (SELECT FROM ${rare}) AND NOT (SELECT common FROM ${all}) AND ${plan.stage1Scope.gin}
         AND ${sql.join(Array.from({ length: slotsFor(terms) }, (_, k) => sql`tsv @@ (SELECT coalesce(per_word[${sql.lit(k + 1)}], per_word[1]) FROM ${all})`), sql` AND `)}
       LIMIT ${RESCORE})
      UNION ALL
      (SELECT id FROM (
         SELECT id, tsv FROM chunks WHERE NOT EXISTS (SELECT FROM ${rare}) AND (SELECT common FROM ${all}) AND ${plan.stage1Scope.scan}
         LIMIT ${COMMON_SCAN}) AS c
       WHERE (c.tsv @@ (SELECT q FROM ${all})) IS TRUE
       LIMIT ${RESCORE}))`,
    // Full score: for each query word, the best weight among its evidence the chunk contains.
    // Every `@@` would detoast (decompress) the chunk's tsvector again; `words` is decompressed
    // once per chunk (strip: lexemes without positions, all `@@` needs here; OFFSET 0 keeps the
    // subquery from being flattened into one strip() per use).
    sql`${sql.table(leg)} AS MATERIALIZED (
      SELECT c.id, c.textbook_id,
             (SELECT sum(best ORDER BY term) FROM (
                SELECT e.term, max(CASE WHEN c.words @@ e.q THEN e.w ELSE 0 END) AS best FROM ${evidence} e GROUP BY e.term
              ) AS per_term)${closeness ? sql` + ${closeness}` : sql``} AS s
      FROM (
        SELECT id, textbook_id, ${closeness ? sql`tsv, ` : sql``}strip(tsv) AS words FROM chunks JOIN ${stage1} USING (id) OFFSET 0
      ) AS c
      ORDER BY s DESC, c.id LIMIT ${plan.candidates})`,
  ]
}

/**
 * Conditions for the all-words branch of stage 1: one per query word, rarest first; a count from
 * a few fixed sizes (extra ones repeat the rarest word, which changes nothing), so the statement
 * comes in few shapes when prepared. Past 12 words only the 12 rarest must all be there (the
 * candidates are then scored on every word): the shapes stay bounded whatever the question's length.
 */
const SLOTS = [1, 2, 3, 4, 6, 8, 12]
function slotsFor(terms: number): number {
  return SLOTS.find((n) => n >= terms) ?? SLOTS.at(-1)!
}

/**
 * Keyword leg: a chunk scores the IDF of every query word it contains in some inflected form
 * (a binary-independence model: chunks are short, so presence matters more than counts).
 */
function keywordEvidence(words: ExpandedWord[], total: number): Evidence[] {
  return words.flatMap((w, term) => {
    if (!w.forms.length) return []
    const df = Math.min(total, w.forms.reduce((n, f) => n + f.chunks, 0))
    return [{ term, words: w.forms.map((f) => f.word), df, weight: idf(df, total) }]
  })
}

/**
 * pgvector's binary form (int16 dimensions, int16 0, float4 big-endian each), with the values
 * toVectorLiteral sends as text (7 significant digits): the same vector, without parsing 768
 * numbers from text (~4 ms in wasm).
 */
function vectorBinary(v: readonly number[]): Buffer {
  const out = Buffer.alloc(4 + 4 * v.length)
  out.writeInt16BE(v.length, 0)
  out.writeInt16BE(0, 2)
  v.forEach((x, i) => {
    if (!Number.isFinite(x)) throw new Error(`vector component ${i} is not a finite number`)
    out.writeFloatBE(x === 0 ? 0 : Number(x.toPrecision(7)), 4 + 4 * i)
  })
  return out
}

/**
 * Vector leg beside the text legs: the chunks they found (at most 2 × `candidates`), ranked by
 * exact cosine distance to the query, for the deployment's model. Chunks embedded by another
 * model have no comparable vector and get no vector rank.
 */
function rerankLeg(v: NonNullable<SearchPlan['vector']>, found: RawBuilder<unknown>[], candidates: number): RawBuilder<unknown> {
  const column = sql.ref(vectorColumn(v.embedder.dimensions))
  return sql`vector AS MATERIALIZED (
      SELECT id, textbook_id, ${column} <=> ${vectorBinary(v.vector)}::vector AS s
      FROM chunks
      WHERE id IN (${sql.join(found, sql` UNION `)}) AND embedding_model = ${v.embedder.model} AND ${column} IS NOT NULL
      ORDER BY s, id LIMIT ${candidates})`
}

/**
 * Vector leg alone (`legs: ['vector']`): nearest chunks by cosine distance on the HNSW index,
 * for the deployment's model, per scope (relaxed order with iterative scanning, so each scope's
 * filter does not starve it); the outer ORDER BY puts the candidates back in exact order.
 */
function nearestLeg(v: NonNullable<SearchPlan['vector']>, candidates: number): RawBuilder<unknown> {
  const column = sql.ref(vectorColumn(v.embedder.dimensions))
  const parts = v.scopes.map(
    (scope) => sql`
      SELECT nearest.* FROM settings CROSS JOIN LATERAL (
        SELECT id, textbook_id, ${column} <=> ${vectorBinary(v.vector)}::vector AS s
        FROM chunks
        WHERE settings.hnsw IS NOT NULL AND ${scope} AND embedding_model = ${v.embedder.model}
        ORDER BY s LIMIT ${candidates}
      ) AS nearest`,
  )
  return sql`vector AS MATERIALIZED (
      SELECT id, textbook_id, min(s) AS s FROM (${sql.join(parts, sql` UNION ALL `)}) AS leg
      GROUP BY id, textbook_id ORDER BY s, id LIMIT ${candidates})`
}
