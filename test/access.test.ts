import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Role } from '../src/db/schema.ts'
import { homePathFor } from '../src/services/web/paths.ts'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { crawl, isHtml, type CrawledResponse } from './helpers/crawl.ts'
import { makeClass, makeSchool, makeUser } from './helpers/factories.ts'

// Cross-school access, for every route there is, without knowing the routes: the accounts of
// school B crawl every page they can reach; every URL (GET) and form action (POST) that names a
// record by a numeric id must then be a 404 for every account of school A, and must change
// nothing. New pages are covered as soon as they are linked from somewhere.

/**
 * Routes with numeric ids that show content shared by all schools (none yet). Add a pattern
 * here only for pages that hold no school's or person's data.
 */
const SHARED: RegExp[] = []

const CRAWL_CAP = 200
const STAFF_ROLES = ['school_admin', 'teacher'] as const
const SCHOOL_ROLES = ['school_admin', 'teacher', 'student'] as const

interface Account {
  role: Role
  school: number | null
  username: string
  password: string
}

interface SchoolWorld {
  id: number
  code: number
  accounts: Record<(typeof SCHOOL_ROLES)[number], Account>
}

let t: TestApp
let A: SchoolWorld
let B: SchoolWorld
let platformAdmin: Account

/** A school with an admin, a teacher, and the teacher's class of two students. */
async function makeSchoolWorld(label: string): Promise<SchoolWorld> {
  const db = t.database.db
  const school = await makeSchool(db, `Сургууль ${label}`)
  const schoolAdmin = await makeUser(db, 'school_admin', school.id, { displayName: `Захирал ${label}` })
  const teacher = await makeUser(db, 'teacher', school.id, { displayName: `Багш ${label}` })
  const klass = await makeClass(db, school.id, teacher.id, 7)
  const student = await makeUser(db, 'student', school.id, { grade: 7, classId: klass.id, displayName: `Сурагч ${label} 1` })
  await makeUser(db, 'student', school.id, { grade: 7, classId: klass.id, displayName: `Сурагч ${label} 2` })
  const account = (role: Role, u: { username: string; password: string }): Account => ({ role, school: school.code, ...u })
  return {
    id: school.id,
    code: school.code,
    accounts: {
      school_admin: account('school_admin', schoolAdmin),
      teacher: account('teacher', teacher),
      student: account('student', student),
    },
  }
}

async function loggedIn(account: Account): Promise<TestClient> {
  const client = new TestClient(t.app)
  await client.login(account.school, account.username, account.password)
  // A page of the new session, so the client holds a current CSRF token.
  await client.get(homePathFor(account.role))
  return client
}

async function crawlAs(account: Account): Promise<CrawledResponse[]> {
  const client = new TestClient(t.app)
  await client.login(account.school, account.username, account.password)
  return crawl(client, account.role, ['/'], CRAWL_CAP)
}

