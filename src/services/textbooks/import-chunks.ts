import { createReadStream } from 'node:fs'
import { sql, type Kysely } from 'kysely'
import type { DB, TocEntry } from '../../db/schema.ts'
import { isSupportedDimensions } from '../../db/vector.ts'
import { DomainError, FormError } from '../errors.ts'
import { renewLease } from '../jobs/queue.ts'
import { createTextbook, deleteTextbook, insertChunks, markReady, type ChunkInput } from './store.ts'

/**
 * Imports a textbook as pre-computed chunks: the JSONL format of docs/import-format.md (a header
 * line, then one line per passage with its embedding), from the owner's own PDF-to-vectors
 * pipeline, without re-embedding. Used by `bagsh import-chunks` and the admin import form.
 *
 * The file is read line by line (never whole), every line is checked, and the import is all or
 * nothing: passages go into a textbook in status 'processing', which search never sees, and the
 * book becomes ready (replacing an older version, if the header names one) only after the last
 * line has passed. A rejected file leaves nothing behind: the textbook row and its passages are
 * deleted, and the errors come back with their line numbers.
 */

export const IMPORT_FORMAT = 'bagsh-chunks'
export const IMPORT_FORMAT_VERSION = 1
/** Errors collected before checking stops. */
export const MAX_IMPORT_ERRORS = 20
/** A 1536-dimension line with a 20,000-character passage stays far below this. */
export const MAX_LINE_BYTES = 1024 * 1024
export const MAX_CHUNKS = 100_000
export const MAX_PAGE = 10_000
export const MAX_ORDER = 1_000_000
export const MAX_CONTENT = 20_000
const MAX_SECTION_PATH = 50
const MAX_SECTION_TITLE = 300
const MAX_MODEL = 200
const INSERT_BATCH = 100

export interface ImportLineError {
  /** 1-based line of the file. */
  line: number
  /** An i18n key, under importChunks.errors (or textbooks.errors for metadata refused by the store). */
  key: string
  params: Record<string, string | number>
}

/** The file was rejected: nothing of it was imported. `errors` are in line order. */
export class ChunkImportError extends DomainError {
  readonly errors: ImportLineError[]
  /** Checking stopped at MAX_IMPORT_ERRORS errors: later lines may have more. */
  readonly truncated: boolean
  constructor(errors: ImportLineError[], truncated: boolean) {
    super(422, 'importChunks.errors.rejected', { count: errors.length })
    this.errors = errors
    this.truncated = truncated
  }
}

export interface ImportChunksOptions {
  /** The deployment's embedder (or just its model and dimensions): the file must match it. */
  active: { model: string; dimensions: number }
  /** Replace this textbook (the admin form's "new version"), whatever the header's "replaces" says. */
  replacesId?: number | null
  /** Called after every inserted batch. */
  onProgress?(progress: { lines: number; chunks: number }): void
}

export interface ImportChunksResult {
  textbookId: number
  chunks: number
}

type Source = string | AsyncIterable<Buffer | string>

const HEADER_FIELDS = ['format', 'version', 'textbook', 'embedding']
const TEXTBOOK_FIELDS = ['subject', 'grade', 'title', 'year', 'kind', 'replaces']
const EMBEDDING_FIELDS = ['model', 'dimensions']
const CHUNK_FIELDS = ['order', 'section_path', 'section_title', 'page_start', 'page_end', 'pdf_page_start', 'pdf_page_end', 'content', 'embedding']
// Tab, newline and carriage return are fine in a passage; other control characters (NUL above
// all, which Postgres text cannot hold) are not.
const CONTROL_IN_CONTENT = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/
const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * A chunk import runs in the request (or the CLI), not as a job, and its textbook sits in status
 * 'processing' meanwhile. So that a killed import does not leave a book nobody may delete, the
 * import holds a lease while it runs: a `jobs` row of this kind (no job runner handles it) in
 * status 'running' whose locked_until it renews as lines arrive, deleted when the import ends.
 * A 'processing' book without a live lease or job is abandoned (src/services/library/admin.ts).
 */
export const IMPORT_CHUNKS_LEASE = 'import_chunks'
const LEASE_MS = 2 * 60_000
const RENEW_MS = 20_000
const LEASE_HOLDER = 'import-chunks'

