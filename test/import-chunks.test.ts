import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { sql } from 'kysely'
import { openDatabase, type Database } from '../src/db/index.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import { createI18n } from '../src/services/i18n.ts'
import { retrievePassages } from '../src/services/retrieval/retrieve.ts'
import type { TextbookStatus } from '../src/db/schema.ts'
import { importInProgress } from '../src/services/library/admin.ts'
import { ChunkImportError, IMPORT_CHUNKS_LEASE, importChunksFile, MAX_IMPORT_ERRORS, MAX_LINE_BYTES } from '../src/services/textbooks/import-chunks.ts'
import { loadSampleBooks, sampleChunks, type SampleBook } from '../src/services/textbooks/samples.ts'
import { chunkEmbeddingText, deleteTextbook } from '../src/services/textbooks/store.ts'
import { freshDatabase } from './helpers/db.ts'

// `importChunksFile` and `bagsh import-chunks` on a real embedded Postgres: files made here from
// the sample books and the built-in embedder (docs/import-format.md), one bad line at a time.

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const embedder = createLocalEmbedder()
const active = { model: embedder.model, dimensions: embedder.dimensions }
const books = new Map(loadSampleBooks().map((b) => [b.file.replace(/\.md$/, ''), b]))
const i18n = createI18n()
let database: Database
let dir: string

before(async () => {
  database = await freshDatabase()
  dir = mkdtempSync(join(tmpdir(), 'bagsh-import-chunks-'))
})
after(async () => {
  await database.close()
  rmSync(dir, { recursive: true, force: true })
})

type Line = Record<string, unknown>

function header(book: SampleBook, extra: { replaces?: number; model?: string; dimensions?: number } = {}): Line {
  return {
    format: 'bagsh-chunks',
    version: 1,
    textbook: { ...book.meta, ...(extra.replaces ? { replaces: extra.replaces } : {}) },
    embedding: { model: extra.model ?? embedder.model, dimensions: extra.dimensions ?? embedder.dimensions },
  }
}

/** The sample book as the owner's pipeline would write it: header, then one line per passage. */
async function bookLines(book: SampleBook, extra: Parameters<typeof header>[1] = {}): Promise<Line[]> {
  const chunks = sampleChunks(book)
  const vectors = await embedder.embed(chunks.map(chunkEmbeddingText))
  return [
    header(book, extra),
    ...chunks.map((c, i) => ({
      order: c.ord,
      section_path: c.sectionPath,
      section_title: c.sectionTitle,
      page_start: c.pageStart,
      page_end: c.pageEnd,
      pdf_page_start: c.pdfPageStart,
      pdf_page_end: c.pdfPageEnd,
      content: c.content,
      embedding: vectors[i],
    })),
  ]
}

const jsonl = (lines: (Line | string)[]) => lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n'
const streamOf = (text: string | Buffer) => Readable.from([Buffer.from(text)])

async function state() {
  const books = await database.db.selectFrom('textbooks').select(['id', 'status']).orderBy('id').execute()
  const chunks = await database.db.selectFrom('chunks').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  const words = await database.db.selectFrom('search_words').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  return { books, chunks: Number(chunks.n), words: Number(words.n) }
}

