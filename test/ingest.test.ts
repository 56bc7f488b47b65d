import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { extractText } from 'unpdf'
import type { Database } from '../src/db/index.ts'
import type { Embedder } from '../src/services/embeddings/index.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import { createI18n } from '../src/services/i18n.ts'
import { createJobHandlers } from '../src/services/jobs/handlers.ts'
import { getJob, JobRunner, type Job } from '../src/services/jobs/queue.ts'
import { retrievePassages } from '../src/services/retrieval/retrieve.ts'
import { enqueuePdfImport, INGEST_PDF_JOB, ingestPdfHandler } from '../src/services/textbooks/ingest.ts'
import { extractPdf, IngestError, ocrAvailable } from '../src/services/textbooks/pdf.ts'
import { assembleBook, followsInSequence, formatPageList, joinLine, parseHeading, type PdfLine, type RawPage } from '../src/services/textbooks/pdf-text.ts'
import { enqueueReindex } from '../src/services/textbooks/reindex.ts'
import { enqueueSamplePdfs, SAMPLE_PDFS_DIR } from '../src/services/textbooks/sample-pdfs.ts'
import { loadSampleBooks } from '../src/services/textbooks/samples.ts'
import { deleteTextbook, type NewTextbook } from '../src/services/textbooks/store.ts'
import { saveUploadedPdf } from '../src/services/textbooks/uploads.ts'
import { freshDatabase } from './helpers/db.ts'
import { grayPng, makePdf } from './fixtures/pdfs.ts'

// PDF ingestion end to end on a real embedded Postgres, with the built-in embedder: the sample
// PDFs (samples/textbooks/pdf, built from the *.md sources), small PDFs made here for each kind
// of bad input, re-import, a crash in the middle, and the CLI as a real process.

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURE = join(ROOT, 'test/fixtures/astronomy-10.pdf')
const FIXTURE_META = { subject: 'physics', grade: 10, title: 'Одон орон 10' }

let database: Database
let dataDir: string
const embedder = createLocalEmbedder()
const i18n = createI18n()

before(async () => {
  database = await freshDatabase()
  dataDir = mkdtempSync(join(tmpdir(), 'bagsh-ingest-'))
})
after(async () => {
  await database.close()
  rmSync(dataDir, { recursive: true, force: true })
})

function runnerWith(embedderUsed: Embedder = embedder) {
  return new JobRunner(database.db, createJobHandlers({ dataDir, embedder: embedderUsed }), { retryBaseMs: 50 })
}

async function importPdf(source: Buffer | string, meta: Omit<NewTextbook, 'sourcePath' | 'sourceSha256'> = FIXTURE_META) {
  const stream = typeof source === 'string' ? Readable.from(readFileSync(source)) : Readable.from([source])
  const upload = await saveUploadedPdf(dataDir, stream)
  const { textbookId, jobId } = await enqueuePdfImport(database.db, meta, upload)
  const job = await runnerWith().runJob(jobId)
  return { textbookId, job, upload }
}

async function counts(textbookId: number) {
  const chunks = await database.db.selectFrom('chunks').select((eb) => eb.fn.countAll<string>().as('n')).where('textbook_id', '=', textbookId).executeTakeFirstOrThrow()
  const pages = await database.db.selectFrom('textbook_pages').select((eb) => eb.fn.countAll<string>().as('n')).where('textbook_id', '=', textbookId).executeTakeFirstOrThrow()
  return { chunks: Number(chunks.n), pages: Number(pages.n) }
}

const latinPage = (doc: PDFKit.PDFDocument, n: number) => {
  doc.fontSize(9).text('Sample Book', 72, 40)
  doc.fontSize(11).text(`${n}.1 Section ${n}`, 72, 90)
  doc.text(`This is page ${n} of a textbook with a text layer. Water boils at one hundred degrees at sea level.`, 72, 120, { width: 450 })
  doc.fontSize(9).text(String(n + 10), 290, 780, { lineBreak: false })
}

// --- Layout rules, on hand-made lines ---

