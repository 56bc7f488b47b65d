import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { openOnce, sealOnce } from '../web/once.ts'
import type { ClassDetails } from './classes.ts'
import type { NewPin } from './students.ts'

export const CARDS_PER_SHEET = 10

/**
 * What travels in the sealed cookie. Entries are [userId, pin] pairs rather than objects: a
 * class of 100 must stay well under the browser's 4 KB cookie limit.
 */
interface PinsPayload {
  kind: 'pins'
  classId: number
  entries: [number, string][]
}

export interface LoginCard {
  userId: number
  displayName: string
  username: string
  pin: string
}

export function sealPins(reply: FastifyReply, secret: string, secure: boolean, classId: number, pins: NewPin[]): void {
  const payload: PinsPayload = { kind: 'pins', classId, entries: pins.map((p) => [p.userId, p.pin]) }
  sealOnce(reply, secret, payload, secure)
}

/** The PINs sealed for this class in this session, or null; either way they are gone afterwards. */
export function openPins(request: FastifyRequest, reply: FastifyReply, secret: string, classId: number): NewPin[] | null {
  const payload = openOnce<PinsPayload>(request, reply, secret)
  if (!payload || payload.kind !== 'pins' || payload.classId !== classId || !Array.isArray(payload.entries)) return null
  return payload.entries.map(([userId, pin]) => ({ userId, pin }))
}

/** Cards for the students the PINs belong to, in the order they were created; still in this class. */
export async function loginCards(db: Kysely<DB>, klass: ClassDetails, pins: NewPin[]): Promise<LoginCard[]> {
  const ids = pins.map((p) => p.userId).filter((id) => Number.isInteger(id))
  if (!ids.length) return []
  const rows = await db
    .selectFrom('users')
    .select(['id', 'username', 'display_name'])
    .where('id', 'in', ids)
    .where('class_id', '=', klass.id)
    .where('role', '=', 'student')
    .execute()
  const byId = new Map(rows.map((r) => [r.id, r]))
  return pins.flatMap((p) => {
    const row = byId.get(p.userId)
    return row ? [{ userId: row.id, displayName: row.display_name, username: row.username, pin: p.pin }] : []
  })
}

/** Ten cards to an A4 sheet (2 × 5): each sheet is printed on its own page. */
export function sheetsOf<T>(cards: T[]): T[][] {
  const sheets: T[][] = []
  for (let i = 0; i < cards.length; i += CARDS_PER_SHEET) sheets.push(cards.slice(i, i + CARDS_PER_SHEET))
  return sheets
}
