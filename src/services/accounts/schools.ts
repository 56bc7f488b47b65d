import type { Kysely, Transaction } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { FormError, NotFoundError } from '../errors.ts'
import { CONTROL_CHARACTERS, isUniqueViolation } from './users.ts'
import { invalidateSchoolSessions } from '../auth/sessions.ts'

export interface NewSchool {
  name: string
  code: number | string
}

export const MAX_SCHOOL_CODE = 999_999_999

/** Validates and creates a school. Field errors are i18n keys under `schools.errors`. */
export async function createSchool(db: Kysely<DB>, input: NewSchool): Promise<{ id: number; code: number; name: string }> {
  const name = String(input.name ?? '').trim()
  const codeText = String(input.code ?? '').trim()
  const fields: Record<string, string> = {}
  const nameError = schoolNameError(name)
  if (nameError) fields.name = nameError
  if (!/^\d{1,9}$/.test(codeText) || Number(codeText) < 1) fields.code = 'schools.errors.codeInvalid'
  if (Object.keys(fields).length) throw new FormError(fields)
  const code = Number(codeText)
  const taken = await db.selectFrom('schools').select('id').where('code', '=', code).executeTakeFirst()
  if (taken) throw new FormError({ code: 'schools.errors.codeTaken' })
  try {
    return await db.insertInto('schools').values({ name, code }).returning(['id', 'code', 'name']).executeTakeFirstOrThrow()
  } catch (err) {
    if (isUniqueViolation(err)) throw new FormError({ code: 'schools.errors.codeTaken' })
    throw err
  }
}

function schoolNameError(name: string): string | null {
  if (!name) return 'schools.errors.nameRequired'
  if (name.length > 200) return 'schools.errors.nameTooLong'
  if (CONTROL_CHARACTERS.test(name)) return 'schools.errors.nameInvalid'
  return null
}

export async function findSchoolByCode(db: Kysely<DB>, code: number) {
  return db.selectFrom('schools').selectAll().where('code', '=', code).executeTakeFirst()
}

export interface SchoolSummary {
  id: number
  code: number
  name: string
  disabled: boolean
  userCount: number
}

/** Every school with how many accounts it has, for the platform admin's list. */
export async function listSchools(db: Kysely<DB>): Promise<SchoolSummary[]> {
  const rows = await db
    .selectFrom('schools')
    .leftJoin('users', 'users.school_id', 'schools.id')
    .select((eb) => ['schools.id', 'schools.code', 'schools.name', 'schools.disabled_at', eb.fn.count<string>('users.id').as('user_count')])
    .groupBy('schools.id')
    .orderBy('schools.code')
    .execute()
  return rows.map((r) => ({ id: r.id, code: r.code, name: r.name, disabled: r.disabled_at !== null, userCount: Number(r.user_count) }))
}

/** One school by id; NotFoundError when there is none. */
export async function findSchool(db: Kysely<DB>, schoolId: number): Promise<{ id: number; code: number; name: string; disabled: boolean }> {
  const row = await db.selectFrom('schools').select(['id', 'code', 'name', 'disabled_at']).where('id', '=', schoolId).executeTakeFirst()
  if (!row) throw new NotFoundError()
  return { id: row.id, code: row.code, name: row.name, disabled: row.disabled_at !== null }
}

export async function renameSchool(db: Kysely<DB>, schoolId: number, newName: string): Promise<void> {
  const name = String(newName ?? '').trim()
  const nameError = schoolNameError(name)
  if (nameError) throw new FormError({ name: nameError })
  const result = await db.updateTable('schools').set({ name }).where('id', '=', schoolId).executeTakeFirst()
  if (result.numUpdatedRows === 0n) throw new NotFoundError()
}

/**
 * Disabling a school signs out everyone in it at once; login and session checks refuse a
 * disabled school, so nobody of it gets back in until it is enabled again.
 */
export async function setSchoolDisabled(trx: Transaction<DB>, schoolId: number, disabled: boolean): Promise<void> {
  const result = await trx
    .updateTable('schools')
    .set({ disabled_at: disabled ? new Date() : null })
    .where('id', '=', schoolId)
    .executeTakeFirst()
  if (result.numUpdatedRows === 0n) throw new NotFoundError()
  if (disabled) await invalidateSchoolSessions(trx, schoolId)
}

/** Head counts for a school admin's overview page. */
export async function schoolCounts(db: Kysely<DB>, schoolId: number): Promise<{ teachers: number; students: number; classes: number }> {
  const row = await db
    .selectFrom('schools')
    .select((eb) => [
      eb.selectFrom('users').select(eb.fn.countAll<string>().as('n')).where('school_id', '=', schoolId).where('role', '=', 'teacher').as('teachers'),
      eb.selectFrom('users').select(eb.fn.countAll<string>().as('n')).where('school_id', '=', schoolId).where('role', '=', 'student').as('students'),
      eb.selectFrom('classes').select(eb.fn.countAll<string>().as('n')).where('school_id', '=', schoolId).as('classes'),
    ])
    .where('id', '=', schoolId)
    .executeTakeFirstOrThrow()
  return { teachers: Number(row.teachers), students: Number(row.students), classes: Number(row.classes) }
}