async function takeLease(db: Kysely<DB>, textbookId: number): Promise<number> {
  const row = await db
    .insertInto('jobs')
    .values({
      kind: IMPORT_CHUNKS_LEASE,
      payload: JSON.stringify({ textbookId }),
      status: 'running',
      attempts: 1,
      max_attempts: 1,
      locked_by: LEASE_HOLDER,
      locked_until: sql<Date>`now() + ${LEASE_MS} * interval '1 millisecond'`,
    })
    .returning('id')
    .executeTakeFirstOrThrow()
  return row.id
}

interface Header {
  textbook: { subject: string; grade: number; title: string; year: number | null; kind: string; replaces: number | null }
  model: string
  dimensions: number
}

type Report = (key: string, params?: Record<string, string | number>) => void

/**
 * Imports one JSONL file (a path, or a stream such as an HTTP upload) as a ready textbook.
 * Throws ChunkImportError when any line is wrong; other errors (database, unreadable file) are
 * thrown as they are, also after removing whatever was inserted. A stream is read to its end
 * even when checking stops early, so an upload is consumed.
 */
export async function importChunksFile(db: Kysely<DB>, source: Source, options: ImportChunksOptions): Promise<ImportChunksResult> {
  const fromPath = typeof source === 'string'
  const input = fromPath ? createReadStream(source) : source
  const errors: ImportLineError[] = []
  let truncated = false
  let stopped = false
  let header: Header | null = null
  let dimensions: number | null = null
  let headerSeen = false
  let textbookId: number | null = null
  let lineCount = 0
  let chunkCount = 0
  let batch: ChunkInput[] = []
  let vectors: number[][] = []
  const orders = new Map<number, number>()
  const sections = new Map<string, TocEntry & { order: number }>()
  let pageCount = 0
  let lease: number | null = null
  let renewedAt = 0

  const flush = async () => {
    if (textbookId !== null && batch.length && !errors.length) {
      await insertChunks(db, textbookId, batch, vectors, header!.model)
      options.onProgress?.({ lines: lineCount, chunks: chunkCount })
    }
    batch = []
    vectors = []
  }

  try {
    for await (const { line, text } of readLines(input, MAX_LINE_BYTES)) {
      lineCount = line
      if (lease !== null && Date.now() - renewedAt > RENEW_MS) {
        renewedAt = Date.now()
        await renewLease(db, lease, LEASE_HOLDER, LEASE_MS)
      }
      if (errors.length >= MAX_IMPORT_ERRORS) truncated = stopped = true
      if (stopped) {
        // An upload is read to its end; a file can simply be closed.
        if (fromPath) break
        continue
      }
      const report: Report = (key, params = {}) => void errors.push({ line, key, params })
      if (text === null) {
        report('importChunks.errors.lineTooLong', { max: MAX_LINE_BYTES })
        continue
      }
      if (text === false) {
        report('importChunks.errors.notUtf8')
        continue
      }
      if (!text.trim()) continue
      const value = parseJson(text, report)
      if (value === undefined) {
        headerSeen = true
        continue
      }
      if (!headerSeen) {
        headerSeen = true
        if (options.replacesId != null && isObject(value.textbook)) value.textbook.replaces = options.replacesId
        const checked = await checkHeader(db, value, options.active, report)
        header = checked.header
        dimensions = checked.dimensions
        if (header) {
          try {
            textbookId = (await createTextbook(db, { ...header.textbook, replacesId: header.textbook.replaces })).id
            lease = await takeLease(db, textbookId)
            renewedAt = Date.now()
          } catch (err) {
            if (!(err instanceof FormError)) throw err
            for (const key of Object.values(err.fields)) errors.push({ line, key, params: {} })
          }
        }
        continue
      }
      const chunk = checkChunk(value, dimensions, report)
      if (!chunk) continue
      const first = orders.get(chunk.ord)
      if (first !== undefined) {
        report('importChunks.errors.orderDuplicate', { order: chunk.ord, first })
        continue
      }
      orders.set(chunk.ord, line)
      chunkCount++
      if (chunkCount > MAX_CHUNKS) {
        report('importChunks.errors.tooManyChunks', { max: MAX_CHUNKS })
        stopped = true
        continue
      }
      pageCount = Math.max(pageCount, chunk.pdfPageEnd)
      const key = `${chunk.sectionPath}\u0000${chunk.sectionTitle}`
      const known = sections.get(key)
      if ((chunk.sectionPath || chunk.sectionTitle) && (!known || known.order > chunk.ord)) {
        const level = chunk.sectionPath ? chunk.sectionPath.split('.').length : 1
        sections.set(key, { path: chunk.sectionPath, title: chunk.sectionTitle, level, page: chunk.pageStart, pdfPage: chunk.pdfPageStart, order: chunk.ord })
      }
      if (errors.length) continue // checking on, inserting no more
      batch.push(chunk)
      vectors.push(chunk.embedding)
      if (batch.length >= INSERT_BATCH) await flush()
    }
    if (!errors.length) {
      if (!headerSeen) errors.push({ line: 1, key: 'importChunks.errors.empty', params: {} })
      else if (chunkCount === 0) errors.push({ line: 1, key: 'importChunks.errors.noChunks', params: {} })
    }
    if (errors.length || textbookId === null) throw new ChunkImportError(errors, truncated)
    // Fresh for the last inserts and markReady, which may take a while on a large book.
    if (lease !== null) await renewLease(db, lease, LEASE_HOLDER, LEASE_MS)
    await flush()
    const id = textbookId
    const toc = [...sections.values()].sort((a, b) => a.order - b.order).map(({ order: _order, ...entry }) => entry)
    await db.transaction().execute((trx) => markReady(trx, id, { toc, pageCount, embeddingModel: header!.model }))
    return { textbookId: id, chunks: chunkCount }
  } catch (err) {
    if (textbookId !== null) {
      const id = textbookId
      // The import's own error is the one to report, even if the database is gone by now.
      await db.transaction().execute((trx) => deleteTextbook(trx, id)).catch(() => undefined)
    }
    throw err
  } finally {
    if (lease !== null) await db.deleteFrom('jobs').where('id', '=', lease).execute().catch(() => undefined)
  }
}

