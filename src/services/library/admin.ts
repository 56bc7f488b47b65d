import { sql, type Kysely, type Selectable } from 'kysely'
import type { DB, JobProgress, JobStatus, TextbookKind, TextbookStatus, TextbookTable } from '../../db/schema.ts'
import { DomainError, NotFoundError } from '../errors.ts'
import { getJob, type Job } from '../jobs/queue.ts'
import { IMPORT_CHUNKS_LEASE } from '../textbooks/import-chunks.ts'
import { INGEST_PDF_JOB } from '../textbooks/ingest.ts'
import { REINDEX_JOB } from '../textbooks/reindex.ts'
import { deleteTextbook } from '../textbooks/store.ts'

/**
 * The platform admin's view of the textbooks: every imported version except the ones a newer
 * version replaced, whatever its status, with what went wrong.
 */

export interface AdminTextbook {
  id: number
  title: string
  subject: string
  grade: number
  year: number | null
  kind: TextbookKind
  status: TextbookStatus
  /** An i18n key (or a short message) when status is 'failed'. */
  error: string | null
  version: number
  replacesId: number | null
  pageCount: number
  chunkCount: number
}

const COLUMNS = ['id', 'title', 'subject', 'grade', 'year', 'kind', 'status', 'error', 'version', 'replaces_id', 'page_count', 'chunk_count'] as const

function fromRow(row: Pick<Selectable<TextbookTable>, (typeof COLUMNS)[number]>): AdminTextbook {
  return {
    id: row.id,
    title: row.title,
    subject: row.subject,
    grade: row.grade,
    year: row.year,
    kind: row.kind,
    status: row.status,
    error: row.error,
    version: row.version,
    replacesId: row.replaces_id,
    pageCount: row.page_count,
    chunkCount: row.chunk_count,
  }
}

export async function listAdminTextbooks(db: Kysely<DB>): Promise<AdminTextbook[]> {
  const rows = await db
    .selectFrom('textbooks')
    .innerJoin('subjects', 'subjects.code', 'textbooks.subject')
    .select([
      'textbooks.id',
      'textbooks.title',
      'textbooks.subject',
      'textbooks.grade',
      'textbooks.year',
      'textbooks.kind',
      'textbooks.status',
      'textbooks.error',
      'textbooks.version',
      'textbooks.replaces_id',
      'textbooks.page_count',
      'textbooks.chunk_count',
    ])
    .where('textbooks.status', '!=', 'replaced')
    .orderBy('textbooks.grade')
    .orderBy('subjects.sort')
    .orderBy('textbooks.title')
    .orderBy('textbooks.id')
    .execute()
  return rows.map(fromRow)
}

/** Any version that is not replaced; NotFoundError otherwise. */
export async function findAdminTextbook(db: Kysely<DB>, id: number): Promise<AdminTextbook> {
  const row = await db.selectFrom('textbooks').select([...COLUMNS]).where('id', '=', id).where('status', '!=', 'replaced').executeTakeFirst()
  if (!row) throw new NotFoundError()
  return fromRow(row)
}

/**
 * Whether an import is still writing to a book that is not ready yet: a PDF import job that is
 * queued or running (or will be run again), or a chunk import holding its lease. A 'processing'
 * book with neither was left by an import whose process died (a killed `bagsh import-chunks`, a
 * server stopped mid-upload): nothing will finish it, so it may be deleted.
 */
export async function importInProgress(db: Kysely<DB>, book: { id: number; status: TextbookStatus }): Promise<boolean> {
  if (book.status !== 'processing' && book.status !== 'pending') return false
  const { rows } = await sql<{ live: boolean }>`
    SELECT EXISTS (
      SELECT FROM jobs
      WHERE kind IN (${INGEST_PDF_JOB}, ${IMPORT_CHUNKS_LEASE}) AND payload->>'textbookId' = ${String(book.id)}
        AND (status = 'queued'
             OR (status = 'running' AND (locked_until > now() OR (kind = ${INGEST_PDF_JOB} AND attempts < max_attempts))))
    ) AS live`.execute(db)
  return rows[0]!.live
}

/**
 * Deletes a textbook (its pages and chunks with it) once the admin confirmed. A book an import is
 * still writing to is refused (importInProgress); one an import abandoned is deleted.
 */
