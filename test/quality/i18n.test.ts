import { test } from 'node:test'
import assert from 'node:assert/strict'
import { globSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * mn.json and en.json carry the same keys, none empty, with the same {{placeholders}}; and every
 * key the code names literally exists in both. Keys are found as quoted strings shaped like
 * `ns.key` whose first segment is a top-level namespace of mn.json — no list to keep by hand,
 * except the few keys built at run time (DYNAMIC below).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
type Tree = { [key: string]: string | Tree }
const mn = JSON.parse(readFileSync(ROOT + 'locales/mn.json', 'utf8')) as Tree
const en = JSON.parse(readFileSync(ROOT + 'locales/en.json', 'utf8')) as Tree

/** Flattens to 'a.b.c' → value; objects included as their own entries to tell namespaces apart. */
function flatten(tree: Tree, prefix = '', out = new Map<string, string | Tree>()): Map<string, string | Tree> {
  for (const [key, value] of Object.entries(tree)) {
    const path = prefix ? `${prefix}.${key}` : key
    out.set(path, value)
    if (typeof value === 'object' && value !== null) flatten(value, path, out)
  }
  return out
}
const flatMn = flatten(mn)
const flatEn = flatten(en)
const leaves = (flat: Map<string, string | Tree>) => [...flat].filter(([, v]) => typeof v !== 'object').map(([k]) => k)

/** Keys built at run time from a template literal: the literal as written → the keys it can produce. */
const ERROR_STATUSES = ['400', '403', '404', '413', '422', '429', '500', '503']
const DYNAMIC: Record<string, string[]> = {
  'errors.${shown}.title': ERROR_STATUSES.map((s) => `errors.${s}.title`),
  'errors.${shown}.message': ERROR_STATUSES.map((s) => `errors.${s}.message`),
}

test('mn.json and en.json have exactly the same keys', () => {
  const kinds = (flat: Map<string, string | Tree>) => new Map([...flat].map(([k, v]) => [k, typeof v === 'object' ? 'namespace' : 'string']))
  const a = kinds(flatMn)
  const b = kinds(flatEn)
  const onlyMn = [...a.keys()].filter((k) => !b.has(k))
  const onlyEn = [...b.keys()].filter((k) => !a.has(k))
  const shape = [...a].filter(([k, kind]) => b.has(k) && b.get(k) !== kind).map(([k]) => k)
  assert.deepEqual({ onlyMn, onlyEn, stringInOneNamespaceInOther: shape }, { onlyMn: [], onlyEn: [], stringInOneNamespaceInOther: [] })
})

test('no value is empty or anything but a string', () => {
  const bad: string[] = []
  for (const [lang, flat] of [['mn', flatMn], ['en', flatEn]] as const) {
    for (const [key, value] of flat) {
      if (typeof value === 'object' && value !== null) continue
      if (typeof value !== 'string' || value.trim() === '') bad.push(`${lang}: ${key} = ${JSON.stringify(value)}`)
    }
  }
  assert.deepEqual(bad, [])
})

test('both languages use the same {{placeholders}} in each string', () => {
  const vars = (s: string) => [...s.matchAll(/\{\{\s*([\w.]+)[^}]*\}\}/g)].map((m) => m[1]).sort().join(',')
  const bad = leaves(flatMn)
    .filter((k) => typeof flatEn.get(k) === 'string' && vars(flatMn.get(k) as string) !== vars(flatEn.get(k) as string))
    .map((k) => `${k}: mn {{${vars(flatMn.get(k) as string)}}} vs en {{${vars(flatEn.get(k) as string)}}}`)
  assert.deepEqual(bad, [])
})

/** Table → columns, from src/db/schema.ts: `users.id`-style column references look like keys; they are not. */
function schemaTables(): Map<string, string[]> {
  const schema = readFileSync(ROOT + 'src/db/schema.ts', 'utf8')
  const interfaces = new Map<string, string[]>()
  for (const m of schema.matchAll(/export interface (\w+)\s*\{([\s\S]*?)\n\}/g)) {
    interfaces.set(m[1], [...m[2].matchAll(/^\s*(\w+)\??\s*:/gm)].map((f) => f[1]))
  }
  const tables = new Map<string, string[]>()
  const db = /export interface DB\s*\{([\s\S]*?)\n\}/.exec(schema)?.[1] ?? ''
  for (const [, table, type] of db.matchAll(/^\s*(\w+)\??\s*:\s*(\w+)/gm)) tables.set(table, interfaces.get(type) ?? [])
  return tables
}

