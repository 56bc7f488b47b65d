import { sql, type Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { verifyAgainstDummy, verifyPassword } from './passwords.ts'

export const THROTTLE_WINDOW_MS = 15 * 60 * 1000
export const MAX_FAILURES_PER_ACCOUNT = 5
export const MAX_FAILURES_PER_IP = 30

export interface LoginInput {
  /** School code as typed; empty for platform admins. */
  school: string
  username: string
  password: string
  ip: string
}

export type LoginResult =
  | { ok: true; userId: number; role: DB['users']['role'] }
  | { ok: false; reason: 'invalid' }
  | { ok: false; reason: 'throttled'; retryAfterSeconds: number }

// Postgres text cannot hold NUL; no real school code or username contains control characters.
const CONTROL = /[\u0000-\u001f\u007f]/

function accountKey(school: string, username: string): string {
  return `acct:${school.trim()}:${username.trim().toLowerCase()}`.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 200)
}

async function retryAfter(db: Kysely<DB>, key: string, limit: number): Promise<number> {
  const since = new Date(Date.now() - THROTTLE_WINDOW_MS)
  const rows = await db
    .selectFrom('login_failures')
    .select('at')
    .where('key', '=', key)
    .where('at', '>', since)
    .orderBy('at', 'desc')
    .limit(limit)
    .execute()
  if (rows.length < limit) return 0
  // Allowed again once the oldest of the last `limit` failures leaves the window.
  const oldest = rows[rows.length - 1].at.getTime()
  return Math.max(1, Math.ceil((oldest + THROTTLE_WINDOW_MS - Date.now()) / 1000))
}

/**
 * Checks school code + username + password. The answer never says whether the school or the
 * user exists: unknown users cost the same argon2 work and count against the same limits.
 */
export async function attemptLogin(db: Kysely<DB>, input: LoginInput): Promise<LoginResult> {
  const key = accountKey(input.school, input.username)
  const ipKey = `ip:${input.ip}`
  const wait = Math.max(
    await retryAfter(db, key, MAX_FAILURES_PER_ACCOUNT),
    await retryAfter(db, ipKey, MAX_FAILURES_PER_IP),
  )
  if (wait > 0) return { ok: false, reason: 'throttled', retryAfterSeconds: wait }

  const user = await findLoginUser(db, input.school, input.username)
  const valid = user ? await verifyPassword(user.password_hash, input.password) : (await verifyAgainstDummy(input.password), false)
  if (!user || !valid) {
    await db.insertInto('login_failures').values([{ key }, { key: ipKey }]).execute()
    return { ok: false, reason: 'invalid' }
  }
  await db.deleteFrom('login_failures').where('key', '=', key).execute()
  return { ok: true, userId: user.id, role: user.role }
}

async function findLoginUser(db: Kysely<DB>, school: string, username: string) {
  const name = username.trim().toLowerCase()
  if (!name || CONTROL.test(name) || CONTROL.test(school)) return undefined
  const code = school.trim()
  let query = db
    .selectFrom('users')
    .select(['users.id', 'users.role', 'users.password_hash'])
    .where(sql<string>`lower(users.username)`, '=', name)
    .where('users.disabled_at', 'is', null)
  if (code === '') {
    query = query.where('users.school_id', 'is', null)
  } else {
    if (!/^\d{1,9}$/.test(code)) return undefined
    query = query
      .innerJoin('schools', 'schools.id', 'users.school_id')
      .where('schools.code', '=', Number(code))
      .where('schools.disabled_at', 'is', null)
  }
  return query.executeTakeFirst()
}

/** Keeps the failures table small; called now and then, not on every request. */
export async function pruneLoginFailures(db: Kysely<DB>): Promise<void> {
  await db.deleteFrom('login_failures').where('at', '<', new Date(Date.now() - THROTTLE_WINDOW_MS)).execute()
}
