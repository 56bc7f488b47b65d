import type { Kysely, Transaction } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { FormError, NotFoundError } from '../errors.ts'
import { generatePassword, hashPassword } from '../auth/passwords.ts'
import { invalidateUserSessions } from '../auth/sessions.ts'
import { createUser, validateNewUser, type NewUser } from './users.ts'

/**
 * Staff accounts managed by someone above them: teachers by their school admin, school admins
 * by the platform admin. Every lookup is scoped by school and role, so an id from another
 * school, or of another kind of account, is simply not found.
 */
export type StaffRole = 'teacher' | 'school_admin'

export interface StaffScope {
  schoolId: number
  role: StaffRole
}

export interface StaffMember {
  id: number
  username: string
  displayName: string
  disabled: boolean
}

export async function listStaff(db: Kysely<DB>, scope: StaffScope): Promise<StaffMember[]> {
  const rows = await db
    .selectFrom('users')
    .select(['id', 'username', 'display_name', 'disabled_at'])
    .where('school_id', '=', scope.schoolId)
    .where('role', '=', scope.role)
    .orderBy('display_name')
    .orderBy('id')
    .execute()
  return rows.map(toMember)
}

/** One staff member of the given school and role; NotFoundError for anyone else. */
export async function findStaff(db: Kysely<DB>, scope: StaffScope, userId: number): Promise<StaffMember> {
  const row = await db
    .selectFrom('users')
    .select(['id', 'username', 'display_name', 'disabled_at'])
    .where('id', '=', userId)
    .where('school_id', '=', scope.schoolId)
    .where('role', '=', scope.role)
    .executeTakeFirst()
  if (!row) throw new NotFoundError()
  return toMember(row)
}

function toMember(row: { id: number; username: string; display_name: string; disabled_at: Date | null }): StaffMember {
  return { id: row.id, username: row.username, displayName: row.display_name, disabled: row.disabled_at !== null }
}

/**
 * Creates a staff account with a generated temporary password, returned once for the page that
 * shows it and never stored in plain text.
 */
export async function createStaff(
  db: Kysely<DB>,
  scope: StaffScope,
  input: { displayName: string; username: string },
): Promise<{ id: number; username: string; password: string }> {
  const password = generatePassword()
  const newUser: NewUser = { role: scope.role, schoolId: scope.schoolId, username: input.username, displayName: input.displayName.trim(), password }
  // Report every bad field at once, the required name included.
  const fields: Record<string, string> = newUser.displayName ? {} : { displayName: 'users.errors.nameRequired' }
  try {
    validateNewUser(newUser)
  } catch (err) {
    if (!(err instanceof FormError)) throw err
    Object.assign(fields, err.fields)
  }
  if (Object.keys(fields).length) throw new FormError(fields)
  const user = await createUser(db, newUser)
  return { ...user, password }
}

/** A new temporary password; every session of the old one ends. */
export async function resetStaffPassword(trx: Transaction<DB>, scope: StaffScope, userId: number): Promise<{ user: StaffMember; password: string }> {
  const user = await findStaff(trx, scope, userId)
  const password = generatePassword()
  await trx.updateTable('users').set({ password_hash: await hashPassword(password) }).where('id', '=', user.id).execute()
  await invalidateUserSessions(trx, user.id)
  return { user, password }
}

/** A disabled account cannot log in (login refuses it) and its open sessions end now. */
export async function setStaffDisabled(trx: Transaction<DB>, scope: StaffScope, userId: number, disabled: boolean): Promise<void> {
  const user = await findStaff(trx, scope, userId)
  await trx.updateTable('users').set({ disabled_at: disabled ? new Date() : null }).where('id', '=', user.id).execute()
  if (disabled) await invalidateUserSessions(trx, user.id)
}
