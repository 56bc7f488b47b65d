import type { TocEntry } from '../../db/schema.ts'
import type { TextBlock } from './chunk.ts'
import type { PageText } from './store.ts'

/**
 * From positioned text lines to a textbook: the layout half of PDF ingestion (pdf.ts reads the
 * file). Pure functions, so every rule can be tested on a few hand-made lines:
 *
 * - running headers and footers: among the two top-most and two bottom-most lines of each page,
 *   those whose text (digits masked, so "— 12 —" and "— 13 —" are alike) recurs on several pages
 *   at the same edge and size; page numbers are such lines too.
 * - printed page numbers: numbers in the stripped lines whose difference to the PDF page index
 *   is the one most pages agree on (so "Биологи 7" in every header is not a page number);
 *   else a numeric page label of the PDF.
 * - hyphenated line breaks ("фото-" + "синтез") are joined, also across a page turn.
 * - sections: the PDF outline when it has one, else numbered heading lines ("2.1 Фотосинтез")
 *   accepted only in sequence (2.1 may follow 2, 1.4 or 2.0.3, not 3.2), which keeps numbered
 *   exercises ("1. Эсийн хэсгийг нэрлэ") out.
 */

export interface PdfLine {
  text: string
  /** Left edge and baseline in PDF units (origin bottom-left: a larger y is higher on the page). */
  x: number
  y: number
  /** Font size. */
  size: number
  /** Right edge. */
  right: number
}

export interface RawPage {
  pdfPage: number
  /** In content-stream order (reading order for most textbooks). */
  lines: PdfLine[]
  /** The page paints an image: a page without text but with an image is a scan. */
  images: boolean
}

export interface OutlineEntry {
  title: string
  level: number
  pdfPage: number
  /** 1-based position in the outline tree ([2, 1] = first child of the second entry). */
  position: number[]
}

export interface AssembledBook {
  pages: PageText[]
  blocks: TextBlock[]
  toc: TocEntry[]
  tocSource: 'outline' | 'headings' | 'none'
  /** Pages with no text at all; `scannedPages` are those of them that show an image. */
  textlessPages: number[]
  scannedPages: number[]
}

interface Section {
  path: string
  title: string
  level: number
}

