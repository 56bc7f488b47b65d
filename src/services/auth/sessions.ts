import { createHash, randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { DB, Role } from '../../db/schema.ts'

// Sessions as in Lucia's single-file guide: a random token goes to the browser, only its
// SHA-256 is stored, and expiry slides forward while the session is used.
const DAY = 24 * 60 * 60 * 1000
export const STAFF_SESSION_MS = 30 * DAY
/** Students share lab PCs: a browser-session cookie and a 2-hour idle timeout. */
export const STUDENT_IDLE_MS = 2 * 60 * 60 * 1000
/**
 * Do not write on every request: a student's idle expiry moves forward at most every 5 minutes
 * (so the 2-hour idle timeout is exact to 5 minutes). At a million students, once a minute was
 * one write per active student per minute for nothing but this.
 */
export const STUDENT_REFRESH_AFTER_MS = 5 * 60 * 1000

export interface SessionUser {
  id: number
  role: Role
  schoolId: number | null
  schoolCode: number | null
  schoolName: string | null
  classId: number | null
  username: string
  displayName: string
  grade: number | null
}

export interface Session {
  id: string
  userId: number
  expiresAt: Date
  idleTimeout: boolean
}

export function generateSessionToken(): string {
  return randomBytes(24).toString('base64url')
}

export function sessionIdFromToken(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

export async function createSession(db: Kysely<DB>, token: string, userId: number, role: Role): Promise<Session> {
  const idleTimeout = role === 'student'
  const session: Session = {
    id: sessionIdFromToken(token),
    userId,
    expiresAt: new Date(Date.now() + (idleTimeout ? STUDENT_IDLE_MS : STAFF_SESSION_MS)),
    idleTimeout,
  }
  await db
    .insertInto('sessions')
    .values({ id: session.id, user_id: userId, expires_at: session.expiresAt, idle_timeout: idleTimeout })
    .execute()
  return session
}

// --- The session cache ----------------------------------------------------------------------
//
// A validated session is trusted from memory for a few seconds (docs/decisions/012-session-cache-
// and-database-thread.md): a student's question and its answer stream then cost no session read.
// Invalidating here (logout, a new password or PIN, a disabled account or school) takes effect
// at once in this process: entries of that session, user or school loaded before the invalidation
// (plus INVALIDATION_GRACE_MS, for the transaction that deletes the rows to commit) are not used
// again. Another app instance notices within its TTL. One cache per process, keyed by session id
// (the SHA-256 of a random token, so apps of one process never share an entry).

/** Entries loaded within this long after an invalidation are not trusted (the DELETE may not have committed yet). */
const INVALIDATION_GRACE_MS = 5_000
const CACHE_MAX_ENTRIES = 20_000

interface CachedSession {
  session: Session
  user: SessionUser
  loadedAt: number
  until: number
}

const cache = new Map<string, CachedSession>()
const invalidated = { sessions: new Map<string, number>(), users: new Map<number, number>(), schools: new Map<number, number>() }
let longestTtlMs = 0

function mark<K>(marks: Map<K, number>, key: K): void {
  const now = Date.now()
  marks.set(key, now)
  // Marks older than any entry could be are useless: forget them now and then.
  if (marks.size > 1000) for (const [k, at] of marks) if (now - at > INVALIDATION_GRACE_MS + longestTtlMs) marks.delete(k)
}

function trusted(entry: CachedSession, id: string): boolean {
  const after = (at: number | undefined) => at === undefined || entry.loadedAt > at + INVALIDATION_GRACE_MS
  return (
    after(invalidated.sessions.get(id)) &&
    after(invalidated.users.get(entry.user.id)) &&
    (entry.user.schoolId === null || after(invalidated.schools.get(entry.user.schoolId)))
  )
}

/** Drops every cached session (tests; a process that wants the database's word at once). */
export function clearSessionCache(): void {
  cache.clear()
}

export interface ValidateOptions {
  /** Trust a validated session from memory this long (0: always ask the database). */
  cacheMs?: number
}

/** Returns null for unknown, expired or disabled sessions; slides the expiry forward when due. */
export async function validateSessionToken(
  db: Kysely<DB>,
  token: string,
  options: ValidateOptions = {},
): Promise<{ session: Session; user: SessionUser } | null> {
  if (!/^[A-Za-z0-9_-]{20,64}$/.test(token)) return null
  const id = sessionIdFromToken(token)
  const cacheMs = options.cacheMs ?? 0
  if (cacheMs > 0) {
    const hit = await fromCache(db, id)
    if (hit) return hit
  }
  const loadedAt = Date.now()
  const result = await fromDatabase(db, id)
  if (result && cacheMs > 0) {
    if (cache.size >= CACHE_MAX_ENTRIES) cache.delete(cache.keys().next().value!)
    longestTtlMs = Math.max(longestTtlMs, cacheMs)
    cache.set(id, { session: { ...result.session }, user: result.user, loadedAt, until: loadedAt + cacheMs })
  }
  return result
}

/** A cached session still good now (its expiry slid forward when due), else undefined. */
async function fromCache(db: Kysely<DB>, id: string): Promise<{ session: Session; user: SessionUser } | undefined> {
  const entry = cache.get(id)
  if (!entry) return undefined
  const now = Date.now()
  // Expired by the cached expiry: the database decides (another instance may have slid it).
  if (now >= entry.until || now >= entry.session.expiresAt.getTime() || !trusted(entry, id)) {
    cache.delete(id)
    return undefined
  }
  const session = entry.session
  if (refreshDue(session, now)) {
    // Set first, so that the request arriving meanwhile (the answer stream) does not write too.
    session.expiresAt = new Date(now + (session.idleTimeout ? STUDENT_IDLE_MS : STAFF_SESSION_MS))
    await db.updateTable('sessions').set({ expires_at: session.expiresAt }).where('id', '=', id).execute()
  }
  return { session: { ...session }, user: entry.user }
}

/** Whether the sliding expiry is due to move forward (students: every 5 minutes; staff: after half the lifetime). */
function refreshDue(session: Session, now: number): boolean {
  const lifetime = session.idleTimeout ? STUDENT_IDLE_MS : STAFF_SESSION_MS
  const refreshAfter = session.idleTimeout ? STUDENT_REFRESH_AFTER_MS : lifetime / 2
  return session.expiresAt.getTime() - now <= lifetime - refreshAfter
}

async function fromDatabase(db: Kysely<DB>, id: string): Promise<{ session: Session; user: SessionUser } | null> {
  const row = await db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .leftJoin('schools', 'schools.id', 'users.school_id')
    .select([
      'sessions.id',
      'sessions.expires_at',
      'sessions.idle_timeout',
      'users.id as user_id',
      'users.role',
      'users.school_id',
      'users.class_id',
      'users.username',
      'users.display_name',
      'users.grade',
      'users.disabled_at',
      'schools.code as school_code',
      'schools.name as school_name',
      'schools.disabled_at as school_disabled_at',
    ])
    .where('sessions.id', '=', id)
    .executeTakeFirst()
  if (!row) return null
  const now = Date.now()
  if (now >= row.expires_at.getTime() || row.disabled_at || row.school_disabled_at) {
    await invalidateSession(db, id)
    return null
  }
  const session: Session = { id, userId: row.user_id, expiresAt: row.expires_at, idleTimeout: row.idle_timeout }
  if (refreshDue(session, now)) {
    session.expiresAt = new Date(now + (row.idle_timeout ? STUDENT_IDLE_MS : STAFF_SESSION_MS))
    await db.updateTable('sessions').set({ expires_at: session.expiresAt }).where('id', '=', id).execute()
  }
  return {
    session,
    user: {
      id: row.user_id,
      role: row.role,
      schoolId: row.school_id,
      schoolCode: row.school_code,
      schoolName: row.school_name,
      classId: row.class_id,
      username: row.username,
      displayName: row.display_name,
      grade: row.grade,
    },
  }
}

export async function invalidateSession(db: Kysely<DB>, sessionId: string): Promise<void> {
  mark(invalidated.sessions, sessionId)
  cache.delete(sessionId)
  await db.deleteFrom('sessions').where('id', '=', sessionId).execute()
}

export async function invalidateUserSessions(db: Kysely<DB>, userId: number): Promise<void> {
  mark(invalidated.users, userId)
  await db.deleteFrom('sessions').where('user_id', '=', userId).execute()
}

/** Ends every session of a school's users (the school is being disabled). */
export async function invalidateSchoolSessions(db: Kysely<DB>, schoolId: number): Promise<void> {
  mark(invalidated.schools, schoolId)
  await db
    .deleteFrom('sessions')
    .where('user_id', 'in', (eb) => eb.selectFrom('users').select('users.id').where('users.school_id', '=', schoolId))
    .execute()
}