const line = (text: string, y: number, size = 11, x = 60): PdfLine => ({ text, x, y, size, right: x + text.length * size * 0.5 })

test('running headers and footers are stripped and printed page numbers found by their offset', () => {
  const pages: RawPage[] = [1, 2, 3, 4, 5, 6, 7].map((p) => ({
    pdfPage: p,
    images: false,
    lines: [line('Математик 6', 800, 8.5), line(`${p}.1 ${['Тоо', 'Бутархай', 'Хувь', 'Харьцаа', 'Тэгшитгэл', 'Дүрс', 'Хэмжээ'][p - 1]}`, 760, 13), line(`${['Нэг', 'Хоёр', 'Гурав', 'Дөрөв', 'Тав', 'Зургаа', 'Долоо'][p - 1]} дахь хуудасны текст.`, 740), line(`— ${p + 19} —`, 40, 8.5)],
  }))
  pages[6]!.lines[3] = line('— iv —', 40, 8.5)
  const book = assembleBook(pages, [], null)
  assert.deepEqual(book.pages.map((p) => p.number), [20, 21, 22, 23, 24, 25, null])
  assert.equal(book.pages[6]!.label, 'iv')
  assert.ok(book.pages.every((p) => !p.text.includes('Математик 6') && !p.text.includes('—')), 'headers and footers are gone')
  assert.equal(book.tocSource, 'headings')
  assert.deepEqual(book.toc.map((t) => [t.path, t.page]).slice(0, 2), [['1.1', 20], ['2.1', 21]])
})

test('hyphenated line breaks are joined; numbered exercises are not headings', () => {
  assert.equal(joinLine('Энэ үйл явцыг фото-', 'синтез гэнэ.'), 'Энэ үйл явцыг фотосинтез гэнэ.')
  assert.equal(joinLine('Буриадын нийслэл Улаан-', 'Үд хот'), 'Буриадын нийслэл Улаан-Үд хот')
  assert.equal(joinLine('нэг', 'хоёр'), 'нэг хоёр')
  assert.deepEqual(parseHeading('2.1 Фотосинтез'), { path: '2.1', title: 'Фотосинтез' })
  assert.deepEqual(parseHeading('3-р бүлэг. Дэлхий'), { path: '3', title: 'Дэлхий' })
  assert.equal(parseHeading('Фотосинтез'), null)
  assert.ok(followsInSequence(null, [1]))
  assert.ok(followsInSequence([1], [1, 1]))
  assert.ok(followsInSequence([1, 2], [2]))
  assert.ok(followsInSequence([2, 1], [3, 1]))
  assert.ok(!followsInSequence([2, 1], [1]), 'a list item "1 …" inside section 2.1')
  assert.ok(!followsInSequence([2, 1], [2, 1]))
  assert.ok(!followsInSequence([2, 1], [9]))
  const book = assembleBook(
    [
      {
        pdfPage: 1,
        images: false,
        lines: [line('1 Эс', 780, 16), line('1.1 Эсийн бүтэц', 750, 13), line('Эс бол амьд биесийн нэгж. Энэ нь фото-', 720), line('синтезтэй холбоогүй.', 705), line('1. Эсийн гурван хэсгийг нэрлэ.', 680), line('2. Бөөм юу хийдэг вэ?', 665)],
      },
    ],
    [],
    null,
  )
  assert.deepEqual(book.toc.map((t) => t.path), ['1', '1.1'])
  assert.ok(book.blocks.some((b) => b.text.includes('фотосинтезтэй холбоогүй') && b.sectionPath === '1.1'))
  assert.equal(formatPageList([7, 3, 4, 5, 9]), '3–5, 7, 9')
})

// --- The sample PDFs ---