const NUMBERED = /^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(\S.{0,200})$/u
const CHAPTER = /^(\d{1,2})\s*-?\s*р\s+бүлэг[.:]?\s*(.*)$/iu
const PAGE_NUMBER = /^[^\p{L}\p{N}]*(\d{1,4})[^\p{L}\p{N}]*$/u
const ROMAN_NUMBER = /^[^\p{L}\p{N}]*([ivxlcdm]{1,7}|[IVXLCDM]{1,7})[^\p{L}\p{N}]*$/u
const HYPHEN_END = /(\p{L})[-\u00ad\u2010]$/u
const SENTENCE_END = /[.!?…:]["»)]?$/u

/** Two lines alike up to numbers: what running headers and footers share across pages. */
function lineKey(zone: 'top' | 'bottom', line: PdfLine): string {
  const text = line.text.toLowerCase()
  const masked = (ROMAN_NUMBER.test(text) ? text.replace(/[ivxlcdm]+/, '#') : text)
    .replace(/\d+/g, '#')
    .replace(/\s+/g, ' ')
    .trim()
  return `${zone}|${Math.round(line.size)}|${masked}`
}

/** Line indices from the top edge inward and from the bottom edge inward (two each). */
function edges(lines: PdfLine[]): { top: number[]; bottom: number[] } {
  const order = lines.map((_, i) => i).sort((a, b) => lines[b]!.y - lines[a]!.y || a - b)
  return { top: order.slice(0, 2), bottom: order.slice(-2).reverse() }
}

/** Indices of running header/footer lines per page. */
export function runningLines(pages: RawPage[]): Set<number>[] {
  const textPages = pages.filter((p) => p.lines.length).length
  const minPages = textPages >= 6 ? 3 : 2
  const counts = new Map<string, number>()
  const keysOf = pages.map((page) => {
    const { top, bottom } = edges(page.lines)
    const keys = {
      top: top.map((i) => lineKey('top', page.lines[i]!)),
      bottom: bottom.map((i) => lineKey('bottom', page.lines[i]!)),
    }
    for (const key of new Set([...keys.top, ...keys.bottom])) counts.set(key, (counts.get(key) ?? 0) + 1)
    return { top, bottom, keys }
  })
  return keysOf.map(({ top, bottom, keys }) => {
    const stripped = new Set<number>()
    const strip = (indices: number[], zoneKeys: string[]) => {
      for (let k = 0; k < indices.length; k++) {
        if ((counts.get(zoneKeys[k]!) ?? 0) < minPages) break
        stripped.add(indices[k]!)
      }
    }
    if (textPages >= 2) {
      strip(top, keys.top)
      strip(bottom, keys.bottom)
    }
    return stripped
  })
}

interface NumberCandidate {
  n: number
  label: string
  standalone: boolean
}

/**
 * The printed page number of every page (null where none is found), from the numbers in its
 * stripped header/footer lines: the one whose offset to the PDF index most pages share.
 */
export function printedNumbers(pages: RawPage[], stripped: Set<number>[], labels: string[] | null): { label: string | null; number: number | null }[] {
  const candidates = pages.map((page, p) => {
    const found: NumberCandidate[] = []
    for (const i of stripped[p]!) {
      const text = page.lines[i]!.text
      const alone = PAGE_NUMBER.exec(text)
      if (alone) {
        found.push({ n: Number(alone[1]), label: alone[1]!, standalone: true })
        continue
      }
      for (const m of text.matchAll(/(?<![\p{L}\p{N}.])(\d{1,4})(?![\p{L}\p{N}]|\.\d)/gu)) found.push({ n: Number(m[1]), label: m[1]!, standalone: false })
    }
    return found
  })
  const offsetPages = new Map<number, number>()
  candidates.forEach((found, p) => {
    for (const offset of new Set(found.map((c) => c.n - pages[p]!.pdfPage))) offsetPages.set(offset, (offsetPages.get(offset) ?? 0) + 1)
  })
  const trivialLabels = !labels || labels.every((l, i) => l === String(i + 1))
  return pages.map((page, p) => {
    // A number standing alone on its line is the likelier page number; one inside a header
    // ("2.1 Фотосинтез 14") must be backed by clearly more pages.
    let best: NumberCandidate | null = null
    let bestScore = 0
    let bestCount = 0
    for (const c of candidates[p]!) {
      const count = offsetPages.get(c.n - page.pdfPage) ?? 0
      const score = count * (c.standalone ? 2 : 1)
      if (score > bestScore) {
        best = c
        bestScore = score
        bestCount = count
      }
    }
    if (best && (bestCount >= 2 || (best.standalone && pages.length <= 2))) return { label: best.label, number: best.n }
    for (const i of stripped[p]!) {
      const roman = ROMAN_NUMBER.exec(page.lines[i]!.text)
      if (roman) return { label: roman[1]!.toLowerCase(), number: null }
    }
    const label = trivialLabels ? null : (labels?.[page.pdfPage - 1]?.trim() || null)
    if (label) return { label: label.slice(0, 20), number: /^\d{1,6}$/.test(label) ? Number(label) : null }
    return { label: null, number: null }
  })
}

function normalizeTitle(s: string): string {
  return s.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ' ').trim()
}

/** "2.1 Фотосинтез" → path 2.1; "3-р бүлэг. Дэлхий" → path 3. */
export function parseHeading(text: string): { path: string; title: string } | null {
  const chapter = CHAPTER.exec(text)
  if (chapter) return { path: chapter[1]!, title: chapter[2]!.trim() || text.trim() }
  const numbered = NUMBERED.exec(text)
  if (numbered) return { path: numbered[1]!, title: numbered[2]!.trim() }
  return null
}

/** Whether heading `next` can follow heading `prev` in a book: a first child, or the next sibling of it or of an ancestor (one skipped number allowed). */
export function followsInSequence(prev: number[] | null, next: number[]): boolean {
  if (next.some((n) => n < 0 || n > 99)) return false
  if (!prev) return next[0]! <= 20
  for (let k = 0; k <= prev.length && k < next.length; k++) {
    if (k > 0 && next[k - 1] !== prev[k - 1]) return false
    const stepOk = k === prev.length ? next[k] === 1 || next[k] === 0 : next[k]! > prev[k]! && next[k]! <= prev[k]! + 2
    if (stepOk && next.slice(k + 1).every((n) => n === 1 || n === 0)) return true
  }
  return false
}

