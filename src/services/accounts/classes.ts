import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { FormError } from '../errors.ts'
import { MAX_CLASS_NAME, validateClassForm } from '../classes/classes.ts'

export interface SchoolClass {
  id: number
  name: string
  grade: number
  teacherId: number | null
  teacherName: string | null
  studentCount: number
}

/** A school's classes with their teacher and head count; optionally only one teacher's. */
export async function listSchoolClasses(db: Kysely<DB>, schoolId: number, filter: { teacherId?: number } = {}): Promise<SchoolClass[]> {
  let query = db
    .selectFrom('classes')
    .leftJoin('users as teacher', (join) => join.onRef('teacher.id', '=', 'classes.teacher_id').on('teacher.school_id', '=', schoolId))
    .select((eb) => [
      'classes.id',
      'classes.name',
      'classes.grade',
      'classes.teacher_id',
      'teacher.display_name as teacher_name',
      eb
        .selectFrom('users as student')
        .select(eb.fn.countAll<string>().as('n'))
        .whereRef('student.class_id', '=', 'classes.id')
        .where('student.role', '=', 'student')
        .as('student_count'),
    ])
    .where('classes.school_id', '=', schoolId)
  if (filter.teacherId !== undefined) query = query.where('classes.teacher_id', '=', filter.teacherId)
  const rows = await query.orderBy('classes.grade').orderBy('classes.name').orderBy('classes.id').execute()
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    grade: r.grade,
    teacherId: r.teacher_id,
    teacherName: r.teacher_name,
    studentCount: Number(r.student_count ?? 0),
  }))
}

export interface NewSchoolClass {
  name: string
  grade: string
  /** As chosen in the form's <select>: checked against the school here. */
  teacherId: string
}

/**
 * A school admin creates a class for one of the school's active teachers. Name and grade follow
 * the same rules as a teacher's own "create a class" form.
 */
export async function createSchoolClass(db: Kysely<DB>, schoolId: number, input: NewSchoolClass): Promise<{ id: number }> {
  const fields: Record<string, string> = {}
  let valid: { name: string; grade: number } | null = null
  try {
    valid = validateClassForm(input)
  } catch (err) {
    if (!(err instanceof FormError)) throw err
    Object.assign(fields, err.fields)
  }
  const teacherId = input.teacherId.trim()
  const teacher = /^\d{1,9}$/.test(teacherId)
    ? await db
        .selectFrom('users')
        .select('id')
        .where('id', '=', Number(teacherId))
        .where('school_id', '=', schoolId)
        .where('role', '=', 'teacher')
        .where('disabled_at', 'is', null)
        .executeTakeFirst()
    : undefined
  if (!teacher) fields.teacherId = 'school.classes.errors.teacherInvalid'
  if (!valid || !teacher) throw new FormError(fields, { max: MAX_CLASS_NAME })
  return db
    .insertInto('classes')
    .values({ school_id: schoolId, teacher_id: teacher.id, name: valid.name, grade: valid.grade })
    .returning('id')
    .executeTakeFirstOrThrow()
}