async function rejected(text: string | Buffer): Promise<ChunkImportError> {
  const before = await state()
  const err = await importChunksFile(database.db, streamOf(text), { active }).then(
    () => assert.fail('the file was imported'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof ChunkImportError, String(err))
  // Nothing of it is left: no textbook row, no chunks, no words.
  assert.deepEqual(await state(), before)
  return err
}

const en = (key: string, params: Record<string, unknown> = {}) => {
  assert.ok(i18n.exists(key, { lng: 'en', fallbackLng: false }) && i18n.exists(key, { lng: 'mn', fallbackLng: false }), `${key} in both locales`)
  return i18n.t(key, { lng: 'en', ...params })
}
const lineKeys = (err: ChunkImportError) => err.errors.map((e) => [e.line, e.key.replace(/^importChunks\.errors\./, '')])

test('a valid file imports without re-embedding and search finds its pages', async () => {
  const lines = await bookLines(books.get('biology-7')!)
  const { textbookId, chunks } = await importChunksFile(database.db, streamOf(jsonl(lines)), { active })
  assert.equal(chunks, lines.length - 1)
  const book = await database.db.selectFrom('textbooks').selectAll().where('id', '=', textbookId).executeTakeFirstOrThrow()
  assert.equal(book.status, 'ready')
  assert.equal(book.chunk_count, chunks)
  assert.equal(book.embedding_model, embedder.model)
  assert.equal(book.source_path, null)
  assert.deepEqual([book.subject, book.grade, book.title], ['biology', 7, 'Биологи 7'])
  // The table of contents comes from the sections of the passages, in order.
  assert.ok(book.toc.some((e) => e.path === '2.1' && e.level === 2), JSON.stringify(book.toc))
  assert.ok(book.page_count >= Math.max(...lines.slice(1).map((l) => l.pdf_page_end as number)))

  const [top] = await retrievePassages(database.db, { query: 'фотосинтезийн явц', limit: 3 }, embedder)
  assert.equal(top?.textbook.id, textbookId)
  assert.equal(top.section.path, '2.1')
  assert.ok(top.ranks.keyword && top.ranks.vector, 'found by the text legs and by its imported embedding')
  const [latin] = await retrievePassages(database.db, { query: 'fotosintez', limit: 1 }, embedder)
  assert.equal(latin?.textbook.id, textbookId)

  // Stored as given (scaled to unit length): the same vectors the local embedder makes.
  const { rows } = await sql<{ n: number }>`SELECT max(abs(vector_norm(embedding) - 1)) AS n FROM chunks WHERE textbook_id = ${textbookId}`.execute(database.db)
  assert.ok(Number(rows[0]!.n) < 1e-5)
})

test('embeddings that are not unit length are scaled; pdf pages default to the printed ones; blank lines, CRLF and a BOM are fine', async () => {
  const [head, first, second] = await bookLines(books.get('chemistry-8')!)
  const scaled = { ...first, embedding: (first!.embedding as number[]).map((x) => x * 40), pdf_page_start: undefined, pdf_page_end: undefined }
  const text = '\ufeff' + [JSON.stringify(head), '', JSON.stringify(scaled), '   ', JSON.stringify(second)].join('\r\n')
  const { textbookId, chunks } = await importChunksFile(database.db, streamOf(text), { active })
  assert.equal(chunks, 2)
  const rows = await database.db
    .selectFrom('chunks')
    .select(['ord', 'page_start', 'pdf_page_start', sql<number>`vector_norm(embedding)`.as('norm')])
    .where('textbook_id', '=', textbookId)
    .orderBy('ord')
    .execute()
  assert.equal(rows[0]!.pdf_page_start, rows[0]!.page_start)
  for (const r of rows) assert.ok(Math.abs(Number(r.norm) - 1) < 1e-5)
  await database.db.transaction().execute((trx) => deleteTextbook(trx, textbookId))
})

test('a file with one bad line is rejected whole, naming the line, and leaves nothing behind', async () => {
  const lines = await bookLines(books.get('physics-8')!)
  const vector = lines[1]!.embedding as number[]
  const withLine = (n: number, change: (line: Line) => Line | string) => jsonl(lines.map((l, i) => (i === n - 1 ? change(l) : l)))
  const cases: [string, string, [number, string][]][] = [
    ['wrong dimension', withLine(3, (l) => ({ ...l, embedding: vector.slice(1) })), [[3, 'embeddingLength']]],
    ['NaN (not JSON)', withLine(4, (l) => JSON.stringify(l).replace(/"embedding":\[[^,]+/, '"embedding":[NaN')), [[4, 'json']]],
    ['overflowing number', withLine(4, (l) => JSON.stringify(l).replace(/"embedding":\[[^,]+/, '"embedding":[1e999')), [[4, 'embeddingNotFinite']]],
    ['string in the embedding', withLine(2, (l) => ({ ...l, embedding: ['0.1', ...vector.slice(1)] })), [[2, 'embeddingNotFinite']]],
    ['all-zero embedding', withLine(2, (l) => ({ ...l, embedding: vector.map(() => 0) })), [[2, 'embeddingZero']]],
    ['empty text', withLine(5, (l) => ({ ...l, content: '  \n ' })), [[5, 'textEmpty']]],
    ['NUL in the text', withLine(5, (l) => ({ ...l, content: 'а\u0000б' })), [[5, 'textControl']]],
    ['pages backwards', withLine(6, (l) => ({ ...l, page_start: 9, page_end: 3 })), [[6, 'pageOrder']]],
    ['page zero', withLine(6, (l) => ({ ...l, page_start: 0 })), [[6, 'pageInvalid']]],
    ['absurd page', withLine(6, (l) => ({ ...l, page_end: 10_000_000 })), [[6, 'pageInvalid']]],
    ['one pdf page only', withLine(6, (l) => ({ ...l, pdf_page_end: undefined })), [[6, 'pdfPagesPair']]],
    ['malformed JSON', withLine(7, (l) => JSON.stringify(l).slice(0, 200)), [[7, 'json']]],
    ['not an object', withLine(7, () => '[1, 2, 3]'), [[7, 'notObject']]],
    ['typo in a field name', withLine(2, (l) => ({ ...l, page_strat: 1 })), [[2, 'unknownField']]],
    ['missing order', withLine(2, (l) => ({ ...l, order: undefined })), [[2, 'fieldMissing']]],
    ['duplicate order', withLine(8, (l) => ({ ...l, order: lines[2]!.order })), [[8, 'orderDuplicate']]],
    ['unknown subject', withLine(1, (l) => ({ ...l, textbook: { ...(l.textbook as Line), subject: 'alchemy' } })), [[1, 'subjectUnknown']]],
    ['grade 13', withLine(1, (l) => ({ ...l, textbook: { ...(l.textbook as Line), grade: 13 } })), [[1, 'integerRange']]],
    ['not the format', withLine(1, (l) => ({ ...l, format: 'other' })), [[1, 'format']]],
    ['a later version', withLine(1, (l) => ({ ...l, version: 2 })), [[1, 'version']]],
    ['replaces nothing', withLine(1, (l) => ({ ...l, textbook: { ...(l.textbook as Line), replaces: 99999 } })), [[1, 'replacesMissing']]],
    ['dimensions not supported', withLine(1, (l) => ({ ...l, embedding: { model: embedder.model, dimensions: 3072 } })), [[1, 'dimensionsUnsupported']]],
    ['another model', withLine(1, (l) => ({ ...l, embedding: { model: 'text-embedding-3-small', dimensions: 768 } })), [[1, 'modelMismatch']]],
    ['no chunks', jsonl([lines[0]!]), [[1, 'noChunks']]],
    ['empty file', '', [[1, 'empty']]],
  ]
  for (const [label, text, expected] of cases) {
    const err = await rejected(text)
    assert.deepEqual(lineKeys(err), expected, label)
    for (const e of err.errors) assert.ok(en(e.key, e.params).length > 0)
  }

  // The header's dimensions differ from the deployment's: line 1 says so, and the passages
  // are checked against the file's own dimensions (so a 1536 file with 1536 vectors has no other error).
  const wide = lines.map((l, i) => (i === 0 ? header(books.get('physics-8')!, { model: 'text-embedding-3-small', dimensions: 1536 }) : { ...l, embedding: [...(l.embedding as number[]), ...(l.embedding as number[])] }))
  const mismatch = await rejected(jsonl(wide))
  assert.deepEqual(lineKeys(mismatch), [[1, 'modelMismatch']])
  assert.equal(
    en(mismatch.errors[0]!.key, mismatch.errors[0]!.params),
    `The file was embedded with text-embedding-3-small (1536 dimensions), but this deployment searches with ${embedder.model} (768 dimensions). ` +
      "Embed the passages with the active model, or set EMBEDDINGS_MODEL and EMBEDDINGS_DIMENSIONS to the file's model and re-index.",
  )
  // Bytes that are not UTF-8, and a line over the limit.
  const invalidUtf8 = await rejected(Buffer.concat([Buffer.from(jsonl(lines.slice(0, 2))), Buffer.from([0x7b, 0xff, 0x7d, 0x0a])]))
  assert.deepEqual(lineKeys(invalidUtf8), [[3, 'notUtf8']])
  const long = await rejected(jsonl([lines[0]!, lines[1]!, { ...lines[2]!, content: 'ж'.repeat(MAX_LINE_BYTES) }]))
  assert.deepEqual(lineKeys(long), [[3, 'lineTooLong']])
})

test('many errors are all reported with their lines, up to a limit; a bad last line undoes the batches already stored', async () => {
  const lines = await bookLines(books.get('geography-7')!)
  const [head, ...body] = lines
  // 260 passages (three insert batches), the last one wrong.
  const many: Line[] = Array.from({ length: 260 }, (_, i) => ({ ...body[i % body.length]!, order: i }))
  many[259] = { ...many[259]!, page_start: -1 }
  const late = await rejected(jsonl([head!, ...many]))
  assert.deepEqual(lineKeys(late), [[261, 'pageInvalid']])

  const several = await rejected(jsonl([head!, { ...body[0]!, content: '' }, body[1]!, { ...body[2]!, embedding: [] }, { ...body[3]!, order: -1, page_start: 'one' }]))
  assert.deepEqual(lineKeys(several), [
    [2, 'textEmpty'],
    [4, 'embeddingLength'],
    [5, 'integerRange'],
    [5, 'pageInvalid'],
  ])
  assert.equal(several.truncated, false)

  const hopeless = await rejected(jsonl([head!, ...Array.from({ length: 50 }, (_, i) => ({ ...body[0]!, order: i, content: '' }))]))
  assert.equal(hopeless.errors.length, MAX_IMPORT_ERRORS)
  assert.equal(hopeless.truncated, true)
  assert.deepEqual(hopeless.errors.map((e) => e.line), Array.from({ length: MAX_IMPORT_ERRORS }, (_, i) => i + 2))
})

test('a re-import replaces the old version atomically; a rejected one leaves the old version as it was', async () => {
  const book = books.get('history-9')!
  const first = await importChunksFile(database.db, streamOf(jsonl(await bookLines(book))), { active })
  const search = () => retrievePassages(database.db, { query: 'Их Монгол улс байгуулагдсан', subject: 'history', limit: 3 }, embedder)
  assert.equal((await search())[0]?.textbook.id, first.textbookId)

  // A rejected new version: the old one is untouched and still found.
  const newer = await bookLines(book, { replaces: first.textbookId })
  const broken = newer.map((l, i) => (i === newer.length - 1 ? { ...l, embedding: [1, 2, 3] } : l))
  await rejected(jsonl(broken))
  assert.equal((await search())[0]?.textbook.id, first.textbookId)

  // A good new version, read from a stream that pauses after its first batch is stored.
  const many = [newer[0]!, ...Array.from({ length: 150 }, (_, i) => ({ ...newer[1 + (i % (newer.length - 1))]!, order: i }))]
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let paused = false
  async function* slow() {
    for (const [i, line] of many.entries()) {
      if (i === 120) {
        paused = true
        await gate
      }
      yield JSON.stringify(line) + '\n'
    }
  }
  let progress = 0
  const running = importChunksFile(database.db, slow(), { active, onProgress: (p) => (progress = p.chunks) })
  while (!paused || progress < 100) await sleep(10)
  const during = await search()
  assert.ok(during.length > 0 && during.every((p) => p.textbook.id === first.textbookId), 'mid-import, search sees the old version only')
  const pending = await database.db.selectFrom('textbooks').select(['id', 'status']).where('replaces_id', '=', first.textbookId).execute()
  assert.deepEqual(pending.map((b) => b.status), ['processing'])
  release()
  const second = await running
  assert.equal(second.chunks, 150)
  const after = await search()
  assert.equal(after[0]?.textbook.id, second.textbookId)
  assert.ok(after.every((p) => p.textbook.id !== first.textbookId))
  const old = await database.db.selectFrom('textbooks').select(['status', 'chunk_count']).where('id', '=', first.textbookId).executeTakeFirstOrThrow()
  assert.deepEqual(old, { status: 'replaced', chunk_count: 0 })
  const fresh = await database.db.selectFrom('textbooks').select(['status', 'version']).where('id', '=', second.textbookId).executeTakeFirstOrThrow()
  assert.deepEqual(fresh, { status: 'ready', version: 2 })
  // A replaced book cannot be replaced again.
  const again = await rejected(jsonl(await bookLines(book, { replaces: first.textbookId })))
  assert.deepEqual(lineKeys(again), [[1, 'replacesMissing']])
  // The admin form's "new version" names the book to replace itself, over the header.
  const third = await importChunksFile(database.db, streamOf(jsonl(await bookLines(book))), { active, replacesId: second.textbookId })
  const versions = await database.db.selectFrom('textbooks').select(['id', 'status', 'version']).where('id', 'in', [second.textbookId, third.textbookId]).orderBy('id').execute()
  assert.deepEqual(versions, [
    { id: second.textbookId, status: 'replaced', version: 2 },
    { id: third.textbookId, status: 'ready', version: 3 },
  ])
})

test('a 5,000-passage file streams from disk in batches', async (t) => {
  const book = books.get('math-6')!
  const base = await bookLines(book)
  const file = join(dir, 'large.jsonl')
  const out = createWriteStream(file)
  out.write(JSON.stringify(header(book)) + '\n')
  for (let i = 0; i < 5000; i++) {
    const line = base[1 + (i % (base.length - 1))]!
    // Distinct vectors: the HNSW index does not see 5,000 copies of a few points.
    const embedding = (line.embedding as number[]).map((x, k) => (k === i % 768 ? x + 0.05 : x))
    if (!out.write(JSON.stringify({ ...line, order: i, page_start: 1 + (i >> 4), page_end: 1 + (i >> 4), pdf_page_start: 1 + (i >> 4), pdf_page_end: 1 + (i >> 4), embedding }) + '\n')) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')

  const started = performance.now()
  let batches = 0
  const { textbookId, chunks } = await importChunksFile(database.db, file, { active, onProgress: () => void batches++ })
  const seconds = (performance.now() - started) / 1000
  t.diagnostic(`5,000 passages imported in ${seconds.toFixed(1)} s (${Math.round(chunks / seconds)} per second), rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`)
  assert.equal(chunks, 5000)
  assert.equal(batches, 50)
  const book2 = await database.db.selectFrom('textbooks').select(['status', 'chunk_count', 'page_count']).where('id', '=', textbookId).executeTakeFirstOrThrow()
  assert.deepEqual(book2, { status: 'ready', chunk_count: 5000, page_count: 313 })
  const found = await retrievePassages(database.db, { query: 'бутархай', textbookId, limit: 3 }, embedder)
  assert.equal(found.length, 3)
})

// --- The CLI, as real processes (each boots PGlite, so just two) ---

function bagsh(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/bagsh.js'), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`bagsh ${args.join(' ')} timed out\n${stdout}\n${stderr}`))
    }, 120_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

test('bagsh import-chunks: exit 0 when the book is searchable, exit 1 naming each bad line', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bagsh-import-chunks-cli-'))
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'silent', NODE_ENV: 'development' }
  for (const name of ['DATABASE_URL', 'NODE_TEST_CONTEXT', 'EMBEDDINGS_BASE_URL', 'EMBEDDINGS_DIMENSIONS', 'EMBEDDINGS_MODEL']) delete env[name]
  try {
    const lines = await bookLines(books.get('mongolian-5')!)
    const good = join(dir, 'mongolian-5.jsonl')
    writeFileSync(good, jsonl(lines))
    const ok = await bagsh(['import-chunks', good], env)
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, new RegExp(`^Textbook 1 "Монгол хэл 5" is searchable: \\d+ pages, ${lines.length - 1} passages, \\d+ sections \\(embeddings of ${embedder.model}\\)\\.\\n$`))
    assert.match(ok.stderr, /Importing .*mongolian-5\.jsonl/)

    const bad = join(dir, 'bad.jsonl')
    writeFileSync(bad, jsonl(lines.map((l, i) => (i === 3 ? { ...l, content: '' } : i === 5 ? { ...l, page_start: 7, page_end: 2 } : l))))
    const refused = await bagsh(['import-chunks', bad], env)
    assert.equal(refused.code, 1)
    assert.equal(refused.stdout, '')
    const errorLines = refused.stderr.split('\n').filter((l) => l.startsWith('bagsh import-chunks: '))
    assert.deepEqual(errorLines, [
      `bagsh import-chunks: line 4: ${en('importChunks.errors.textEmpty', { field: 'content' })}`,
      `bagsh import-chunks: line 6: ${en('importChunks.errors.pageOrder', { startField: 'page_start', endField: 'page_end', start: 7, end: 2 })}`,
      `bagsh import-chunks: ${en('importChunks.errors.rejected', { count: 2 })}`,
    ])

    // Afterwards: the first book is searchable, the rejected one left no trace.
    const database2 = await openDatabase({ databaseUrl: null, dataDir })
    try {
      const rows = await database2.db.selectFrom('textbooks').select(['id', 'status']).execute()
      assert.deepEqual(rows, [{ id: 1, status: 'ready' }])
      const [top] = await retrievePassages(database2.db, { query: 'нэр үг', limit: 1 }, embedder)
      assert.equal(top?.textbook.id, 1)
    } finally {
      await database2.close()
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('while an import runs it holds a lease that marks its book busy; the lease ends with the import, however it ends', async () => {
  const db = database.db
  const leases = () => db.selectFrom('jobs').select(['id', 'payload']).where('kind', '=', IMPORT_CHUNKS_LEASE).execute()
  const history = books.get('history-9')!
  const lines = await bookLines(history)
  const input = new PassThrough()
  const running = importChunksFile(db, input, { active })
  input.write(jsonl(lines.slice(0, 3)))
  let book: { id: number; status: TextbookStatus } | undefined
  for (let i = 0; i < 200 && !book; i++) {
    await sleep(10)
    book = await db.selectFrom('textbooks').select(['id', 'status']).where('title', '=', history.meta.title).where('status', '=', 'processing').executeTakeFirst()
  }
  assert.ok(book, 'the book is created as soon as the header is read')
  const [lease] = await leases()
  assert.equal((lease?.payload as { textbookId: number }).textbookId, book.id)
  assert.equal(await importInProgress(db, book), true, 'an import that is reading lines is busy')
  input.end(jsonl(lines.slice(3)))
  const { textbookId } = await running
  assert.equal(textbookId, book.id)
  assert.deepEqual(await leases(), [])

  // A rejected file ends its lease too.
  await assert.rejects(importChunksFile(db, streamOf(jsonl([header(books.get('math-6')!), '{"order": "x"}'])), { active }), ChunkImportError)
  assert.deepEqual(await leases(), [])
  await db.transaction().execute((trx) => deleteTextbook(trx, textbookId))
})
