import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { toVectorLiteral, vectorColumn } from '../../db/vector.ts'
import type { Embedder } from '../embeddings/embedder.ts'
import { analyzeQuery } from './normalize.ts'
import { buildSnippet, snippetHtml, type SnippetSegment } from './snippet.ts'
import { expandQueryWords, findSimilarWords, type ExpandedWord } from './vocabulary.ts'

/**
 * Finds the textbook passages that answer a question. Three legs rank the same chunks —
 * keyword (the query words' inflected forms, IDF-weighted), trigram (corpus words that look like
 * the query words), and vector (nearest neighbours of the query embedding, HNSW) — and their
 * rankings are fused by reciprocal rank. Only textbooks with status 'ready' are searched.
 * Every leg does bounded work whatever the corpus size. See docs/decisions/010-mongolian-retrieval.md.
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
  snippet: SnippetSegment[]
  /** The snippet as escaped HTML with <mark> around hits. */
  snippetHtml: string
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
/** hnsw.ef_search for the vector leg (exported for bench/retrieval-latency.ts). */
export const HNSW_EF_SEARCH = 80

interface LegRow {
  id: number
  textbook_id: number
}

export async function retrievePassages(db: Kysely<DB>, options: RetrieveOptions, embedder: Embedder): Promise<Passage[]> {
  const limit = Math.min(50, Math.max(1, Math.floor(options.limit ?? 5)))
  const legs = options.legs ?? ALL_LEGS
  const analyzed = analyzeQuery(options.query ?? '')
  if (!analyzed.tokens.length) return []
  const candidates = Math.min(100, Math.max(MIN_CANDIDATES, limit * 2))

  const ready = await readyTextbooks(db, options)
  const books = ready.filter((b) => b.allowed)
  if (!books.length) return []
  const totalChunks = Math.max(1, ready.reduce((n, b) => n + b.chunk_count, 0))
  const grade = options.grade ?? null
  const allIds = books.map((b) => b.id)
  const ownIds = grade !== null ? books.filter((b) => b.grade === grade).map((b) => b.id) : []
  const scopes = ownIds.length && ownIds.length < allIds.length ? [ownIds, allIds] : [allIds]
  const section = options.sectionPath?.trim() || null

  const words = await expandQueryWords(db, analyzed.tokens)
  const queryText = words.map((w) => w.resolved).join(' ')
  // The embedding may be a network call: made before the transaction holds a connection.
  const vector = legs.includes('vector') ? (await embedder.embed([queryText]))[0]! : null

  return db.transaction().execute(async (trx) => {
    await sql`SELECT set_config('hnsw.ef_search', ${String(HNSW_EF_SEARCH)}, true),
                     set_config('hnsw.iterative_scan', 'relaxed_order', true)`.execute(trx)
    // For the trigram leg and the highlights; in the transaction for its index setting.
    await findSimilarWords(trx, words)
    const ranked: Partial<Record<RetrievalLeg, LegRow[]>> = {}
    // The text legs search all allowed books at once (the own-grade boost in fusion reorders);
    // the vector leg takes the student's grade separately, as nearest neighbours over everything
    // could all come from other grades.
    const allScope = scopeFilter(allIds, section)
    if (legs.includes('keyword')) ranked.keyword = await textLeg(trx, keywordEvidence(words, totalChunks), allScope, candidates, true)
    // No proximity term on the trigram leg: it measured no better fused and costs most there.
    if (legs.includes('trigram')) ranked.trigram = await textLeg(trx, trigramEvidence(words, totalChunks), allScope, candidates, false)
    if (vector) ranked.vector = await vectorLeg(trx, vector, embedder, scopes, section, candidates)

    // Reciprocal rank fusion, then the preference for the student's own grade.
    const fused = new Map<number, { score: number; textbookId: number; ranks: Partial<Record<RetrievalLeg, number>> }>()
    for (const leg of legs) {
      ranked[leg]?.forEach((row, i) => {
        const entry = fused.get(row.id) ?? { score: 0, textbookId: row.textbook_id, ranks: {} }
        entry.score += 1 / (RRF_K + i + 1)
        entry.ranks[leg] = i + 1
        fused.set(row.id, entry)
      })
    }
    if (grade !== null && options.gradeMode !== 'only') {
      const own = new Set(ownIds)
      for (const entry of fused.values()) if (own.has(entry.textbookId)) entry.score *= OWN_GRADE_BOOST
    }
    const best = [...fused.entries()].sort((a, b) => b[1].score - a[1].score || a[0] - b[0]).slice(0, limit)
    if (!best.length) return []

    const maxScore = legs.length / (RRF_K + 1)
    // Highlight the words the keyword and trigram legs searched for.
    const hits = new Set(words.flatMap((w) => [w.resolved, ...w.forms.map((f) => f.word), ...w.similar.map((s) => s.word)]))
    const isHit = (word: string) => hits.has(word)
    const details = await passageDetails(trx, best.map(([id]) => id))
    return best.flatMap(([id, { score, ranks }]): Passage[] => {
      const row = details.get(id)
      if (!row) return []
      const snippet = buildSnippet(row.content, isHit)
      return [
        {
          chunkId: id,
          textbook: { id: row.textbook_id, title: row.title, subject: row.subject, grade: row.grade },
          section: { path: row.section_path, title: row.section_title },
          pageStart: row.page_start,
          pageEnd: row.page_end,
          pdfPageStart: row.pdf_page_start,
          pdfPageEnd: row.pdf_page_end,
          score: Math.min(1, score / maxScore),
          content: row.content,
          snippet,
          snippetHtml: snippetHtml(snippet),
          context: { previous: row.previous, next: row.next },
          ranks,
        },
      ]
    })
  })
}

