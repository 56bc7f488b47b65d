import type { ChunkInput } from './store.ts'

/**
 * Splits a book's text into retrieval chunks. Input is the book as ordered paragraphs, each
 * tagged with its PDF page and section (the PDF ingestion and the sample loader both produce
 * this); output are chunks of about `targetWords` words that follow sentence boundaries, never
 * cross a section, prefer to end at a page turn (so a citation names one page), carry the pages
 * they span, and repeat one short sentence of the previous chunk as overlap when they are cut
 * mid-page.
 */

export interface TextBlock {
  /** 1-based page index in the PDF. */
  pdfPage: number
  /** Dotted section number ("2.1"); '' before the first numbered heading. */
  sectionPath: string
  sectionTitle: string
  text: string
}

export interface PageRef {
  pdfPage: number
  /** Printed page number, null when the page has none. */
  number: number | null
}

/** A chunk as the store takes it. */
export type ChunkDraft = ChunkInput

export interface ChunkOptions {
  targetWords?: number
  maxWords?: number
  /** A last chunk shorter than this joins the previous one of its section. */
  minWords?: number
  /** Longest sentence repeated at the start of the next chunk. */
  overlapWords?: number
}

interface Unit {
  text: string
  words: number
  pdfPage: number
  paragraphStart: boolean
}

const SENTENCE_END = /(?<=[.!?…])\s+(?=[\p{Lu}\p{N}"«(—-])/u

function wordCount(s: string): number {
  return s.split(/\s+/).filter(Boolean).length
}

/** Sentences, and long sentences cut into pieces of at most maxWords words. */
function unitsOf(block: TextBlock, maxWords: number): Unit[] {
  const units: Unit[] = []
  const sentences = block.text.replace(/\s+/g, ' ').trim().split(SENTENCE_END)
  sentences.forEach((sentence, i) => {
    const words = sentence.split(' ').filter(Boolean)
    for (let k = 0; k < words.length; k += maxWords) {
      const piece = words.slice(k, k + maxWords)
      units.push({ text: piece.join(' '), words: piece.length, pdfPage: block.pdfPage, paragraphStart: i === 0 && k === 0 })
    }
  })
  return units
}

export function chunkBlocks(blocks: TextBlock[], pages: PageRef[], options: ChunkOptions = {}): ChunkDraft[] {
  const targetWords = options.targetWords ?? 200
  const maxWords = options.maxWords ?? 350
  const minWords = options.minWords ?? 60
  const overlapWords = options.overlapWords ?? 30
  const printed = new Map(pages.map((p) => [p.pdfPage, p.number ?? p.pdfPage]))

  // Consecutive blocks of one section.
  const sections: { path: string; title: string; blocks: TextBlock[] }[] = []
  for (const block of blocks) {
    if (!block.text.trim()) continue
    const last = sections.at(-1)
    if (last && last.path === block.sectionPath && last.title === block.sectionTitle) last.blocks.push(block)
    else sections.push({ path: block.sectionPath, title: block.sectionTitle, blocks: [block] })
  }

  const chunks: ChunkDraft[] = []
  for (const section of sections) {
    const groups: Unit[][] = []
    let current: Unit[] = []
    let words = 0
    for (const unit of section.blocks.flatMap((b) => unitsOf(b, maxWords))) {
      // A page turn is a good place to cut once the chunk has some substance: citations then
      // name one page. No overlap here, or the next chunk would start on the previous page.
      if (current.length && unit.pdfPage !== current.at(-1)!.pdfPage && words >= targetWords / 2) {
        groups.push(current)
        current = []
        words = 0
      }
      if (current.length && words + unit.words > maxWords) {
        groups.push(current)
        const tail = current.at(-1)!
        current = tail.words <= overlapWords ? [{ ...tail, paragraphStart: true }] : []
        words = current.reduce((n, u) => n + u.words, 0)
      }
      current.push(unit)
      words += unit.words
      if (words >= targetWords && endsSentence(unit)) {
        groups.push(current)
        const tail = current.at(-1)!
        current = tail.words <= overlapWords ? [{ ...tail, paragraphStart: true }] : []
        words = current.reduce((n, u) => n + u.words, 0)
      }
    }
    // What is left is only the overlap sentence: nothing new to say.
    if (current.length && !(groups.length && current.length === 1 && current[0]!.text === groups.at(-1)!.at(-1)!.text)) {
      const own = current.reduce((n, u) => n + u.words, 0)
      const previous = groups.at(-1)
      if (previous && own < minWords && previous.reduce((n, u) => n + u.words, 0) + own <= maxWords * 1.3) {
        previous.push(...current.slice(current[0]!.text === previous.at(-1)!.text ? 1 : 0))
      } else {
        groups.push(current)
      }
    }
    for (const group of groups) {
      const pdfPageStart = Math.min(...group.map((u) => u.pdfPage))
      const pdfPageEnd = Math.max(...group.map((u) => u.pdfPage))
      const content = group
        .map((u, i) => (i > 0 && u.paragraphStart ? '\n\n' : i > 0 ? ' ' : '') + u.text)
        .join('')
      chunks.push({
        ord: chunks.length,
        sectionPath: section.path,
        sectionTitle: section.title,
        pageStart: printed.get(pdfPageStart) ?? pdfPageStart,
        pageEnd: Math.max(printed.get(pdfPageEnd) ?? pdfPageEnd, printed.get(pdfPageStart) ?? pdfPageStart),
        pdfPageStart,
        pdfPageEnd,
        content,
      })
    }
  }
  return chunks
}

function endsSentence(unit: Unit): boolean {
  return /[.!?…:]$/.test(unit.text)
}
