import type { Kysely } from 'kysely'
import type { DB, Role } from '../../src/db/schema.ts'
import { TestClient } from './client.ts'
import { makeClass, makeSchool, makeUser } from './factories.ts'
import { createLocalEmbedder } from '../../src/services/embeddings/local.ts'
import { importSampleBook, loadSampleBooks } from '../../src/services/textbooks/samples.ts'

/** How one person logs in: school code (null for platform admins), username, password. */
export interface Login {
  school: number | null
  username: string
  password: string
}

export interface World {
  school: { id: number; code: number; name: string }
  classId: number
  teacherId: number
  logins: Record<Role, Login>
}

const STUDENT_NAMES = ['Бат-Эрдэнэ Болд', 'Сарнай Ганбаатар', 'Тэмүүлэн Дорж', 'Анужин Мөнх-Очир', 'Хонгорзул Энхбаяр']

/**
 * A school with one of each role and a realistic class (students with Mongolian names), a
 * second school, and a sample textbook, so every list page has rows and the crawl reaches detail pages.
 */
export async function seedWorld(db: Kysely<DB>, classSize = 30): Promise<World> {
  const school = await makeSchool(db, 'Улаанбаатарын 1-р сургууль')
  const other = await makeSchool(db, 'Дархан 5-р сургууль')
  const schoolAdmin = await makeUser(db, 'school_admin', school.id, { displayName: 'Оюунчимэг Захирал' })
  const teacher = await makeUser(db, 'teacher', school.id, { displayName: 'Нарантуяа Багш' })
  await makeUser(db, 'teacher', other.id, { displayName: 'Өөр сургуулийн багш' })
  await makeUser(db, 'school_admin', other.id)
  const klass = await makeClass(db, school.id, teacher.id, 7)
  await makeClass(db, school.id, null, 8)
  let student: Awaited<ReturnType<typeof makeUser>> | null = null
  for (let i = 0; i < classSize; i++) {
    const s = await makeUser(db, 'student', school.id, {
      grade: 7,
      classId: klass.id,
      displayName: `${STUDENT_NAMES[i % STUDENT_NAMES.length]} ${i + 1}`,
    })
    student ??= s
  }
  if (!student) throw new Error('seedWorld needs at least one student')
  const admin = await makeUser(db, 'platform_admin', null, { displayName: 'Платформын админ' })
  // One ready sample textbook, so the library's book pages and the admin's textbook list have rows.
  const biology = loadSampleBooks().find((book) => book.meta.subject === 'biology')
  if (biology) await importSampleBook(db, createLocalEmbedder(), biology)
  const login = (u: { username: string; password: string }, code: number | null): Login => ({ school: code, username: u.username, password: u.password })
  return {
    school,
    classId: klass.id,
    teacherId: teacher.id,
    logins: {
      platform_admin: login(admin, null),
      school_admin: login(schoolAdmin, school.code),
      teacher: login(teacher, school.code),
      student: login(student, school.code),
    },
  }
}

export interface CrawledResponse {
  /** Who looked: a role, or 'anonymous', or a label for a hand-made request. */
  who: string
  url: string
  status: number
  headers: Record<string, string | string[] | number | undefined>
  body: string
  /** The page that linked here ('' for start pages). */
  from: string
}

export const isHtml = (r: CrawledResponse) => /^text\/html/.test(String(r.headers['content-type'] ?? ''))

