import type { FastifyReply, FastifyRequest, preValidationAsyncHookHandler } from 'fastify'
import { Transform, type Readable } from 'node:stream'
// The multipart plugin's request decorations (parts, isMultipart); it is registered in ./index.ts.
import type {} from '@fastify/multipart'
import { once } from 'node:events'
import { timingSafeEqual } from 'node:crypto'
import { CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER } from '../../plugins/security.ts'
import { DomainError } from '../../services/errors.ts'

/**
 * Multipart forms with one large file, without JavaScript (docs/decisions/008-textbook-uploads.md).
 *
 * The CSRF check of the security plugin runs in preHandler and reads `request.body._csrf`, but a
 * streamed multipart body is not parsed by then. This preValidation hook reads the parts in the
 * order the browser sends them — the form's fields in document order, the file input last — into
 * `request.body`, so that check runs unchanged. The file is streamed to `save` (to disk, never
 * into memory) only after the `_csrf` field that came before it matched: a forged or stale form
 * never writes a byte. The route's onRequest guard has already turned away anyone without the role.
 * Register @fastify/multipart with `throwFileSizeLimit: false`: the reader reports an oversized file.
 */

/** A file the reader received: saved by `save`, or the i18n key of why not. Only this reader makes one, so a urlencoded `file=` can never pass for it. */
export class ReceivedFile<T> {
  readonly filename: string
  readonly saved: T | null
  readonly problem: Problem | null
  /** What `save` threw, for a route that shows more than the one message (line errors of an import). */
  readonly cause: unknown
  constructor(filename: string, saved: T | null, problem: Problem | null = null, cause: unknown = null) {
    this.filename = filename
    this.saved = saved
    this.problem = problem
    this.cause = cause
  }
}

export interface Problem {
  key: string
  params: Record<string, unknown>
}

export interface MultipartFormOptions<T> {
  /** The one file field. */
  fileField: string
  /** The file size limit: `save` sees a stream that fails with the `tooLarge` problem one byte past it. */
  maxBytes: number
  tooLarge: Problem
  /** Streams the file somewhere (to disk, never into memory). */
  save(stream: Readable, info: { filename: string; mimetype: string }): Promise<T>
  /** The problem to show at the file field when `save` refused the file; null for unexpected errors (rethrown). */
  problemOf(err: unknown): Problem | null
}

/** Room for the small fields around the file. */
const FIELDS_BYTES = 64 * 1024

class TooLarge extends Error {}

/** Passes bytes through and fails once more than `max` went by; what still arrives after that is dropped. */
function byteLimit(max: number): Transform {
  let seen = 0
  let failed = false
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (failed) return done()
      seen += chunk.length
      if (seen <= max) return done(null, chunk)
      failed = true
      done(new TooLarge('file over the size limit'))
    },
  })
}

function csrfMatches(request: FastifyRequest, reply: FastifyReply, sent: unknown): boolean {
  if (typeof sent !== 'string' || !request.cookies[CSRF_COOKIE]) return false
  const expected = Buffer.from(request.csrfToken(reply))
  const actual = Buffer.from(sent)
  return expected.length === actual.length && timingSafeEqual(expected, actual)
}

/** Busboy limits for the form: one file (one byte over the limit is enough to know), a few short fields. */
function limits(maxBytes: number) {
  return { fileSize: maxBytes + 1, files: 1, fields: 20, fieldSize: 4096, fieldNameSize: 100, parts: 25, headerPairs: 100 }
}

/** onRequest: a body announced larger than the limit is refused (413) before any of it is read. */
export function refuseOversize(maxBytes: number, tooLarge: Problem) {
  return async (request: FastifyRequest) => {
    const length = Number(request.headers['content-length'] ?? 0)
    if (length > maxBytes + FIELDS_BYTES) throw new DomainError(413, tooLarge.key, tooLarge.params)
  }
}

async function drain(stream: Readable): Promise<void> {
  if (stream.readableEnded || stream.destroyed) return
  stream.resume()
  await once(stream, 'end').catch(() => {})
}

export function multipartForm<T>(opts: MultipartFormOptions<T>): preValidationAsyncHookHandler {
  return async function (request, reply) {
    if (!request.isMultipart()) return
    const fields: Record<string, string> = {}
    let file: ReceivedFile<T> | null = null
    for await (const part of request.parts({ limits: limits(opts.maxBytes) })) {
      if (part.type === 'field') {
        // The first value of a field counts; a browser never sends one twice.
        if (typeof part.value === 'string' && !Object.hasOwn(fields, part.fieldname)) fields[part.fieldname] = part.value
        continue
      }
      if (!csrfMatches(request, reply, request.headers[CSRF_HEADER] ?? fields[CSRF_FIELD])) {
        part.file.resume()
        throw new DomainError(403, 'errors.csrf')
      }
      if (part.fieldname !== opts.fileField || file || !part.filename) {
        // An empty file input still sends an empty part; other file fields are ignored.
        await drain(part.file)
        continue
      }
      file = await receive(part.file, part.filename, part.mimetype, opts)
    }
    request.body = { ...fields, ...(file ? { [opts.fileField]: file } : {}) }
  }
}

async function receive<T>(source: Readable, filename: string, mimetype: string, opts: MultipartFormOptions<T>): Promise<ReceivedFile<T>> {
  const limited = byteLimit(opts.maxBytes)
  source.on('error', (err) => limited.destroy(err))
  // The limit may trip before `save` starts reading (one large chunk): the error is kept on the
  // stream for `save` to meet, not thrown as an unhandled 'error' event.
  limited.on('error', () => {})
  source.pipe(limited)
  try {
    return new ReceivedFile(filename, await opts.save(limited, { filename, mimetype }))
  } catch (err) {
    const tooLarge = err instanceof TooLarge || (err as { cause?: unknown })?.cause instanceof TooLarge
    const problem = tooLarge ? opts.tooLarge : opts.problemOf(err)
    if (!problem) throw err
    // Read the rest of the upload, so the browser gets the page that explains instead of a reset connection.
    source.unpipe(limited)
    await drain(source)
    return new ReceivedFile<T>(filename, null, problem, err)
  }
}
