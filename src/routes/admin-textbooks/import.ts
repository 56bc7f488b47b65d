import type { FastifyPluginAsync, FastifyReply, preHandlerAsyncHookHandler } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import type { Embedder } from '../../services/embeddings/index.ts'
import { ChunkImportError, importChunksFile, type ImportChunksResult, type ImportLineError } from '../../services/textbooks/import-chunks.ts'
import { multipartForm, ReceivedFile, refuseOversize, type Problem } from './multipart.ts'
import { problemOf } from './present.ts'

export interface ImportRouteOptions {
  db: Kysely<DB>
  embedder: Embedder
  maxBytes: number
  maxMb: number
  tooLarge: Problem
  onlyAdmins: preHandlerAsyncHookHandler
}

const ImportBody = Type.Object({ file: Type.Optional(Type.Unknown()), _csrf: Type.Optional(Type.String()) })

/**
 * Importing a textbook as pre-computed passages with embeddings (docs/import-format.md), from
 * the owner's own pipeline. Synchronous: the file is checked line by line as it arrives and
 * inserted in batches; all or nothing (src/services/textbooks/import-chunks.ts).
 */
const importRoutes: FastifyPluginAsync<ImportRouteOptions> = async (app, { db, embedder, maxBytes, maxMb, tooLarge, onlyAdmins }) => {
  const page = (reply: FastifyReply, failure: { problem: Problem; lines: ImportLineError[]; truncated: boolean } | null) =>
    reply.page('admin/textbooks-import', { model: embedder.model, dimensions: embedder.dimensions, maxMb, failure }, failure ? 422 : 200)

  app.get('/admin/textbooks/import', { preHandler: onlyAdmins }, async (_request, reply) => page(reply, null))

  app.post<{ Body: Static<typeof ImportBody> }>(
    '/admin/textbooks/import',
    {
      onRequest: [onlyAdmins, refuseOversize(maxBytes, tooLarge)],
      // Passages must carry embeddings of the model this deployment searches with (`active`).
      preValidation: multipartForm<ImportChunksResult>({ fileField: 'file', maxBytes, tooLarge, save: (stream) => importChunksFile(db, stream, { active: embedder }), problemOf }),
      schema: { body: ImportBody },
    },
    async (request, reply) => {
      const file = request.body.file instanceof ReceivedFile ? (request.body.file as ReceivedFile<ImportChunksResult>) : null
      if (file?.saved) return reply.redirect(`/admin/textbooks?imported=${file.saved.textbookId}`, 303)
      const problem = file?.problem ?? { key: 'textbooks.errors.fileMissingJsonl', params: {} }
      const rejected = file?.cause instanceof ChunkImportError ? file.cause : null
      return page(reply, { problem, lines: rejected?.errors ?? [], truncated: rejected?.truncated ?? false })
    },
  )
}
export default importRoutes