/** Lines of a byte stream, 1-based; `text` is null for a line over `maxBytes` and false for one that is not UTF-8. */
async function* readLines(source: AsyncIterable<Buffer | string>, maxBytes: number): AsyncGenerator<{ line: number; text: string | null | false }> {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let parts: Buffer[] = []
  let size = 0
  let tooLong = false
  let line = 0
  const take = (): string | null | false => {
    if (tooLong) return null
    try {
      let text = decoder.decode(Buffer.concat(parts, size))
      if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1)
      return text.endsWith('\r') ? text.slice(0, -1) : text
    } catch {
      return false
    }
  }
  for await (const piece of source) {
    const buf = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece
    let start = 0
    for (;;) {
      const nl = buf.indexOf(10, start)
      const end = nl < 0 ? buf.length : nl
      if (!tooLong) {
        if (size + end - start > maxBytes) {
          tooLong = true
          parts = []
        } else if (end > start) {
          parts.push(buf.subarray(start, end))
          size += end - start
        }
      }
      if (nl < 0) break
      line++
      yield { line, text: take() }
      parts = []
      size = 0
      tooLong = false
      start = nl + 1
    }
  }
  if (size > 0 || tooLong) {
    line++
    yield { line, text: take() }
  }
}

function parseJson(text: string, report: Report): Record<string, unknown> | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    report('importChunks.errors.json', { detail: (err as Error).message.slice(0, 200) })
    return undefined
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    report('importChunks.errors.notObject')
    return undefined
  }
  return value as Record<string, unknown>
}

