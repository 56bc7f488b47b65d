import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import type { SessionUser } from '../auth/sessions.ts'
import { FormError, NotFoundError } from '../errors.ts'

export const MAX_CLASS_NAME = 100

export interface ClassForm {
  name: string
  grade: string
}

/** A class as its page needs it, with the school printed on login cards. */
export interface ClassDetails {
  id: number
  schoolId: number
  teacherId: number | null
  name: string
  grade: number
  schoolName: string
  schoolCode: number
}

export interface StudentRow {
  id: number
  username: string
  displayName: string
  grade: number | null
}

/** Route ids arrive as text: anything but a plain positive integer names nothing. */
export function parseId(value: string | undefined): number {
  if (!value || !/^[1-9][0-9]{0,8}$/.test(value)) throw new NotFoundError()
  return Number(value)
}

/** Checks the "create a class" form; field errors are i18n keys under `teacher.errors`. */
export function validateClassForm(form: ClassForm): { name: string; grade: number } {
  const name = form.name.trim().replace(/\s+/g, ' ')
  const gradeText = form.grade.trim()
  const fields: Record<string, string> = {}
  if (!name) fields.name = 'teacher.errors.classNameRequired'
  else if ([...name].length > MAX_CLASS_NAME || /[\u0000-\u001f\u007f]/.test(name)) fields.name = 'teacher.errors.classNameInvalid'
  const grade = /^[0-9]{1,2}$/.test(gradeText) ? Number(gradeText) : NaN
  if (!(grade >= 1 && grade <= 12)) fields.grade = 'teacher.errors.gradeInvalid'
  if (Object.keys(fields).length) throw new FormError(fields, { max: MAX_CLASS_NAME })
  return { name, grade }
}

export async function createClass(db: Kysely<DB>, teacher: SessionUser, form: ClassForm): Promise<{ id: number }> {
  const { name, grade } = validateClassForm(form)
  if (teacher.role !== 'teacher' || teacher.schoolId === null) throw new NotFoundError()
  return db
    .insertInto('classes')
    .values({ school_id: teacher.schoolId, teacher_id: teacher.id, name, grade })
    .returning('id')
    .executeTakeFirstOrThrow()
}

/**
 * The class if the viewer may manage it: its own teacher, or a school admin of its school.
 * Everyone else gets NotFoundError, the same as for a class that does not exist.
 */
export async function findClassForViewer(db: Kysely<DB>, viewer: SessionUser, classId: number): Promise<ClassDetails> {
  if (viewer.schoolId === null || (viewer.role !== 'teacher' && viewer.role !== 'school_admin')) throw new NotFoundError()
  let query = db
    .selectFrom('classes')
    .innerJoin('schools', 'schools.id', 'classes.school_id')
    .select([
      'classes.id',
      'classes.school_id',
      'classes.teacher_id',
      'classes.name',
      'classes.grade',
      'schools.name as school_name',
      'schools.code as school_code',
    ])
    .where('classes.id', '=', classId)
    .where('classes.school_id', '=', viewer.schoolId)
  if (viewer.role === 'teacher') query = query.where('classes.teacher_id', '=', viewer.id)
  const row = await query.executeTakeFirst()
  if (!row) throw new NotFoundError()
  return {
    id: row.id,
    schoolId: row.school_id,
    teacherId: row.teacher_id,
    name: row.name,
    grade: row.grade,
    schoolName: row.school_name,
    schoolCode: row.school_code,
  }
}

/** The roster. This is the only place students of a class are listed. */
export async function listStudentsOfClass(db: Kysely<DB>, classId: number): Promise<StudentRow[]> {
  const rows = await db
    .selectFrom('users')
    .select(['id', 'username', 'display_name', 'grade'])
    .where('class_id', '=', classId)
    .where('role', '=', 'student')
    .orderBy('display_name')
    .orderBy('id')
    .execute()
  return rows.map((r) => ({ id: r.id, username: r.username, displayName: r.display_name, grade: r.grade }))
}
