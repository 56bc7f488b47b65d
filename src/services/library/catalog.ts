import type { Kysely } from 'kysely'
import type { DB, TocEntry } from '../../db/schema.ts'
import { NotFoundError } from '../errors.ts'

/**
 * Reading the library: the ready textbooks by grade and subject, one textbook's table of
 * contents, and its pages one at a time. Only status 'ready' is ever shown — a book being
 * imported, failed or replaced does not exist for readers.
 */

export const GRADES: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]

export interface LibraryFilter {
  grade: number | null
  subject: string | null
}

export interface Subject {
  code: string
  nameMn: string
  nameEn: string
}

export interface LibraryBook {
  id: number
  title: string
  subject: string
  grade: number
  year: number | null
  kind: 'required' | 'optional'
  pageCount: number
}

/** A grade filter from a query string: 1–12, else none. */
export function parseGrade(value: string | undefined): number | null {
  if (!value || !/^\d{1,2}$/.test(value)) return null
  const grade = Number(value)
  return grade >= 1 && grade <= 12 ? grade : null
}

/** A subject filter from a query string: a known code, else none. */
export function parseSubject(value: string | undefined, subjects: readonly Subject[]): string | null {
  return value && subjects.some((s) => s.code === value) ? value : null
}

/** The subject's name in the reader's language; the code itself for an unknown one. */
export function subjectNamer(subjects: readonly Subject[], lang: string): (code: string) => string {
  const names = new Map(subjects.map((s) => [s.code, lang === 'en' ? s.nameEn : s.nameMn]))
  return (code) => names.get(code) ?? code
}

export async function listSubjectNames(db: Kysely<DB>): Promise<Subject[]> {
  const rows = await db.selectFrom('subjects').select(['code', 'name_mn', 'name_en']).orderBy('sort').execute()
  return rows.map((r) => ({ code: r.code, nameMn: r.name_mn, nameEn: r.name_en }))
}

/** Ready textbooks passing the filter, by grade, then subject order, then title. */
export async function listLibrary(db: Kysely<DB>, filter: LibraryFilter): Promise<LibraryBook[]> {
  let query = db
    .selectFrom('textbooks')
    .innerJoin('subjects', 'subjects.code', 'textbooks.subject')
    .select(['textbooks.id', 'textbooks.title', 'textbooks.subject', 'textbooks.grade', 'textbooks.year', 'textbooks.kind', 'textbooks.page_count'])
    .where('textbooks.status', '=', 'ready')
  if (filter.grade !== null) query = query.where('textbooks.grade', '=', filter.grade)
  if (filter.subject !== null) query = query.where('textbooks.subject', '=', filter.subject)
  const rows = await query.orderBy('textbooks.grade').orderBy('subjects.sort').orderBy('textbooks.title').orderBy('textbooks.id').execute()
  return rows.map((r) => ({ id: r.id, title: r.title, subject: r.subject, grade: r.grade, year: r.year, kind: r.kind, pageCount: r.page_count }))
}

/** Groups books (already sorted by grade) into one entry per grade. */
export function byGrade(books: LibraryBook[]): { grade: number; books: LibraryBook[] }[] {
  const groups: { grade: number; books: LibraryBook[] }[] = []
  for (const book of books) {
    const last = groups.at(-1)
    if (last && last.grade === book.grade) last.books.push(book)
    else groups.push({ grade: book.grade, books: [book] })
  }
  return groups
}

export interface ReadyTextbook extends LibraryBook {
  toc: TocEntry[]
}

/** A ready textbook, or NotFoundError (also for ids of books being imported, failed or replaced). */
export async function findReadyTextbook(db: Kysely<DB>, id: number): Promise<ReadyTextbook> {
  const row = await db
    .selectFrom('textbooks')
    .select(['id', 'title', 'subject', 'grade', 'year', 'kind', 'page_count', 'toc'])
    .where('id', '=', id)
    .where('status', '=', 'ready')
    .executeTakeFirst()
  if (!row) throw new NotFoundError()
  const toc = Array.isArray(row.toc) ? row.toc : []
  return { id: row.id, title: row.title, subject: row.subject, grade: row.grade, year: row.year, kind: row.kind, pageCount: row.page_count, toc }
}

