import { createHash, randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { DB, Role } from '../../db/schema.ts'

// Sessions as in Lucia's single-file guide: a random token goes to the browser, only its
// SHA-256 is stored, and expiry slides forward while the session is used.
const DAY = 24 * 60 * 60 * 1000
export const STAFF_SESSION_MS = 30 * DAY
/** Students share lab PCs: a browser-session cookie and a 2-hour idle timeout. */
export const STUDENT_IDLE_MS = 2 * 60 * 60 * 1000
/** Do not write on every request: refresh a student's idle expiry at most once a minute. */
const STUDENT_REFRESH_AFTER_MS = 60 * 1000

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

/** Returns null for unknown, expired or disabled sessions; slides the expiry forward when due. */
export async function validateSessionToken(
  db: Kysely<DB>,
  token: string,
): Promise<{ session: Session; user: SessionUser } | null> {
  if (!/^[A-Za-z0-9_-]{20,64}$/.test(token)) return null
  const id = sessionIdFromToken(token)
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
  const lifetime = row.idle_timeout ? STUDENT_IDLE_MS : STAFF_SESSION_MS
  const refreshAfter = row.idle_timeout ? STUDENT_REFRESH_AFTER_MS : lifetime / 2
  if (row.expires_at.getTime() - now <= lifetime - refreshAfter) {
    session.expiresAt = new Date(now + lifetime)
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
  await db.deleteFrom('sessions').where('id', '=', sessionId).execute()
}

export async function invalidateUserSessions(db: Kysely<DB>, userId: number): Promise<void> {
  await db.deleteFrom('sessions').where('user_id', '=', userId).execute()
}
