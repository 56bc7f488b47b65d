import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { promisify } from 'node:util'
import { buildTestApp, type TestApp } from '../helpers/app.ts'
import { TestClient } from '../helpers/client.ts'
import { crawl, crawlAs, isHtml, seedWorld, submitEmptyForms, type CrawledResponse } from '../helpers/crawl.ts'
import type { Role } from '../../src/db/schema.ts'

/**
 * The checks CI runs on every page: crawl as anonymous and as each role, submit each kind of
 * form untouched, add the error pages, then check size, inline code, HTML validity (vnu) and
 * security headers on everything seen. New pages are covered as soon as they are linked.
 */

const MAX_GZIP_BYTES = 14 * 1024
const VNU_JAR = new URL('../../node_modules/vnu-jar/build/dist/vnu.jar', import.meta.url).pathname
const ROLES: Role[] = ['platform_admin', 'school_admin', 'teacher', 'student']

let t: TestApp
const responses: CrawledResponse[] = []
let pages: CrawledResponse[] = []

before(async () => {
  t = await buildTestApp()
  const world = await seedWorld(t.database.db)

  responses.push(...(await crawl(new TestClient(t.app), 'anonymous', ['/', '/login'])))
  const clients = new Map<Role, TestClient>()
  const crawled = new Map<Role, CrawledResponse[]>()
  for (const role of ROLES) {
    const client = new TestClient(t.app)
    const seen = await crawlAs(client, role, world.logins[role])
    clients.set(role, client)
    crawled.set(role, seen)
    responses.push(...seen)
    // The same role's home page in English, and a 404 with the navigation shown.
    const home = seen.find((r) => r.status === 200 && isHtml(r))
    if (home) responses.push(await special(`${role}/en`, () => client.get(home.url, { 'accept-language': 'en' })))
    responses.push(await special(`${role}/404`, () => client.get('/no-such-page-' + role)))
  }

  // Login cards for a whole class, PINs shown: the biggest page a teacher prints.
  const teacher = clients.get('teacher')!
  const classPage = await teacher.get(`/teacher/classes/${world.classId}`)
  const addForm = /<form\b[^>]*\baction="([^"]+)"[^>]*>(?:(?!<\/form>)[\s\S])*<textarea\b[^>]*\bname="names"/.exec(classPage.body)
  if (addForm) {
    const names = Array.from({ length: 30 }, (_, i) => `Оюун-Эрдэнэ Батбаяр ${i + 1}`).join('\n')
    const added = await teacher.post(addForm[1].replace(/&amp;/g, '&'), { names })
    responses.push({ who: 'teacher', url: `POST ${addForm[1]} (30 names)`, status: added.statusCode, headers: added.headers, body: added.body, from: '' })
    if (added.statusCode === 303) responses.push(await special('teacher/cards-30', () => teacher.get(String(added.headers.location))))
  }

  // Untouched forms, in an order where one role's actions (disabling a teacher, a school) come
  // after the roles they would lock out have finished.
  for (const role of ['student', 'teacher', 'school_admin', 'platform_admin'] as const) {
    responses.push(...(await submitEmptyForms(clients.get(role)!, role, crawled.get(role)!)))
  }

  // Error pages and form states a crawl cannot reach by following links.
  const anon = new TestClient(t.app)
  await anon.get('/login')
  responses.push(
    await special('error/404', () => anon.get('/no/such/page')),
    await special('error/400', () => anon.get('/login?next=' + 'x'.repeat(600))),
    await special('error/403-csrf', () => anon.post('/login', { username: 'x', password: 'y' }, { csrf: false })),
    await special('login/401', () => anon.post('/login', { school: String(world.school.code), username: world.logins.teacher.username, password: 'wrong-password' })),
    await special('login/422', () => anon.post('/login', { school: '', username: '', password: '' })),
    await special('login/en', () => anon.get('/login', { 'accept-language': 'en-US,en;q=0.9' })),
  )
  pages = responses.filter(isHtml)
}, { timeout: 120_000 })

after(async () => {
  await t?.close()
})

