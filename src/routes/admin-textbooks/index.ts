import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import multipart from '@fastify/multipart'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import { FormError } from '../../services/errors.ts'
import { listSubjectNames, subjectNamer } from '../../services/library/catalog.ts'
import {
  deleteAdminTextbook,
  findAdminTextbook,
  findTextbookJob,
  importInProgress,
  jobTextbook,
  latestImportJobs,
  listAdminTextbooks,
  recentTextbookJobs,
  type AdminJob,
} from '../../services/library/admin.ts'
import { enqueuePdfImport, INGEST_PDF_JOB, uploadsLeft, UploadLimitReached, type UploadLimit } from '../../services/textbooks/ingest.ts'
import { enqueueReindex } from '../../services/textbooks/reindex.ts'
import { createEmbedder } from '../../services/embeddings/index.ts'
import { saveUploadedPdf, type SavedUpload } from '../../services/textbooks/uploads.ts'
import { describeError, jobStatusText, problemOf, statusText, UPLOAD_LIMIT_KEY, uploadLimitProblem } from './present.ts'
import { multipartForm, ReceivedFile, refuseOversize } from './multipart.ts'
import importRoutes from './import.ts'
import type { RouteOptions } from '../index.ts'

/**
 * The platform admin's textbook pages: list, PDF upload, progress, import of pre-computed
 * passages (JSONL), re-index, delete.
 * Platform admins only: national textbooks are shared by every school, so a school admin
 * changing one would change it for all (docs/decisions/008-textbook-uploads.md).
 */

const Meta = {
  subject: Type.Optional(Type.String({ maxLength: 50 })),
  grade: Type.Optional(Type.String({ maxLength: 10 })),
  title: Type.Optional(Type.String({ maxLength: 4096 })),
  year: Type.Optional(Type.String({ maxLength: 10 })),
  kind: Type.Optional(Type.String({ maxLength: 20 })),
  replaces: Type.Optional(Type.String({ maxLength: 10 })),
  _csrf: Type.Optional(Type.String()),
}
// `file` is a ReceivedFile from the multipart reader; a urlencoded post can only send a string, which is ignored.
const UploadBody = Type.Object({ ...Meta, file: Type.Optional(Type.Unknown()) })
const NewQuery = Type.Object({ replaces: Type.Optional(Type.String({ maxLength: 20 })) })
const ListQuery = Type.Object({ deleted: Type.Optional(Type.String({ maxLength: 20 })), imported: Type.Optional(Type.String({ maxLength: 20 })) })
const ID = '(^\\d{1,9}$)'
type IdParams = { id: string }
type UploadForm = { subject: string; grade: string; title: string; year: string; kind: string }

/** The ingestion pipeline's stages (src/services/textbooks/ingest.ts, reindex.ts). */
const STAGE_KEYS: Record<string, string> = {
  queued: 'ingest.stages.queued',
  extracting: 'ingest.stages.extracting',
  chunking: 'ingest.stages.chunking',
  embedding: 'ingest.stages.embedding',
  saving: 'ingest.stages.saving',
  done: 'ingest.stages.done',
}
const DATE = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Ulaanbaatar', dateStyle: 'short', timeStyle: 'short' })


