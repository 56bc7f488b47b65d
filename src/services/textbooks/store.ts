import { sql, type Kysely, type Transaction } from 'kysely'
import type { DB, TextbookKind, TocEntry } from '../../db/schema.ts'
import { isSupportedDimensions, toVectorLiteral, vectorColumn } from '../../db/vector.ts'
import { FormError } from '../errors.ts'
import { normalizeText } from '../retrieval/normalize.ts'
import { addBookToVocabulary, removeBookFromVocabulary } from '../retrieval/vocabulary.ts'

/**
 * Writing textbooks: a row per imported version, its page texts, and its chunks with their
 * embeddings. A book is invisible to search until markReady(); a re-import (replacesId) swaps
 * the old version out in the same transaction, so search never sees a gap or a half book.
 */

export interface NewTextbook {
  subject: string
  grade: number | string
  title: string
  year?: number | string | null
  kind?: string
  /** Relative to DATA_DIR. */
  sourcePath?: string | null
  sourceSha256?: string | null
  /** The ready textbook this import will replace once it is ready itself. */
  replacesId?: number | null
}

export interface PageText {
  pdfPage: number
  label: string | null
  number: number | null
  text: string
}

export interface ChunkInput {
  ord: number
  sectionPath: string
  sectionTitle: string
  /** Printed page numbers (the PDF page where none is printed): what citations show. */
  pageStart: number
  pageEnd: number
  pdfPageStart: number
  pdfPageEnd: number
  content: string
}

const KINDS: readonly TextbookKind[] = ['required', 'optional']
const INSERT_BATCH = 100

export async function listSubjects(db: Kysely<DB>) {
  return db.selectFrom('subjects').selectAll().orderBy('sort').execute()
}

/** Validates the metadata and creates the textbook in status 'processing'. Field errors are i18n keys under `textbooks.errors`. */
export async function createTextbook(db: Kysely<DB>, meta: NewTextbook): Promise<{ id: number; version: number }> {
  const fields: Record<string, string> = {}
  const subject = String(meta.subject ?? '').trim()
  const gradeText = String(meta.grade ?? '').trim()
  const grade = Number(gradeText)
  const title = String(meta.title ?? '').replace(/\s+/g, ' ').trim()
  const yearText = meta.year === null || meta.year === undefined ? '' : String(meta.year).trim()
  const kind = (meta.kind ?? 'required') as TextbookKind
  if (!/^\d{1,2}$/.test(gradeText) || grade < 1 || grade > 12) fields.grade = 'textbooks.errors.gradeInvalid'
  if (!title) fields.title = 'textbooks.errors.titleRequired'
  else if (title.length > 300) fields.title = 'textbooks.errors.titleTooLong'
  else if (/[\u0000-\u001f\u007f]/.test(title)) fields.title = 'textbooks.errors.titleInvalid'
  if (yearText && (!/^\d{4}$/.test(yearText) || Number(yearText) < 1950 || Number(yearText) > 2100)) fields.year = 'textbooks.errors.yearInvalid'
  if (!KINDS.includes(kind)) fields.kind = 'textbooks.errors.kindInvalid'
  const known = subject ? await db.selectFrom('subjects').select('code').where('code', '=', subject).executeTakeFirst() : undefined
  if (!known) fields.subject = 'textbooks.errors.subjectInvalid'
  let version = 1
  if (meta.replacesId != null) {
    const old = await db.selectFrom('textbooks').select('version').where('id', '=', meta.replacesId).executeTakeFirst()
    if (!old) fields.replaces = 'textbooks.errors.replacesMissing'
    else version = old.version + 1
  }
  if (Object.keys(fields).length) throw new FormError(fields)
  const row = await db
    .insertInto('textbooks')
    .values({
      subject,
      grade,
      title,
      year: yearText ? Number(yearText) : null,
      kind,
      status: 'processing',
      source_path: meta.sourcePath ?? null,
      source_sha256: meta.sourceSha256 ?? null,
      version,
      replaces_id: meta.replacesId ?? null,
    })
    .returning('id')
    .executeTakeFirstOrThrow()
  return { id: row.id, version }
}

export async function insertPages(db: Kysely<DB>, textbookId: number, pages: PageText[]): Promise<void> {
  for (let i = 0; i < pages.length; i += INSERT_BATCH) {
    const rows = pages.slice(i, i + INSERT_BATCH).map((p) => ({
      textbook_id: textbookId,
      pdf_page: p.pdfPage,
      label: p.label,
      number: p.number,
      text: p.text,
    }))
    await db.insertInto('textbook_pages').values(rows).execute()
  }
}

