import type { FastifyReply, FastifyRequest } from 'fastify'
import { ONCE_COOKIE, openOnce, sealOnce } from '../web/once.ts'

/**
 * A new temporary password crosses POST → 303 → GET in the sealed show-once cookie and is shown
 * on the account's page exactly once: reading it clears the cookie.
 */

interface PasswordOnce {
  kind: 'password'
  userId: number
  password: string
}

export interface OnceKeys {
  secret: string
  secureCookies: boolean
}

export function sealPassword(reply: FastifyReply, keys: OnceKeys, userId: number, password: string): void {
  const payload: PasswordOnce = { kind: 'password', userId, password }
  sealOnce(reply, keys.secret, payload, keys.secureCookies)
}

/** The password sealed for one of `userIds`, or null. */
export function openPassword(request: FastifyRequest, reply: FastifyReply, keys: OnceKeys, userIds: number[]): PasswordOnce | null {
  if (!request.cookies[ONCE_COOKIE]) return null
  const payload = openOnce<PasswordOnce>(request, reply, keys.secret)
  if (!payload || payload.kind !== 'password' || !userIds.includes(payload.userId) || typeof payload.password !== 'string') return null
  return payload
}