function unknownFields(value: Record<string, unknown>, known: string[], prefix: string, report: Report): void {
  for (const field of Object.keys(value)) if (!known.includes(field)) report('importChunks.errors.unknownField', { field: prefix + field })
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** A whole number in [min, max], or an error naming the field. */
function integer(value: unknown, field: string, min: number, max: number, report: Report, key = 'importChunks.errors.integerRange'): number | null {
  if (value === undefined) {
    report('importChunks.errors.fieldMissing', { field })
    return null
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    report(key, { field, min, max })
    return null
  }
  return value
}

function text(value: unknown, field: string, max: number, report: Report, { required = true, control = CONTROL } = {}): string | null {
  if (value === undefined && !required) return ''
  if (value === undefined) {
    report('importChunks.errors.fieldMissing', { field })
    return null
  }
  if (typeof value !== 'string') {
    report('importChunks.errors.notText', { field })
    return null
  }
  const trimmed = value.trim()
  if (required && !trimmed) {
    report('importChunks.errors.textEmpty', { field })
    return null
  }
  if (trimmed.length > max) {
    report('importChunks.errors.textTooLong', { field, max })
    return null
  }
  if (control.test(trimmed)) {
    report('importChunks.errors.textControl', { field })
    return null
  }
  return trimmed
}

/**
 * The header line. `header` is null when anything in it is wrong; `dimensions` is the file's own
 * embedding length whenever it is readable, so the passages are still checked against it.
 */
async function checkHeader(
  db: Kysely<DB>,
  value: Record<string, unknown>,
  active: ImportChunksOptions['active'],
  report: Report,
): Promise<{ header: Header | null; dimensions: number | null }> {
  if (value.format !== IMPORT_FORMAT) {
    report('importChunks.errors.format', { format: IMPORT_FORMAT })
    return { header: null, dimensions: null }
  }
  if (value.version !== IMPORT_FORMAT_VERSION) {
    report('importChunks.errors.version', { version: String(value.version), supported: IMPORT_FORMAT_VERSION })
    return { header: null, dimensions: null }
  }
  let ok = true
  const fail: Report = (key, params) => {
    ok = false
    report(key, params)
  }
  unknownFields(value, HEADER_FIELDS, '', fail)

  let textbook: Header['textbook'] | null = null
  const book = value.textbook
  if (!isObject(book)) fail(book === undefined ? 'importChunks.errors.fieldMissing' : 'importChunks.errors.notObjectField', { field: 'textbook' })
  else {
    unknownFields(book, TEXTBOOK_FIELDS, 'textbook.', fail)
    const subject = text(book.subject, 'textbook.subject', 32, fail)
    if (subject !== null) {
      const known = await db.selectFrom('subjects').select('code').where('code', '=', subject).executeTakeFirst()
      if (!known) fail('importChunks.errors.subjectUnknown', { subject })
    }
    const grade = integer(book.grade, 'textbook.grade', 1, 12, fail)
    const title = text(book.title, 'textbook.title', 300, fail)
    const year = book.year === undefined || book.year === null ? null : integer(book.year, 'textbook.year', 1950, 2100, fail)
    const kind = book.kind ?? 'required'
    if (kind !== 'required' && kind !== 'optional') fail('importChunks.errors.kindInvalid')
    let replaces: number | null = null
    if (book.replaces !== undefined && book.replaces !== null) {
      replaces = integer(book.replaces, 'textbook.replaces', 1, 2 ** 31 - 1, fail)
      if (replaces !== null) {
        // Only a book that is in use (or failed) has a place to take; a replaced one has a successor.
        const old = await db.selectFrom('textbooks').select('status').where('id', '=', replaces).executeTakeFirst()
        if (old?.status !== 'ready' && old?.status !== 'failed') fail('importChunks.errors.replacesMissing', { id: replaces })
      }
    }
    if (subject !== null && grade !== null && title !== null) textbook = { subject, grade, title, year, kind: String(kind), replaces }
  }

  let model: string | null = null
  let dimensions: number | null = null
  const embedding = value.embedding
  if (!isObject(embedding)) fail(embedding === undefined ? 'importChunks.errors.fieldMissing' : 'importChunks.errors.notObjectField', { field: 'embedding' })
  else {
    unknownFields(embedding, EMBEDDING_FIELDS, 'embedding.', fail)
    model = text(embedding.model, 'embedding.model', MAX_MODEL, fail)
    if (embedding.dimensions === undefined) fail('importChunks.errors.fieldMissing', { field: 'embedding.dimensions' })
    else if (typeof embedding.dimensions === 'number' && isSupportedDimensions(embedding.dimensions)) dimensions = embedding.dimensions
    else fail('importChunks.errors.dimensionsUnsupported', { dimensions: String(embedding.dimensions) })
    // One active model per deployment: queries are embedded by it, so passages must be too.
    if (model !== null && dimensions !== null && (model !== active.model || dimensions !== active.dimensions)) {
      fail('importChunks.errors.modelMismatch', { model, dimensions, activeModel: active.model, activeDimensions: active.dimensions })
    }
  }
  const header = ok && textbook && model !== null && dimensions !== null ? { textbook, model, dimensions } : null
  return { header, dimensions }
}

type CheckedChunk = ChunkInput & { embedding: number[] }

function checkChunk(value: Record<string, unknown>, dimensions: number | null, report: Report): CheckedChunk | null {
  let ok = true
  const fail: Report = (key, params) => {
    ok = false
    report(key, params)
  }
  unknownFields(value, CHUNK_FIELDS, '', fail)
  const ord = integer(value.order, 'order', 0, MAX_ORDER, fail)
  const sectionPath = text(value.section_path, 'section_path', MAX_SECTION_PATH, fail, { required: false })
  const sectionTitle = text(value.section_title, 'section_title', MAX_SECTION_TITLE, fail, { required: false })
  const content = text(value.content, 'content', MAX_CONTENT, fail, { control: CONTROL_IN_CONTENT })
  const pageStart = integer(value.page_start, 'page_start', 1, MAX_PAGE, fail, 'importChunks.errors.pageInvalid')
  const pageEnd = integer(value.page_end, 'page_end', 1, MAX_PAGE, fail, 'importChunks.errors.pageInvalid')
  if (pageStart !== null && pageEnd !== null && pageStart > pageEnd) fail('importChunks.errors.pageOrder', { startField: 'page_start', endField: 'page_end', start: pageStart, end: pageEnd })
  let pdfPageStart = pageStart
  let pdfPageEnd = pageEnd
  if ((value.pdf_page_start === undefined) !== (value.pdf_page_end === undefined)) fail('importChunks.errors.pdfPagesPair')
  else if (value.pdf_page_start !== undefined) {
    pdfPageStart = integer(value.pdf_page_start, 'pdf_page_start', 1, MAX_PAGE, fail, 'importChunks.errors.pageInvalid')
    pdfPageEnd = integer(value.pdf_page_end, 'pdf_page_end', 1, MAX_PAGE, fail, 'importChunks.errors.pageInvalid')
    if (pdfPageStart !== null && pdfPageEnd !== null && pdfPageStart > pdfPageEnd) {
      fail('importChunks.errors.pageOrder', { startField: 'pdf_page_start', endField: 'pdf_page_end', start: pdfPageStart, end: pdfPageEnd })
    }
  }
  const embedding = checkEmbedding(value.embedding, dimensions, fail)
  if (!ok || ord === null || embedding === null) return null
  return {
    ord,
    sectionPath: sectionPath!,
    sectionTitle: sectionTitle!,
    pageStart: pageStart!,
    pageEnd: pageEnd!,
    pdfPageStart: pdfPageStart!,
    pdfPageEnd: pdfPageEnd!,
    content: content!,
    embedding,
  }
}

/**
 * The embedding as a unit vector. Retrieval ranks by cosine distance, which ignores length, but
 * every vector in the store is unit length (the Embedder contract), so anything that later
 * compares them by inner product stays right.
 */
function checkEmbedding(value: unknown, dimensions: number | null, report: Report): number[] | null {
  if (value === undefined) {
    report('importChunks.errors.fieldMissing', { field: 'embedding' })
    return null
  }
  if (!Array.isArray(value)) {
    report('importChunks.errors.embeddingNotArray')
    return null
  }
  if (dimensions !== null && value.length !== dimensions) {
    report('importChunks.errors.embeddingLength', { length: value.length, dimensions })
    return null
  }
  let largest = 0
  for (let i = 0; i < value.length; i++) {
    const x = value[i] as unknown
    if (typeof x !== 'number' || !Number.isFinite(x)) {
      report('importChunks.errors.embeddingNotFinite', { index: i })
      return null
    }
    largest = Math.max(largest, Math.abs(x))
  }
  if (largest === 0) {
    report('importChunks.errors.embeddingZero')
    return null
  }
  // Scaled by the largest component first, so squares of huge or tiny numbers stay finite.
  let sum = 0
  for (const x of value as number[]) sum += (x / largest) ** 2
  const norm = Math.sqrt(sum)
  return (value as number[]).map((x) => x / largest / norm)
}
