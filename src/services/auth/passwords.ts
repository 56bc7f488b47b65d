import { hash, verify } from '@node-rs/argon2'
import { randomInt } from 'node:crypto'

// OWASP's argon2id baseline; @node-rs/argon2 defaults to argon2id.
const ARGON2 = { memoryCost: 19456, timeCost: 2, parallelism: 1 }

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2)
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password)
  } catch {
    return false
  }
}

/** A hash of nothing anyone knows, verified when the user does not exist so both paths take as long. */
let dummyHash: Promise<string> | null = null
export async function verifyAgainstDummy(password: string): Promise<void> {
  dummyHash ??= hashPassword('bagsh-dummy-password-for-timing')
  await verifyPassword(await dummyHash, password)
}

/** Students' 6-digit PINs. */
export function generatePin(): string {
  return String(randomInt(0, 1_000_000)).padStart(6, '0')
}

// No 0/O, 1/l/I: these are read off paper.
const READABLE = 'abcdefghjkmnpqrstuvwxyz23456789'
/** Temporary passwords for staff, shown once. */
export function generatePassword(length = 10): string {
  let out = ''
  for (let i = 0; i < length; i++) out += READABLE[randomInt(0, READABLE.length)]
  return out
}

export const MIN_PASSWORD_LENGTH = 8
export const MAX_PASSWORD_LENGTH = 200