test('each sample PDF reads back as its source: printed page numbers, sections, paragraphs', async () => {
  const sources = loadSampleBooks()
  assert.equal(sources.length, 7)
  const tocSources = new Map<string, string>()
  for (const source of sources) {
    const pdf = await extractPdf(join(SAMPLE_PDFS_DIR, source.file.replace(/\.md$/, '.pdf')))
    tocSources.set(source.file, pdf.tocSource)
    assert.equal(pdf.pageCount, source.pages.length, source.file)
    assert.deepEqual(pdf.pages.map((p) => [p.pdfPage, p.label, p.number]), source.pages.map((p) => [p.pdfPage, p.label, p.number]), `${source.file}: printed page numbers`)
    assert.deepEqual(pdf.toc, source.toc, `${source.file}: table of contents`)
    const sectioned = (blocks: typeof pdf.blocks) => blocks.filter((b) => b.sectionPath).map((b) => [b.pdfPage, b.sectionPath, b.text])
    assert.deepEqual(sectioned(pdf.blocks), sectioned(source.blocks), `${source.file}: paragraphs`)
    // Running header (the title) and footer (the page number) are not page text.
    for (const page of pdf.pages.slice(1)) {
      assert.ok(!page.text.split('\n').includes(source.meta.title), `${source.file} p${page.pdfPage}: header left in`)
      assert.ok(!new RegExp(`(^|\\n)(— )?${page.label}( —)?($|\\n)`).test(page.text), `${source.file} p${page.pdfPage}: page number left in`)
    }
  }
  // Outline in some books, numbered headings in the others.
  assert.equal(tocSources.get('biology-7.md'), 'outline')
  assert.equal(tocSources.get('math-6.md'), 'headings')
  // The biology PDF really breaks "фото-/синтез" across lines, and the text has the whole word.
  const raw = await extractText(new Uint8Array(readFileSync(join(SAMPLE_PDFS_DIR, 'biology-7.pdf'))), { mergePages: true })
  assert.match(raw.text, /явцыг фото-\n\s*синтез/)
  const biology = await extractPdf(join(SAMPLE_PDFS_DIR, 'biology-7.pdf'))
  assert.ok(biology.blocks.some((b) => b.text.includes('Энэ үйл явцыг фотосинтез гэнэ.')))
})

test('first start: the sample PDFs go through the pipeline and become searchable', async () => {
  const started = Date.now()
  const jobIds = await enqueueSamplePdfs(database.db, dataDir)
  assert.equal(jobIds.length, 7)
  const runner = runnerWith()
  const jobs: Job[] = []
  for (const id of jobIds) jobs.push(await runner.runJob(id))
  const seconds = (Date.now() - started) / 1000
  assert.deepEqual(jobs.map((j) => j.status), Array(7).fill('done'), JSON.stringify(jobs.map((j) => j.error)))
  assert.ok(seconds < 60, `sample import took ${seconds} s`)
  // Progress is written per stage and about once a second, not per page or batch.
  assert.ok(runner.progressWrites < 7 * 8, `${runner.progressWrites} progress writes`)

  const biology = await database.db.selectFrom('textbooks').selectAll().where('title', '=', 'Биологи 7').executeTakeFirstOrThrow()
  assert.equal(biology.status, 'ready')
  assert.equal(biology.page_count, 10)
  assert.match(biology.source_path!, /^uploads\/[^/]+\.pdf$/)
  assert.equal(biology.toc.find((t) => t.path === '2.1')?.title, 'Фотосинтез')
  assert.equal(biology.toc.find((t) => t.path === '2.1')?.page, 5)
  const job = jobs.find((j) => (j.result as { textbookId: number }).textbookId === biology.id)!
  assert.equal(job.progress.stage, 'done')
  assert.equal((job.result as { chunks: number }).chunks, biology.chunk_count)
  assert.equal((job.result as { tocSource: string }).tocSource, 'outline')
  const pages = await database.db.selectFrom('textbook_pages').selectAll().where('textbook_id', '=', biology.id).orderBy('pdf_page').execute()
  assert.deepEqual(pages.map((p) => p.number), [null, 3, 4, 5, 6, 7, 8, 9, 10, 11])

  // Chunks never cross a section: each lies between its section's first page and the next section's.
  const chunks = await database.db.selectFrom('chunks').selectAll().where('textbook_id', '=', biology.id).orderBy('ord').execute()
  for (const chunk of chunks.filter((c) => c.section_path)) {
    const at = biology.toc.findIndex((t) => t.path === chunk.section_path)
    assert.ok(at >= 0, `chunk ${chunk.ord} has section ${chunk.section_path}`)
    const next = biology.toc.slice(at + 1).find((t) => t.pdfPage > biology.toc[at]!.pdfPage || t.path !== chunk.section_path)
    assert.ok(chunk.pdf_page_start >= biology.toc[at]!.pdfPage)
    if (next) assert.ok(chunk.pdf_page_end <= next.pdfPage, `chunk ${chunk.ord} (${chunk.section_path}) runs past section ${next.path}`)
    if (next) assert.ok(!chunk.content.includes(next.title), `chunk ${chunk.ord} contains the next heading`)
  }

  for (const query of ['фотосинтезийн явц', 'fotosintez']) {
    const [top] = await retrievePassages(database.db, { query, limit: 3 }, embedder)
    assert.equal(top?.textbook.title, 'Биологи 7', query)
    assert.equal(top.section.path, '2.1', query)
    assert.ok([5, 6].includes(top.pageStart), `${query}: page ${top.pageStart}`)
  }
})

