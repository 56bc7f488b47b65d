import { sql, type Transaction } from 'kysely'
import type { DB } from '../../db/schema.ts'

/**
 * Students type their username on a lab PC, often with an English keyboard layout: usernames
 * are plain a–z (plus a number when needed), short, and read off the Mongolian name.
 */
export const USERNAME_BASE_MAX = 12
export const FALLBACK_USERNAME = 'student'

// Mongolian Cyrillic (and the Kazakh letters used in Bayan-Ölgii) to the everyday Latin
// spelling people type in chat: х → h, ө → o, ү → u, ж → j.
const LATIN: Record<string, string> = {
  а: 'a', б: 'b', в: 'v', г: 'g', д: 'd', е: 'e', ё: 'yo', ж: 'j', з: 'z', и: 'i', й: 'i',
  к: 'k', л: 'l', м: 'm', н: 'n', о: 'o', ө: 'o', п: 'p', р: 'r', с: 's', т: 't', у: 'u',
  ү: 'u', ф: 'f', х: 'h', ц: 'ts', ч: 'ch', ш: 'sh', щ: 'sh', ъ: '', ы: 'y', ь: 'i', э: 'e',
  ю: 'yu', я: 'ya', ә: 'a', ғ: 'g', қ: 'k', ң: 'n', ұ: 'u', і: 'i', һ: 'h',
}

/** Lowercase a–z only: Cyrillic transliterated, Latin accents dropped, everything else removed. */
export function transliterate(text: string): string {
  let out = ''
  for (const ch of text.toLowerCase().normalize('NFC')) {
    const latin = LATIN[ch]
    if (latin !== undefined) out += latin
    else out += ch.normalize('NFD').replace(/[^a-z]/g, '')
  }
  return out
}

// Patronymics are written in the genitive ("Болдын", "Батийн", "Гантулгын", "Доржийн").
const PATRONYMIC = /(ын|ийн|ны|ний|гийн|ы|ий)$/

/**
 * The given name out of a full name as teachers write it: initials ("Б." in "Б.Бат") and
 * genitive patronymics are dropped; of what is left the last word is taken, because Mongolian
 * lists put the family name first ("Болд Бат").
 */
export function givenName(fullName: string): string {
  const words = fullName
    .split(/[\s.,]+/)
    .map((w) => w.trim())
    .filter((w) => transliterate(w).length > 0)
  const named = words.filter((w) => [...w].length > 1)
  const pool = named.length ? named : words
  const given = pool.filter((w) => !PATRONYMIC.test(w.toLowerCase()))
  const candidates = given.length ? given : pool
  return candidates[candidates.length - 1] ?? ''
}

export function usernameBase(fullName: string): string {
  return transliterate(givenName(fullName)).slice(0, USERNAME_BASE_MAX) || FALLBACK_USERNAME
}

/** Key of the advisory lock that serializes username allocation per school. */
const USERNAME_LOCK = 8_221_001

/**
 * Unique usernames in the school for a batch of names: the base, else the base with the
 * smallest free number from 2 ("bat", "bat2", "bat3"). Runs inside the caller's transaction and
 * holds a per-school lock, so two teachers adding students at once cannot pick the same name.
 */
export async function allocateUsernames(trx: Transaction<DB>, schoolId: number, fullNames: string[]): Promise<string[]> {
  const bases = fullNames.map(usernameBase)
  await sql`select pg_advisory_xact_lock(${USERNAME_LOCK}, ${schoolId})`.execute(trx)
  const distinct = [...new Set(bases)]
  const taken = new Set<string>()
  if (distinct.length) {
    // Bases are [a-z]+, so they are safe inside the pattern.
    const pattern = `^(${distinct.join('|')})[0-9]*$`
    const rows = await trx
      .selectFrom('users')
      .select(sql<string>`lower(username)`.as('name'))
      .where('school_id', '=', schoolId)
      .where(sql<boolean>`lower(username) ~ ${pattern}`)
      .execute()
    for (const row of rows) taken.add(row.name)
  }
  return bases.map((base) => {
    let name = base
    for (let n = 2; taken.has(name); n++) name = `${base}${n}`
    taken.add(name)
    return name
  })
}
