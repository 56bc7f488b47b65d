import type { Embedder } from '../embeddings/index.ts'
import { INGEST_PDF_JOB, ingestPdfHandler } from '../textbooks/ingest.ts'
import { REINDEX_JOB, reindexHandler } from '../textbooks/reindex.ts'
import type { JobHandler } from './queue.ts'

/** Every kind of background job the app runs, by kind. The server's runner and the CLI use the same set. */
export function createJobHandlers(deps: { dataDir: string; embedder: Embedder }): Record<string, JobHandler> {
  return {
    [INGEST_PDF_JOB]: ingestPdfHandler(deps),
    [REINDEX_JOB]: reindexHandler(deps),
  }
}