// --- Bad input ---

test('a non-PDF and an oversized upload are refused while streaming, leaving nothing on disk', async () => {
  const uploads = join(dataDir, 'uploads')
  const before = readdirSync(uploads).length
  const notPdf = Readable.from([Buffer.from('<html><body>Энэ PDF биш</body></html>\n'.repeat(100))])
  await assert.rejects(saveUploadedPdf(dataDir, notPdf), (err: IngestError) => err.key === 'ingest.errors.notPdf')
  assert.ok(notPdf.readableEnded, 'the upload was read to its end')
  const big = Readable.from(readFileSync(FIXTURE))
  await assert.rejects(saveUploadedPdf(dataDir, big, 10_000), (err: IngestError) => err.key === 'ingest.errors.tooLarge' && err.params?.maxMb === 0)
  assert.ok(big.readableEnded)
  await assert.rejects(saveUploadedPdf(dataDir, Readable.from([Buffer.alloc(0)])), (err: IngestError) => err.key === 'ingest.errors.notPdf')
  assert.equal(readdirSync(uploads).length, before, 'no file or partial file left behind')
  // Within the limit it is stored, with its checksum.
  const saved = await saveUploadedPdf(dataDir, Readable.from(readFileSync(FIXTURE)))
  assert.equal(saved.bytes, readFileSync(FIXTURE).length)
  assert.match(saved.sha256, /^[0-9a-f]{64}$/)
  rmSync(saved.path)
})

test('corrupt, encrypted, empty and scanned PDFs fail with a clear message and import nothing', async () => {
  const sample = readFileSync(FIXTURE)
  const cases: [string, Buffer, string, Record<string, string | number>?][] = [
    ['truncated', sample.subarray(0, Math.floor(sample.length / 2)), 'ingest.errors.corrupt'],
    ['garbage after the header', Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.alloc(5000, 0x41)]), 'ingest.errors.corrupt'],
    ['password-protected', await makePdf({ userPassword: 'secret', ownerPassword: 'owner' }, (d) => latinPage(d, 1)), 'ingest.errors.encrypted'],
    [
      'no pages',
      Buffer.from('%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n'),
      'ingest.errors.empty',
    ],
    ['blank pages', await makePdf({}, (d) => d.rect(50, 50, 200, 100).stroke().addPage().circle(100, 100, 50).stroke()), 'ingest.errors.empty'],
    [
      'scanned',
      await makePdf({}, (d) => {
        d.image(grayPng(120, 160), 50, 50, { width: 480 })
        d.addPage().image(grayPng(120, 160), 50, 50, { width: 480 })
        d.addPage().image(grayPng(120, 160), 50, 50, { width: 480 })
      }),
      'ingest.errors.scanned',
      { pages: '1–3' },
    ],
  ]
  for (const [name, bytes, key, params] of cases) {
    const { textbookId, job, upload } = await importPdf(bytes)
    assert.equal(job.status, 'failed', name)
    assert.equal(job.error, key, name)
    if (params) assert.deepEqual(job.error_params, params, name)
    assert.equal(job.attempts, 1, `${name}: bad input is not retried`)
    const book = await database.db.selectFrom('textbooks').select(['status', 'error']).where('id', '=', textbookId).executeTakeFirstOrThrow()
    assert.deepEqual(book, { status: 'failed', error: key }, name)
    assert.deepEqual(await counts(textbookId), { chunks: 0, pages: 0 }, name)
    assert.throws(() => readFileSync(upload.path), `${name}: the upload is deleted`)
    const message = i18n.t(key, { lng: 'mn', ...params })
    assert.ok(message !== key && !message.includes('{{'), `${name}: ${message}`)
  }
  // Failed books are invisible: search still finds only the samples.
  const passages = await retrievePassages(database.db, { query: 'water boils sea level', limit: 5 }, embedder)
  assert.ok(passages.every((p) => p.textbook.title !== FIXTURE_META.title))
})

