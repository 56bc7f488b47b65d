import PDFDocument from 'pdfkit'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { parseSampleBook } from '../src/services/textbooks/samples.ts'

/**
 * Builds the sample textbooks' PDFs (samples/textbooks/pdf/) from their source text
 * (samples/textbooks/*.md, format in samples/textbooks/README.md). The PDFs are committed, so
 * nobody needs this script or its font to run Bagsh; it is for changing the samples:
 *
 *   npx node scripts/build-sample-pdfs.ts                 # every sample book
 *   npx node scripts/build-sample-pdfs.ts FILE.md --out DIR
 *
 * Needs the DejaVu fonts (Debian: fonts-dejavu-core) for Mongolian Cyrillic. Every source page
 * becomes one PDF page, so printed page numbers match the source. The books are laid out like
 * real ones, to exercise the ingestion pipeline: a cover without a page number (printed page
 * numbers start after it), a running header, page numbers in the footer or in the header,
 * words hyphenated at line ends, and an outline (bookmarks) in some books but not in others.
 * Output is deterministic (fixed dates), so a rebuild without changes changes no bytes.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FONT_DIR = '/usr/share/fonts/truetype/dejavu'
export const SAMPLES_PDF_DIR = join(ROOT, 'samples/textbooks/pdf')

export interface Layout {
  /** Bookmarks for every heading. */
  outline: boolean
  /** Where the printed page number goes. */
  pageNumber: 'footer-center' | 'footer-outside' | 'header'
  /** A second running line in the footer. */
  footerText: string | null
}

/** How each sample is laid out: some with an outline, some without, numbers in different places. */
const LAYOUTS: Record<string, Layout> = {
  'biology-7.md': { outline: true, pageNumber: 'footer-center', footerText: null },
  'physics-8.md': { outline: true, pageNumber: 'header', footerText: null },
  'geography-7.md': { outline: true, pageNumber: 'footer-outside', footerText: 'Багш · туршилтын хэвлэл' },
  'history-9.md': { outline: true, pageNumber: 'footer-center', footerText: null },
  'math-6.md': { outline: false, pageNumber: 'footer-outside', footerText: null },
  'mongolian-5.md': { outline: false, pageNumber: 'footer-center', footerText: 'Багш · туршилтын хэвлэл' },
  'chemistry-8.md': { outline: false, pageNumber: 'header', footerText: null },
}
const DEFAULT_LAYOUT: Layout = { outline: false, pageNumber: 'footer-center', footerText: null }

type Element = { kind: 'heading'; level: number; text: string } | { kind: 'paragraph'; text: string }

export interface SourcePage {
  /** Printed page number; null for the cover. */
  label: string | null
  elements: Element[]
}

