import type { Kysely } from 'kysely'
import type { DB, Role } from '../../src/db/schema.ts'
import { createSchool } from '../../src/services/accounts/schools.ts'
import { createUser } from '../../src/services/accounts/users.ts'

let seq = 0
const next = () => `${process.pid % 10000}${++seq}`

/** Small factories: each test makes the rows it needs, with unique names. */
export async function makeSchool(db: Kysely<DB>, name = 'Сургууль') {
  return createSchool(db, { name: `${name} ${next()}`, code: Number(next()) })
}

export async function makeUser(
  db: Kysely<DB>,
  role: Role,
  schoolId: number | null,
  extra: { password?: string; grade?: number; classId?: number; displayName?: string } = {},
) {
  const password = extra.password ?? (role === 'student' ? '123456' : 'password-123')
  const user = await createUser(db, {
    role,
    schoolId: role === 'platform_admin' ? null : schoolId,
    username: `${role.replace('_', '')}${next()}`,
    displayName: extra.displayName,
    password,
    grade: extra.grade,
    classId: extra.classId,
  })
  return { ...user, password }
}

export async function makeClass(db: Kysely<DB>, schoolId: number, teacherId: number | null, grade = 7) {
  return db
    .insertInto('classes')
    .values({ school_id: schoolId, teacher_id: teacherId, name: `${grade}${next()}`, grade })
    .returning(['id', 'name', 'grade'])
    .executeTakeFirstOrThrow()
}