function median(values: number[], fallback: number): number {
  if (!values.length) return fallback
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** Appends a line to a paragraph, joining a word hyphenated across the break ("фото-" + "синтез"). */
export function joinLine(paragraph: string, line: string): string {
  if (!paragraph) return line
  if (HYPHEN_END.test(paragraph) && /^\p{Ll}/u.test(line)) return paragraph.slice(0, -1) + line
  // A hyphenated compound broken at its hyphen ("Улаан-" + "Үд") keeps the hyphen, without a space.
  if (/\p{L}-$/u.test(paragraph) && /^\p{Lu}/u.test(line)) return paragraph + line
  return paragraph + ' ' + line
}

function outlineSections(outline: OutlineEntry[]): (Section & { pdfPage: number })[] {
  const parsed = outline.map((e) => ({ entry: e, heading: parseHeading(e.title) }))
  const anyNumbered = parsed.some((p) => p.heading)
  return parsed
    .map(({ entry, heading }) => ({
      path: heading?.path ?? (anyNumbered ? '' : entry.position.join('.')),
      title: (heading?.title ?? entry.title).slice(0, 300),
      level: entry.level,
      pdfPage: entry.pdfPage,
    }))
    .map((s) => ({ ...s, path: s.path.slice(0, 50) }))
    .sort((a, b) => a.pdfPage - b.pdfPage)
}

/** Where on its page an outline entry's heading stands: the body line(s) spelling its title. */
function findHeading(lines: PdfLine[], from: number, section: Section): { start: number; end: number } | null {
  const full = normalizeTitle(section.path ? `${section.path} ${section.title}` : section.title)
  const bare = normalizeTitle(section.title)
  for (let i = from; i < lines.length; i++) {
    let text = ''
    for (let j = i; j < Math.min(lines.length, i + 3); j++) {
      text = normalizeTitle(text + ' ' + lines[j]!.text)
      if (!text) break
      if (text === full || text === bare) return { start: i, end: j + 1 }
      if (!full.startsWith(text) && !bare.startsWith(text)) break
    }
  }
  return null
}

/** Puts a textbook together from the lines of its pages. */
export function assembleBook(raw: RawPage[], outline: OutlineEntry[], labels: string[] | null): AssembledBook {
  const stripped = runningLines(raw)
  const numbers = printedNumbers(raw, stripped, labels)
  const body = raw.map((page, p) => page.lines.filter((_, i) => !stripped[p]!.has(i)))
  const bodySize = median(body.flat().map((l) => l.size), 10)

  // Heading lines per page: index → section (and how many lines the heading takes).
  const headingAt = raw.map(() => new Map<number, { section: Section; lines: number }[]>())
  const addHeading = (p: number, i: number, heading: { section: Section; lines: number }) => {
    const list = headingAt[p]!.get(i)
    if (list) list.push(heading)
    else headingAt[p]!.set(i, [heading])
  }
  const fromOutline = outlineSections(outline)
  let tocSource: AssembledBook['tocSource'] = 'none'
  if (fromOutline.length) {
    tocSource = 'outline'
    const cursor = new Map<number, number>()
    for (const section of fromOutline) {
      const p = section.pdfPage - 1
      if (!body[p]) continue
      const found = findHeading(body[p]!, cursor.get(p) ?? 0, section)
      const start = found?.start ?? cursor.get(p) ?? 0
      cursor.set(p, found?.end ?? start)
      addHeading(p, start, { section, lines: found ? found.end - found.start : 0 })
    }
  } else {
    let prev: number[] | null = null
    body.forEach((lines, p) => {
      lines.forEach((line, i) => {
        const heading = line.text.length <= 160 ? parseHeading(line.text) : null
        if (!heading || !/^\p{Lu}/u.test(heading.title) || line.size < bodySize * 0.95) return
        if (SENTENCE_END.test(heading.title) && line.size < bodySize * 1.1) return
        const parts = heading.path.split('.').map(Number)
        // "1 Эс" at body size is as likely a numbered exercise; a chapter heading stands out.
        if (parts.length === 1 && !CHAPTER.test(line.text) && line.size < bodySize * 1.05) return
        if (!followsInSequence(prev, parts)) return
        prev = parts
        tocSource = 'headings'
        addHeading(p, i, { section: { path: heading.path, title: heading.title.slice(0, 300), level: parts.length }, lines: 1 })
      })
    })
  }

  const pages: PageText[] = []
  const blocks: TextBlock[] = []
  const toc: TocEntry[] = []
  let section: Section = { path: '', title: '', level: 0 }
  raw.forEach((page, p) => {
    const lines = body[p]!
    const printed = numbers[p]!
    const pageParagraphs: string[] = []
    const left = Math.min(...lines.map((l) => l.x))
    const right = Math.max(...lines.map((l) => l.right))
    const gaps = lines.slice(1).map((l, i) => lines[i]!.y - l.y).filter((g) => g > 0 && g < 3 * bodySize)
    const lineGap = median(gaps, bodySize * 1.25)
    let paragraph = ''
    const flush = () => {
      if (paragraph) {
        pageParagraphs.push(paragraph)
        blocks.push({ pdfPage: page.pdfPage, sectionPath: section.path, sectionTitle: section.title, text: paragraph })
      }
      paragraph = ''
    }
    let prev: PdfLine | null = null
    for (let i = 0; i < lines.length; i++) {
      let skip = 0
      for (const heading of headingAt[p]!.get(i) ?? []) {
        flush()
        prev = null
        section = heading.section
        toc.push({ path: section.path, title: section.title, level: section.level, page: printed.number ?? page.pdfPage, pdfPage: page.pdfPage })
        if (heading.lines > 0) {
          pageParagraphs.push(lines.slice(i, i + heading.lines).map((l) => l.text).join(' '))
          skip = heading.lines
        }
      }
      if (skip) {
        i += skip - 1
        continue
      }
      const line = lines[i]!
      // A paragraph starts after a wider gap, at a first-line indent, or after a line that stops
      // well short of the right edge (the last line of the previous paragraph).
      const short = prev !== null && prev.right < right - Math.max(4 * prev.size, 0.15 * (right - left))
      const startsParagraph =
        !prev ||
        line.y > prev.y + 1 ||
        prev.y - line.y > lineGap * 1.45 ||
        line.x > prev.x + 0.8 * line.size ||
        (short && (SENTENCE_END.test(prev.text) || line.x > left + 0.8 * line.size || /^[\p{Lu}\p{N}]/u.test(line.text)))
      if (startsParagraph && !(paragraph && HYPHEN_END.test(paragraph) && /^\p{Ll}/u.test(line.text))) flush()
      paragraph = joinLine(paragraph, line.text)
      prev = line
    }
    flush()
    pages.push({ pdfPage: page.pdfPage, label: printed.label, number: printed.number, text: pageParagraphs.join('\n\n') })
  })

  // A word hyphenated across a page turn goes whole to the page where it starts.
  for (let b = 1; b < blocks.length; b++) {
    const before = blocks[b - 1]!
    const after = blocks[b]!
    if (after.pdfPage !== before.pdfPage + 1 || after.sectionPath !== before.sectionPath) continue
    if (!HYPHEN_END.test(before.text) || !/^\p{Ll}/u.test(after.text)) continue
    const [word, rest = ''] = after.text.split(/\s+(.*)/su)
    before.text = before.text.slice(0, -1) + word
    after.text = rest.trim()
  }

  const textlessPages = raw.filter((p) => !p.lines.length).map((p) => p.pdfPage)
  return {
    pages,
    blocks: blocks.filter((b) => b.text),
    toc,
    tocSource,
    textlessPages,
    scannedPages: raw.filter((p) => !p.lines.length && p.images).map((p) => p.pdfPage),
  }
}

/** "3, 5–9, 12": page lists in messages. */
export function formatPageList(pages: number[], max = 30): string {
  const ranges: string[] = []
  const sorted = [...new Set(pages)].sort((a, b) => a - b)
  for (let i = 0; i < sorted.length; i++) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++
    ranges.push(j > i ? `${sorted[i]}–${sorted[j]}` : String(sorted[i]))
    i = j
  }
  return ranges.length > max ? ranges.slice(0, max).join(', ') + ', …' : ranges.join(', ')
}
