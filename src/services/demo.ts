import type { Kysely } from 'kysely'
import type { DB, Role } from '../db/schema.ts'
import { generatePassword, generatePin } from './auth/passwords.ts'
import { createSchool } from './accounts/schools.ts'
import { createUser } from './accounts/users.ts'

export const DEMO_SCHOOL_CODE = 1001

export interface DemoAccounts {
  accounts: { role: Role; school: number | null; username: string; password: string }[]
}

/**
 * A newcomer's first start: one school with an admin, a teacher, a class and a student, so every
 * page can be tried at once. Only on an empty database; the passwords are random and printed once.
 */
export async function seedDemoIfEmpty(db: Kysely<DB>): Promise<DemoAccounts | null> {
  const any = await db.selectFrom('users').select('id').limit(1).executeTakeFirst()
  if (any) return null
  const accounts: DemoAccounts['accounts'] = []
  const school = await createSchool(db, { name: 'Демо сургууль', code: DEMO_SCHOOL_CODE })
  const add = async (role: Role, username: string, displayName: string, password: string, extra: { grade?: number; classId?: number } = {}) => {
    const user = await createUser(db, { role, schoolId: role === 'platform_admin' ? null : school.id, username, displayName, password, ...extra })
    accounts.push({ role, school: role === 'platform_admin' ? null : school.code, username, password })
    return user
  }
  await add('platform_admin', 'admin', 'Системийн админ', generatePassword())
  await add('school_admin', 'zahiral', 'Захирал Дорж', generatePassword())
  const teacher = await add('teacher', 'bagsh', 'Багш Сарантуяа', generatePassword())
  const klass = await db
    .insertInto('classes')
    .values({ school_id: school.id, teacher_id: teacher.id, name: '7А', grade: 7 })
    .returning('id')
    .executeTakeFirstOrThrow()
  await add('student', 'bat', 'Бат Болд', generatePin(), { grade: 7, classId: klass.id })
  return { accounts }
}
