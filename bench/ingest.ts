/**
 * PDF ingestion of a synthetic 300-page textbook with the built-in embedder, through the real
 * pipeline (upload streamed to DATA_DIR/uploads → job → extract → chunk → embed → ready), on an
 * embedded database in a temporary DATA_DIR. Reports wall time per stage and memory: resident
 * set size sampled every 50 ms, before the import and at its peak. The PDFs are drawn in child
 * processes, so the numbers are the import's.
 *
 *   npx node bench/ingest.ts [pages]          # default 300
 *   npx node bench/ingest.ts 300 --image-mb 190   # also read a 190 MB PDF (one big photo) alone: memory vs file size
 *
 * Needs the DejaVu fonts (Debian: fonts-dejavu-core) to draw the synthetic book.
 */
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { layoutFor, renderBookPdf, sourcePages } from '../scripts/build-sample-pdfs.ts'
import { openDatabase } from '../src/db/index.ts'
import { migrate } from '../src/db/migrate.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import { createJobHandlers } from '../src/services/jobs/handlers.ts'
import { JobRunner } from '../src/services/jobs/queue.ts'
import { enqueuePdfImport } from '../src/services/textbooks/ingest.ts'
import { extractPdf } from '../src/services/textbooks/pdf.ts'
import { SAMPLES_DIR } from '../src/services/textbooks/samples.ts'
import { saveUploadedPdf } from '../src/services/textbooks/uploads.ts'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'image-mb': { type: 'string' }, render: { type: 'string' }, photo: { type: 'string' }, extract: { type: 'string' } } })
const PAGES = Number(positionals[0] ?? 300)
const IMAGE_MB = Number(values['image-mb'] ?? 0)
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`

/** The sample books' paragraphs, dealt out over PAGES pages in chapters of 10 and sections of 3 pages. */
function syntheticBook(pages: number): string {
  const paragraphs: string[] = []
  const titles: string[] = []
  for (const file of readdirSync(SAMPLES_DIR).filter((f) => f.endsWith('.md') && f !== 'README.md').sort()) {
    for (const page of sourcePages(readFileSync(join(SAMPLES_DIR, file), 'utf8'))) {
      for (const e of page.elements) {
        if (e.kind === 'paragraph' && e.text.length > 120) paragraphs.push(e.text)
        if (e.kind === 'heading' && /^\d+\.\d+ /.test(e.text)) titles.push(e.text.replace(/^\S+ /, ''))
      }
    }
  }
  const out = ['---', 'subject: biology', 'grade: 8', 'title: Туршилтын ном 300', '---', '', '<!-- page -->', '# Туршилтын ном 300', '', 'Хурдны туршилтад зориулсан ном.', '']
  let p = 0
  for (let page = 1; page < pages; page++) {
    out.push(`<!-- page ${page + 2} -->`)
    const chapter = Math.floor((page - 1) / 12) + 1
    if ((page - 1) % 12 === 0) out.push(`# ${chapter} ${titles[chapter % titles.length]}`, '')
    if ((page - 1) % 3 === 0) out.push(`## ${chapter}.${Math.floor(((page - 1) % 12) / 3) + 1} ${titles[(page * 7) % titles.length]}`, '')
    for (let k = 0; k < 3; k++) out.push(paragraphs[p++ % paragraphs.length]!, '')
  }
  return out.join('\n')
}

/**
 * A one-page PDF with a line of text and one uncompressed photo of `bytes` random bytes, written
 * by hand (object offsets in the xref table): how large textbook PDFs are large.
 */
function writePhotoPdf(file: string, bytes: number): void {
  const width = 2000
  const height = Math.max(1, Math.floor(bytes / (width * 3)))
  const image = randomBytes(width * height * 3)
  const content = 'BT /F1 12 Tf 72 800 Td (Water boils at one hundred degrees at sea level. This page has a large photo.) Tj ET q 450 0 0 600 72 100 cm /Im1 Do Q'
  const parts: Buffer[] = [Buffer.from('%PDF-1.7\n')]
  const offsets: number[] = []
  let length = parts[0]!.length
  const add = (...chunks: (string | Buffer)[]) => {
    offsets.push(length)
    for (const c of chunks) {
      const b = typeof c === 'string' ? Buffer.from(c, 'latin1') : c
      parts.push(b)
      length += b.length
    }
  }
  add('1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n')
  add('2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n')
  add('3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> /XObject << /Im1 5 0 R >> >> /Contents 6 0 R >>\nendobj\n')
  add('4 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n')
  add(`5 0 obj\n<< /Type /XObject /Subtype /Image /Width ${width} /Height ${height} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Length ${image.length} >>\nstream\n`, image, '\nendstream\nendobj\n')
  add(`6 0 obj\n<< /Length ${content.length} >>\nstream\n${content}\nendstream\nendobj\n`)
  const xref = length
  const table = offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')
  parts.push(Buffer.from(`xref\n0 ${offsets.length + 1}\n0000000000 65535 f \n${table}trailer\n<< /Size ${offsets.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`, 'latin1'))
  writeFileSync(file, Buffer.concat(parts))
}

