import { execFile } from 'node:child_process'
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { extractImages, getDocumentProxy, getResolvedPDFJS } from 'unpdf'
import { assembleBook, formatPageList, type AssembledBook, type OutlineEntry, type PdfLine, type RawPage } from './pdf-text.ts'

/**
 * Reads a PDF's text page by page with pdf.js (through unpdf, which bundles a build for
 * servers). Layout rules — running headers, page numbers, hyphenation, sections — are in
 * pdf-text.ts.
 *
 * Memory: pdf.js parses from bytes in memory, so the file is read whole (up to MAX_PDF_BYTES)
 * once; pages are parsed one at a time and their parsed objects released (`page.cleanup()`),
 * and only the text lines are kept. Peak memory is therefore about the file size plus what
 * pdf.js holds for one page and its shared fonts (measured in docs/benchmarks.md).
 */

export const MAX_PDF_BYTES = 200 * 1024 * 1024
/** More than this share of pages being scans (without OCR) fails the import instead of importing the rest. */
const MAX_SCANNED_SHARE = 0.2

/**
 * Why an import failed, said in the user's language: `key` is an i18n key under ingest.errors,
 * `params` fill its {{placeholders}}. Bad input is permanent: retrying the job will not help.
 */
export class IngestError extends Error {
  readonly key: string
  readonly params: Record<string, string | number> | null
  /** False for trouble that may pass (an embeddings endpoint that is down): the job is retried. */
  readonly permanent: boolean
  constructor(key: string, params: Record<string, string | number> | null = null, options: { permanent?: boolean } = {}) {
    super(key)
    this.name = 'IngestError'
    this.key = key
    this.params = params
    this.permanent = options.permanent ?? true
  }
}

export interface ExtractOptions {
  /** Called after each page is read. */
  onPage?(done: number, total: number): void
  signal?: AbortSignal
  /** 'auto' (default): OCR pages without text when tesseract with Mongolian is installed. */
  ocr?: 'auto' | 'off'
  maxBytes?: number
}

export interface ExtractedPdf extends AssembledBook {
  pageCount: number
  /** Pages whose text came from OCR. */
  ocrPages: number[]
}

type PdfDocument = Awaited<ReturnType<typeof getDocumentProxy>>

interface TextItemLike {
  str?: string
  transform?: number[]
  width?: number
  hasEOL?: boolean
}

/** True when the file's first KiB holds the %PDF- header (readers accept leading junk up to there). */
export function looksLikePdf(head: Uint8Array): boolean {
  return Buffer.from(head.buffer, head.byteOffset, Math.min(head.length, 1024)).includes('%PDF-')
}

async function readPdfBytes(file: string, maxBytes: number): Promise<Uint8Array> {
  const info = await stat(file)
  if (info.size > maxBytes) throw new IngestError('ingest.errors.tooLarge', { maxMb: Math.round(maxBytes / 1024 / 1024) })
  if (info.size === 0) throw new IngestError('ingest.errors.notPdf')
  const handle = await open(file, 'r')
  try {
    const head = new Uint8Array(Math.min(1024, info.size))
    await handle.read(head, 0, head.length, 0)
    if (!looksLikePdf(head)) throw new IngestError('ingest.errors.notPdf')
  } finally {
    await handle.close()
  }
  return new Uint8Array(await readFile(file))
}

function openError(err: unknown): IngestError {
  const name = (err as { name?: string })?.name
  if (name === 'PasswordException') return new IngestError('ingest.errors.encrypted')
  return new IngestError('ingest.errors.corrupt')
}

