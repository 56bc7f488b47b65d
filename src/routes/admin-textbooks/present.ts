import { DomainError } from '../../services/errors.ts'
import type { Translate } from '../../services/i18n.ts'
import { UploadLimitReached } from '../../services/textbooks/ingest.ts'
import { IngestError } from '../../services/textbooks/pdf.ts'
import type { Problem } from './multipart.ts'

/** The message for an admin over the hourly PDF limit. */
export const UPLOAD_LIMIT_KEY = 'textbooks.errors.uploadLimit'

export function uploadLimitProblem(err: UploadLimitReached): Problem {
  return { key: UPLOAD_LIMIT_KEY, params: { limit: err.limit, minutes: Math.max(1, Math.ceil(err.retryAfterSeconds / 60)) } }
}

/** A refused upload: an IngestError (not a PDF, too large), the hourly limit, or a DomainError names its i18n key. */
export function problemOf(err: unknown): Problem | null {
  if (err instanceof IngestError) return { key: err.key, params: err.params ?? {} }
  if (err instanceof UploadLimitReached) return uploadLimitProblem(err)
  if (err instanceof DomainError) return { key: err.messageKey, params: err.params }
  return null
}

/**
 * What went wrong, in the reader's language. Stored errors (textbooks.error, jobs.error) are an
 * i18n key with its params, or — for unexpected failures — a short technical message, shown
 * after a sentence that says what to do.
 */
export function describeError(t: Translate, error: string | null, params: Record<string, unknown> | null = null): string | null {
  if (!error) return null
  if (/^[a-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$/.test(error)) {
    const text = t(error, params ?? {})
    if (text !== error) return text
  }
  return t('textbooks.errors.unexpected', { message: error })
}

const STATUS_KEYS: Record<string, string> = {
  pending: 'textbooks.status.pending',
  processing: 'textbooks.status.processing',
  ready: 'textbooks.status.ready',
  failed: 'textbooks.status.failed',
  replaced: 'textbooks.status.replaced',
}

const JOB_STATUS_KEYS: Record<string, string> = {
  queued: 'textbooks.job.status.queued',
  running: 'textbooks.job.status.running',
  done: 'textbooks.job.status.done',
  failed: 'textbooks.job.status.failed',
}

export function statusText(t: Translate, status: string): string {
  return STATUS_KEYS[status] ? t(STATUS_KEYS[status]!) : status
}

export function jobStatusText(t: Translate, status: string): string {
  return JOB_STATUS_KEYS[status] ? t(JOB_STATUS_KEYS[status]!) : status
}
