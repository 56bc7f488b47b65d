/**
 * Small domain errors thrown by services; one error handler maps them to status codes and
 * localized pages. Messages are i18n keys, never text shown as is.
 */
export class DomainError extends Error {
  readonly status: number
  readonly messageKey: string
  readonly params: Record<string, unknown>
  constructor(status: number, messageKey: string, params: Record<string, unknown> = {}) {
    super(messageKey)
    this.status = status
    this.messageKey = messageKey
    this.params = params
  }
}

/** Not found, or not yours: both look the same from outside. */
export class NotFoundError extends DomainError {
  constructor() {
    super(404, 'errors.404.message')
  }
}

/** A form whose fields broke a business rule. `fields` maps a field name to an i18n key. */
export class FormError extends DomainError {
  readonly fields: Record<string, string>
  constructor(fields: Record<string, string>, params: Record<string, unknown> = {}) {
    super(422, 'errors.form', params)
    this.fields = fields
  }
}