/** Peak resident memory while `work` runs, sampled every 50 ms. */
async function peakRss<T>(work: () => Promise<T>): Promise<{ value: T; before: number; peak: number }> {
  global.gc?.()
  const before = process.memoryUsage().rss
  let peak = before
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50)
  try {
    const value = await work()
    return { value, before, peak: Math.max(peak, process.memoryUsage().rss) }
  } finally {
    clearInterval(sampler)
  }
}

// Child modes: draw the synthetic book; write the photo PDF and read it alone (clean memory numbers).
if (values.render) {
  writeFileSync(values.render, await renderBookPdf(syntheticBook(PAGES), 'Туршилтын ном 300', layoutFor('biology-7.md')))
  process.exit(0)
}
if (values.photo) {
  writePhotoPdf(values.photo, IMAGE_MB * 1024 * 1024)
  process.exit(0)
}
if (values.extract) {
  const t = performance.now()
  const { value, before, peak } = await peakRss(() => extractPdf(values.extract!).then(() => 'read', (err: { key?: string }) => err.key ?? String(err)))
  console.log(`one-page PDF of ${mb(statSync(values.extract).size)} (a photo and a line of text): ${value} in ${((performance.now() - t) / 1000).toFixed(1)} s; RSS before ${mb(before)}, peak ${mb(peak)} (+${mb(peak - before)})`)
  process.exit(0)
}

const child = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...args], { stdio: 'inherit' })
  if (r.status !== 0) throw new Error(`bench child ${args.join(' ')} failed`)
}

const dir = mkdtempSync(join(tmpdir(), 'bagsh-bench-ingest-'))
try {
  const started = performance.now()
  const file = join(dir, 'book.pdf')
  child('--render', file, String(PAGES))
  console.log(`synthetic book: ${PAGES} pages, ${(statSync(file).size / 1024).toFixed(0)} KiB, drawn in ${((performance.now() - started) / 1000).toFixed(1)} s (another process)`)

  const dataDir = join(dir, 'data')
  const database = await openDatabase({ databaseUrl: null, dataDir })
  await migrate(database.db)
  const embedder = createLocalEmbedder()
  const stages = new Map<string, number>()
  const runner = new JobRunner(database.db, createJobHandlers({ dataDir, embedder }), {
    onProgress(_job, p) {
      if (p.stage && !stages.has(p.stage)) stages.set(p.stage, performance.now())
    },
  })
  const t0 = performance.now()
  const { value: job, before, peak } = await peakRss(async () => {
    const upload = await saveUploadedPdf(dataDir, createReadStream(file))
    const { jobId } = await enqueuePdfImport(database.db, { subject: 'biology', grade: 8, title: 'Туршилтын ном 300' }, upload)
    return runner.runJob(jobId)
  })
  const total = performance.now() - t0
  if (job.status !== 'done') throw new Error(`import failed: ${job.error}`)
  const result = job.result as { pages: number; chunks: number; sections: number }
  const order = ['extracting', 'chunking', 'embedding', 'saving']
  const at = (s: string) => stages.get(s) ?? t0
  const span = (s: string, i: number) => ((order[i + 1] ? at(order[i + 1]!) : t0 + total) - at(s)) / 1000
  console.log(`imported: ${result.pages} pages, ${result.chunks} passages, ${result.sections} sections`)
  console.log(`wall time ${(total / 1000).toFixed(1)} s  (upload + queue ${((at('extracting') - t0) / 1000).toFixed(1)} s, ${order.map((s, i) => `${s} ${span(s, i).toFixed(1)} s`).join(', ')})`)
  console.log(`RSS with the embedded database open ${mb(before)}, peak during the import ${mb(peak)} (+${mb(peak - before)})`)
  await database.close()

  if (IMAGE_MB) {
    const big = join(dir, 'photo.pdf')
    child('--photo', big, '--image-mb', String(IMAGE_MB))
    child('--extract', big)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