async function special(
  label: string,
  request: () => Promise<{ statusCode: number; headers: CrawledResponse['headers']; body: string }>,
): Promise<CrawledResponse> {
  const res = await request()
  return { who: label, url: label, status: res.statusCode, headers: res.headers, body: res.body, from: '' }
}

const where = (r: CrawledResponse) => `${r.who} ${r.url}${r.from ? ` (linked from ${r.from})` : ''}`

test('the crawl reaches every role’s pages and the error pages', () => {
  for (const who of ['anonymous', ...ROLES]) {
    assert.ok(pages.some((p) => p.who === who && p.status === 200), `${who}: no 200 page was crawled`)
  }
  const expected: Record<string, number> = { 'error/404': 404, 'error/400': 400, 'error/403-csrf': 403, 'login/401': 401, 'login/422': 422, 'login/en': 200 }
  for (const [label, status] of Object.entries(expected)) {
    const page = pages.find((p) => p.who === label)
    assert.ok(page, `${label} was not an HTML page`)
    assert.equal(page.status, status, label)
  }
  assert.match(pages.find((p) => p.who === 'login/en')!.body, /<html lang="en">/)
})

test('no crawled link is broken, no untouched form fails, nothing is a server error', () => {
  const bad = responses
    .filter((r) => {
      if (r.status >= 500) return true
      // An untouched form gets its fields' errors (422) or does its job (303), never a bare error page.
      if (r.url.startsWith('POST ')) return ![200, 303, 422].includes(r.status)
      return r.from !== '' && r.status >= 400
    })
    .map((r) => `${where(r)}: ${r.status}`)
  assert.deepEqual(bad, [])
})

test('a whole class of login cards is on one page, PINs included', () => {
  const cards = pages.find((p) => p.who === 'teacher/cards-30')
  assert.ok(cards, 'bulk add of 30 names did not lead to the cards page (see the teacher class page contract)')
  assert.equal(cards.status, 200)
  assert.equal([...cards.body.matchAll(/class="[^"]*\blogin-card\b/g)].length, 30)
})

test(`every HTML page is at most ${MAX_GZIP_BYTES} bytes gzipped`, () => {
  const big = pages
    .map((p) => ({ p, size: gzipSync(p.body).length }))
    .filter(({ size }) => size > MAX_GZIP_BYTES)
    .map(({ p, size }) => `${where(p)}: ${size} bytes gzipped`)
  assert.deepEqual(big, [])
})

