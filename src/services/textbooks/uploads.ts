import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import { once } from 'node:events'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { IngestError, looksLikePdf, MAX_PDF_BYTES } from './pdf.ts'

/**
 * Uploaded PDFs live under DATA_DIR/uploads/ (in production a mounted volume). They are
 * streamed to disk, never held in memory: the size limit and the %PDF- header are checked while
 * the bytes flow, and the SHA-256 is computed on the way.
 */

export const UPLOADS_DIR = 'uploads'

export interface SavedUpload {
  /** Absolute path. */
  path: string
  /** Relative to DATA_DIR: what textbooks.source_path and job payloads store. */
  relativePath: string
  sha256: string
  bytes: number
}

/**
 * Streams a PDF to DATA_DIR/uploads/. Throws IngestError 'ingest.errors.tooLarge' past
 * `maxBytes` and 'ingest.errors.notPdf' when the first KiB has no %PDF- header; in both cases
 * nothing stays on disk and the stream is read to its end (an HTTP upload must be consumed).
 * Behind @fastify/multipart, set its fileSize limit to maxBytes + 1 so an oversized upload
 * stops at the limit and is reported here.
 */
export async function saveUploadedPdf(dataDir: string, stream: Readable, maxBytes = MAX_PDF_BYTES): Promise<SavedUpload> {
  const dir = join(dataDir, UPLOADS_DIR)
  await mkdir(dir, { recursive: true })
  const name = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}.pdf`
  const partial = join(dir, `.${name}.part`)
  const out = createWriteStream(partial, { flags: 'wx' })
  const hash = createHash('sha256')
  let bytes = 0
  let head = Buffer.alloc(0)
  let rejected: IngestError | null = null
  try {
    for await (const data of stream) {
      const chunk = typeof data === 'string' ? Buffer.from(data) : (data as Buffer)
      bytes += chunk.length
      if (rejected) continue
      if (bytes > maxBytes) {
        rejected = new IngestError('ingest.errors.tooLarge', { maxMb: Math.round(maxBytes / 1024 / 1024) })
        continue
      }
      if (head.length < 1024) {
        head = Buffer.concat([head, chunk.subarray(0, 1024 - head.length)])
        if (head.length >= 1024 && !looksLikePdf(head)) {
          rejected = new IngestError('ingest.errors.notPdf')
          continue
        }
      }
      hash.update(chunk)
      if (!out.write(chunk)) await once(out, 'drain')
    }
    if (!rejected && !looksLikePdf(head)) rejected = new IngestError('ingest.errors.notPdf')
    out.end()
    await once(out, 'close')
  } catch (err) {
    out.destroy()
    await rm(partial, { force: true })
    throw err
  }
  if (rejected) {
    await rm(partial, { force: true })
    throw rejected
  }
  const path = join(dir, name)
  await rename(partial, path)
  return { path, relativePath: `${UPLOADS_DIR}/${name}`, sha256: hash.digest('hex'), bytes }
}