const pathOf = (url: string) => url.split(/[?#]/)[0]
/** A URL that names a record: a path segment that is a number (`/teacher/classes/12/cards`). */
const namesRecord = (url: string) => /\/\d+(\/|$)/.test(pathOf(url)) && !SHARED.some((re) => re.test(pathOf(url)))
const decode = (s: string) =>
  s
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/gi, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#x2F;/gi, '/')
    .replace(/&amp;/g, '&')
const attr = (tag: string, name: string) => {
  const m = new RegExp(`\\b${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag)
  return m ? decode(m[2] ?? m[3] ?? m[4] ?? '') : null
}

interface PostForm {
  action: string
  fields: Record<string, string>
  /** The page the form was found on. */
  from: string
}

/**
 * The POST forms of a page, filled in as a person would: hidden values kept, boxes ticked, the
 * first option chosen, text typed. The `_csrf` field is left out: the client sends its own.
 */
function postFormsOf(html: string, from: string): PostForm[] {
  const forms: PostForm[] = []
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const [, open, inner] = m
    if ((attr(open, 'method') ?? 'get').toLowerCase() !== 'post') continue
    const action = attr(open, 'action') || from
    if (!action.startsWith('/') || action.startsWith('//')) continue
    const fields: Record<string, string> = {}
    for (const [tag] of inner.matchAll(/<(input|button)\b[^>]*>/gi)) {
      const name = attr(tag, 'name')
      if (!name || name === '_csrf' || name in fields) continue
      const type = (attr(tag, 'type') ?? (tag.toLowerCase().startsWith('<button') ? 'submit' : 'text')).toLowerCase()
      const value = attr(tag, 'value')
      if (type === 'checkbox' || type === 'radio') fields[name] = value ?? 'on'
      else if (type === 'number') fields[name] = value || '7'
      else if (value) fields[name] = value
      else if (type === 'submit' || type === 'hidden') fields[name] = value ?? ''
      else if (type === 'password') fields[name] = 'password-123'
      else fields[name] = /user/i.test(name) ? 'testuser1' : 'Тест'
    }
    for (const [, open2] of inner.matchAll(/<textarea\b([^>]*)>/gi)) {
      const name = attr(open2, 'name')
      if (name && !(name in fields)) fields[name] = 'Тест Сурагч'
    }
    for (const [, open2, options] of inner.matchAll(/<select\b([^>]*)>([\s\S]*?)<\/select>/gi)) {
      const name = attr(open2, 'name')
      const values = [...options.matchAll(/<option\b([^>]*)>/gi)].map(([, o]) => attr(o, 'value')).filter((v) => v)
      if (name && !(name in fields)) fields[name] = values[0] ?? '7'
    }
    forms.push({ action, fields, from })
  }
  return forms
}

/** Everything of school B that a request could change, to compare before and after. */
async function snapshotOf(schoolId: number): Promise<string> {
  const db = t.database.db
  const schools = await db.selectFrom('schools').selectAll().where('id', '=', schoolId).execute()
  const users = await db.selectFrom('users').selectAll().where('school_id', '=', schoolId).orderBy('id').execute()
  const classes = await db.selectFrom('classes').selectAll().where('school_id', '=', schoolId).orderBy('id').execute()
  const sessions = await db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select(['sessions.id', 'sessions.user_id'])
    .where('users.school_id', '=', schoolId)
    .orderBy('sessions.id')
    .execute()
  return JSON.stringify({ schools, users, classes, sessions })
}

before(async () => {
  t = await buildTestApp()
  A = await makeSchoolWorld('A')
  B = await makeSchoolWorld('B')
  const admin = await makeUser(t.database.db, 'platform_admin', null)
  platformAdmin = { role: 'platform_admin', school: null, username: admin.username, password: admin.password }
})
after(async () => {
  await t?.close()
})

test('accounts of school A get 404 for every page and form of school B, and change nothing', async (ctx) => {
  const getUrls = new Map<string, string>() // url → who found it
  const postForms = new Map<string, PostForm>()
  for (const account of [...Object.values(B.accounts), platformAdmin]) {
    const responses = await crawlAs(account)
    if (account.role === 'student') {
      const home = responses.find((r) => r.url === '/student')
      assert.equal(home?.status, 200, 'the crawl of school B reaches the student home')
    }
    for (const r of responses) {
      // Only what B may see is worth checking; a link that is broken for B itself proves nothing.
      if (r.status >= 400) continue
      if (namesRecord(r.url) && !getUrls.has(r.url)) getUrls.set(r.url, `${account.role} of B`)
      if (r.status === 200 && isHtml(r)) {
        for (const form of postFormsOf(r.body, r.url)) {
          if (namesRecord(form.action) && !postForms.has(form.action)) postForms.set(form.action, form)
        }
      }
    }
  }
  ctx.diagnostic(`checked ${getUrls.size} GET URLs and ${postForms.size} POST actions of school B`)

  const before = await snapshotOf(B.id)
  const failures: string[] = []
  for (const account of Object.values(A.accounts)) {
    const client = await loggedIn(account)
    for (const [url, foundBy] of getUrls) {
      const res = await client.get(url)
      if (res.statusCode !== 404) failures.push(`GET ${url} (found by the ${foundBy}) as the ${account.role} of A: ${res.statusCode}`)
    }
    for (const form of postForms.values()) {
      const res = await client.post(form.action, form.fields)
      if (res.statusCode !== 404) failures.push(`POST ${form.action} (form on ${form.from}) as the ${account.role} of A: ${res.statusCode}`)
    }
  }
  assert.deepEqual(failures, [])
  assert.equal(await snapshotOf(B.id), before, 'requests from school A changed nothing in school B')
})

test('a student sees only student pages: every staff page of the own school is a 404', async (ctx) => {
  const staffUrls = new Set<string>()
  for (const role of STAFF_ROLES) {
    for (const r of await crawlAs(A.accounts[role])) if (r.status === 200) staffUrls.add(r.url)
  }
  // The other roles' home pages are always checked, whatever the crawls found.
  for (const role of ['platform_admin', ...STAFF_ROLES] as const) staffUrls.add(homePathFor(role))
  // Pages the student reaches from its own pages are student pages (or shared ones).
  const own = await crawlAs(A.accounts.student)
  assert.equal(own.find((r) => r.url === '/student')?.status, 200, 'the student reaches the student home')
  for (const r of own) if (r.status === 200) staffUrls.delete(r.url)
  staffUrls.delete('/')

  const student = await loggedIn(A.accounts.student)
  const failures: string[] = []
  for (const url of staffUrls) {
    const res = await student.get(url)
    if (res.statusCode !== 404) failures.push(`GET ${url} as the student of A: ${res.statusCode}`)
  }
  ctx.diagnostic(`checked ${staffUrls.size} staff URLs of school A as its student`)
  assert.ok(staffUrls.size >= 3)
  assert.deepEqual(failures, [])
})

test('the form filler sends what a browser would', () => {
  const html = `<form method="post" action="/x/12/reset?next=%2F&amp;a=1"><input type="hidden" name="_csrf" value="t">
    <input type="hidden" name="id" value="12"><input name="name"><input type="number" name="n"><input name="username"><input type="password" name="pw">
    <input type="checkbox" name="confirm" value="yes"><textarea name="names"></textarea>
    <select name="grade"><option value="">—</option><option value="7">7</option></select><button>Go</button></form>
    <form method="get" action="/search/1"><input name="q"></form>`
  assert.deepEqual(postFormsOf(html, '/page'), [
    { action: '/x/12/reset?next=%2F&a=1', fields: { id: '12', name: 'Тест', n: '7', username: 'testuser1', pw: 'password-123', confirm: 'yes', names: 'Тест Сурагч', grade: '7' }, from: '/page' },
  ])
  assert.equal(namesRecord('/teacher/classes/12/cards'), true)
  assert.equal(namesRecord('/teacher/classes?page=2'), false)
  assert.equal(namesRecord('/school/7a'), false)
})
