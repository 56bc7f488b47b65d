import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { FormError } from '../errors.ts'

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
  if (!name) fields.name = 'schools.errors.nameRequired'
  else if (name.length > 200) fields.name = 'schools.errors.nameTooLong'
  if (!/^\d{1,9}$/.test(codeText) || Number(codeText) < 1) fields.code = 'schools.errors.codeInvalid'
  if (Object.keys(fields).length) throw new FormError(fields)
  const code = Number(codeText)
  const taken = await db.selectFrom('schools').select('id').where('code', '=', code).executeTakeFirst()
  if (taken) throw new FormError({ code: 'schools.errors.codeTaken' })
  return db.insertInto('schools').values({ name, code }).returning(['id', 'code', 'name']).executeTakeFirstOrThrow()
}

export async function findSchoolByCode(db: Kysely<DB>, code: number) {
  return db.selectFrom('schools').selectAll().where('code', '=', code).executeTakeFirst()
}