export interface PageRef {
  /** What `?page=` and citations use: the printed number, or the PDF page when none is printed. */
  key: number
  /** What is printed on the page ("45", "xii"), or null. */
  label: string | null
  pdfPage: number
}

export interface ReadingPage extends PageRef {
  text: string
  previous: PageRef | null
  next: PageRef | null
  /** The section the page is in (the last table-of-contents entry starting on or before it). */
  section: TocEntry | null
}

const ref = (p: { pdf_page: number; label: string | null; number: number | null }): PageRef => ({
  key: p.number ?? p.pdf_page,
  label: p.label,
  pdfPage: p.pdf_page,
})

/**
 * One page of a textbook by the number a reader sees (`?page=45`): the page printed "45", else
 * — for pages with nothing printed (covers) — the PDF page 45. No page param: the first page.
 * Anything else is a NotFoundError. Citations use the same numbers (chunks' page_start).
 */
export async function readPage(db: Kysely<DB>, book: ReadyTextbook, pageParam: string | undefined): Promise<ReadingPage> {
  const base = db.selectFrom('textbook_pages').select(['pdf_page', 'label', 'number', 'text']).where('textbook_id', '=', book.id)
  let row
  if (pageParam === undefined || pageParam === '') {
    row = await base.orderBy('pdf_page').limit(1).executeTakeFirst()
  } else {
    if (!/^\d{1,6}$/.test(pageParam)) throw new NotFoundError()
    const n = Number(pageParam)
    row =
      (await base.where('number', '=', n).orderBy('pdf_page').limit(1).executeTakeFirst()) ??
      (await base.where('number', 'is', null).where('pdf_page', '=', n).executeTakeFirst())
  }
  if (!row) throw new NotFoundError()
  const around = await db
    .selectFrom('textbook_pages')
    .select(['pdf_page', 'label', 'number'])
    .where('textbook_id', '=', book.id)
    .where('pdf_page', 'in', [row.pdf_page - 1, row.pdf_page + 1])
    .execute()
  const previous = around.find((p) => p.pdf_page === row.pdf_page - 1)
  const next = around.find((p) => p.pdf_page === row.pdf_page + 1)
  const section = book.toc.filter((e) => e.pdfPage <= row.pdf_page).at(-1) ?? null
  return { ...ref(row), text: row.text, previous: previous ? ref(previous) : null, next: next ? ref(next) : null, section }
}

export interface TextBlock {
  heading: boolean
  /** Lines to show with a line break between them. */
  lines: string[]
}

const LIST_ITEM = /^(\d{1,3}[.)]|[-•–*])\s/

/**
 * Page text as blocks to print: paragraphs are separated by blank lines; inside one, wrapped
 * lines are joined, but list items ("1. …", "- …") keep their own line. A one-line paragraph
 * that is a table-of-contents heading ("2.1 Фотосинтез") is a heading.
 */
export function pageBlocks(text: string, toc: readonly TocEntry[]): TextBlock[] {
  const headings = new Set(toc.map((e) => `${e.path} ${e.title}`.trim()))
  const blocks: TextBlock[] = []
  for (const paragraph of text.replace(/\r\n?/g, '\n').split(/\n\s*\n/)) {
    const raw = paragraph.split('\n').map((l) => l.replace(/\s+/g, ' ').trim()).filter(Boolean)
    if (!raw.length) continue
    if (raw.length === 1 && headings.has(raw[0]!)) {
      blocks.push({ heading: true, lines: raw })
      continue
    }
    const lines: string[] = []
    for (const line of raw) {
      if (lines.length && !LIST_ITEM.test(line)) lines[lines.length - 1] += ' ' + line
      else lines.push(line)
    }
    blocks.push({ heading: false, lines })
  }
  return blocks
}