const adminTextbookRoutes: FastifyPluginAsync<RouteOptions> = async (app, { database, config }) => {
  const { db } = database
  const maxBytes = config.pdfMaxBytes
  const maxMb = Math.floor(maxBytes / (1024 * 1024))
  const tooLarge = { key: 'ingest.errors.tooLarge', params: { maxMb } }
  // Imported passages must carry embeddings of the model this deployment searches with.
  const embedder = createEmbedder(config.embeddings)
  // Registered here, not app-wide: only these routes take multipart bodies.
  await app.register(multipart, { throwFileSizeLimit: false })
  const onlyAdmins = requireRole('platform_admin')
  const guard = { preHandler: onlyAdmins }

  /** What every page here prints with: names, statuses and errors in the reader's language. */
  const helpers = async (request: FastifyRequest) => {
    const t = request.t
    const subjects = await listSubjectNames(db)
    return {
      subjects,
      subjectName: subjectNamer(subjects, request.lang),
      statusText: (s: string) => statusText(t, s),
      jobStatusText: (s: string) => jobStatusText(t, s),
      stageText: (stage: string | undefined) => (stage && STAGE_KEYS[stage] ? t(STAGE_KEYS[stage]!) : t('ingest.stages.queued')),
      describeError: (error: string | null, params?: Record<string, unknown> | null) => describeError(t, error, params ?? null),
      jobTitle: (job: AdminJob) => t(job.kind === INGEST_PDF_JOB ? 'textbooks.job.ingestTitle' : 'textbooks.job.reindexTitle', { id: job.id }),
      when: (d: Date) => DATE.format(d),
      maxMb,
    }
  }

  /** PRODUCT.md "Limits": PDF extraction per admin per hour, counted from the stored import jobs. */
  const limitOf = (request: FastifyRequest): UploadLimit => ({ userId: request.user!.id, perHour: config.pdfUploadsPerHour })
  const limitReached = async (request: FastifyRequest) => {
    const { left, retryAfterSeconds } = await uploadsLeft(db, limitOf(request))
    return left > 0 ? null : new UploadLimitReached(config.pdfUploadsPerHour, retryAfterSeconds)
  }

  const uploadPage = async (request: FastifyRequest, reply: FastifyReply, form: UploadForm, replacesId: number | null, fields: Record<string, string> | null, params: Record<string, unknown> = {}) => {
    const replaces = replacesId !== null ? await findAdminTextbook(db, replacesId) : null
    // Over the limit, the form says so before the admin picks a large file in vain.
    const reached = fields ? null : await limitReached(request)
    const limit = reached ? uploadLimitProblem(reached) : null
    if (fields?.file === UPLOAD_LIMIT_KEY) reply.header('Retry-After', String(Number(params.minutes) * 60))
    const status = fields?.file === UPLOAD_LIMIT_KEY ? 429 : fields ? 422 : 200
    return reply.page('admin/textbooks-new', { ...(await helpers(request)), form, replaces, fields, params, limit }, status)
  }

  app.get<{ Querystring: Static<typeof ListQuery> }>('/admin/textbooks', { ...guard, schema: { querystring: ListQuery } }, async (request, reply) => {
    const [books, jobs, recent] = await Promise.all([listAdminTextbooks(db), latestImportJobs(db), recentTextbookJobs(db)])
    const rows = books.map((book) => ({ ...book, job: jobs.get(book.id) ?? null }))
    const imported = rows.find((b) => String(b.id) === request.query.imported && b.status === 'ready') ?? null
    return reply.page('admin/textbooks', { ...(await helpers(request)), books: rows, jobs: recent, deleted: request.query.deleted !== undefined, imported, model: embedder.model })
  })

  app.get<{ Querystring: Static<typeof NewQuery> }>('/admin/textbooks/new', { ...guard, schema: { querystring: NewQuery } }, async (request, reply) => {
    const replacesId = /^\d{1,9}$/.test(request.query.replaces ?? '') ? Number(request.query.replaces) : null
    const old = replacesId !== null ? await findAdminTextbook(db, replacesId) : null
    const form = old
      ? { subject: old.subject, grade: String(old.grade), title: old.title, year: old.year ? String(old.year) : '', kind: old.kind }
      : { subject: '', grade: '', title: '', year: '', kind: 'required' }
    return uploadPage(request, reply, form, replacesId, null)
  })

  app.post<{ Body: Static<typeof UploadBody> }>(
    '/admin/textbooks',
    {
      // Before a byte of the body is read: only platform admins, and no body over the limit.
      onRequest: [onlyAdmins, refuseOversize(maxBytes, tooLarge)],
      // Over the hourly limit the file is read and dropped, never written: the form then says why.
      preValidation: async (request, reply) =>
        multipartForm<SavedUpload>({
          fileField: 'file',
          maxBytes,
          tooLarge,
          save: async (stream) => {
            const reached = await limitReached(request)
            if (reached) throw reached
            return saveUploadedPdf(config.dataDir, stream, maxBytes)
          },
          problemOf,
        }).call(app, request, reply),
      schema: { body: UploadBody },
    },
    async (request, reply) => {
      const body = request.body
      const form = { subject: body.subject ?? '', grade: body.grade ?? '', title: body.title ?? '', year: body.year ?? '', kind: body.kind ?? 'required' }
      const replacesId = /^\d{1,9}$/.test(body.replaces ?? '') ? Number(body.replaces) : null
      const file = body.file instanceof ReceivedFile ? (body.file as ReceivedFile<SavedUpload>) : null
      if (!file?.saved) {
        const problem = file?.problem ?? { key: 'textbooks.errors.fileMissing', params: {} }
        return uploadPage(request, reply, form, replacesId, { file: problem.key }, problem.params)
      }
      try {
        const { jobId } = await enqueuePdfImport(db, { ...form, replacesId }, file.saved, limitOf(request))
        return reply.redirect(`/admin/textbooks/jobs/${jobId}`, 303)
      } catch (err) {
        if (err instanceof UploadLimitReached) {
          const problem = uploadLimitProblem(err)
          return uploadPage(request, reply, form, replacesId, { file: problem.key }, problem.params)
        }
        if (!(err instanceof FormError)) throw err
        // The upload was deleted with the refused form: the file has to be chosen again.
        return uploadPage(request, reply, form, err.fields.replaces ? null : replacesId, { ...err.fields, file: 'textbooks.errors.fileAgain' })
      }
    },
  )

  /** A job's page without JavaScript reloads itself this often (<noscript>; static/js/reload.js where htmx cannot run). */
  const JOB_REFRESH_SECONDS = 3
  app.get<{ Params: IdParams }>(`/admin/textbooks/jobs/:id${ID}`, guard, async (request, reply) => {
    const job = await findTextbookJob(db, Number(request.params.id))
    const book = await jobTextbook(db, job)
    const finished = job.status === 'done' || job.status === 'failed'
    const retryHref = job.kind === INGEST_PDF_JOB ? (book ? `/admin/textbooks/new?replaces=${book.id}` : '/admin/textbooks/new') : '/admin/textbooks#reindex-title'
    const data = { ...(await helpers(request)), job, book, retryHref }
    // htmx polls for the progress partial alone; a browser without JavaScript reloads the page.
    if (request.isHtmx) {
      const html = await reply.viewAsync('admin/_textbooks-job', { ...data, t: request.t })
      return reply.header('Cache-Control', 'no-store').header('Vary', 'HX-Request, Cookie, Accept-Language').type('text/html; charset=utf-8').send(html)
    }
    // Not a Refresh header: it would reload the page under htmx's polling too.
    return reply.page('admin/textbooks-job', { ...data, noscriptRefresh: finished ? null : JOB_REFRESH_SECONDS })
  })

  await app.register(importRoutes, { db, embedder, maxBytes, tooLarge, maxMb, onlyAdmins })

  app.post('/admin/textbooks/reindex', guard, async (_request, reply) => {
    const jobId = await enqueueReindex(db)
    return reply.redirect(`/admin/textbooks/jobs/${jobId}`, 303)
  })

  app.get<{ Params: IdParams }>(`/admin/textbooks/:id${ID}/delete`, guard, async (request, reply) => {
    const book = await findAdminTextbook(db, Number(request.params.id))
    return reply.page('admin/textbooks-delete', { ...(await helpers(request)), book, busy: await importInProgress(db, book) })
  })

  app.post<{ Params: IdParams }>(`/admin/textbooks/:id${ID}/delete`, guard, async (request, reply) => {
    await deleteAdminTextbook(db, Number(request.params.id))
    return reply.redirect('/admin/textbooks?deleted=1', 303)
  })
}
export default adminTextbookRoutes