test('a PDF with a few pictures-only pages imports the text and reports those pages', async () => {
  const pdf = await makePdf({}, (d) => {
    for (let n = 1; n <= 6; n++) {
      if (n > 1) d.addPage()
      latinPage(d, n)
    }
    d.addPage().image(grayPng(60, 80), 50, 50, { width: 400 })
  })
  const { textbookId, job } = await importPdf(pdf, { subject: 'physics', grade: 11, title: 'Latin sample' })
  assert.equal(job.status, 'done', job.error ?? '')
  assert.deepEqual((job.result as { textlessPages: number[] }).textlessPages, [7])
  const pages = await database.db.selectFrom('textbook_pages').select(['pdf_page', 'number', 'text']).where('textbook_id', '=', textbookId).orderBy('pdf_page').execute()
  assert.deepEqual(pages.map((p) => p.number), [11, 12, 13, 14, 15, 16, null])
  assert.ok(!pages.some((p) => p.text.includes('Sample Book')))
})

test('a scanned page is read by OCR when tesseract with Mongolian data is installed, else reported', async () => {
  const scan = join(ROOT, 'test/fixtures/scanned-page.pdf')
  if (await ocrAvailable()) {
    const pdf = await extractPdf(scan)
    assert.deepEqual(pdf.ocrPages, [1])
    assert.ok(pdf.blocks.some((b) => b.text.includes('Фотосинтез дэлхий дээрх амьдралд')), pdf.pages[0]!.text)
  } else {
    await assert.rejects(extractPdf(scan), (err: IngestError) => err.key === 'ingest.errors.scanned' && err.params?.pages === '1')
  }
})

// --- Re-import, crash, re-index ---

async function searchAstronomy() {
  return retrievePassages(database.db, { query: 'Нарны хиртэлт', subject: 'physics', grade: 10, gradeMode: 'only', limit: 3 }, embedder)
}

test('a re-import replaces the old version atomically: the old one is searchable until the new one is ready', async () => {
  const first = await importPdf(FIXTURE)
  assert.equal(first.job.status, 'done')
  assert.equal((await searchAstronomy())[0]?.textbook.id, first.textbookId)

  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let paused = false
  const slow: Embedder = {
    model: embedder.model,
    dimensions: embedder.dimensions,
    async embed(texts) {
      paused = true
      await gate
      return embedder.embed(texts)
    },
  }
  const upload = await saveUploadedPdf(dataDir, Readable.from(readFileSync(FIXTURE)))
  const second = await enqueuePdfImport(database.db, { ...FIXTURE_META, replacesId: first.textbookId }, upload)
  const running = runnerWith(slow).runJob(second.jobId)
  while (!paused) await sleep(10)
  // Mid-import: pages of the new version are stored, but search sees only the old version.
  const during = await searchAstronomy()
  assert.ok(during.length > 0)
  assert.ok(during.every((p) => p.textbook.id === first.textbookId))
  const progress = (await getJob(database.db, second.jobId))!
  assert.equal(progress.status, 'running')
  release()
  const job = await running
  assert.equal(job.status, 'done')
  const after = await searchAstronomy()
  assert.equal(after[0]?.textbook.id, second.textbookId)
  assert.ok(after.every((p) => p.textbook.id !== first.textbookId))
  const old = await database.db.selectFrom('textbooks').select(['status', 'chunk_count']).where('id', '=', first.textbookId).executeTakeFirstOrThrow()
  assert.deepEqual(old, { status: 'replaced', chunk_count: 0 })
  assert.deepEqual(await counts(first.textbookId), { chunks: 0, pages: 0 })
  const fresh = await database.db.selectFrom('textbooks').select(['status', 'version']).where('id', '=', second.textbookId).executeTakeFirstOrThrow()
  assert.deepEqual(fresh, { status: 'ready', version: 2 })
})