const PAGE_MARKER = /^<!--\s*page(?:\s+(\S+))?\s*-->$/
const HEADING = /^(#{1,3})\s+(.+)$/

/** The source's pages as headings and paragraphs (parseSampleBook validates the same file). */
export function sourcePages(markdown: string): SourcePage[] {
  const lines = markdown.replace(/\r\n?/g, '\n').split('\n')
  const end = lines.indexOf('---', 1)
  const pages: SourcePage[] = []
  let paragraph: string[] = []
  const flush = () => {
    if (paragraph.length) pages.at(-1)!.elements.push({ kind: 'paragraph', text: paragraph.join(' ').replace(/\s+/g, ' ').trim() })
    paragraph = []
  }
  for (const raw of lines.slice(end + 1)) {
    const line = raw.trim()
    const marker = PAGE_MARKER.exec(line)
    if (marker) {
      flush()
      pages.push({ label: marker[1] ?? null, elements: [] })
    } else if (!line) {
      flush()
    } else if (HEADING.test(line)) {
      flush()
      const [, hashes, text] = HEADING.exec(line)!
      pages.at(-1)!.elements.push({ kind: 'heading', level: hashes!.length, text: text!.trim() })
    } else {
      paragraph.push(line)
    }
  }
  flush()
  return pages
}

const PAGE = { width: 595.28, height: 841.89 }
const MARGIN = { left: 62, right: 62, top: 78, bottom: 74 }
const VOWELS = /[аэиоуөүяеёюыйaeiou]/i

function fonts(doc: PDFKit.PDFDocument, dir: string): void {
  for (const [name, file] of [
    ['body', 'DejaVuSerif.ttf'],
    ['bold', 'DejaVuSans-Bold.ttf'],
    ['small', 'DejaVuSans.ttf'],
  ] as const) {
    const path = join(dir, file)
    if (!existsSync(path)) throw new Error(`${path} is missing: install the DejaVu fonts (Debian: apt-get install fonts-dejavu-core)`)
    doc.registerFont(name, path)
  }
}

/**
 * Greedy line breaking; a long word that does not fit is hyphenated at a syllable boundary when
 * at least three letters go on each side, like a typesetter would.
 */
function breakLines(doc: PDFKit.PDFDocument, text: string, width: number, indent: number): string[] {
  const lines: string[] = []
  let line = ''
  let room = width - indent
  const words = text.split(' ')
  for (let w = 0; w < words.length; w++) {
    const word = words[w]!
    const candidate = line ? `${line} ${word}` : word
    if (doc.widthOfString(candidate) <= room) {
      line = candidate
      continue
    }
    if (/^\p{L}{8,}$/u.test(word) && line) {
      // Break before a consonant that starts a syllable (фото-синтез, үүс-сэнийг).
      let split = 0
      for (let k = word.length - 3; k >= 3 && !split; k--) {
        if (VOWELS.test(word[k]!) || !VOWELS.test(word[k + 1]!)) continue
        if (doc.widthOfString(`${line} ${word.slice(0, k)}-`) <= room) split = k
      }
      if (split) {
        lines.push(`${line} ${word.slice(0, split)}-`)
        room = width
        line = word.slice(split)
        continue
      }
    }
    if (line) lines.push(line)
    room = width
    line = word
  }
  if (line) lines.push(line)
  return lines
}

interface Placed {
  font: string
  size: number
  x: number
  y: number
  text: string
}

/** Lays out one page's body at `scale` (1 = 11 pt text); null when it does not fit. */
function layoutBody(doc: PDFKit.PDFDocument, page: SourcePage, scale: number, cover: boolean): { placed: Placed[]; headings: { level: number; text: string }[] } | null {
  const placed: Placed[] = []
  const headings: { level: number; text: string }[] = []
  const width = PAGE.width - MARGIN.left - MARGIN.right
  let y = cover ? 260 : MARGIN.top
  const bottom = PAGE.height - MARGIN.bottom
  for (const element of page.elements) {
    if (element.kind === 'heading') {
      const size = (cover ? 26 : [16, 13.5, 12][element.level - 1]!) * scale
      doc.font('bold').fontSize(size)
      y += (element.level === 1 ? 14 : 9) * scale
      for (const text of breakLines(doc, element.text, width, 0)) {
        placed.push({ font: 'bold', size, x: MARGIN.left, y, text })
        y += size * 1.3
      }
      y += 4 * scale
      headings.push(element)
    } else {
      const size = 11 * scale
      const indent = cover ? 0 : 18 * scale
      doc.font('body').fontSize(size)
      breakLines(doc, element.text, width, indent).forEach((text, i) => {
        placed.push({ font: 'body', size, x: MARGIN.left + (i === 0 ? indent : 0), y, text })
        y += size * 1.38
      })
      y += 5 * scale
    }
    if (y > bottom) return null
  }
  return { placed, headings }
}

/** Renders one book (its source text) as a PDF. */
export function renderBookPdf(markdown: string, title: string, layout: Layout, fontDir = FONT_DIR): Promise<Buffer> {
  const doc = new PDFDocument({
    autoFirstPage: false,
    size: 'A4',
    margin: 0,
    info: { Title: title, Author: 'Bagsh', Producer: 'Bagsh build-sample-pdfs', Creator: 'Bagsh', CreationDate: new Date(Date.UTC(2026, 0, 1)) },
  })
  const chunks: Buffer[] = []
  doc.on('data', (c: Buffer) => chunks.push(c))
  const finished = new Promise<Buffer>((resolve, reject) => {
    doc.on('end', () => resolve(Buffer.concat(chunks)))
    doc.on('error', reject)
  })
  fonts(doc, fontDir)
  const outlineParents: PDFKit.PDFOutline[] = [doc.outline]
  const pages = sourcePages(markdown)
  pages.forEach((page, index) => {
    doc.addPage({ size: 'A4', margin: 0 })
    const cover = page.label === null
    let body = null
    for (let scale = 1; scale >= 0.7 && !body; scale -= 0.05) body = layoutBody(doc, page, scale, cover)
    if (!body) throw new Error(`${title}: page ${index + 1} does not fit on an A4 page; split it in the source`)
    for (const p of body.placed) doc.font(p.font).fontSize(p.size).text(p.text, p.x, p.y, { lineBreak: false })
    if (layout.outline) {
      for (const heading of body.headings) {
        if (cover) continue
        const parent = outlineParents[Math.min(heading.level - 1, outlineParents.length - 1)]!
        outlineParents[heading.level] = parent.addItem(heading.text)
        outlineParents.length = heading.level + 1
      }
    }
    if (cover) return
    // Running header, a rule under it, and the page number where this book puts it.
    const odd = Number(page.label) % 2 === 1
    doc.font('small').fontSize(8.5).fillColor('#444')
    doc.text(title, MARGIN.left, 42, { lineBreak: false })
    if (layout.pageNumber === 'header') {
      const w = doc.widthOfString(page.label!)
      doc.text(page.label!, PAGE.width - MARGIN.right - w, 42, { lineBreak: false })
    }
    doc.moveTo(MARGIN.left, 56).lineTo(PAGE.width - MARGIN.right, 56).lineWidth(0.5).strokeColor('#888').stroke()
    const footerY = PAGE.height - 46
    if (layout.pageNumber === 'footer-center') {
      const text = `— ${page.label} —`
      doc.text(text, (PAGE.width - doc.widthOfString(text)) / 2, footerY, { lineBreak: false })
    } else if (layout.pageNumber === 'footer-outside') {
      const w = doc.widthOfString(page.label!)
      doc.text(page.label!, odd ? PAGE.width - MARGIN.right - w : MARGIN.left, footerY, { lineBreak: false })
    }
    if (layout.footerText) {
      const w = doc.widthOfString(layout.footerText)
      doc.text(layout.footerText, layout.pageNumber === 'footer-outside' && !odd ? PAGE.width - MARGIN.right - w : MARGIN.left, footerY + 12, { lineBreak: false })
    }
    doc.fillColor('black')
  })
  doc.end()
  return finished
}

export function layoutFor(file: string): Layout {
  return LAYOUTS[basename(file)] ?? DEFAULT_LAYOUT
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { out: { type: 'string' } } })
  const dir = join(ROOT, 'samples/textbooks')
  const files = positionals.length ? positionals : readdirSync(dir).filter((f) => f.endsWith('.md') && f !== 'README.md').map((f) => join(dir, f))
  const out = values.out ?? SAMPLES_PDF_DIR
  mkdirSync(out, { recursive: true })
  for (const file of files) {
    const markdown = readFileSync(file, 'utf8')
    const book = parseSampleBook(markdown, basename(file))
    const pdf = await renderBookPdf(markdown, book.meta.title, layoutFor(file))
    const target = join(out, basename(file).replace(/\.md$/, '.pdf'))
    writeFileSync(target, pdf)
    process.stdout.write(`${target}: ${book.pages.length} pages, ${(pdf.length / 1024).toFixed(0)} KiB\n`)
  }
}

if (import.meta.main) await main()
