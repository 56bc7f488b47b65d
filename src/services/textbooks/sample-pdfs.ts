import { createReadStream, existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { enqueuePdfImport } from './ingest.ts'
import { loadSampleBooks, SAMPLES_DIR } from './samples.ts'
import { saveUploadedPdf } from './uploads.ts'

/**
 * The sample textbooks as a newcomer gets them: the committed PDFs in samples/textbooks/pdf/
 * (built from the *.md sources by scripts/build-sample-pdfs.ts), imported through the same
 * pipeline as an upload. Called on the first start of an empty embedded database; the server's
 * job runner imports them within seconds.
 */

export const SAMPLE_PDFS_DIR = fileURLToPath(new URL('../../../samples/textbooks/pdf/', import.meta.url))

/** Copies each sample PDF into DATA_DIR/uploads and queues its import; returns the job ids. */
export async function enqueueSamplePdfs(db: Kysely<DB>, dataDir: string): Promise<number[]> {
  const jobs: number[] = []
  for (const book of loadSampleBooks(SAMPLES_DIR)) {
    const pdf = join(SAMPLE_PDFS_DIR, book.file.replace(/\.md$/, '.pdf'))
    if (!existsSync(pdf)) continue
    const upload = await saveUploadedPdf(dataDir, createReadStream(pdf))
    const { jobId } = await enqueuePdfImport(db, book.meta, upload)
    jobs.push(jobId)
  }
  return jobs
}