test('an import whose process dies mid-way is resumed by another runner after the lease expires', async () => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let calls = 0
  const dying: Embedder = {
    model: embedder.model,
    dimensions: embedder.dimensions,
    async embed(texts) {
      if (++calls === 3) await gate // the process "freezes" here, as if killed
      return embedder.embed(texts)
    },
  }
  const embeddedByB: string[] = []
  const counting: Embedder = {
    model: embedder.model,
    dimensions: embedder.dimensions,
    async embed(texts) {
      embeddedByB.push(...texts)
      return embedder.embed(texts)
    },
  }
  const upload = await saveUploadedPdf(dataDir, Readable.from(readFileSync(FIXTURE)))
  const { textbookId, jobId } = await enqueuePdfImport(database.db, { ...FIXTURE_META, title: 'Одон орон 10 (crash)' }, upload)
  // One passage per batch, so the import stops between batches.
  const a = new JobRunner(database.db, { [INGEST_PDF_JOB]: ingestPdfHandler({ dataDir, embedder: dying, embedBatch: 1 }) }, { workerId: 'a', leaseMs: 300, stopTimeoutMs: 50 })
  const stuck = a.runOnce(jobId)
  while ((await counts(textbookId)).chunks < 2) await sleep(10)
  await a.stop() // the handler does not answer: its lease is left to expire
  const b = new JobRunner(database.db, { [INGEST_PDF_JOB]: ingestPdfHandler({ dataDir, embedder: counting, embedBatch: 1 }) }, { workerId: 'b' })
  assert.equal(await b.runOnce(), null, 'not before the lease expires')
  await sleep(350)
  const job = (await b.runOnce())!
  assert.equal(job.id, jobId)
  assert.equal(job.status, 'done', job.error ?? '')
  assert.equal(job.attempts, 2)
  const result = job.result as { resumedAtChunk: number; chunks: number }
  assert.equal(result.resumedAtChunk, 2)
  assert.equal(embeddedByB.length, result.chunks - 2, 'only the missing chunks were embedded again')
  const ords = await database.db.selectFrom('chunks').select('ord').where('textbook_id', '=', textbookId).orderBy('ord').execute()
  assert.deepEqual(ords.map((o) => o.ord), [...Array(result.chunks).keys()])
  // The frozen attempt wakes up later: it finds its job taken and writes nothing.
  release()
  await stuck
  assert.deepEqual(ords.length, (await counts(textbookId)).chunks)
  assert.equal((await getJob(database.db, jobId))!.status, 'done')
})

test('a textbook deleted while its import waits ends the job quietly, without retries', async () => {
  const upload = await saveUploadedPdf(dataDir, Readable.from(readFileSync(FIXTURE)))
  const { textbookId, jobId } = await enqueuePdfImport(database.db, { ...FIXTURE_META, title: 'Deleted at once' }, upload)
  await database.db.transaction().execute((trx) => deleteTextbook(trx, textbookId))
  const job = await runnerWith().runJob(jobId)
  assert.equal(job.status, 'done')
  assert.deepEqual(job.result, { textbookId, skipped: 'deleted' })
  assert.equal(job.attempts, 1)
})