/** Every ready textbook (their chunk counts make the N of IDF), flagged when it passes the filters. */
async function readyTextbooks(db: Kysely<DB>, options: RetrieveOptions) {
  const { rows } = await sql<{ id: number; grade: number; chunk_count: number; allowed: boolean }>`
    SELECT id, grade, chunk_count,
           (${options.subject ?? null}::text IS NULL OR subject = ${options.subject ?? null})
           AND (${options.textbookId ?? null}::int IS NULL OR id = ${options.textbookId ?? null})
           AND (${options.gradeMode === 'only' ? (options.grade ?? null) : null}::int IS NULL OR grade = ${options.gradeMode === 'only' ? (options.grade ?? null) : null}) AS allowed
    FROM textbooks WHERE status = 'ready'`.execute(db)
  return rows
}

function idf(df: number, total: number): number {
  return Math.log(1 + (total - df + 0.5) / (df + 0.5))
}

/** A tsquery matching any of the lexemes, built from corpus words (letters and digits only). */
function anyOf(words: string[]): string {
  return words.map((w) => `'${w.replace(/'/g, "''")}'`).join(' | ')
}

function scopeFilter(ids: number[], section: string | null): RawBuilder<unknown> {
  return section
    ? sql`textbook_id = ANY(${ids}::int[]) AND (section_path = ${section} OR starts_with(section_path, ${section + '.'}))`
    : sql`textbook_id = ANY(${ids}::int[])`
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
 * A text leg in one statement. Stage 1 reads chunk ids from the GIN index for the rarest
 * evidence (up to INDEX_BUDGET index entries; without touching the chunks' text) and sums, per
 * chunk, the best weight for each query word. Stage 2 scores the RESCORE best of them in full —
 * all evidence, common words included, and with `proximity` a little cover density (ts_rank_cd)
 * for chunks where the words stand close together. When every word is common, stage 1 takes
 * chunks containing all of them instead.
 */
async function textLeg(
  trx: Transaction<DB>,
  evidence: Evidence[],
  scope: RawBuilder<unknown>,
  candidates: number,
  proximity: boolean,
): Promise<LegRow[]> {
  if (!evidence.length) return []
  const sorted = [...evidence].sort((a, b) => a.df - b.df)
  const rare: Evidence[] = []
  let entries = 0
  for (const e of sorted) {
    if (entries + e.df > INDEX_BUDGET) break
    rare.push(e)
    entries += e.df
  }
  let stage1: RawBuilder<unknown>
  if (rare.length) {
    const branches = rare.map((e) => sql`SELECT id, ${e.term}::int AS t, ${e.weight}::float8 AS w FROM chunks WHERE ${scope} AND tsv @@ ${anyOf(e.words)}::tsquery`)
    stage1 = sql`
      SELECT id, sum(best) AS w FROM (
        SELECT id, t, max(w) AS best FROM (${sql.join(branches, sql` UNION ALL `)}) AS hits GROUP BY id, t
      ) AS per_term GROUP BY id ORDER BY w DESC, id LIMIT ${RESCORE}`
  } else {
    const terms = [...new Set(evidence.map((e) => e.term))]
    const all = terms.map((t) => `(${anyOf(evidence.filter((e) => e.term === t).flatMap((e) => e.words))})`).join(' & ')
    stage1 = sql`SELECT id FROM chunks WHERE ${scope} AND tsv @@ ${all}::tsquery LIMIT ${RESCORE}`
  }
  // Full score: for each query word, the best weight among its evidence the chunk contains.
  // Every `@@` would detoast (decompress) the chunk's tsvector again; `words` is decompressed
  // once per chunk (strip: lexemes without positions, all `@@` needs here; OFFSET 0 keeps the
  // subquery from being flattened into one strip() per use). Halves the trigram leg's CPU time.
  const terms = [...new Set(evidence.map((e) => e.term))]
  const perTerm = terms.map(
    (t) =>
      sql`GREATEST(${sql.join(
        evidence.filter((e) => e.term === t).map((e) => sql`CASE WHEN c.words @@ ${anyOf(e.words)}::tsquery THEN ${e.weight}::float8 ELSE 0 END`),
        sql`, `,
      )})`,
  )
  const closeness = proximity ? sql`0.5 * ts_rank_cd(c.tsv, ${anyOf([...new Set(evidence.flatMap((e) => e.words))])}::tsquery)` : sql`0`
  const { rows } = await sql<LegRow & { s: number }>`
    WITH stage1 AS (${stage1})
    SELECT c.id, c.textbook_id, (${sql.join(perTerm, sql` + `)}) + ${closeness} AS s
    FROM (
      SELECT id, textbook_id, ${proximity ? sql`tsv, ` : sql``}strip(tsv) AS words FROM chunks JOIN stage1 USING (id) OFFSET 0
    ) AS c
    ORDER BY s DESC, c.id LIMIT ${candidates}`.execute(trx)
  return rows
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
 * Trigram leg: for every query word, the most similar corpus word a chunk contains (pg_trgm
 * similarity, so "фотосинтезийн" finds "фотосинтез", and "омийн" typed for "омын" still finds
 * it), weighted by that word's IDF.
 */
function trigramEvidence(words: ExpandedWord[], total: number): Evidence[] {
  return words.flatMap((w, term) => w.similar.map((s) => ({ term, words: [s.word], df: s.chunks, weight: s.similarity * idf(s.chunks, total) })))
}

/** Vector leg: nearest chunks by cosine distance on the HNSW index, for the deployment's model. */
async function vectorLeg(
  trx: Transaction<DB>,
  vector: number[],
  embedder: Embedder,
  scopes: number[][],
  section: string | null,
  candidates: number,
): Promise<LegRow[]> {
  const column = sql.ref(vectorColumn(embedder.dimensions))
  const literal = toVectorLiteral(vector)
  // Materialized per scope so the HNSW scan (relaxed order with iterative scanning) runs first;
  // the outer ORDER BY puts its candidates back in exact order.
  const parts = scopes.map(
    (ids) => sql`
      SELECT * FROM (
        SELECT id, textbook_id, ${column} <=> ${literal}::vector AS s
        FROM chunks
        WHERE ${scopeFilter(ids, section)} AND embedding_model = ${embedder.model}
        ORDER BY s LIMIT ${candidates}
      ) AS nearest`,
  )
  const { rows } = await sql<LegRow & { s: number }>`
    SELECT id, textbook_id, min(s) AS s FROM (${sql.join(parts, sql` UNION ALL `)}) AS leg
    GROUP BY id, textbook_id ORDER BY s, id LIMIT ${candidates}`.execute(trx)
  return rows
}

interface DetailRow {
  id: number
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
}

async function passageDetails(trx: Transaction<DB>, ids: number[]): Promise<Map<number, DetailRow>> {
  const { rows } = await sql<DetailRow>`
    SELECT c.id, c.textbook_id, t.title, t.subject, t.grade, c.section_path, c.section_title,
           c.page_start, c.page_end, c.pdf_page_start, c.pdf_page_end, c.content,
           p.content AS previous, n.content AS next
    FROM chunks c
    JOIN textbooks t ON t.id = c.textbook_id
    LEFT JOIN chunks p ON p.textbook_id = c.textbook_id AND p.ord = c.ord - 1 AND p.section_path = c.section_path
    LEFT JOIN chunks n ON n.textbook_id = c.textbook_id AND n.ord = c.ord + 1 AND n.section_path = c.section_path
    WHERE c.id = ANY(${ids}::int[])`.execute(trx)
  return new Map(rows.map((r) => [r.id, r]))
}