/** Text items → lines: items on one baseline, left to right in stream order, spaces where there is a gap. */
export function linesOf(items: readonly unknown[]): PdfLine[] {
  const lines: (PdfLine & { space: boolean })[] = []
  let current: (PdfLine & { space: boolean }) | null = null
  let breakNext = false
  for (const raw of items) {
    const item = raw as TextItemLike
    if (typeof item.str !== 'string' || !item.transform) continue
    const [a = 0, b = 0, c = 0, d = 0, x = 0, y = 0] = item.transform
    // Sideways text (margin notes, rotated labels) is not part of the reading order.
    if (Math.abs(b) > 0.05 * Math.abs(a) || Math.abs(c) > 0.05 * Math.abs(d) || a <= 0) continue
    const size = Math.abs(d) || Math.abs(a)
    const str = item.str.replace(/\s+/g, ' ')
    if (!str.trim()) {
      if (current) current.space = true
      if (item.hasEOL) breakNext = true
      continue
    }
    const sameLine = current && !breakNext && Math.abs(y - current.y) <= 0.5 * Math.min(size, current.size) && x >= current.right - 0.5 * size
    if (current && sameLine) {
      const gap = x - current.right
      if ((current.space || gap > 0.15 * size) && !current.text.endsWith(' ') && !str.startsWith(' ')) current.text += ' '
      current.text += str
      current.right = Math.max(current.right, x + (item.width ?? 0))
      current.size = Math.max(current.size, size)
      current.space = false
    } else {
      current = { text: str, x, y, size, right: x + (item.width ?? 0), space: false }
      lines.push(current)
    }
    breakNext = Boolean(item.hasEOL)
  }
  return lines
    .map(({ text, x, y, size, right }) => ({ text: text.replace(/\s+/g, ' ').trim(), x, y, size, right }))
    .filter((l) => l.text)
}

async function paintsImage(page: Awaited<ReturnType<PdfDocument['getPage']>>): Promise<boolean> {
  const { OPS } = await getResolvedPDFJS()
  const images = new Set<number>([OPS.paintImageXObject, OPS.paintInlineImageXObject, OPS.paintImageMaskXObject, OPS.paintImageXObjectRepeat])
  const ops = await page.getOperatorList()
  return ops.fnArray.some((fn) => images.has(fn))
}

async function destinationPage(pdf: PdfDocument, dest: unknown): Promise<number | null> {
  try {
    const explicit = typeof dest === 'string' ? await pdf.getDestination(dest) : dest
    if (!Array.isArray(explicit) || explicit[0] === undefined || explicit[0] === null) return null
    const ref = explicit[0]
    const index = typeof ref === 'number' ? ref : await pdf.getPageIndex(ref)
    return index >= 0 && index < pdf.numPages ? index + 1 : null
  } catch {
    return null
  }
}

interface OutlineNode {
  title?: string
  dest?: unknown
  items?: OutlineNode[]
}

async function readOutline(pdf: PdfDocument): Promise<OutlineEntry[]> {
  const outline = (await pdf.getOutline().catch(() => null)) as OutlineNode[] | null
  const entries: OutlineEntry[] = []
  const walk = async (nodes: OutlineNode[], level: number, prefix: number[]) => {
    for (let i = 0; i < nodes.length && entries.length < 5000; i++) {
      const node = nodes[i]!
      const title = String(node.title ?? '').replace(/\s+/g, ' ').trim()
      const pdfPage = await destinationPage(pdf, node.dest)
      if (title && pdfPage) entries.push({ title, level, pdfPage, position: [...prefix, i + 1] })
      if (node.items?.length && level < 6) await walk(node.items, level + 1, [...prefix, i + 1])
    }
  }
  if (outline?.length) await walk(outline, 1, [])
  return entries
}

const run = promisify(execFile)
let ocrProbe: Promise<boolean> | null = null

/** Whether `tesseract` is installed with Mongolian data (Debian: tesseract-ocr-mon). Asked once per process. */
export function ocrAvailable(): Promise<boolean> {
  ocrProbe ??= run('tesseract', ['--list-langs'], { timeout: 10_000 })
    .then(({ stdout, stderr }) => /^mon$/m.test(stdout + stderr))
    .catch(() => false)
  return ocrProbe
}

/** Tesseract's TSV (one row per block, paragraph, line and word) → lines in PDF units. */
export function ocrLines(tsv: string, scale: number, pageHeight: number): PdfLine[] {
  const lines = new Map<string, { left: number; top: number; width: number; height: number; words: string[] }>()
  for (const row of tsv.split('\n').slice(1)) {
    const cells = row.split('\t')
    if (cells.length < 12) continue
    const key = cells.slice(1, 5).join('.')
    const [left, top, width, height] = cells.slice(6, 10).map(Number) as [number, number, number, number]
    if (cells[0] === '4') lines.set(key, { left, top, width, height, words: [] })
    else if (cells[0] === '5' && cells[11]!.trim()) lines.get(key)?.words.push(cells[11]!.trim())
  }
  return [...lines.values()]
    .filter((l) => l.words.length)
    .map((l) => ({
      text: l.words.join(' '),
      x: l.left * scale,
      right: (l.left + l.width) * scale,
      y: pageHeight - (l.top + l.height) * scale,
      // A line box spans ascenders and descenders: about 1.2 × the font size.
      size: (l.height * scale) / 1.2,
    }))
}