const SKIP = [/^\/logout(\/|\?|$)/, /^\/lang\//, /^\/static\//, /^\/health(\/|\?|$)/, /^\/metrics(\/|\?|$)/]

/** Same-origin paths of the `<a href>`s of a page, without fragments, minus the ones not to follow. */
export function linksOf(html: string): string[] {
  const out = new Set<string>()
  for (const m of html.matchAll(/<a\b[^>]*?\bhref\s*=\s*("([^"]*)"|'([^']*)')/gi)) {
    let href = (m[2] ?? m[3] ?? '').replace(/&amp;/g, '&').replace(/&#x2F;/gi, '/').trim()
    href = href.replace(/^https?:\/\/(localhost|127\.0\.0\.1)(:\d+)?/, '')
    if (!href.startsWith('/') || href.startsWith('//')) continue // other origins, mailto:, #fragments
    href = href.split('#')[0]
    if (!href || SKIP.some((re) => re.test(href))) continue
    out.add(href)
  }
  return [...out]
}

/**
 * Follows same-origin GET links breadth-first from `start` (redirects included) and returns every
 * response seen. Only GETs, so crawling changes nothing. Capped so a paginated list cannot run away.
 */
export async function crawl(client: TestClient, who: string, start: string[] = ['/'], cap = 150): Promise<CrawledResponse[]> {
  const seen = new Set<string>()
  const queue: { url: string; from: string }[] = start.map((url) => ({ url, from: '' }))
  const out: CrawledResponse[] = []
  while (queue.length && out.length < cap) {
    const { url, from } = queue.shift()!
    if (seen.has(url)) continue
    seen.add(url)
    const res = await client.get(url)
    const r: CrawledResponse = { who, url, status: res.statusCode, headers: res.headers, body: res.body, from }
    out.push(r)
    const location = res.headers.location
    if (res.statusCode >= 300 && res.statusCode < 400 && typeof location === 'string') {
      for (const next of linksOf(`<a href="${location.replace(/"/g, '&quot;')}">`)) queue.push({ url: next, from: url })
    } else if (isHtml(r)) {
      for (const next of linksOf(res.body)) queue.push({ url: next, from: url })
    }
  }
  return out
}

/** Logs in through the form (as a browser without JS would) and crawls from the home page. */
export async function crawlAs(client: TestClient, role: Role, login: Login, cap = 150): Promise<CrawledResponse[]> {
  await client.login(login.school, login.username, login.password)
  return crawl(client, role, ['/'], cap)
}

export interface PostForm {
  action: string
  /** What a browser sends when the form is submitted untouched: hidden fields, selected options, the button. */
  fields: [string, string][]
}

function attributes(tag: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of tag.matchAll(/\s([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g)) {
    out[m[1].toLowerCase()] = (m[2] ?? m[3] ?? m[4] ?? '').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&')
  }
  return out
}

/** The POST forms of a page (same-origin actions only). */
export function postFormsOf(html: string): PostForm[] {
  const forms: PostForm[] = []
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1])
    if ((attrs.method ?? 'get').toLowerCase() !== 'post') continue
    const action = attrs.action ?? ''
    if (!action.startsWith('/') || action.startsWith('//')) continue
    const fields: [string, string][] = []
    for (const input of m[2].matchAll(/<input\b[^>]*>/gi)) {
      const a = attributes(input[0])
      if (a.name && (a.type ?? '').toLowerCase() === 'hidden') fields.push([a.name, a.value ?? ''])
    }
    for (const select of m[2].matchAll(/<select\b([^>]*)>([\s\S]*?)<\/select>/gi)) {
      const name = attributes(select[1]).name
      const options = [...select[2].matchAll(/<option\b([^>]*)>([^<]*)/gi)].map((o) => ({ a: attributes(o[1]), text: o[2] }))
      const chosen = options.find((o) => 'selected' in o.a) ?? options[0]
      if (name && chosen) fields.push([name, chosen.a.value ?? chosen.text.trim()])
    }
    const button = /<button\b([^>]*)>/i.exec(m[2])
    const b = button ? attributes(button[1]) : {}
    if (b.name) fields.push([b.name, b.value ?? ''])
    forms.push({ action, fields })
  }
  return forms
}

/**
 * Submits every kind of POST form found on the pages untouched (empty text fields, boxes
 * unchecked): the pages that answer — 422 re-renders, or the page a 303 leads to — are pages too,
 * and no empty form may cause a server error. One form per action shape (`/x/12/y` ≈ `/x/7/y`),
 * skipping login, logout and language. These submissions change data: run them after crawling.
 */
export async function submitEmptyForms(client: TestClient, who: string, pages: CrawledResponse[]): Promise<CrawledResponse[]> {
  const tried = new Set<string>()
  const out: CrawledResponse[] = []
  for (const page of pages.filter(isHtml)) {
    for (const form of postFormsOf(page.body)) {
      const shape = form.action.replace(/\d+/g, 'N')
      if (tried.has(shape) || /^\/(login|logout|lang)(\/|\?|$)/.test(form.action)) continue
      tried.add(shape)
      const body: Record<string, string[]> = {}
      for (const [k, v] of form.fields) (body[k] ??= []).push(v)
      const from = `${page.url} (empty form)`
      const res = await client.post(form.action, body)
      out.push({ who, url: `POST ${form.action}`, status: res.statusCode, headers: res.headers, body: res.body, from })
      const location = res.headers.location
      if (res.statusCode >= 300 && res.statusCode < 400 && typeof location === 'string' && location.startsWith('/')) {
        const next = await client.get(location)
        out.push({ who, url: location, status: next.statusCode, headers: next.headers, body: next.body, from: `POST ${form.action}` })
      }
    }
  }
  return out
}

/** The HTML pages (2xx) a role reaches, as paths: what the browser tests visit. */
export function pagePaths(responses: CrawledResponse[]): string[] {
  return responses.filter((r) => r.status >= 200 && r.status < 300 && isHtml(r)).map((r) => r.url)
}
