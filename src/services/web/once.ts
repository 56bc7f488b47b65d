import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * Secrets shown once (new PINs, temporary passwords) must survive the POST → 303 → GET hop
 * without being stored anywhere in plain text. They travel in a short-lived cookie sealed with
 * AES-256-GCM under the app secret, bound to the viewer's session, and are cleared when read.
 */
const MAX_AGE_SECONDS = 10 * 60
/** One cookie for every kind of shown-once secret; the payload says what it holds. */
export const ONCE_COOKIE = 'bagsh_once'

function key(secret: string): Buffer {
  return createHash('sha256').update(`once:${secret}`).digest()
}

export function sealOnce(reply: FastifyReply, secret: string, payload: unknown, secure: boolean): void {
  const name = ONCE_COOKIE
  const sessionId = reply.request.session?.id ?? ''
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key(secret), iv)
  cipher.setAAD(Buffer.from(`${name}:${sessionId}`))
  const body = Buffer.concat([cipher.update(JSON.stringify({ at: Date.now(), payload }), 'utf8'), cipher.final()])
  const value = Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')
  reply.setCookie(name, value, { path: '/', httpOnly: true, sameSite: 'lax', secure, maxAge: MAX_AGE_SECONDS })
}

/** Returns the payload and clears the cookie; null when missing, tampered with, expired or from another session. */
export function openOnce<T>(request: FastifyRequest, reply: FastifyReply, secret: string): T | null {
  const name = ONCE_COOKIE
  const value = request.cookies[name]
  if (!value) return null
  reply.clearCookie(name, { path: '/' })
  try {
    const raw = Buffer.from(value, 'base64url')
    const decipher = createDecipheriv('aes-256-gcm', key(secret), raw.subarray(0, 12))
    decipher.setAAD(Buffer.from(`${name}:${request.session?.id ?? ''}`))
    decipher.setAuthTag(raw.subarray(12, 28))
    const text = Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
    const { at, payload } = JSON.parse(text) as { at: number; payload: T }
    if (Date.now() - at > MAX_AGE_SECONDS * 1000) return null
    return payload
  } catch {
    return null
  }
}