/**
 * OCR of a scanned page: its largest image, written as a PNM file (no canvas needed), read by
 * tesseract in Mongolian; line boxes become lines like a text layer's, scaled as if the scan
 * covered the page's width.
 */
async function ocrPage(pdf: PdfDocument, pageNumber: number, dir: string): Promise<PdfLine[]> {
  const page = await pdf.getPage(pageNumber)
  const [x0 = 0, y0 = 0, x1 = 595, y1 = 842] = page.view
  const images = await extractImages(pdf, pageNumber)
  page.cleanup()
  const image = images.sort((a, b) => b.width * b.height - a.width * a.height)[0]
  if (!image) return []
  const { width, height, channels, data } = image
  const gray = channels === 1
  const pixels = Buffer.alloc(width * height * (gray ? 1 : 3))
  for (let i = 0, o = 0; i < width * height; i++) {
    if (gray) pixels[o++] = data[i]!
    else for (let k = 0; k < 3; k++) pixels[o++] = data[i * channels + k]!
  }
  const file = join(dir, `page-${pageNumber}.pnm`)
  await writeFile(file, Buffer.concat([Buffer.from(`${gray ? 'P5' : 'P6'}\n${width} ${height}\n255\n`), pixels]))
  const { stdout } = await run('tesseract', [file, 'stdout', '-l', 'mon', 'tsv'], { timeout: 120_000, maxBuffer: 32 * 1024 * 1024 })
  return ocrLines(stdout, (x1 - x0) / width, y1 - y0)
}

/**
 * Reads a PDF into pages, section-tagged paragraphs and a table of contents. Throws IngestError
 * for input that cannot become a textbook: too large, not a PDF, encrypted, corrupt, empty, or
 * mostly scanned without OCR.
 */
export async function extractPdf(file: string, options: ExtractOptions = {}): Promise<ExtractedPdf> {
  const bytes = await readPdfBytes(file, options.maxBytes ?? MAX_PDF_BYTES)
  let pdf: PdfDocument
  try {
    const { VerbosityLevel } = await getResolvedPDFJS()
    pdf = await getDocumentProxy(bytes, { verbosity: VerbosityLevel.ERRORS })
  } catch (err) {
    throw openError(err)
  }
  try {
    const total = pdf.numPages
    if (total === 0) throw new IngestError('ingest.errors.empty')
    const raw: RawPage[] = []
    for (let i = 1; i <= total; i++) {
      options.signal?.throwIfAborted()
      try {
        const page = await pdf.getPage(i)
        const content = await page.getTextContent()
        const lines = linesOf(content.items)
        const images = lines.length ? false : await paintsImage(page)
        page.cleanup()
        raw.push({ pdfPage: i, lines, images })
      } catch (err) {
        throw new IngestError('ingest.errors.corruptPage', { page: i, detail: String((err as Error)?.message ?? err).slice(0, 200) })
      }
      options.onPage?.(i, total)
    }

    const ocrPages: number[] = []
    const scans = raw.filter((p) => !p.lines.length && p.images)
    if (scans.length && options.ocr !== 'off' && (await ocrAvailable())) {
      const dir = await mkdtemp(join(tmpdir(), 'bagsh-ocr-'))
      try {
        for (const page of scans) {
          options.signal?.throwIfAborted()
          page.lines = await ocrPage(pdf, page.pdfPage, dir).catch(() => [])
          if (page.lines.length) ocrPages.push(page.pdfPage)
        }
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    }

    const outline = await readOutline(pdf)
    const labels = await pdf.getPageLabels().catch(() => null)
    const book = assembleBook(raw, outline, labels)
    if (!raw.some((p) => p.lines.length)) {
      throw book.scannedPages.length ? new IngestError('ingest.errors.scanned', { pages: formatPageList(book.scannedPages) }) : new IngestError('ingest.errors.empty')
    }
    if (book.scannedPages.length > MAX_SCANNED_SHARE * total) {
      throw new IngestError('ingest.errors.scanned', { pages: formatPageList(book.scannedPages) })
    }
    if (!book.blocks.length) throw new IngestError('ingest.errors.empty')
    return { ...book, pageCount: total, ocrPages }
  } finally {
    await pdf.loadingTask.destroy()
  }
}
