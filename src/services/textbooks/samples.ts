import { readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Kysely } from 'kysely'
import type { DB, TextbookKind, TocEntry } from '../../db/schema.ts'
import type { Embedder } from '../embeddings/embedder.ts'
import { chunkBlocks, type ChunkDraft, type TextBlock } from './chunk.ts'
import { chunkEmbeddingText, createTextbook, insertChunks, insertPages, markReady, type PageText } from './store.ts'

/**
 * The sample textbooks in samples/textbooks/*.md (format: samples/textbooks/README.md), parsed
 * into what a PDF import would produce — pages, section-tagged paragraphs, a table of contents —
 * so tests, benchmarks and a fresh install can load them without PDFs.
 */

export const SAMPLES_DIR = fileURLToPath(new URL('../../../samples/textbooks/', import.meta.url))

export interface SampleBook {
  file: string
  meta: { subject: string; grade: number; title: string; year: number | null; kind: TextbookKind }
  pages: PageText[]
  blocks: TextBlock[]
  toc: TocEntry[]
}

export class SampleFormatError extends Error {}

const PAGE_MARKER = /^<!--\s*page(?:\s+(\S+))?\s*-->$/
const HEADING = /^(#{1,3})\s+(.+)$/
const NUMBERED = /^(\d+(?:\.\d+)*)\.?\s+(.+)$/

export function parseSampleBook(text: string, file = 'book.md'): SampleBook {
  const fail = (line: number, message: string): never => {
    throw new SampleFormatError(`${file}:${line}: ${message}`)
  }
  const lines = text.replace(/\r\n?/g, '\n').split('\n')
  if (lines[0]?.trim() !== '---') fail(1, 'expected front matter starting with ---')
  const end = lines.indexOf('---', 1)
  if (end < 0) fail(1, 'front matter is not closed with ---')
  const front: Record<string, string> = {}
  for (let i = 1; i < end; i++) {
    const m = /^([a-z_]+):\s*(.*?)\s*(#.*)?$/.exec(lines[i]!)
    if (m) front[m[1]!] = m[2]!
    else if (lines[i]!.trim()) fail(i + 1, 'front matter lines look like "key: value"')
  }
  const grade = Number(front.grade)
  if (!front.subject) fail(2, 'subject is required')
  if (!Number.isInteger(grade) || grade < 1 || grade > 12) fail(2, 'grade must be 1–12')
  if (!front.title) fail(2, 'title is required')
  const meta = {
    subject: front.subject!,
    grade,
    title: front.title!,
    year: front.year ? Number(front.year) : null,
    kind: (front.kind === 'optional' ? 'optional' : 'required') as TextbookKind,
  }

  const pages: PageText[] = []
  const blocks: TextBlock[] = []
  const toc: TocEntry[] = []
  let pageLines: string[] = []
  let paragraph: string[] = []
  let section = { path: '', title: '' }

  const flushParagraph = () => {
    const body = paragraph.join(' ').replace(/\s+/g, ' ').trim()
    if (body) blocks.push({ pdfPage: pages.length, sectionPath: section.path, sectionTitle: section.title, text: body })
    paragraph = []
  }
  const flushPage = () => {
    flushParagraph()
    const page = pages.at(-1)
    if (page) page.text = pageLines.join('\n').replace(/\n{3,}/g, '\n\n').trim()
    pageLines = []
  }

  for (let i = end + 1; i < lines.length; i++) {
    const line = lines[i]!.trim()
    const marker = PAGE_MARKER.exec(line)
    if (marker) {
      flushPage()
      const label = marker[1] ?? null
      const number = label && /^\d+$/.test(label) ? Number(label) : null
      pages.push({ pdfPage: pages.length + 1, label, number, text: '' })
      continue
    }
    if (!line) {
      flushParagraph()
      pageLines.push('')
      continue
    }
    if (!pages.length) fail(i + 1, 'text before the first <!-- page --> marker')
    const heading = HEADING.exec(line)
    if (heading) {
      flushParagraph()
      const level = heading[1]!.length
      const numbered = NUMBERED.exec(heading[2]!.trim())
      section = numbered ? { path: numbered[1]!, title: numbered[2]!.trim() } : { path: '', title: heading[2]!.trim() }
      const page = pages.at(-1)!
      if (numbered) toc.push({ path: section.path, title: section.title, level, page: page.number ?? page.pdfPage, pdfPage: page.pdfPage })
      pageLines.push(heading[2]!.trim())
      continue
    }
    paragraph.push(line)
    pageLines.push(line)
  }
  flushPage()
  if (!pages.length) fail(end + 2, 'no pages')
  return { file, meta, pages, blocks, toc }
}

export function loadSampleBooks(dir = SAMPLES_DIR): SampleBook[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.md') && f !== 'README.md')
    .sort()
    .map((f) => parseSampleBook(readFileSync(join(dir, f), 'utf8'), basename(f)))
}

export function sampleChunks(book: SampleBook): ChunkDraft[] {
  return chunkBlocks(book.blocks, book.pages)
}

/** Loads one sample book the way a PDF import ends: a ready, searchable textbook. */
export async function importSampleBook(db: Kysely<DB>, embedder: Embedder, book: SampleBook): Promise<number> {
  const { id } = await createTextbook(db, { ...book.meta, sourcePath: `samples/textbooks/${book.file}` })
  const chunks = sampleChunks(book)
  const embeddings = await embedder.embed(chunks.map(chunkEmbeddingText))
  await db.transaction().execute(async (trx) => {
    await insertPages(trx, id, book.pages)
    await insertChunks(trx, id, chunks, embeddings, embedder.model)
    await markReady(trx, id, { toc: book.toc, pageCount: book.pages.length, embeddingModel: embedder.model })
  })
  return id
}
