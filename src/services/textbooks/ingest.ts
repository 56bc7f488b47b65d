import { rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { sql, type Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { EmbeddingError, type Embedder } from '../embeddings/index.ts'
import { enqueueJob, type Job, type JobContext, type JobHandler } from '../jobs/queue.ts'
import { chunkBlocks, type ChunkDraft } from './chunk.ts'
import { extractPdf, IngestError } from './pdf.ts'
import { chunkEmbeddingText, createTextbook, insertChunks, insertPages, markFailed, markReady, type NewTextbook } from './store.ts'
import type { SavedUpload } from './uploads.ts'

/**
 * The one PDF ingestion pipeline, used by the admin form, the CLI and the first-start samples:
 *
 *   enqueuePdfImport   textbook row ('processing', invisible to search) + job, one transaction
 *   ingest_pdf job     extract pages → table of contents → chunks per section → embeddings in
 *                      batches, each batch inserted as it comes → markReady (one transaction;
 *                      a re-import swaps out the old version there, so search never has a gap)
 *
 * Resuming: a job claimed again after a crash extracts the PDF again (deterministic, seconds)
 * and continues embedding after the chunks already stored. On failure the textbook is marked
 * failed with the reason, its pages and chunks are removed and the uploaded file deleted;
 * an older version it was to replace stays as it was.
 */

export const INGEST_PDF_JOB = 'ingest_pdf'
const EMBED_BATCH = 64

export interface IngestPdfPayload {
  textbookId: number
  /** The uploaded PDF, relative to DATA_DIR. */
  file: string
}

export interface IngestDeps {
  dataDir: string
  embedder: Embedder
  /** Passages per embeddings call (and per insert; each batch is one statement, so a crash leaves whole batches). */
  embedBatch?: number
}

/** An admin's PDF uploads are limited per hour (PRODUCT.md "Limits": PDF extraction 2 / hour per admin). */
export interface UploadLimit {
  /** The admin (users.id) who uploads; recorded in the job's payload, which is what the limit counts. */
  userId: number
  perHour: number
}

/** Over the hourly limit: nothing was written. `retryAfterSeconds` until the oldest counted upload leaves the hour. */
export class UploadLimitReached extends Error {
  readonly limit: number
  readonly retryAfterSeconds: number
  constructor(limit: number, retryAfterSeconds: number) {
    super(`PDF upload limit of ${limit} per hour reached`)
    this.limit = limit
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/**
 * How many more PDFs the admin may upload this hour, counted from the stored import jobs they
 * created in the last hour (whatever became of them: a failed extraction was work done too), and
 * when the next one is allowed once none is left.
 */
export async function uploadsLeft(db: Kysely<DB>, limit: UploadLimit): Promise<{ left: number; retryAfterSeconds: number }> {
  const { rows } = await sql<{ wait: number }>`
    SELECT ceil(extract(epoch FROM created_at + interval '1 hour' - now()))::int AS wait FROM jobs
    WHERE kind = ${INGEST_PDF_JOB} AND created_at > now() - interval '1 hour' AND payload->>'requestedBy' = ${String(limit.userId)}
    ORDER BY created_at DESC`.execute(db)
  const left = Math.max(0, limit.perHour - rows.length)
  // Allowed again when fewer than perHour remain in the window: once the perHour-th newest leaves it.
  return { left, retryAfterSeconds: left > 0 ? 0 : Math.max(1, rows[limit.perHour - 1]?.wait ?? 1) }
}

/**
 * Registers an uploaded PDF as a textbook to import and queues its job. With `limit`, the
 * admin's hourly limit is checked in the same transaction (UploadLimitReached; an advisory lock
 * per admin keeps two uploads at once from both passing). Any error deletes the upload.
 */
export async function enqueuePdfImport(
  db: Kysely<DB>,
  meta: Omit<NewTextbook, 'sourcePath' | 'sourceSha256'>,
  upload: SavedUpload,
  limit?: UploadLimit,
): Promise<{ textbookId: number; jobId: number }> {
  try {
    return await db.transaction().execute(async (trx) => {
      if (limit) {
        await sql`SELECT pg_advisory_xact_lock(hashtext(${INGEST_PDF_JOB}), ${limit.userId})`.execute(trx)
        const { left, retryAfterSeconds } = await uploadsLeft(trx, limit)
        if (left === 0) throw new UploadLimitReached(limit.perHour, retryAfterSeconds)
      }
      const { id } = await createTextbook(trx, { ...meta, sourcePath: upload.relativePath, sourceSha256: upload.sha256 })
      const payload: IngestPdfPayload = { textbookId: id, file: upload.relativePath }
      const jobId = await enqueueJob(trx, INGEST_PDF_JOB, { ...payload, ...(limit ? { requestedBy: limit.userId } : {}) })
      return { textbookId: id, jobId }
    })
  } catch (err) {
    await rm(upload.path, { force: true })
    throw err
  }
}

function payloadOf(job: Job): IngestPdfPayload {
  const { textbookId, file } = job.payload as Partial<IngestPdfPayload>
  if (typeof textbookId !== 'number' || typeof file !== 'string') throw new IngestError('ingest.errors.internal', null)
  return { textbookId, file }
}

/** An embedder failure as a job error: endpoint down or rate-limited → retried; refused (bad key, model) → failed. */
function embeddingFailure(err: unknown): unknown {
  if (!(err instanceof EmbeddingError)) return err
  const transient = err.status === null || err.status === 408 || err.status === 429 || err.status >= 500
  return new IngestError('ingest.errors.embedding', { detail: err.message.slice(0, 300) }, { permanent: !transient })
}

/** Where embedding resumes: after the chunks a previous attempt stored, when they are a clean prefix made by this model. */
async function resumePoint(db: Kysely<DB>, textbookId: number, chunks: ChunkDraft[], model: string): Promise<number> {
  const stored = await db
    .selectFrom('chunks')
    .select((eb) => [eb.fn.countAll<string>().as('n'), eb.fn.max('ord').as('last'), eb.fn.min('embedding_model').as('m1'), eb.fn.max('embedding_model').as('m2')])
    .where('textbook_id', '=', textbookId)
    .executeTakeFirstOrThrow()
  const n = Number(stored.n)
  if (n === 0) return 0
  if (n === Number(stored.last) + 1 && n <= chunks.length && stored.m1 === model && stored.m2 === model) return n
  await db.deleteFrom('chunks').where('textbook_id', '=', textbookId).execute()
  return 0
}

export function ingestPdfHandler(deps: IngestDeps): JobHandler {
  return {
    async run(job, ctx) {
      const { textbookId } = payloadOf(job)
      try {
        return await ingest(deps, job, ctx)
      } catch (err) {
        // Deleted by an admin while it was being imported: nothing left to do (or to retry).
        const book = await ctx.db.selectFrom('textbooks').select('id').where('id', '=', textbookId).executeTakeFirst()
        if (!book && !ctx.signal.aborted) return { textbookId, skipped: 'deleted' }
        throw err
      }
    },

    async onFailed(job, failure, db) {
      const { textbookId, file } = payloadOf(job)
      const book = await db.selectFrom('textbooks').select('status').where('id', '=', textbookId).executeTakeFirst()
      if (book && (book.status === 'processing' || book.status === 'pending')) {
        await markFailed(db, textbookId, failure.error.startsWith('ingest.errors.') ? failure.error : 'ingest.errors.internal')
        await db.deleteFrom('chunks').where('textbook_id', '=', textbookId).execute()
        await db.deleteFrom('textbook_pages').where('textbook_id', '=', textbookId).execute()
      }
      await rm(resolve(deps.dataDir, file), { force: true })
    },
  }
}

async function ingest(deps: IngestDeps, job: Job, ctx: JobContext): Promise<Record<string, unknown>> {
  const { textbookId, file } = payloadOf(job)
  const { db, signal } = ctx
  const book = await db.selectFrom('textbooks').select(['id', 'status']).where('id', '=', textbookId).executeTakeFirst()
  // Deleted while queued, or made ready by an attempt whose completion was not recorded.
  if (!book) return { textbookId, skipped: 'deleted' }
  if (book.status === 'ready' || book.status === 'replaced') return { textbookId, skipped: book.status }

  ctx.progress({ stage: 'extracting', done: 0, total: 0 })
  const pdf = await extractPdf(resolve(deps.dataDir, file), {
    signal,
    onPage: (done, total) => ctx.progress({ stage: 'extracting', done, total }),
  })
  signal.throwIfAborted()
  ctx.progress({ stage: 'chunking' })
  await db.deleteFrom('textbook_pages').where('textbook_id', '=', textbookId).execute()
  await insertPages(db, textbookId, pdf.pages)
  const chunks = chunkBlocks(pdf.blocks, pdf.pages)
  if (!chunks.length) throw new IngestError('ingest.errors.empty')

  const embedder = deps.embedder
  const start = await resumePoint(db, textbookId, chunks, embedder.model)
  ctx.progress({ stage: 'embedding', done: start, total: chunks.length })
  const size = deps.embedBatch ?? EMBED_BATCH
  for (let i = start; i < chunks.length; i += size) {
    signal.throwIfAborted()
    const batch = chunks.slice(i, i + size)
    const vectors = await embedder.embed(batch.map(chunkEmbeddingText)).catch((err) => {
      throw embeddingFailure(err)
    })
    signal.throwIfAborted()
    await insertChunks(db, textbookId, batch, vectors, embedder.model)
    ctx.progress({ stage: 'embedding', done: i + batch.length, total: chunks.length })
  }

  signal.throwIfAborted()
  ctx.progress({ stage: 'saving' })
  await ctx.flush()
  await db.transaction().execute((trx) => markReady(trx, textbookId, { toc: pdf.toc, pageCount: pdf.pageCount, embeddingModel: embedder.model }))
  return {
    textbookId,
    pages: pdf.pageCount,
    chunks: chunks.length,
    sections: pdf.toc.length,
    tocSource: pdf.tocSource,
    // Reported to the admin: pages without text (pictures, or scans when OCR is not installed).
    textlessPages: pdf.scannedPages.filter((p) => !pdf.ocrPages.includes(p)),
    ocrPages: pdf.ocrPages,
    resumedAtChunk: start,
  }
}