/** What gets embedded for a chunk: its section title carries the topic of every chunk in the section. */
export function chunkEmbeddingText(chunk: { sectionTitle: string; content: string }): string {
  return chunk.sectionTitle ? `${chunk.sectionTitle}\n${chunk.content}` : chunk.content
}

/**
 * Inserts chunks with one embedding each (768 or 1536 dimensions, all of one length), in
 * multi-row batches. content_norm, which both text legs of retrieval search, also holds the
 * section title, like the embedding.
 */
export async function insertChunks(
  db: Kysely<DB> | Transaction<DB>,
  textbookId: number,
  chunks: ChunkInput[],
  embeddings: number[][],
  model: string,
): Promise<void> {
  if (embeddings.length !== chunks.length) throw new Error(`${chunks.length} chunks but ${embeddings.length} embeddings`)
  const dims = embeddings[0]?.length ?? 768
  if (!isSupportedDimensions(dims)) throw new Error(`embeddings must have 768 or 1536 dimensions, got ${dims}`)
  const column = vectorColumn(dims)
  for (let i = 0; i < chunks.length; i += INSERT_BATCH) {
    const rows = chunks.slice(i, i + INSERT_BATCH).map((c, k) => {
      const vector = embeddings[i + k]!
      if (vector.length !== dims) throw new Error(`embedding ${i + k} has ${vector.length} dimensions, expected ${dims}`)
      return {
        textbook_id: textbookId,
        ord: c.ord,
        section_path: c.sectionPath,
        section_title: c.sectionTitle,
        page_start: c.pageStart,
        page_end: c.pageEnd,
        pdf_page_start: c.pdfPageStart,
        pdf_page_end: c.pdfPageEnd,
        content: c.content,
        content_norm: normalizeText(chunkEmbeddingText(c)),
        [column]: toVectorLiteral(vector),
        embedding_model: model,
      }
    })
    await db.insertInto('chunks').values(rows).execute()
  }
}

/**
 * Makes a textbook searchable: status 'ready', its words counted into the search vocabulary.
 * When it replaces an older version, the old one becomes 'replaced' and loses its chunks and
 * pages in the same transaction. Throws (NoResultError) for a book that is already ready, so its
 * words are never counted twice.
 */
export async function markReady(
  trx: Transaction<DB>,
  textbookId: number,
  details: { toc?: TocEntry[]; pageCount?: number; embeddingModel?: string } = {},
): Promise<void> {
  const counted = await trx.selectFrom('chunks').select((eb) => eb.fn.countAll<string>().as('n')).where('textbook_id', '=', textbookId).executeTakeFirstOrThrow()
  const book = await trx
    .updateTable('textbooks')
    .set({
      status: 'ready',
      error: null,
      ready_at: sql<Date>`now()`,
      chunk_count: Number(counted.n),
      ...(details.toc ? { toc: JSON.stringify(details.toc) } : {}),
      ...(details.pageCount !== undefined ? { page_count: details.pageCount } : {}),
      ...(details.embeddingModel ? { embedding_model: details.embeddingModel } : {}),
    })
    .where('id', '=', textbookId)
    .where('status', '!=', 'ready')
    .returning('replaces_id')
    .executeTakeFirstOrThrow()
  await addBookToVocabulary(trx, textbookId)
  if (book.replaces_id !== null) {
    await removeContent(trx, book.replaces_id)
    await trx.updateTable('textbooks').set({ status: 'replaced', chunk_count: 0 }).where('id', '=', book.replaces_id).execute()
  }
}

/** Deletes a textbook with its pages and chunks, and takes its words out of the search vocabulary. */
export async function deleteTextbook(trx: Transaction<DB>, textbookId: number): Promise<void> {
  await removeContent(trx, textbookId)
  await trx.deleteFrom('textbooks').where('id', '=', textbookId).execute()
}

async function removeContent(trx: Transaction<DB>, textbookId: number): Promise<void> {
  const book = await trx.selectFrom('textbooks').select('status').where('id', '=', textbookId).forUpdate().executeTakeFirst()
  // Only a ready book's words were counted.
  if (book?.status === 'ready') await removeBookFromVocabulary(trx, textbookId)
  await trx.deleteFrom('chunks').where('textbook_id', '=', textbookId).execute()
  await trx.deleteFrom('textbook_pages').where('textbook_id', '=', textbookId).execute()
}

/** Records why an import failed (an i18n key or a short message); the book stays invisible to search. */
export async function markFailed(db: Kysely<DB>, textbookId: number, error: string): Promise<void> {
  await db.updateTable('textbooks').set({ status: 'failed', error: error.slice(0, 2000) }).where('id', '=', textbookId).execute()
}
