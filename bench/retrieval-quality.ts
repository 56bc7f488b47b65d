/**
 * Retrieval quality on the labelled questions in bench/data/retrieval-questions.json over the
 * sample textbooks (samples/textbooks). Loads the samples into a fresh in-memory database with
 * the built-in embedder, then reports hit@1, hit@5 and MRR (@10) for each leg alone, for the
 * fused retrieval, and for two whole-page BM25 baselines written here in plain TypeScript.
 *
 *   npx node bench/retrieval-quality.ts            # print the tables
 *   npx node bench/retrieval-quality.ts --write    # also update docs/benchmarks.md
 *   npx node bench/retrieval-quality.ts --misses   # also list the questions fused retrieval misses at rank 1
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { openDatabase } from '../src/db/index.ts'
import { migrate } from '../src/db/migrate.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import { normalizeText, transliterate } from '../src/services/retrieval/normalize.ts'
import { retrievePassages, type RetrievalLeg } from '../src/services/retrieval/retrieve.ts'
import { importSampleBook, loadSampleBooks, sampleChunks } from '../src/services/textbooks/samples.ts'
import { chunkEmbeddingText } from '../src/services/textbooks/store.ts'

interface Question {
  id: string
  query: string
  book: string
  pages: number[]
  kind: string
}

const questions = (JSON.parse(readFileSync(new URL('./data/retrieval-questions.json', import.meta.url), 'utf8')) as { questions: Question[] }).questions
const args = new Set(process.argv.slice(2))
const K = 10

// --- the system under test -------------------------------------------------------------------

const database = await openDatabase({ databaseUrl: null, dataDir: '', inMemory: true })
await migrate(database.db)
const embedder = createLocalEmbedder()
const books = loadSampleBooks()
const bookIds = new Map<string, number>()
for (const book of books) bookIds.set(book.file.replace(/\.md$/, ''), await importSampleBook(database.db, embedder, book))

type Ranked = { book: string; pageStart: number; pageEnd: number }[]
const bookOf = new Map([...bookIds].map(([name, id]) => [id, name]))

async function ours(q: Question, legs: readonly RetrievalLeg[]): Promise<Ranked> {
  const passages = await retrievePassages(database.db, { query: q.query, limit: K, legs }, embedder)
  return passages.map((p) => ({ book: bookOf.get(p.textbook.id)!, pageStart: p.pageStart, pageEnd: p.pageEnd }))
}

// --- BM25 baselines over whole pages ----------------------------------------------------------

interface Doc {
  book: string
  page: number
  text: string
}
const pages: Doc[] = books.flatMap((b) =>
  b.pages.map((p) => ({ book: b.file.replace(/\.md$/, ''), page: p.number ?? p.pdfPage, text: p.text })),
)

class BM25 {
  private docs: Map<string, number>[]
  private lengths: number[]
  private avgdl: number
  private df = new Map<string, number>()
  private tokenize: (s: string) => string[]
  private k1 = 1.2
  private b = 0.75
  constructor(texts: string[], tokenize: (s: string) => string[]) {
    this.tokenize = tokenize
    this.docs = texts.map((t) => {
      const tf = new Map<string, number>()
      for (const tok of tokenize(t)) tf.set(tok, (tf.get(tok) ?? 0) + 1)
      return tf
    })
    this.lengths = this.docs.map((d) => [...d.values()].reduce((a, b) => a + b, 0))
    this.avgdl = this.lengths.reduce((a, b) => a + b, 0) / this.docs.length
    for (const d of this.docs) for (const tok of d.keys()) this.df.set(tok, (this.df.get(tok) ?? 0) + 1)
  }
  rank(query: string): number[] {
    const n = this.docs.length
    const terms = [...new Set(this.tokenize(query))]
    const scores = this.docs.map((d, i) => {
      let s = 0
      for (const t of terms) {
        const f = d.get(t)
        if (!f) continue
        const df = this.df.get(t)!
        const idf = Math.log(1 + (n - df + 0.5) / (df + 0.5))
        s += (idf * f * (this.k1 + 1)) / (f + this.k1 * (1 - this.b + (this.b * this.lengths[i]!) / this.avgdl))
      }
      return s
    })
    return scores
      .map((s, i) => [s, i] as const)
      .filter(([s]) => s > 0)
      .sort((a, b) => b[0] - a[0] || a[1] - b[1])
      .map(([, i]) => i)
  }
}

// Open WebUI's BM25 leg (LangChain BM25Retriever) splits on whitespace and nothing else.
const whitespace = (s: string) => s.split(/\s+/).filter(Boolean)
const charTrigrams = (s: string) => {
  const t = ` ${normalizeText(s)} `
  const out: string[] = []
  for (let i = 0; i + 3 <= t.length; i++) out.push(t.slice(i, i + 3))
  return out
}
const bm25Words = new BM25(
  pages.map((p) => p.text),
  whitespace,
)
const bm25Trigrams = new BM25(
  pages.map((p) => p.text),
  charTrigrams,
)
const baseline = (index: BM25, transform: (q: string) => string = (q) => q) => async (q: Question): Promise<Ranked> =>
  index
    .rank(transform(q.query))
    .slice(0, K)
    .map((i) => ({ book: pages[i]!.book, pageStart: pages[i]!.page, pageEnd: pages[i]!.page }))

// The same BM25 over the very chunks retrieval returns (with their section titles), so the
// comparison does not depend on chunks sometimes spanning two pages.
const chunks = books.flatMap((b) => sampleChunks(b).map((c) => ({ book: b.file.replace(/\.md$/, ''), ...c })))
const bm25ChunkTrigrams = new BM25(
  chunks.map((c) => chunkEmbeddingText(c)),
  charTrigrams,
)
const chunkBaseline = (index: BM25, transform: (q: string) => string = (q) => q) => async (q: Question): Promise<Ranked> =>
  index
    .rank(transform(q.query))
    .slice(0, K)
    .map((i) => ({ book: chunks[i]!.book, pageStart: chunks[i]!.pageStart, pageEnd: chunks[i]!.pageEnd }))

// --- scoring ---------------------------------------------------------------------------------

function firstHit(q: Question, ranked: Ranked): number {
  const i = ranked.findIndex((r) => r.book === q.book && q.pages.some((p) => p >= r.pageStart && p <= r.pageEnd))
  return i < 0 ? Infinity : i + 1
}

interface Row {
  name: string
  hit1: number
  hit5: number
  mrr: number
  byKind: Map<string, { n: number; hit1: number }>
  ranks: Map<string, number>
  ms: number[]
}

async function evaluate(name: string, run: (q: Question) => Promise<Ranked>): Promise<Row> {
  const row: Row = { name, hit1: 0, hit5: 0, mrr: 0, byKind: new Map(), ranks: new Map(), ms: [] }
  for (const q of questions) {
    const t0 = performance.now()
    const rank = firstHit(q, await run(q))
    row.ms.push(performance.now() - t0)
    row.ranks.set(q.id, rank)
    if (rank === 1) row.hit1++
    if (rank <= 5) row.hit5++
    if (rank <= K) row.mrr += 1 / rank
    const k = row.byKind.get(q.kind) ?? { n: 0, hit1: 0 }
    k.n++
    if (rank === 1) k.hit1++
    row.byKind.set(q.kind, k)
  }
  const n = questions.length
  row.hit1 /= n
  row.hit5 /= n
  row.mrr /= n
  return row
}

const rows: Row[] = []
rows.push(await evaluate('keyword leg only', (q) => ours(q, ['keyword'])))
rows.push(await evaluate('trigram leg only', (q) => ours(q, ['trigram'])))
rows.push(await evaluate('vector leg only (local embedder)', (q) => ours(q, ['vector'])))
rows.push(await evaluate('**fused (keyword + trigram + vector)**', (q) => ours(q, ['keyword', 'trigram', 'vector'])))
rows.push(await evaluate('BM25, whitespace tokens, whole pages', baseline(bm25Words)))
rows.push(await evaluate('BM25, character trigrams, whole pages', baseline(bm25Trigrams)))
rows.push(await evaluate('BM25, character trigrams + our transliteration', baseline(bm25Trigrams, transliterate)))
rows.push(await evaluate('BM25, character trigrams + our transliteration, our chunks', chunkBaseline(bm25ChunkTrigrams, transliterate)))
await database.close()

// --- report ----------------------------------------------------------------------------------

const kinds = [...new Set(questions.map((q) => q.kind))]
const fmt = (x: number) => x.toFixed(3)
const kindCounts = kinds.map((k) => `${k} ${questions.filter((q) => q.kind === k).length}`).join(', ')
const fused = rows[3]!
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.95)]!
const table = [
  '## Retrieval quality',
  '',
  `${questions.length} labelled Mongolian questions (bench/data/retrieval-questions.json: ${kindCounts}) over the`,
  `${books.length} sample books (samples/textbooks: ${pages.length} pages, ${chunks.length} chunks), built-in embedder, fresh in-memory database.`,
  'A result is a hit when it is from the labelled book and its pages include a labelled page; MRR counts the first hit',
  'in the top 10. Baselines rank whole pages (or, in the last row, the same chunks) with BM25 (k1 1.2, b 0.75):',
  'whitespace tokens as Open WebUI\'s BM25 leg splits them, and character trigrams of the normalized text.',
  '',
  '```',
  'npx node bench/retrieval-quality.ts [--misses] [--write]',
  '```',
  '',
  '| method | hit@1 | hit@5 | MRR@10 |',
  '|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${fmt(r.hit1)} | ${fmt(r.hit5)} | ${fmt(r.mrr)} |`),
  '',
  'hit@1 by kind of question:',
  '',
  `| method | ${kinds.join(' | ')} |`,
  `|---|${kinds.map(() => '---').join('|')}|`,
  ...rows.map((r) => `| ${r.name} | ${kinds.map((k) => fmt(r.byKind.get(k)!.hit1 / r.byKind.get(k)!.n)).join(' | ')} |`),
  '',
  `Targets: fused hit@1 ≥ 0.9, hit@5 ≥ 0.97, MRR ≥ 0.93, and above character-trigram BM25. Fused retrieval took`,
  `${fmt(p95(fused.ms))} ms p95 per query on this tiny corpus (not a latency benchmark; load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores). The questions were written together`,
  'with the books and the tuning (stopwords, stemming rules, n-gram weight), so real questions will score lower; see',
  'docs/decisions/010-mongolian-retrieval.md.',
].join('\n')

console.log(table)
if (args.has('--misses')) {
  console.log('\nFused misses at rank 1:')
  for (const q of questions) {
    const r = fused.ranks.get(q.id)!
    if (r !== 1) console.log(`  ${q.id} [${q.kind}] rank ${r === Infinity ? '>10' : r}: ${q.query} → ${q.book} p.${q.pages.join(',')}`)
  }
}

if (args.has('--write')) {
  const file = new URL('../docs/benchmarks.md', import.meta.url)
  const start = '<!-- retrieval-quality:start -->'
  const end = '<!-- retrieval-quality:end -->'
  const block = `${start}\n${table}\n${end}`
  let doc = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n'
  doc = doc.includes(start) ? doc.replace(new RegExp(`${start}[\\s\\S]*?${end}`), block) : `${doc.trimEnd()}\n\n${block}\n`
  writeFileSync(file, doc)
  console.log('\nupdated docs/benchmarks.md')
}