test('reindex re-embeds every chunk with the active embedder as a visible job', async () => {
  await database.db.updateTable('chunks').set({ embedding_model: 'old-model' }).execute()
  const jobId = await enqueueReindex(database.db)
  assert.equal(await enqueueReindex(database.db), jobId, 'one re-index at a time')
  const job = await runnerWith().runJob(jobId)
  assert.equal(job.status, 'done', job.error ?? '')
  const total = await database.db.selectFrom('chunks').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  assert.deepEqual(job.progress, { stage: 'done', done: Number(total.n), total: Number(total.n) })
  const models = await database.db.selectFrom('chunks').select('embedding_model').distinct().execute()
  assert.deepEqual(models, [{ embedding_model: embedder.model }])
  const [top] = await retrievePassages(database.db, { query: 'fotosintez', limit: 1 }, embedder)
  assert.equal(top?.section.path, '2.1')
})

// --- The CLI, as a real process ---

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

test('bagsh import-pdf makes a new book searchable; bagsh search --json finds its pages', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bagsh-ingest-cli-'))
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dir, LOG_LEVEL: 'silent', NODE_ENV: 'development' }
  for (const name of ['DATABASE_URL', 'NODE_TEST_CONTEXT', 'EMBEDDINGS_BASE_URL', 'EMBEDDINGS_DIMENSIONS']) delete env[name]
  try {
    const imported = await bagsh(['import-pdf', FIXTURE, '--subject', 'physics', '--grade', '10', '--title', 'Одон орон 10', '--kind', 'optional'], env)
    assert.equal(imported.code, 0, imported.stderr)
    assert.match(imported.stdout, /Textbook 1 "Одон орон 10" is searchable: 5 pages, \d+ passages, 6 sections \(table of contents from numbered headings\)/)
    assert.match(imported.stderr, /extracting 5\/5 pages/)
    assert.match(imported.stderr, /embedding \d+\/\d+ passages/)

    const found = await bagsh(['search', 'нарны хиртэлт гэж юу вэ', '--json', '--limit', '3', '--grade', '10'], env)
    assert.equal(found.code, 0, found.stderr)
    const rows = JSON.parse(found.stdout) as { textbook: { id: number; title: string; subject: string; grade: number }; section: string; page_start: number; page_end: number; score: number; content: string }[]
    assert.ok(rows.length >= 1)
    assert.deepEqual(Object.keys(rows[0]!), ['textbook', 'section', 'page_start', 'page_end', 'score', 'content'])
    assert.deepEqual(rows[0]!.textbook, { id: 1, title: 'Одон орон 10', subject: 'physics', grade: 10 })
    assert.equal(rows[0]!.section, '4.2 Нарны хиртэлт')
    assert.deepEqual([rows[0]!.page_start, rows[0]!.page_end], [102, 102])
    assert.ok(rows[0]!.score > 0 && rows[0]!.score <= 1)
    assert.match(rows[0]!.content, /хамгаалалтын шүүлтүүргүйгээр/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('bagsh import-pdf refuses a file that is not a PDF, without touching the database', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bagsh-ingest-cli-'))
  try {
    const { run } = await import('../src/cli.ts')
    let out = ''
    let err = ''
    const io = { out: (t: string) => void (out += t), err: (t: string) => void (err += t), env: { DATA_DIR: dir, NODE_ENV: 'test' } }
    assert.equal(await run(['import-pdf', join(dir, 'missing.pdf'), '--subject', 'physics', '--grade', '10', '--title', 'X'], io), 2)
    assert.match(err, /no such file/)
    assert.equal(await run(['import-pdf', '--subject', 'physics', '--grade', '10', '--title', 'X'], io), 2)
    assert.match(err, /missing FILE/)
    assert.equal(await run(['search', 'a', 'b'], io), 2)
    assert.match(err, /unexpected argument "b"/)
    assert.equal(await run(['search', 'x', '--limit', '99'], io), 2)
    assert.match(err, /invalid --limit/)
    assert.equal(out, '')
    assert.deepEqual(readdirSync(dir), [], 'nothing was opened or written')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