export async function deleteAdminTextbook(db: Kysely<DB>, id: number): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const book = await trx.selectFrom('textbooks').select(['id', 'status']).where('id', '=', id).where('status', '!=', 'replaced').forUpdate().executeTakeFirst()
    if (!book) throw new NotFoundError()
    if (await importInProgress(trx, book)) throw new DomainError(409, 'textbooks.delete.busy')
    // A newer version waiting to replace this one would otherwise replace nothing.
    await trx.updateTable('textbooks').set({ replaces_id: null }).where('replaces_id', '=', id).execute()
    // An abandoned chunk import's lease goes with its book.
    await trx.deleteFrom('jobs').where('kind', '=', IMPORT_CHUNKS_LEASE).where(sql`payload->>'textbookId'`, '=', String(id)).execute()
    await deleteTextbook(trx, id)
  })
}

/** A background job as the admin pages show it. */
export interface AdminJob {
  id: number
  kind: string
  status: JobStatus
  progress: JobProgress
  error: string | null
  errorParams: Record<string, unknown> | null
  attempts: number
  maxAttempts: number
  createdAt: Date
  /** The textbook an import job works on. */
  textbookId: number | null
  /** Pages an import found without text (pictures, or scans without OCR), to report. */
  textlessPages: number[]
}

/** The jobs these pages show: imports and re-indexing. */
export const TEXTBOOK_JOB_KINDS: readonly string[] = [INGEST_PDF_JOB, REINDEX_JOB]

function jobFromRow(job: Job): AdminJob {
  const textbookId = (job.payload as { textbookId?: unknown }).textbookId
  return {
    id: job.id,
    kind: job.kind,
    status: job.status,
    progress: job.progress ?? {},
    error: job.error,
    errorParams: job.error_params ?? null,
    attempts: job.attempts,
    maxAttempts: job.max_attempts,
    createdAt: new Date(job.created_at),
    textbookId: typeof textbookId === 'number' ? textbookId : null,
    textlessPages: Array.isArray(job.result?.textlessPages) ? (job.result.textlessPages as unknown[]).filter((p): p is number => typeof p === 'number') : [],
  }
}

/** A textbook job by id; NotFoundError for other kinds of job and for ids that do not exist. */
export async function findTextbookJob(db: Kysely<DB>, id: number): Promise<AdminJob> {
  const job = await getJob(db, id)
  if (!job || !TEXTBOOK_JOB_KINDS.includes(job.kind)) throw new NotFoundError()
  return jobFromRow(job)
}

/** The latest jobs, with the title of the textbook each import is for. */
export async function recentTextbookJobs(db: Kysely<DB>, limit = 10): Promise<(AdminJob & { textbookTitle: string | null })[]> {
  const rows = await db.selectFrom('jobs').selectAll().where('kind', 'in', [...TEXTBOOK_JOB_KINDS]).orderBy('id', 'desc').limit(limit).execute()
  const jobs = rows.map(jobFromRow)
  const ids = [...new Set(jobs.flatMap((j) => (j.textbookId === null ? [] : [j.textbookId])))]
  const titles = new Map(
    ids.length ? (await db.selectFrom('textbooks').select(['id', 'title']).where('id', 'in', ids).execute()).map((b) => [b.id, b.title] as const) : [],
  )
  return jobs.map((job) => ({ ...job, textbookTitle: job.textbookId === null ? null : (titles.get(job.textbookId) ?? null) }))
}

/** The latest import job of each textbook, by textbook id. */
export async function latestImportJobs(db: Kysely<DB>): Promise<Map<number, AdminJob>> {
  const { rows } = await sql<Job>`
    SELECT DISTINCT ON ((payload->>'textbookId')) * FROM jobs
    WHERE kind = ${INGEST_PDF_JOB} AND payload ? 'textbookId'
    ORDER BY (payload->>'textbookId'), id DESC`.execute(db)
  const jobs = new Map<number, AdminJob>()
  for (const row of rows) {
    const job = jobFromRow(row)
    if (job.textbookId !== null) jobs.set(job.textbookId, job)
  }
  return jobs
}

/** A textbook of a job, whatever its status (null once deleted). */
export async function jobTextbook(db: Kysely<DB>, job: AdminJob): Promise<{ id: number; title: string; status: TextbookStatus } | null> {
  if (job.textbookId === null) return null
  return (await db.selectFrom('textbooks').select(['id', 'title', 'status']).where('id', '=', job.textbookId).executeTakeFirst()) ?? null
}
