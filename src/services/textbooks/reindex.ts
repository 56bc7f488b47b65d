import { sql, type Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { toVectorLiteral, vectorColumn } from '../../db/vector.ts'
import type { Embedder } from '../embeddings/index.ts'
import { enqueueJob, type JobHandler } from '../jobs/queue.ts'
import { chunkEmbeddingText } from './store.ts'

/**
 * Re-embeds every chunk with the deployment's active embedder: what changing the embedding model
 * takes. A visible job like an import (stage 'embedding', n of N chunks). Chunks are updated in
 * batches by id, and the last id done is the job's checkpoint, so a restart continues there.
 * While it runs, the keyword and trigram legs find everything; the vector leg finds the chunks
 * already re-embedded (it only compares vectors of the active model).
 */

export const REINDEX_JOB = 'reindex_chunks'
const BATCH = 64

/** Queues a re-index, or returns the one already queued or running. */
export async function enqueueReindex(db: Kysely<DB>): Promise<number> {
  const active = await db
    .selectFrom('jobs')
    .select('id')
    .where('kind', '=', REINDEX_JOB)
    .where('status', 'in', ['queued', 'running'])
    .orderBy('id')
    .executeTakeFirst()
  return active?.id ?? enqueueJob(db, REINDEX_JOB, {})
}

export function reindexHandler(deps: { embedder: Embedder }): JobHandler {
  return {
    async run(job, ctx) {
      const { db, signal } = ctx
      const { embedder } = deps
      const column = vectorColumn(embedder.dimensions)
      const other = column === 'embedding' ? 'embedding_1536' : 'embedding'
      let afterId = Number((job.checkpoint as { afterId?: unknown } | null)?.afterId ?? 0) || 0
      const counts = await db
        .selectFrom('chunks')
        .select((eb) => [eb.fn.countAll<string>().as('total'), eb.fn.count<string>(sql`CASE WHEN id <= ${afterId} THEN 1 END`).as('done')])
        .executeTakeFirstOrThrow()
      const total = Number(counts.total)
      let done = Number(counts.done)
      ctx.progress({ stage: 'embedding', done, total })
      for (;;) {
        signal.throwIfAborted()
        const rows = await db
          .selectFrom('chunks')
          .select(['id', 'section_title', 'content'])
          .where('id', '>', afterId)
          .orderBy('id')
          .limit(BATCH)
          .execute()
        if (!rows.length) break
        const vectors = await embedder.embed(rows.map((r) => chunkEmbeddingText({ sectionTitle: r.section_title, content: r.content })))
        signal.throwIfAborted()
        await sql`
          UPDATE chunks AS c
          SET ${sql.ref(column)} = u.v::vector, ${sql.ref(other)} = NULL, embedding_model = ${embedder.model}
          FROM unnest(${rows.map((r) => r.id)}::int[], ${vectors.map(toVectorLiteral)}::text[]) AS u(id, v)
          WHERE c.id = u.id`.execute(db)
        afterId = rows.at(-1)!.id
        done += rows.length
        ctx.progress({ stage: 'embedding', done, total: Math.max(total, done) }, { afterId })
      }
      await ctx.flush()
      await db.updateTable('textbooks').set({ embedding_model: embedder.model }).where('status', '=', 'ready').execute()
      return { chunks: done, model: embedder.model }
    },
  }
}