/** `table.column` and, for aliases the file declares (`'users as student'`), `alias.column`. */
function columnsIn(source: string, tables: Map<string, string[]>): Set<string> {
  const columns = new Set<string>()
  const add = (name: string, table: string) => {
    for (const column of tables.get(table) ?? []) columns.add(`${name}.${column}`)
  }
  for (const table of tables.keys()) add(table, table)
  for (const m of source.matchAll(/['"`](\w+) as (\w+)['"`]/g)) if (tables.has(m[1])) add(m[2], m[1])
  return columns
}

function stripComments(source: string): string {
  return source
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/(^|[\s;{}(),])\/\/.*$/gm, '$1')
}

interface Use {
  key: string
  where: string
}

/** Quoted strings shaped like a key under a known namespace, and template literals that build one. */
function keysUsed(): { literal: Use[]; dynamic: Use[] } {
  const namespaces = new Set(Object.keys(mn))
  const tables = schemaTables()
  const files = [...globSync('src/**/*.ts', { cwd: ROOT }), ...globSync('src/views/**/*.eta', { cwd: ROOT })].sort()
  const literal: Use[] = []
  const dynamic: Use[] = []
  for (const file of files) {
    const source = stripComments(readFileSync(ROOT + file, 'utf8'))
    const columns = columnsIn(source, tables)
    const lines = source.split('\n')
    lines.forEach((line, i) => {
      const where = `${file}:${i + 1}`
      for (const m of line.matchAll(/(['"`])([a-z][A-Za-z0-9_]*(?:\.(?:[A-Za-z0-9_]+|\$\{[^}`]+\}))+)\1/g)) {
        const key = m[2]
        if (!namespaces.has(key.split('.')[0]) || columns.has(key)) continue
        if (key.includes('${')) {
          if (m[1] === '`') dynamic.push({ key, where })
        } else {
          literal.push({ key, where })
        }
      }
    })
  }
  return { literal, dynamic }
}

/** A key is there when it is a string, or has the plural forms i18next looks up for `count`. */
function missingIn(flat: Map<string, string | Tree>, key: string): string | null {
  const value = flat.get(key)
  if (typeof value === 'string') return null
  if (typeof value === 'object') return 'is a namespace, not a string'
  if (typeof flat.get(`${key}_one`) === 'string' && typeof flat.get(`${key}_other`) === 'string') return null
  return 'is missing'
}

test('the extractor finds keys the way the app writes them', () => {
  const { literal, dynamic } = keysUsed()
  const keys = new Set(literal.map((u) => u.key))
  for (const known of ['auth.title', 'auth.invalid', 'nav.logout', 'errors.csrf']) assert.ok(keys.has(known), `extractor missed ${known}`)
  assert.ok(![...keys].some((k) => k === 'users.id' || k === 'schools.code'), 'database columns are not keys')
  assert.ok(dynamic.some((u) => u.key === 'errors.${shown}.title'))
})

test('every key used in src exists in mn.json and en.json', () => {
  const { literal, dynamic } = keysUsed()
  const problems: string[] = []
  for (const use of literal) {
    for (const [lang, flat] of [['mn', flatMn], ['en', flatEn]] as const) {
      const why = missingIn(flat, use.key)
      if (why) problems.push(`${use.where}: '${use.key}' ${why} in ${lang}.json`)
    }
  }
  for (const use of dynamic) {
    const expansions = DYNAMIC[use.key]
    if (!expansions) {
      problems.push(`${use.where}: key built at run time \`${use.key}\`: list the keys it can produce in DYNAMIC in test/quality/i18n.test.ts`)
      continue
    }
    for (const key of expansions) {
      for (const [lang, flat] of [['mn', flatMn], ['en', flatEn]] as const) {
        const why = missingIn(flat, key)
        if (why) problems.push(`${use.where}: '${key}' (from \`${use.key}\`) ${why} in ${lang}.json`)
      }
    }
  }
  assert.deepEqual([...new Set(problems)], [])
})
