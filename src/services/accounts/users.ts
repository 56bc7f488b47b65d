import { sql, type Kysely } from 'kysely'
import type { DB, Role } from '../../db/schema.ts'
import { FormError } from '../errors.ts'
import { hashPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../auth/passwords.ts'

export interface NewUser {
  role: Role
  /** Required for everyone but platform admins. */
  schoolId: number | null
  username: string
  displayName?: string
  password: string
  grade?: number | null
  classId?: number | null
}

export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,31}$/
export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/

export function normalizeUsername(username: string): string {
  return username.trim().toLowerCase()
}

/** Checks a new user's fields; throws FormError with i18n keys under `users.errors`. */
export function validateNewUser(input: NewUser): void {
  const fields: Record<string, string> = {}
  const username = normalizeUsername(input.username ?? '')
  if (!USERNAME_PATTERN.test(username)) fields.username = 'users.errors.usernameInvalid'
  if (input.role === 'student') {
    if (!/^\d{6}$/.test(input.password)) fields.password = 'users.errors.pinInvalid'
  } else if (input.password.length < MIN_PASSWORD_LENGTH || input.password.length > MAX_PASSWORD_LENGTH) {
    fields.password = 'users.errors.passwordLength'
  }
  if ((input.role === 'platform_admin') !== (input.schoolId === null)) fields.school = 'users.errors.schoolRequired'
  if (input.grade != null && !(Number.isInteger(input.grade) && input.grade >= 1 && input.grade <= 12)) fields.grade = 'users.errors.gradeInvalid'
  if ((input.displayName ?? '').length > 200) fields.displayName = 'users.errors.nameTooLong'
  // Postgres text cannot hold NUL, and no name needs control characters.
  else if (CONTROL_CHARACTERS.test(input.displayName ?? '')) fields.displayName = 'users.errors.nameInvalid'
  if (Object.keys(fields).length) throw new FormError(fields, { min: MIN_PASSWORD_LENGTH })
}

export async function usernameTaken(db: Kysely<DB>, schoolId: number | null, username: string): Promise<boolean> {
  const row = await db
    .selectFrom('users')
    .select('id')
    .where(sql<string>`lower(username)`, '=', normalizeUsername(username))
    .where((eb) => (schoolId === null ? eb('school_id', 'is', null) : eb('school_id', '=', schoolId)))
    .executeTakeFirst()
  return row !== undefined
}

/** Creates one account; the password is hashed here and never kept. */
export async function createUser(db: Kysely<DB>, input: NewUser): Promise<{ id: number; username: string }> {
  validateNewUser(input)
  const username = normalizeUsername(input.username)
  if (await usernameTaken(db, input.schoolId, username)) throw new FormError({ username: 'users.errors.usernameTaken' })
  const passwordHash = await hashPassword(input.password)
  try {
    return await db
      .insertInto('users')
      .values({
        role: input.role,
        school_id: input.schoolId,
        username,
        display_name: input.displayName?.trim() || username,
        password_hash: passwordHash,
        grade: input.grade ?? null,
        class_id: input.classId ?? null,
      })
      .returning(['id', 'username'])
      .executeTakeFirstOrThrow()
  } catch (err) {
    // Two admins typing the same name at once: the unique index decides, the form says so.
    if (isUniqueViolation(err)) throw new FormError({ username: 'users.errors.usernameTaken' })
    throw err
  }
}

/** Postgres unique_violation: the loser of a race on a unique index. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '23505'
}
