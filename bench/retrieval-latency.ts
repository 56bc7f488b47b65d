/**
 * Latency of retrievePassages and HNSW recall on a synthetic Mongolian corpus of 10k and 100k
 * chunks, in embedded PGlite (a temporary DATA_DIR, as the embedded default runs; or in memory).
 *
 * The corpus: the 7 sample books (so the labelled questions have their answers) plus synthetic
 * books spread over every subject and grade 1–12. A synthetic chunk (120–260 words) mixes
 * verbatim sample sentences (30%) with generated sentences whose words come from a Zipf-ranked
 * vocabulary — the sample books' words first, then ~300k generated Mongolian-looking stems with
 * case endings — plus topic words of the book and of the section (so rare words cluster, as
 * terms do in real textbooks), plus a tail of one-off words. Chunks are embedded with the
 * built-in embedder (in worker threads) and loaded per book with createTextbook, one INSERT of
 * exactly what insertChunks stores (spot-checked), and markReady (same search_words vocabulary as
 * an import; checked against the chunks after the load). The GIN, HNSW and trigram indexes are
 * dropped during the load and rebuilt from their own definitions afterwards, then ANALYZE.
 * `--store` loads with insertChunks itself; `--with-indexes` keeps the indexes during the load.
 *
 * Queries: the 105 labelled questions (direct, inflected, Latin-script, paraphrase, distractor)
 * plus questions cut from synthetic chunks (their words, re-inflected, typed in Latin letters, a
 * rare topic word), each with one of five filters (none, own grade preferred, subject, grade
 * only, subject + own grade). One untimed pass warms the caches, then every query is timed once
 * with its similar words cached (the warm-up looked them up) and once more, the main numbers, with
 * retrieval's similar-word cache emptied before each call;
 * each of its two SQL statements is timed too, and EXPLAIN ANALYZE of each search statement
 * afterwards says where inside it the time went. Recall@10 compares the HNSW scan (which the
 * vector leg uses when it runs alone) with exact search for the very query embeddings retrieval used.
 *
 *   npx node bench/retrieval-latency.ts                       # --sizes 63,10000,100000 (63: the sample books alone)
 *   npx node bench/retrieval-latency.ts --sizes 10000 --explain 3   # EXPLAIN ANALYZE the slowest
 *   npx node bench/retrieval-latency.ts --keep                # keep/reuse the built databases in .cache/
 *   npx node bench/retrieval-latency.ts --write               # also update docs/benchmarks.md
 * Other flags: --in-memory, --store, --with-indexes, --queries N (synthetic questions, default 200),
 * --recall-queries N (default 100), --seed N, --skip-recall, --hnsw-params m:ef_construction,… (recall of
 * other HNSW builds, corpora of 1k–20k chunks; the index is rebuilt as its migration defines it afterwards).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { isMainThread, parentPort, Worker } from 'node:worker_threads'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { Kysely, PostgresDialect, sql, type LogEvent } from 'kysely'
import { openDatabase, type Database, type DB } from '../src/db/index.ts'
import { migrate } from '../src/db/migrate.ts'
import { toVectorLiteral } from '../src/db/vector.ts'
import type { Embedder } from '../src/services/embeddings/embedder.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import { normalizeText } from '../src/services/retrieval/normalize.ts'
import { HNSW_EF_SEARCH, retrievePassages, type RetrieveOptions } from '../src/services/retrieval/retrieve.ts'
import { clearSimilarWordsCache } from '../src/services/retrieval/vocabulary.ts'
import { importSampleBook, loadSampleBooks } from '../src/services/textbooks/samples.ts'
import { chunkEmbeddingText, createTextbook, insertChunks, markReady, type ChunkInput } from '../src/services/textbooks/store.ts'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '63,10000,100000' },
    queries: { type: 'string', default: '200' },
    'recall-queries': { type: 'string', default: '100' },
    seed: { type: 'string', default: '7' },
    explain: { type: 'string', default: '0' },
    keep: { type: 'boolean', default: false },
    'in-memory': { type: 'boolean', default: false },
    'with-indexes': { type: 'boolean', default: false },
    store: { type: 'boolean', default: false },
    worker: { type: 'boolean', default: false },
    write: { type: 'boolean', default: false },
    'skip-recall': { type: 'boolean', default: false },
    'hnsw-params': { type: 'string', default: '' },
  },
})
const SIZES = values.sizes!.split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0)
const SYNTHETIC_QUERIES = Number(values.queries)
const SEED = Number(values.seed)
const EXPLAIN = Number(values.explain)
const RECALL_QUERIES = Number(values['recall-queries'])
const HNSW_PARAMS = values['hnsw-params']!.split(',').filter(Boolean).map((p) => p.split(':').map(Number) as [number, number])
/** Bump when the generator changes: --keep reuses a database only if it was built by the same one. */
const GENERATOR_VERSION = 1
const ROOT = fileURLToPath(new URL('..', import.meta.url))

// --- randomness and Zipf ------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
let rand = mulberry32(SEED)
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!