/** Everything the CSP would block, looked for inside tags only (escaped text cannot open a tag). */
function inlineCodeProblems(html: string): string[] {
  const problems: string[] = []
  for (const m of html.matchAll(/<([a-zA-Z][a-zA-Z0-9-]*)\b[^>]*>/g)) {
    const tag = m[0]
    const name = m[1].toLowerCase()
    if (name === 'script' && !/\ssrc\s*=/i.test(tag)) problems.push(`inline <script>: ${tag}`)
    if (name === 'style') problems.push(`<style> element: ${tag}`)
    if (/\sstyle\s*=/i.test(tag)) problems.push(`style attribute: ${tag}`)
    const handler = /\s(on[a-z]+)\s*=/i.exec(tag)
    if (handler) problems.push(`${handler[1]} handler: ${tag}`)
    if (/\s(href|src|action|formaction)\s*=\s*["']?\s*javascript:/i.test(tag)) problems.push(`javascript: URL: ${tag}`)
  }
  return problems
}

test('the inline-code check catches what the CSP would block', () => {
  assert.deepEqual(inlineCodeProblems('<p>a &lt;script&gt; in text, style=1 onload=2</p><script src="/a.js"></script>'), [])
  assert.equal(inlineCodeProblems('<script>alert(1)</script>').length, 1)
  assert.equal(inlineCodeProblems('<style>p{}</style>').length, 1)
  assert.equal(inlineCodeProblems('<p style="color:red">').length, 1)
  assert.equal(inlineCodeProblems('<button type="button" onclick="x()">').length, 1)
  assert.equal(inlineCodeProblems('<a href="javascript:x()">').length, 1)
})

test('no page has inline scripts, styles or event handlers', () => {
  const problems = pages.flatMap((p) => inlineCodeProblems(p.body).map((msg) => `${where(p)}: ${msg}`))
  assert.deepEqual(problems, [])
})

test('every response carries the security headers', () => {
  const problems: string[] = []
  for (const r of responses) {
    const h = r.headers
    const csp = String(h['content-security-policy'] ?? '')
    const fail = (msg: string) => problems.push(`${where(r)}: ${msg}`)
    if (!/(^|;)\s*default-src 'self'\s*(;|$)/.test(csp)) fail(`CSP without default-src 'self': "${csp}"`)
    if (/unsafe-inline|unsafe-eval/.test(csp)) fail(`CSP allows unsafe-*: "${csp}"`)
    if (!/(^|;)\s*frame-ancestors 'none'\s*(;|$)/.test(csp)) fail(`CSP without frame-ancestors 'none'`)
    if (h['x-frame-options'] !== 'DENY') fail(`X-Frame-Options is ${h['x-frame-options']}`)
    if (h['x-content-type-options'] !== 'nosniff') fail(`X-Content-Type-Options is ${h['x-content-type-options']}`)
    if (!h['referrer-policy']) fail('no Referrer-Policy')
    const pp = String(h['permissions-policy'] ?? '')
    if (!/(^|,)\s*microphone=\(self\)/.test(pp) || !/(^|,)\s*camera=\(\)/.test(pp)) fail(`Permissions-Policy is "${pp}"`)
  }
  assert.deepEqual(problems, [])
})

interface VnuMessage {
  type: string
  subType?: string
  url?: string
  message: string
  lastLine?: number
  extract?: string
}

test('every HTML page is valid (vnu-jar, zero errors)', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bagsh-vnu-'))
  try {
    const names = new Map<string, CrawledResponse>()
    pages.forEach((p, i) => {
      const name = `${String(i).padStart(3, '0')}-${`${p.who}${p.url}`.replace(/[^A-Za-z0-9]+/g, '_').slice(0, 80)}.html`
      writeFileSync(join(dir, name), p.body)
      names.set(name, p)
    })
    // A page with a known error proves vnu runs and its answer is read.
    const control = 'control-invalid.html'
    writeFileSync(join(dir, control), '<!DOCTYPE html><html lang="en"><head><title>x</title></head><body><p><div></div></p></body></html>')
    const files = [...names.keys(), control].map((n) => join(dir, n))
    let stderr: string
    try {
      ;({ stderr } = await promisify(execFile)('java', ['-jar', VNU_JAR, '--errors-only', '--format', 'json', ...files], { maxBuffer: 64 * 1024 * 1024 }))
    } catch (err) {
      const e = err as { code?: unknown; stderr?: string }
      if (e.code === 'ENOENT') throw new Error('java not found: vnu-jar needs Java (CI has Java 17)')
      stderr = e.stderr ?? ''
    }
    let messages: VnuMessage[]
    try {
      messages = (JSON.parse(stderr) as { messages: VnuMessage[] }).messages
    } catch {
      throw new Error(`vnu did not answer JSON:\n${stderr.slice(0, 2000)}`)
    }
    const isError = (m: VnuMessage) => m.type === 'error' || m.subType === 'fatal' || m.type === 'non-document-error'
    assert.ok(messages.some((m) => isError(m) && m.url?.endsWith('/' + control)), 'vnu missed the error in the control page')
    const errors = messages
      .filter((m) => isError(m) && !m.url?.endsWith('/' + control))
      .map((m) => {
        const name = (m.url ?? '').split('/').pop() ?? ''
        const page = names.get(name)
        return `${page ? where(page) : name} line ${m.lastLine ?? '?'}: ${m.message}${m.extract ? ` — ${m.extract.replace(/\s+/g, ' ').trim()}` : ''}`
      })
    assert.deepEqual(errors, [], `${errors.length} vnu errors`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
