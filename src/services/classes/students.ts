import type { Kysely, Transaction } from 'kysely'
import type { DB } from '../../db/schema.ts'
import type { SessionUser } from '../auth/sessions.ts'
import { generatePin, hashPassword } from '../auth/passwords.ts'
import { invalidateUserSessions } from '../auth/sessions.ts'
import { isUniqueViolation, validateNewUser } from '../accounts/users.ts'
import { FormError, NotFoundError } from '../errors.ts'
import { findClassForViewer, type ClassDetails } from './classes.ts'
import { allocateUsernames } from './usernames.ts'

export const MAX_NAMES_PER_PASTE = 100
export const MAX_STUDENT_NAME = 100

/** A PIN just set, kept only in memory and in the sealed show-once cookie. */
export interface NewPin {
  userId: number
  pin: string
}

/**
 * One name per line, as pasted from a spreadsheet or typed: blank lines are skipped, spaces
 * and tabs collapse, invisible formatting characters go. Any bad line rejects the whole paste,
 * so a teacher never ends up with half a class.
 */
export function parseStudentNames(text: string): string[] {
  const names: string[] = []
  const tooLong: number[] = []
  const invalid: number[] = []
  text.split(/\r\n|\r|\n/).forEach((line, index) => {
    const name = line.replace(/\p{Cf}/gu, '').replace(/\s+/g, ' ').trim()
    if (!name) return
    if ([...name].length > MAX_STUDENT_NAME) tooLong.push(index + 1)
    else if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) invalid.push(index + 1)
    names.push(name)
  })
  if (!names.length) throw new FormError({ names: 'teacher.errors.namesRequired' })
  if (names.length > MAX_NAMES_PER_PASTE) {
    throw new FormError({ names: 'teacher.errors.tooManyNames' }, { max: MAX_NAMES_PER_PASTE, count: names.length })
  }
  if (tooLong.length) throw new FormError({ names: 'teacher.errors.nameTooLong' }, { max: MAX_STUDENT_NAME, lines: tooLong.join(', ') })
  if (invalid.length) throw new FormError({ names: 'teacher.errors.nameInvalid' }, { lines: invalid.join(', ') })
  return names
}

/**
 * argon2id takes ~20 ms a PIN; two at a time keeps a class of 40 near a second without filling
 * libuv's thread pool, which logins need too.
 */
async function hashPins(pins: string[]): Promise<string[]> {
  const hashes = new Array<string>(pins.length)
  let next = 0
  const worker = async () => {
    while (next < pins.length) {
      const i = next++
      hashes[i] = await hashPassword(pins[i])
    }
  }
  await Promise.all([worker(), worker()])
  return hashes
}

/** Creates student accounts for pasted names: all of them in one transaction, or none. */
export async function addStudents(db: Kysely<DB>, klass: ClassDetails, namesText: string): Promise<NewPin[]> {
  const names = parseStudentNames(namesText)
  const pins = names.map(() => generatePin())
  // Slow hashing first, so the transaction (and the username lock) stays short.
  const hashes = await hashPins(pins)
  // Staff accounts are created outside the username lock; if one takes a name meanwhile, pick again.
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction().execute((trx) => insertStudents(trx, klass, names, pins, hashes))
    } catch (err) {
      if (attempt < 3 && isUniqueViolation(err)) continue
      throw err
    }
  }
}

async function insertStudents(trx: Transaction<DB>, klass: ClassDetails, names: string[], pins: string[], hashes: string[]): Promise<NewPin[]> {
  const usernames = await allocateUsernames(trx, klass.schoolId, names)
  const values = names.map((name, i) => {
    validateNewUser({ role: 'student', schoolId: klass.schoolId, username: usernames[i], password: pins[i], grade: klass.grade, displayName: name })
    return {
      role: 'student' as const,
      school_id: klass.schoolId,
      username: usernames[i],
      display_name: name,
      password_hash: hashes[i],
      grade: klass.grade,
      class_id: klass.id,
    }
  })
  const rows = await trx.insertInto('users').values(values).returning(['id', 'username']).execute()
  const idByUsername = new Map(rows.map((r) => [r.username, r.id]))
  return usernames.map((username, i) => ({ userId: idByUsername.get(username)!, pin: pins[i] }))
}

/** Sets new PINs and ends the students' sessions, so an old PIN or a forgotten login stops working. */
async function setPins(db: Kysely<DB>, classId: number, studentIds: number[]): Promise<NewPin[]> {
  const pins = studentIds.map(() => generatePin())
  const hashes = await hashPins(pins)
  return db.transaction().execute(async (trx) => {
    const done: NewPin[] = []
    for (let i = 0; i < studentIds.length; i++) {
      const result = await trx
        .updateTable('users')
        .set({ password_hash: hashes[i] })
        .where('id', '=', studentIds[i])
        .where('class_id', '=', classId)
        .where('role', '=', 'student')
        .executeTakeFirst()
      if (Number(result.numUpdatedRows) === 0) continue // moved to another class meanwhile
      await invalidateUserSessions(trx, studentIds[i])
      done.push({ userId: studentIds[i], pin: pins[i] })
    }
    return done
  })
}

/** New PINs for every active student of the class (the way back when the cards were lost). */
export async function resetClassPins(db: Kysely<DB>, klass: ClassDetails): Promise<NewPin[]> {
  const rows = await db
    .selectFrom('users')
    .select('id')
    .where('class_id', '=', klass.id)
    .where('role', '=', 'student')
    .where('disabled_at', 'is', null)
    .orderBy('display_name')
    .orderBy('id')
    .execute()
  return setPins(db, klass.id, rows.map((r) => r.id))
}

/** A new PIN for one student, if the viewer may manage the student's class. */
export async function resetStudentPin(db: Kysely<DB>, viewer: SessionUser, studentId: number): Promise<{ klass: ClassDetails; pins: NewPin[] }> {
  const student = await db
    .selectFrom('users')
    .select(['id', 'class_id'])
    .where('id', '=', studentId)
    .where('role', '=', 'student')
    .executeTakeFirst()
  if (!student || student.class_id === null) throw new NotFoundError()
  const klass = await findClassForViewer(db, viewer, student.class_id)
  return { klass, pins: await setPins(db, klass.id, [student.id]) }
}