/** Ranks 0..n-1 drawn with probability ∝ 1/(rank+1)^s. */
function zipf(n: number, s: number): () => number {
  const cdf = new Float64Array(n)
  let sum = 0
  for (let r = 0; r < n; r++) cdf[r] = sum += 1 / Math.pow(r + 1, s)
  return () => {
    const x = rand() * sum
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cdf[mid]! < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

// --- vocabulary -------------------------------------------------------------------------------

const sampleBooks = loadSampleBooks()
const SENTENCE_END = /(?<=[.!?…])\s+(?=[\p{Lu}\p{N}"«(—-])/u
const sampleSentences = sampleBooks.flatMap((b) => b.blocks.flatMap((bl) => bl.text.split(SENTENCE_END))).filter((s) => s.split(' ').length >= 4)
const sampleFreq = new Map<string, number>()
for (const b of sampleBooks) for (const bl of b.blocks) for (const w of normalizeText(bl.text).split(' ')) if (/^\p{L}{2,}$/u.test(w)) sampleFreq.set(w, (sampleFreq.get(w) ?? 0) + 1)
const sampleWords = [...sampleFreq].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([w]) => w)

type Harmony = 'a' | 'o' | 'e' | 'ө'
const VOWELS: Record<Harmony, string[]> = {
  a: ['а', 'а', 'а', 'у', 'и', 'аа', 'уу', 'ай', 'ы'],
  o: ['о', 'о', 'у', 'и', 'оо', 'ой', 'уу'],
  e: ['э', 'э', 'ү', 'и', 'ээ', 'үү', 'эй', 'ий'],
  ө: ['ө', 'ө', 'ү', 'и', 'өө', 'үү'],
}
const CONSONANTS = 'ннллррггддттссххммббццччшшжзвяюе'.split('').filter((c) => !'яюе'.includes(c))
const LOAN_CONSONANTS = [...CONSONANTS, 'ф', 'к', 'п']
const ENDINGS: Record<Harmony, string[]> = {
  a: ['ын', 'ыг', 'аас', 'аар', 'тай', 'д', 'ууд', 'уудын', 'ад', 'ийн', 'луу', 'даг', 'сан', 'на', 'ж', 'х'],
  o: ['ын', 'ыг', 'оос', 'оор', 'той', 'д', 'ууд', 'уудын', 'од', 'ийн', 'руу', 'дог', 'сон', 'но', 'ж', 'х'],
  e: ['ийн', 'ийг', 'ээс', 'ээр', 'тэй', 'д', 'үүд', 'үүдийн', 'эд', 'ний', 'рүү', 'дэг', 'сэн', 'нэ', 'ж', 'х'],
  ө: ['ийн', 'ийг', 'өөс', 'өөр', 'тэй', 'д', 'үүд', 'үүдийн', 'өд', 'ний', 'рүү', 'дөг', 'сөн', 'нө', 'ж', 'х'],
}

interface Lemma {
  stem: string
  harmony: Harmony | null
}

/** Sample words first (by their frequency in the samples), then generated stems that inflect. */
function buildLemmas(count: number): Lemma[] {
  const seen = new Set(sampleWords)
  const lemmas: Lemma[] = sampleWords.map((w) => ({ stem: w, harmony: null }))
  const harmonies: Harmony[] = ['a', 'a', 'o', 'e', 'e', 'ө']
  while (lemmas.length < count) {
    const harmony = pick(harmonies)
    const loan = rand() < 0.06
    const consonants = loan ? LOAN_CONSONANTS : CONSONANTS
    let w = rand() < 0.3 ? pick(VOWELS[harmony]) : ''
    const syllables = int(1, 4)
    for (let i = 0; i < syllables; i++) w += pick(consonants) + pick(VOWELS[harmony])
    if (rand() < 0.6) w += pick(consonants)
    if (w.length < 3 || seen.has(w)) continue
    seen.add(w)
    lemmas.push({ stem: w, harmony })
  }
  return lemmas
}
const LEMMAS = isMainThread ? buildLemmas(300_000) : []
const zipfLemma = zipf(LEMMAS.length, 1.05)
const zipfEnding = zipf(16, 1.1)

function formOf(lemma: Lemma): string {
  if (!lemma.harmony || rand() < 0.5) return lemma.stem
  return lemma.stem + ENDINGS[lemma.harmony][zipfEnding()]!
}

// --- synthetic books --------------------------------------------------------------------------

const SUBJECTS = ['mongolian', 'literature', 'mongol_script', 'math', 'physics', 'chemistry', 'biology', 'geography', 'history', 'social', 'civics', 'human_nature', 'human_society', 'informatics', 'english', 'russian', 'technology', 'art', 'music', 'health', 'physical_education']

interface SyntheticBook {
  subject: string
  grade: number
  title: string
  chunks: ChunkInput[]
  /** Words of some generated sentences (for questions): [form, lemma] pairs. */
  phrases: { words: [string, Lemma][]; ord: number }[]
  topic: Lemma[]
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

function syntheticBook(n: number, chunkCount: number): SyntheticBook {
  const subject = SUBJECTS[n % SUBJECTS.length]!
  const grade = 1 + (Math.floor(n / SUBJECTS.length) % 12)
  // Topic words: mostly mid-frequency and rare stems, shared by the whole book.
  const topic = Array.from({ length: 300 }, () => LEMMAS[Math.min(LEMMAS.length - 1, 300 + zipfLemma() * 4 + int(0, 200))]!)
  const chunks: ChunkInput[] = []
  const phrases: SyntheticBook['phrases'] = []
  let page = 3
  let chapter = 1
  let sectionNo = 0
  let sectionLeft = 0
  let sectionTopic: Lemma[] = []
  let sectionTitle = ''
  for (let ord = 0; ord < chunkCount; ord++) {
    if (sectionLeft === 0) {
      sectionNo++
      if (sectionNo > int(3, 6)) {
        chapter++
        sectionNo = 1
      }
      sectionLeft = int(2, 8)
      sectionTopic = Array.from({ length: 25 }, () => pick(topic))
      sectionTitle = capitalize(Array.from({ length: int(1, 3) }, () => formOf(pick(sectionTopic))).join(' '))
    }
    sectionLeft--
    const target = int(120, 260)
    const sentences: string[] = []
    let words = 0
    while (words < target) {
      if (rand() < 0.3) {
        const s = pick(sampleSentences)
        sentences.push(s)
        words += s.split(' ').length
        continue
      }
      const length = int(6, 16)
      const sentence: [string, Lemma][] = []
      for (let i = 0; i < length; i++) {
        const r = rand()
        const lemma = r < 0.55 ? LEMMAS[zipfLemma()]! : r < 0.85 ? pick(sectionTopic) : r < 0.95 ? pick(topic) : LEMMAS[int(0, LEMMAS.length - 1)]!
        sentence.push([formOf(lemma), lemma])
      }
      if (phrases.length < 40 && rand() < 0.05) phrases.push({ words: sentence, ord })
      sentences.push(capitalize(sentence.map(([w]) => w).join(' ')) + (rand() < 0.1 ? '?' : '.'))
      words += length
    }
    const pages = rand() < 0.3 ? 2 : 1
    chunks.push({
      ord,
      sectionPath: `${chapter}.${sectionNo}`,
      sectionTitle,
      pageStart: page,
      pageEnd: page + pages - 1,
      pdfPageStart: page + 2,
      pdfPageEnd: page + pages + 1,
      content: sentences.join(' '),
    })
    page += pages
  }
  return { subject, grade, title: `Туршилтын ${subject} ${grade}-р анги №${n + 1}`, chunks, phrases, topic }
}

// --- questions --------------------------------------------------------------------------------

interface LabelledQuestion {
  query: string
  book: string
  kind: string
}
const labelled = (JSON.parse(readFileSync(join(ROOT, 'bench/data/retrieval-questions.json'), 'utf8')) as { questions: LabelledQuestion[] }).questions

const LATIN: Record<string, string> = {
  а: 'a', б: 'b', в: 'v', г: 'g', д: 'd', е: 'e', ё: 'yo', ж: 'j', з: 'z', и: 'i', й: 'i', к: 'k', л: 'l', м: 'm', н: 'n', о: 'o', ө: 'o',
  п: 'p', р: 'r', с: 's', т: 't', у: 'u', ү: 'u', ф: 'f', х: 'h', ц: 'ts', ч: 'ch', ш: 'sh', щ: 'sh', ъ: '', ы: 'ii', ь: 'i', э: 'e', ю: 'yu', я: 'ya',
}
/** How students type Mongolian on a Latin keyboard (ө → o, ү → u, х → h, ы → ii). */
const toLatin = (s: string) => [...s].map((c) => LATIN[c] ?? c).join('')

type Filter = 'none' | 'grade-prefer' | 'subject' | 'grade-only' | 'subject+grade'
const FILTERS: Filter[] = ['none', 'grade-prefer', 'subject', 'grade-only', 'subject+grade']

interface Query {
  query: string
  kind: string
  filter: Filter
  options: RetrieveOptions
}

function withFilter(query: string, kind: string, i: number, grade: number, subject: string): Query {
  const filter = FILTERS[i % FILTERS.length]!
  const options: RetrieveOptions = { query }
  if (filter === 'grade-prefer' || filter === 'subject+grade') options.grade = grade
  if (filter === 'grade-only') Object.assign(options, { grade, gradeMode: 'only' })
  if (filter === 'subject' || filter === 'subject+grade') options.subject = subject
  return { query, kind, filter, options }
}

function syntheticQueries(books: SyntheticBook[], count: number): Query[] {
  const out: Query[] = []
  const kinds = ['synthetic direct', 'synthetic inflected', 'synthetic latin', 'synthetic rare word']
  // The sample books alone (the smallest size) have no generated chunks to cut questions from.
  if (!books.length) return out
  for (let i = 0; out.length < count; i++) {
    const book = pick(books)
    const phrase = pick(book.phrases)
    if (!phrase) continue
    const kind = kinds[i % kinds.length]!
    const start = int(0, Math.max(0, phrase.words.length - 4))
    const slice = phrase.words.slice(start, start + int(2, 4))
    let words: string[]
    if (kind === 'synthetic direct') words = slice.map(([w]) => w)
    else if (kind === 'synthetic inflected') words = slice.map(([w, l]) => (l.harmony ? (w === l.stem ? l.stem + pick(ENDINGS[l.harmony]) : l.stem) : w))
    else if (kind === 'synthetic latin') words = slice.map(([w]) => toLatin(w))
    else words = [formOf(pick(book.topic)), ...(rand() < 0.5 ? [pick(sampleWords.slice(0, 200))] : [])]
    out.push(withFilter(words.join(' '), kind, out.length + 1, book.grade, book.subject))
  }
  return out
}

// --- loading ----------------------------------------------------------------------------------

const SECONDARY_INDEXES = ['chunks_tsv_idx', 'chunks_embedding_idx', 'chunks_embedding_1536_idx', 'search_words_trgm_idx']

/**
 * What insertChunks computes per chunk, done off the main thread: content_norm, and the embedding
 * in pgvector's binary form (int16 dimensions, int16 0, float4 big-endian each) with the values
 * toVectorLiteral would send (7 significant digits, then float4). Postgres in wasm parses vector
 * text at ~5 µs per number, ~7× slower than the binary form; the stored vectors are the same.
 */
interface Embedded {
  norms: string[]
  vectors: ArrayBuffer
}

function binaryVectors(vectors: number[][]): ArrayBuffer {
  const dims = vectors[0]?.length ?? 0
  const size = 4 + 4 * dims
  const out = new DataView(new ArrayBuffer(size * vectors.length))
  vectors.forEach((v, k) => {
    out.setInt16(k * size, dims)
    out.setInt16(k * size + 2, 0)
    v.forEach((x, i) => {
      if (!Number.isFinite(x)) throw new Error(`vector component ${i} is not a finite number`)
      out.setFloat32(k * size + 4 + 4 * i, x === 0 ? 0 : Number(x.toPrecision(7)))
    })
  })
  return out.buffer
}

const WORKERS = Math.max(1, Math.min(4, availableParallelism()))

/** Worker threads running the built-in embedder (this same file, see the bottom). */
class EmbedPool {
  private workers: Worker[]
  private waiting = new Map<number, (e: Embedded) => void>()
  private next = 0
  constructor(n: number) {
    this.workers = Array.from({ length: n }, () => {
      const w = new Worker(new URL(import.meta.url), { argv: ['--worker'] })
      w.on('message', (m: Embedded & { id: number }) => {
        this.waiting.get(m.id)!(m)
        this.waiting.delete(m.id)
      })
      w.on('error', (err) => {
        throw err
      })
      return w
    })
  }
  embed(texts: string[]): Promise<Embedded> {
    const id = this.next++
    return new Promise((resolve) => {
      this.waiting.set(id, resolve)
      this.workers[id % this.workers.length]!.postMessage({ id, texts })
    })
  }
  async close() {
    await Promise.all(this.workers.map((w) => w.terminate()))
  }
}

/**
 * insertChunks (src/services/textbooks/store.ts) in one statement per book, with the same values:
 * content_norm = normalizeText(chunkEmbeddingText(c)), the embedding of chunkEmbeddingText(c).
 */
async function insertChunksBulk(trx: Kysely<DB>, textbookId: number, chunks: ChunkInput[], e: Embedded, model: string) {
  const size = e.vectors.byteLength / chunks.length
  const rows = chunks.map(
    (c, k) => sql`(${textbookId}, ${c.ord}, ${c.sectionPath}, ${c.sectionTitle}, ${c.pageStart}, ${c.pageEnd}, ${c.pdfPageStart}, ${c.pdfPageEnd},
      ${c.content}, ${e.norms[k]!}, ${Buffer.from(e.vectors, k * size, size)}::vector, ${model})`,
  )
  await sql`
    INSERT INTO chunks (textbook_id, ord, section_path, section_title, page_start, page_end, pdf_page_start, pdf_page_end, content, content_norm, embedding, embedding_model)
    VALUES ${sql.join(rows)}`.execute(trx)
}

interface Built {
  database: Database
  books: SyntheticBook[]
  stats: Record<string, string | number>
  dir: string | null
}

async function build(size: number, embedder: Embedder): Promise<Built> {
  const tStart = performance.now()
  rand = mulberry32(SEED * 1000 + size)
  const keepDir = join(ROOT, '.cache', `retrieval-latency-${size}-g${GENERATOR_VERSION}-s${SEED}${values['with-indexes'] ? '-incremental' : ''}`)
  const reuse = values.keep && existsSync(join(keepDir, 'built.json'))
  const dir = values['in-memory'] ? null : values.keep ? keepDir : mkdtempSync(join(tmpdir(), 'bagsh-latency-'))
  if (dir && values.keep && !reuse) rmSync(dir, { recursive: true, force: true })
  if (dir) mkdirSync(dir, { recursive: true })

  // The generator runs either way, so a reused database gets the same questions.
  const sampleChunkCount = 63
  const books: SyntheticBook[] = []
  let total = sampleChunkCount
  const tGen = performance.now()
  for (let n = 0; total < size; n++) {
    const count = Math.min(size - total, int(150, 300))
    books.push(syntheticBook(n, count))
    total += count
  }
  const genMs = performance.now() - tGen

  const database = await openDatabase({ databaseUrl: null, dataDir: dir ?? '', inMemory: dir === null })
  if (reuse) {
    // Migrations added since it was built (they are applied on start in the app too).
    await migrate(database.db)
    const stats = JSON.parse(readFileSync(join(dir!, 'built.json'), 'utf8')) as Built['stats']
    return { database, books, stats: { ...stats, reused: 'yes' }, dir }
  }
  const db = database.db
  await migrate(db)
  for (const book of sampleBooks) await importSampleBook(db, embedder, book)

  const definitions = (await sql<{ indexname: string; indexdef: string }>`SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(${SECONDARY_INDEXES})`.execute(db)).rows
  if (definitions.length !== SECONDARY_INDEXES.length) throw new Error('secondary indexes not found')
  if (!values['with-indexes']) for (const d of definitions) await sql.raw(`DROP INDEX ${d.indexname}`).execute(db)

  // Embedding (and normalizing) runs in worker threads, a few books ahead of the inserts.
  const pool = values.store ? null : new EmbedPool(WORKERS)
  const ahead = WORKERS * 2
  const jobs: Promise<Embedded>[] = []
  const submit = (i: number) => {
    if (pool && i < books.length) jobs[i] = pool.embed(books[i]!.chunks.map(chunkEmbeddingText))
  }
  for (let i = 0; i < ahead; i++) submit(i)
  let waitMs = 0
  let insertMs = 0
  let readyMs = 0
  const tLoad = performance.now()
  for (const [i, book] of books.entries()) {
    const t0 = performance.now()
    const embedded = pool ? await jobs[i]! : null
    delete jobs[i]
    submit(i + ahead)
    const vectors = pool ? null : await embedder.embed(book.chunks.map(chunkEmbeddingText))
    const t1 = performance.now()
    const { id } = await createTextbook(db, { subject: book.subject, grade: book.grade, title: book.title, year: 2026 })
    await db.transaction().execute(async (trx) => {
      if (embedded) await insertChunksBulk(trx, id, book.chunks, embedded, embedder.model)
      else await insertChunks(trx, id, book.chunks, vectors!, embedder.model)
      const t2 = performance.now()
      insertMs += t2 - t1
      await markReady(trx, id, { pageCount: book.chunks.at(-1)!.pageEnd + 2, embeddingModel: embedder.model })
      readyMs += performance.now() - t2
    })
    waitMs += t1 - t0
    if (i % 50 === 49) process.stderr.write(`  ${size}: ${i + 1}/${books.length} books loaded (${((performance.now() - tLoad) / 1000).toFixed(0)} s)\n`)
  }
  await pool?.close()
  const loadMs = performance.now() - tLoad
  // The bulk path must store what insertChunks stores: spot-check content_norm and embeddings.
  for (const book of books.slice(0, 3)) {
    for (const c of book.chunks.slice(0, 5)) {
      const text = chunkEmbeddingText(c)
      const literal = toVectorLiteral((await embedder.embed([text]))[0]!)
      const { rows } = await sql<{ same: boolean }>`
        SELECT content_norm = ${normalizeText(text)} AND embedding = ${literal}::vector AS same
        FROM chunks JOIN textbooks t ON t.id = textbook_id WHERE t.title = ${book.title} AND ord = ${c.ord}`.execute(db)
      if (!rows[0]?.same) throw new Error(`chunk ${c.ord} of ${book.title} is not stored as insertChunks stores it`)
    }
  }
  const tIndex = performance.now()
  if (!values['with-indexes']) {
    // Bulk-build the indexes as their migration defined them; HNSW builds in memory when it fits.
    await db.connection().execute(async (conn) => {
      await sql`SET maintenance_work_mem = '1GB'`.execute(conn)
      for (const d of definitions) {
        const t = performance.now()
        await sql.raw(d.indexdef).execute(conn)
        process.stderr.write(`  ${size}: ${d.indexname} built in ${((performance.now() - t) / 1000).toFixed(1)} s\n`)
      }
      await sql`RESET maintenance_work_mem`.execute(conn)
    })
  }
  const indexMs = performance.now() - tIndex
  const tAnalyze = performance.now()
  await sql`ANALYZE chunks`.execute(db)
  await sql`ANALYZE search_words`.execute(db)
  await sql`ANALYZE textbooks`.execute(db)
  const analyzeMs = performance.now() - tAnalyze

  const counts = (
    await sql<{ chunks: number; words: number; books: number; words_per_chunk: number; chars_per_chunk: number; db_mb: number }>`
      SELECT (SELECT count(*)::int FROM chunks) AS chunks, (SELECT count(*)::int FROM search_words) AS words,
             (SELECT count(*)::int FROM textbooks WHERE status = 'ready') AS books,
             (SELECT round(avg(length(tsv)))::int FROM chunks) AS words_per_chunk,
             (SELECT round(avg(length(content)))::int FROM chunks) AS chars_per_chunk,
             (pg_database_size(current_database()) / 1048576)::int AS db_mb`.execute(db)
  ).rows[0]!
  const indexes = (await sql<{ indexname: string; indexdef: string }>`SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(${SECONDARY_INDEXES})`.execute(db)).rows
  for (const d of definitions) {
    if (indexes.find((x) => x.indexname === d.indexname)?.indexdef !== d.indexdef) throw new Error(`index ${d.indexname} differs after the load`)
  }
  // search_words must hold exactly the words of the ready books' chunks (what markReady keeps).
  const drift = (
    await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM (
        SELECT lexeme AS word, count(*)::int AS chunks FROM chunks, unnest(tsv) GROUP BY lexeme
      ) AS truth FULL JOIN search_words w ON w.word = truth.word COLLATE "C"
      WHERE truth.chunks IS DISTINCT FROM w.chunks`.execute(db)
  ).rows[0]!.n
  if (drift !== 0) throw new Error(`search_words differs from the chunks' words in ${drift} rows`)

  const stats = {
    chunks: counts.chunks,
    books: counts.books,
    'distinct words (search_words)': counts.words,
    'words per chunk (avg distinct)': counts.words_per_chunk,
    'characters per chunk (avg)': counts.chars_per_chunk,
    'database size MB': counts.db_mb,
    'generate s': +(genMs / 1000).toFixed(1),
    'load s': +(loadMs / 1000).toFixed(1),
    'waiting for embeddings s': +(waitMs / 1000).toFixed(1),
    'insert s': +(insertMs / 1000).toFixed(1),
    'markReady s': +(readyMs / 1000).toFixed(1),
    'index build s': +(indexMs / 1000).toFixed(1),
    'ANALYZE s': +(analyzeMs / 1000).toFixed(1),
  }
  Object.assign(stats, { 'total s': +((performance.now() - tStart) / 1000).toFixed(0) })
  if (dir && values.keep) writeFileSync(join(dir, 'built.json'), JSON.stringify(stats))
  return { database, books, stats, dir }
}

// --- measuring --------------------------------------------------------------------------------

/** retrievePassages sends two statements: the lookup (filters and the query words' forms), then the search. */
type Phase = 'lookup (filters, word forms)' | 'embed' | 'search (similar words, legs, fusion, details)' | 'other'
const PHASES: Phase[] = ['lookup (filters, word forms)', 'embed', 'search (similar words, legs, fusion, details)', 'other']

function phaseOf(text: string): Phase {
  if (text.includes('AS books')) return 'lookup (filters, word forms)'
  if (text.includes('settings AS MATERIALIZED')) return 'search (similar words, legs, fusion, details)'
  return 'other'
}

interface Statement {
  sql: string
  parameters: readonly unknown[]
  ms: number
  phase: Phase
}

interface Sample {
  query: Query
  ms: number
  /** CPU time of this process during the call (PGlite runs in it): less sensitive to other load than wall time. */
  cpuMs: number
  phases: Partial<Record<Phase, number>>
  statements: Statement[]
  vector: number[] | null
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN
}
const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–')

async function measure(size: number) {
  const real = createLocalEmbedder()
  let lastVector: number[] | null = null
  let embedMs = 0
  const embedder: Embedder = {
    model: real.model,
    dimensions: real.dimensions,
    async embed(texts) {
      const t = performance.now()
      const out = await real.embed(texts)
      embedMs += performance.now() - t
      lastVector = out[0] ?? null
      return out
    },
  }
  const tBuild = performance.now()
  const built = await build(size, real)
  const buildS = (performance.now() - tBuild) / 1000
  process.stderr.write(`  ${size}: ready in ${buildS.toFixed(0)} s\n`)

  let statements: Statement[] = []
  const log = (event: LogEvent) => {
    statements.push({ sql: event.query.sql, parameters: event.query.parameters, ms: event.queryDurationMillis, phase: phaseOf(event.query.sql) })
  }
  // Our own Kysely over the same pool, so every statement is timed with its parameters.
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: built.database.pool }), log })

  const queries: Query[] = [
    ...labelled.map((q, i) => {
      const meta = sampleBooks.find((b) => b.file === `${q.book}.md`)!.meta
      return withFilter(q.query, `labelled ${q.kind}`, i, meta.grade, meta.subject)
    }),
    ...syntheticQueries(built.books, SYNTHETIC_QUERIES),
  ]

  const run = async (q: Query, cold = true): Promise<Sample> => {
    // Cold: the similar-word cache emptied first, so every query word is looked up (what a word
    // not asked about since the last book became ready costs).
    if (cold) clearSimilarWordsCache(db)
    statements = []
    embedMs = 0
    lastVector = null
    const cpu = process.cpuUsage()
    const t = performance.now()
    await retrievePassages(db, q.options, embedder)
    const total = performance.now() - t
    const used = process.cpuUsage(cpu)
    const phases: Partial<Record<Phase, number>> = {}
    for (const s of statements) phases[s.phase] = (phases[s.phase] ?? 0) + s.ms
    if (lastVector) phases.embed = embedMs
    const mine = statements
    // What runs after this call (recall, EXPLAIN) is logged elsewhere.
    statements = []
    return { query: q, ms: total, cpuMs: (used.user + used.system) / 1000, phases, statements: mine, vector: lastVector }
  }

  // Warm-up: one untimed pass over every query (it also fills the similar-word cache).
  const tWarm = performance.now()
  for (const q of queries) await run(q, false)
  const warmS = (performance.now() - tWarm) / 1000
  // Each query again with its words' similar words cached (asked before), then the main pass
  // with the cache emptied before every call.
  const cached: Sample[] = []
  for (const q of queries) cached.push(await run(q, false))
  const load = loadavg()
  const samples: Sample[] = []
  for (const q of queries) samples.push(await run(q))
  const loadAfter = loadavg()
  const sharedBuffers = (await sql<{ s: string }>`SELECT current_setting('shared_buffers') AS s`.execute(db)).rows[0]!.s

  // Recall@10: the HNSW scan against exact search, same query embedding, same scope.
  const recall = values['skip-recall'] ? { rows: [], builds: [], distances: '–' } : await measureRecall(db, samples)
  const parts = await breakdown(db, samples)

  let explained = ''
  if (EXPLAIN > 0) explained = await explain(db, samples)

  // Not db.destroy(): it would end the shared pool that database.close() ends.
  await built.database.close()
  if (built.dir && !values.keep) rmSync(built.dir, { recursive: true, force: true })
  return { size, built, buildS, warmS, queries, samples, cached, sharedBuffers, load, loadAfter, recall, parts, explained }
}

/** The textbooks the vector leg searches for a query: every allowed book, and the own-grade ones separately when a grade is preferred. */
async function vectorScopes(db: Kysely<DB>, q: Query, readyBooks: number): Promise<number[][]> {
  const { rows } = await sql<{ id: number; grade: number }>`
    SELECT id, grade FROM textbooks WHERE status = 'ready'
      AND (${q.options.subject ?? null}::text IS NULL OR subject = ${q.options.subject ?? null})
      AND (${q.options.gradeMode === 'only' ? q.options.grade! : null}::int IS NULL OR grade = ${q.options.gradeMode === 'only' ? q.options.grade! : null})`.execute(db)
  const all = rows.map((r) => r.id)
  const own = q.options.grade != null && q.options.gradeMode !== 'only' ? rows.filter((r) => r.grade === q.options.grade).map((r) => r.id) : []
  const scopes: number[][] = []
  if (all.length < readyBooks) scopes.push(all)
  if (own.length && own.length < all.length) scopes.push(own)
  return scopes
}

interface RecallRow {
  name: string
  efSearch: number
  recall: number
  /** Counting as found a result no farther than 1% beyond the 10th exact neighbour (a near-tie). */
  nearRecall: number
  queries: number
  ms50: number
  ms95: number
  /** Searches whose plan used the HNSW index. */
  hnsw: number
}

type ScanMode = 'exact' | 'hnsw' | 'planner'

/**
 * The 10 nearest chunks in the shape of retrieve.ts' vector leg: `limit` nearest by the index
 * scan in a subquery, then put in exact order. exact: no index scan (a sequential scan, or the
 * textbook_id index for a filtered scope); hnsw: the planner made to use the HNSW index; planner:
 * what it picks by itself.
 */
async function nearest(db: Kysely<DB>, literal: string, ids: number[] | null, mode: ScanMode, ef: number, iterative: boolean, limit = 10) {
  return db.transaction().execute(async (trx) => {
    const off = mode === 'planner' ? [] : mode === 'exact' ? ['enable_indexscan'] : ['enable_seqscan', 'enable_bitmapscan', 'enable_sort']
    await sql`SELECT set_config('hnsw.ef_search', ${String(ef)}, true), set_config('hnsw.iterative_scan', ${iterative ? 'relaxed_order' : 'off'}, true)`.execute(trx)
    for (const setting of off) await sql`SELECT set_config(${setting}, 'off', true)`.execute(trx)
    const filter = ids ? sql`AND textbook_id = ANY(${ids}::int[])` : sql``
    const query = sql<{ id: number; s: number }>`
      SELECT id, s FROM (
        SELECT id, embedding <=> ${literal}::vector AS s FROM chunks
        WHERE embedding_model IS NOT NULL ${filter}
        ORDER BY s LIMIT ${limit}
      ) AS nearest ORDER BY s, id LIMIT 10`
    const t = performance.now()
    const { rows } = await query.execute(trx)
    const ms = performance.now() - t
    const plan = (await sql<{ 'QUERY PLAN': unknown }>`EXPLAIN (FORMAT JSON) ${query}`.execute(trx)).rows[0]!['QUERY PLAN']
    return { rows, ms, hnsw: JSON.stringify(plan).includes('chunks_embedding_idx') }
  })
}

/**
 * Recall@10 of the HNSW index against exact search, for the query embeddings retrieval computed
 * (RECALL_QUERIES of the timed queries, evenly spread): over all chunks, and within every filtered
 * scope the vector leg alone searches (the allowed books; the own-grade books). "forced" measures
 * the index itself; "as retrieval plans it" is what the vector leg alone (`legs: ['vector']`)
 * gets (30 candidates, iterative scan; for a small filtered scope the planner may pick an exact
 * scan by textbook_id). Beside the text legs the vector leg uses no index: it ranks their
 * candidates by exact distance.
 */
async function measureRecall(db: Kysely<DB>, samples: Sample[]): Promise<{ rows: RecallRow[]; builds: RecallRow[]; distances: string }> {
  const readyBooks = (await sql<{ n: number }>`SELECT count(*)::int AS n FROM textbooks WHERE status = 'ready'`.execute(db)).rows[0]!.n
  const withVector = samples.filter((s) => s.vector)
  const step = Math.max(1, withVector.length / RECALL_QUERIES)
  const chosenSamples = Array.from({ length: Math.min(RECALL_QUERIES, withVector.length) }, (_, i) => withVector[Math.floor(i * step)]!)
  const searches: { literal: string; ids: number[] | null; exact: { id: number; s: number }[] }[] = []
  const exactTimes: number[] = []
  for (const s of chosenSamples) {
    const literal = toVectorLiteral(s.vector!)
    for (const ids of [null, ...(await vectorScopes(db, s.query, readyBooks))]) {
      const exact = await nearest(db, literal, ids, 'exact', 40, false)
      if (!ids) exactTimes.push(exact.ms)
      searches.push({ literal, ids, exact: exact.rows })
    }
  }
  const rows: RecallRow[] = []
  const cases: [string, boolean, ScanMode, number, boolean, number][] = [
    ['HNSW forced, no filter', false, 'hnsw', 40, false, 10],
    ['HNSW forced, no filter', false, 'hnsw', HNSW_EF_SEARCH, false, 10],
    ['HNSW forced, no filter', false, 'hnsw', 200, false, 10],
    ['HNSW forced, no filter', false, 'hnsw', 400, false, 10],
    ['HNSW forced, filtered scopes, iterative scan', true, 'hnsw', HNSW_EF_SEARCH, true, 10],
    ['HNSW forced, filtered scopes, iterative scan', true, 'hnsw', 200, true, 10],
    ['vector leg alone as retrieval plans it, no filter', false, 'planner', HNSW_EF_SEARCH, true, 30],
    ['vector leg alone as retrieval plans it, filtered scopes', true, 'planner', HNSW_EF_SEARCH, true, 30],
  ]
  for (const [name, filtered, mode, ef, iterative, limit] of cases) {
    let found = 0
    let near = 0
    let wanted = 0
    let hnsw = 0
    const times: number[] = []
    const chosen = searches.filter((s) => (s.ids !== null) === filtered)
    for (const s of chosen) {
      const got = await nearest(db, s.literal, s.ids, mode, ef, iterative, limit)
      const exactIds = new Set(s.exact.map((r) => r.id))
      const tenth = s.exact.at(-1)?.s ?? 0
      found += got.rows.filter((r) => exactIds.has(r.id)).length
      near += got.rows.filter((r) => exactIds.has(r.id) || r.s <= tenth * 1.01).length
      wanted += s.exact.length
      if (got.hnsw) hnsw++
      times.push(got.ms)
    }
    rows.push({ name, efSearch: ef, recall: found / wanted, nearRecall: near / wanted, queries: chosen.length, ms50: percentile(times, 50), ms95: percentile(times, 95), hnsw })
  }
  // The index on its own data: stored chunk embeddings as queries (each finds itself first).
  {
    const ids = (await sql<{ id: number }>`SELECT id FROM chunks ORDER BY hashint4(id) LIMIT ${Math.ceil(RECALL_QUERIES / 2)}`.execute(db)).rows
    let found = 0
    let near = 0
    const times: number[] = []
    for (const { id } of ids) {
      const literal = (await sql<{ v: string }>`SELECT embedding::text AS v FROM chunks WHERE id = ${id}`.execute(db)).rows[0]!.v
      const exact = (await nearest(db, literal, null, 'exact', 40, false)).rows
      const got = await nearest(db, literal, null, 'hnsw', HNSW_EF_SEARCH, false)
      const exactIds = new Set(exact.map((r) => r.id))
      found += got.rows.filter((r) => exactIds.has(r.id)).length
      near += got.rows.filter((r) => exactIds.has(r.id) || r.s <= exact.at(-1)!.s * 1.01).length
      times.push(got.ms)
    }
    rows.push({ name: 'HNSW forced, no filter, stored chunk embeddings as queries', efSearch: HNSW_EF_SEARCH, recall: found / (ids.length * 10), nearRecall: near / (ids.length * 10), queries: ids.length, ms50: percentile(times, 50), ms95: percentile(times, 95), hnsw: ids.length })
  }
  rows.push({ name: 'exact (sequential scan), no filter', efSearch: 0, recall: 1, nearRecall: 1, queries: exactTimes.length, ms50: percentile(exactTimes, 50), ms95: percentile(exactTimes, 95), hnsw: 0 })
  const unfiltered = searches.filter((s) => s.ids === null && s.exact.length === 10)
  const median = (k: number) => percentile(unfiltered.map((s) => s.exact[k]!.s), 50).toFixed(3)
  // Other build parameters (--hnsw-params m:ef_construction,…): the index rebuilt with them, the
  // same unfiltered searches; then rebuilt as its migration defines it.
  const builds: RecallRow[] = []
  // Rebuilding at 100k chunks takes most of an hour in PGlite: only smaller corpora.
  const chunkCount = (await sql<{ n: number }>`SELECT count(*)::int AS n FROM chunks`.execute(db)).rows[0]!.n
  if (HNSW_PARAMS.length && chunkCount >= 1_000 && chunkCount <= 20_000) {
    const definition = (await sql<{ indexdef: string }>`SELECT indexdef FROM pg_indexes WHERE indexname = 'chunks_embedding_idx'`.execute(db)).rows[0]!.indexdef
    const rebuild = (ddl: string) =>
      db.connection().execute(async (conn) => {
        await sql`SET maintenance_work_mem = '1GB'`.execute(conn)
        await sql`DROP INDEX chunks_embedding_idx`.execute(conn)
        await sql.raw(ddl).execute(conn)
        await sql`RESET maintenance_work_mem`.execute(conn)
      })
    for (const [m, efc] of HNSW_PARAMS) {
      const t = performance.now()
      await rebuild(`CREATE INDEX chunks_embedding_idx ON chunks USING hnsw (embedding vector_cosine_ops) WITH (m = ${m}, ef_construction = ${efc})`)
      const built = ((performance.now() - t) / 1000).toFixed(0)
      for (const ef of [80, 200, 400]) {
        let found = 0
        const times: number[] = []
        for (const s of unfiltered) {
          const got = await nearest(db, s.literal, null, 'hnsw', ef, false)
          found += got.rows.filter((r) => s.exact.some((e) => e.id === r.id)).length
          times.push(got.ms)
        }
        builds.push({ name: `HNSW forced, no filter, index built with m = ${m}, ef_construction = ${efc} (build ${built} s)`, efSearch: ef, recall: found / (unfiltered.length * 10), nearRecall: NaN, queries: unfiltered.length, ms50: percentile(times, 50), ms95: percentile(times, 95), hnsw: unfiltered.length })
      }
    }
    await rebuild(definition)
  }
  return { rows, builds, distances: `${median(0)} / ${median(4)} / ${median(9)}` }
}

/** The search statement's parts, by the CTE names retrieve.ts gives them. */
const PARTS = ['similar words', 'keyword leg', 'trigram leg', 'vector leg', 'fusion and details'] as const
type Part = (typeof PARTS)[number]

interface PlanNode {
  'Node Type': string
  'Subplan Name'?: string
  'Actual Total Time'?: number
  'Actual Loops'?: number
  Plans?: PlanNode[]
}

/**
 * Where the search statement spends its time, from EXPLAIN (ANALYZE, FORMAT JSON): the inclusive
 * time of each leg's top CTE (a CTE is computed when first read, so `trigram` includes its
 * evidence and `lookalikes`, which is reported apart and subtracted). Instrumented, so slower
 * than the timed pass; the shares are what matter.
 */
async function breakdown(db: Kysely<DB>, samples: Sample[]): Promise<Partial<Record<Part, number>>[]> {
  const out: Partial<Record<Part, number>>[] = []
  for (const s of samples) {
    const st = s.statements.find((x) => x.phase === 'search (similar words, legs, fusion, details)')
    if (!st) continue
    const { rows } = await db.executeQuery<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>({ sql: `EXPLAIN (ANALYZE, FORMAT JSON) ${st.sql}`, parameters: st.parameters, query: { kind: 'RawNode' } as never, queryId: { queryId: 'explain' } })
    const [{ Plan: plan, 'Execution Time': total }] = rows[0]!['QUERY PLAN']
    const cte = new Map<string, number>()
    const walk = (node: PlanNode) => {
      const name = node['Subplan Name']?.replace(/^CTE /, '')
      if (name && !cte.has(name)) cte.set(name, (node['Actual Total Time'] ?? 0) * (node['Actual Loops'] ?? 1))
      for (const child of node.Plans ?? []) walk(child)
    }
    walk(plan)
    const similar = cte.get('lookalikes') ?? 0
    const parts: Partial<Record<Part, number>> = { 'similar words': similar }
    if (cte.has('keyword')) parts['keyword leg'] = cte.get('keyword')!
    if (cte.has('trigram')) parts['trigram leg'] = Math.max(0, cte.get('trigram')! - similar)
    if (cte.has('vector')) parts['vector leg'] = cte.get('vector')!
    parts['fusion and details'] = Math.max(0, total - PARTS.slice(0, 4).reduce((n, p) => n + (parts[p] ?? 0), 0))
    out.push(parts)
  }
  return out
}

/** EXPLAIN ANALYZE of both statements of the slowest queries. */
async function explain(db: Kysely<DB>, samples: Sample[]): Promise<string> {
  const out: string[] = []
  const slowest = [...samples].sort((a, b) => b.ms - a.ms).slice(0, EXPLAIN)
  for (const s of slowest) {
    out.push(`\n### ${s.ms.toFixed(1)} ms: "${s.query.query}" [${s.query.kind}; ${s.query.filter}]`)
    for (const st of s.statements) {
      if (st.phase === 'other') continue
      out.push(`\n-- ${st.phase}: ${st.ms.toFixed(1)} ms`)
      const { rows } = await db.executeQuery<{ 'QUERY PLAN': string }>({ sql: `EXPLAIN (ANALYZE, BUFFERS) ${st.sql}`, parameters: st.parameters, query: { kind: 'RawNode' } as never, queryId: { queryId: 'explain' } })
      out.push(rows.map((r) => r['QUERY PLAN']).join('\n'))
    }
  }
  return out.join('\n')
}

// --- report -----------------------------------------------------------------------------------

if (!isMainThread) {
  // An EmbedPool worker: content_norm and vector literals for a book's chunk texts.
  const embedder = createLocalEmbedder()
  parentPort!.on('message', async (m: { id: number; texts: string[] }) => {
    const vectors = binaryVectors(await embedder.embed(m.texts))
    parentPort!.postMessage({ id: m.id, norms: m.texts.map(normalizeText), vectors }, [vectors])
  })
} else {
  await main()
}

async function main() {
  const results: Awaited<ReturnType<typeof measure>>[] = []
  for (const size of SIZES) {
    process.stderr.write(`building ${size} chunks…\n`)
    results.push(await measure(size))
  }

  const lines: string[] = []
  const first = results[0]!
  const sizes = results.map((r) => r.size.toLocaleString('en')).join(', ')
  lines.push(
    '## Retrieval latency and HNSW recall',
    '',
    'A synthetic Mongolian corpus in embedded PGlite on disk (a DATA_DIR under .cache/ or the temp dir; PGlite\'s default',
    `settings: ${[...new Set(results.map((r) => r.sharedBuffers))].join(' / ')} shared buffers), built-in embedder (768 dimensions). Chunks: the 7 sample books (63 chunks: the`,
    'smallest size is just them) plus generated books over all 21 subjects and grades 1–12; a generated chunk has',
    '120–260 words — 30% verbatim sample sentences, the rest generated sentences whose words come from a Zipf-ranked',
    'vocabulary (the sample words first, then ~300k generated Mongolian-looking stems with case endings), the book\'s and',
    'the section\'s topic words, and one-off words — a large vocabulary (1.3M distinct words at 100k chunks), on the hard',
    'side for the vocabulary lookups. Loaded per book with createTextbook, one INSERT of exactly what insertChunks stores',
    '(content_norm and embeddings computed in worker threads, spot-checked against insertChunks\' values) and markReady',
    '(which keeps search_words; checked against the chunks afterwards); the GIN, HNSW and trigram indexes are dropped for',
    'the load and rebuilt from their own definitions, then ANALYZE (`--store` loads with insertChunks itself,',
    '`--with-indexes` keeps the indexes: both slower). `--keep` keeps the built databases in .cache/ for reruns.',
    `Queries per size: the ${labelled.length} labelled questions and ${SYNTHETIC_QUERIES} cut from generated chunks (same words, re-inflected, typed in Latin`,
    'letters, one rare topic word), each with one of five filters (none, own grade preferred, subject, grade only,',
    'subject + own grade). One untimed warm-up pass, then each query timed once, end to end (`retrievePassages`, limit 5,',
    `all three legs; ${[...new Set(results.flatMap((r) => r.samples.map((x) => x.statements.length)))].sort().join(' or ')} statements per call), with the similar-word cache emptied before each call, so every`,
    'query word is looked up in the vocabulary; the row "similar words cached" times the same calls once more before that,',
    'each query\'s words already looked up by the warm-up (retrieve.ts caches them per vocabulary).',
    '',
    '```',
    `npx node bench/retrieval-latency.ts --sizes ${SIZES.join(',')} --keep [--hnsw-params 32:200] [--explain N] [--write]`,
    '```',
    '',
  )
  lines.push('| corpus | chunks | books | distinct words | database | built in (insert / markReady / index builds) | load average during the timed pass |', '|---|---|---|---|---|---|---|')
  for (const r of results) {
    const s = r.built.stats
    const built = s.reused ? (s['total s'] ? `reused (first built in ${s['total s']} s)` : 'reused') : `${s['total s']} s (${s['insert s']} / ${s['markReady s']} / ${s['index build s']} s)`
    lines.push(`| ${r.size.toLocaleString('en')} | ${s.chunks} | ${s.books} | ${s['distinct words (search_words)']} | ${s['database size MB']} MB | ${built} | ${r.load[0]!.toFixed(1)} → ${r.loadAfter[0]!.toFixed(1)} (1 min) on ${cpus().length} cores |`)
  }
  lines.push('', 'Whole `retrievePassages` call, ms:', '', '| corpus | queries | p50 | p95 | p99 | max | mean |', '|---|---|---|---|---|---|---|')
  for (const r of results) {
    const t = r.samples.map((s) => s.ms)
    lines.push(`| ${r.size.toLocaleString('en')} | ${t.length} | ${ms(percentile(t, 50))} | **${ms(percentile(t, 95))}** | ${ms(percentile(t, 99))} | ${ms(Math.max(...t))} | ${ms(t.reduce((a, b) => a + b, 0) / t.length)} |`)
  }
  for (const r of results) {
    const t = r.cached.map((s) => s.ms)
    lines.push(`| ${r.size.toLocaleString('en')}, similar words cached | ${t.length} | ${ms(percentile(t, 50))} | ${ms(percentile(t, 95))} | ${ms(percentile(t, 99))} | ${ms(Math.max(...t))} | ${ms(t.reduce((a, b) => a + b, 0) / t.length)} |`)
  }
  lines.push('', 'The same calls in CPU time of the process (PGlite runs in it; other processes\' load inflates it less than wall time), ms:', '', '| corpus | p50 | p95 | p99 |', '|---|---|---|---|')
  for (const r of results) {
    const t = r.samples.map((s) => s.cpuMs)
    lines.push(`| ${r.size.toLocaleString('en')} | ${ms(percentile(t, 50))} | ${ms(percentile(t, 95))} | ${ms(percentile(t, 99))} |`)
  }
  lines.push('', 'By statement (its own duration inside the same calls; p50 / p95 ms):', '')
  lines.push(`| step | ${results.map((r) => r.size.toLocaleString('en')).join(' | ')} |`, `|---|${results.map(() => '---').join('|')}|`)
  for (const phase of PHASES) {
    if (phase === 'other' && !results.some((r) => r.samples.some((s) => s.phases.other !== undefined))) continue
    lines.push(`| ${phase} | ${results.map((r) => {
      const t = r.samples.map((s) => s.phases[phase]).filter((x): x is number => x !== undefined)
      return `${ms(percentile(t, 50))} / ${ms(percentile(t, 95))}`
    }).join(' | ')} |`)
  }
  lines.push('', 'Inside the search statement, from EXPLAIN ANALYZE of each query\'s statement afterwards (instrumented, so slower; p50 / p95 ms):', '')
  lines.push(`| part | ${results.map((r) => r.size.toLocaleString('en')).join(' | ')} |`, `|---|${results.map(() => '---').join('|')}|`)
  for (const part of PARTS) {
    lines.push(`| ${part} | ${results.map((r) => {
      const t = r.parts.map((p) => p[part]).filter((x): x is number => x !== undefined)
      return `${ms(percentile(t, 50))} / ${ms(percentile(t, 95))}`
    }).join(' | ')} |`)
  }
  lines.push('', 'Whole call by kind of query and by filter (p50 / p95 ms):', '')
  const kinds = [...new Set(first.queries.map((q) => q.kind))]
  lines.push(`| query | ${results.map((r) => r.size.toLocaleString('en')).join(' | ')} |`, `|---|${results.map(() => '---').join('|')}|`)
  for (const k of kinds) lines.push(`| ${k} | ${results.map((r) => { const t = r.samples.filter((s) => s.query.kind === k).map((s) => s.ms); return `${ms(percentile(t, 50))} / ${ms(percentile(t, 95))}` }).join(' | ')} |`)
  for (const f of FILTERS) lines.push(`| filter: ${f} | ${results.map((r) => { const t = r.samples.filter((s) => s.query.filter === f).map((s) => s.ms); return `${ms(percentile(t, 50))} / ${ms(percentile(t, 95))}` }).join(' | ')} |`)
  const withRecall = results.filter((r) => r.recall.rows.length)
  if (withRecall.length) {
    lines.push(
      '',
      'Beside the text legs the vector leg uses no index: it ranks the chunks the text legs found (at most 60) by exact',
      'cosine distance, so it loses nothing to approximation (docs/decisions/010, "The vector leg ranks what the text',
      `legs found"). The HNSW index serves the vector leg alone (\`legs: ['vector']\`). Its recall@10 against exact search`,
      `(sequential scan), for the same query embeddings; the vector leg alone runs with ef_search ${HNSW_EF_SEARCH} and iterative scan`,
      '(relaxed order, re-sorted):',
      '',
    )
    lines.push(`| scan | ef_search | ${withRecall.map((r) => `${r.size.toLocaleString('en')}: recall@10 · with near-ties · searches (of them via HNSW) · p50 / p95 ms`).join(' | ')} |`, `|---|---|${withRecall.map(() => '---').join('|')}|`)
    for (const [i, row] of withRecall[0]!.recall.rows.entries()) {
      lines.push(`| ${row.name} | ${row.efSearch || '–'} | ${withRecall.map((r) => { const x = r.recall.rows[i]!; return `**${x.recall.toFixed(3)}** · ${x.nearRecall.toFixed(3)} · ${x.queries} (${x.hnsw}) · ${ms(x.ms50)} / ${ms(x.ms95)}` }).join(' | ')} |`)
    }
    lines.push('', `Median cosine distance of the exact 1st / 5th / 10th neighbour (no filter): ${withRecall.map((r) => `${r.recall.distances} at ${r.size.toLocaleString('en')}`).join(', ')}.`)
    for (const r of withRecall.filter((x) => x.recall.builds.length)) {
      lines.push('', `Other HNSW build parameters at ${r.size.toLocaleString('en')} chunks (the migration's index is m = 16, ef_construction = 64; no filter):`, '', '| index | ef_search | recall@10 | p50 / p95 ms |', '|---|---|---|---|')
      for (const b of r.recall.builds) lines.push(`| ${b.name} | ${b.efSearch} | **${b.recall.toFixed(3)}** | ${ms(b.ms50)} / ${ms(b.ms95)} |`)
    }
  }
  const last = results.at(-1)!
  const p95 = (r: Awaited<ReturnType<typeof measure>>) => percentile(r.samples.map((x) => x.ms), 95)
  lines.push(
    '',
    `Targets: p95 ≤ 50 ms at 100k chunks (measured: ${results.map((r) => `${ms(p95(r))} ms at ${r.size.toLocaleString('en')}`).join(', ')}), HNSW recall@10 ≥ 0.95. Warm-up pass: ${results.map((r) => `${r.warmS.toFixed(0)} s at ${r.size.toLocaleString('en')}`).join(', ')}. Measured ${new Date().toISOString().slice(0, 10)} (sizes ${sizes}), load average ${last.load.map((x) => x.toFixed(1)).join(' / ')} (1 / 5 / 15 min) before the last timed pass.`,
  )
  const table = lines.join('\n')
  console.log(table)
  for (const r of results) if (r.explained) console.log(`\n## EXPLAIN ANALYZE, ${r.size} chunks\n${r.explained}`)
  console.log('\nbuild details:', JSON.stringify(results.map((r) => ({ size: r.size, ...r.built.stats })), null, 1))

  if (values.write) {
    const file = join(ROOT, 'docs/benchmarks.md')
    const start = '<!-- retrieval-latency:start -->'
    const end = '<!-- retrieval-latency:end -->'
    // Hand-written notes after this marker, inside the section, are kept.
    const notes = '<!-- retrieval-latency:notes -->'
    let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n'
    const old = new RegExp(`${start}[\\s\\S]*?${end}`).exec(doc)?.[0] ?? ''
    const kept = old.includes(notes) ? `\n${old.slice(old.indexOf(notes), old.length - end.length).trimEnd()}` : ''
    const block = `${start}\n${table}\n${kept}\n${end}`
    doc = old ? doc.replace(old, () => block) : `${doc.trimEnd()}\n\n${block}\n`
    writeFileSync(file, doc)
    console.log('\nupdated docs/benchmarks.md')
  }
}
