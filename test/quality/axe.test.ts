import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import type { Browser, Page } from 'playwright-core'
import { buildTestApp, type TestApp } from '../helpers/app.ts'
import { TestClient } from '../helpers/client.ts'
import { crawl, crawlAs, pagePaths, seedWorld, type World } from '../helpers/crawl.ts'
import { STEP_TIMEOUT_MS, launchChromium, listen, loginWithForm } from '../helpers/browser.ts'
import type { Role } from '../../src/db/schema.ts'

/**
 * axe-core in Chromium on every page each role can reach (found by the same crawl as the page
 * checks), plus the login form's error states and a 404. Serious and critical violations fail.
 */

const AXE_SOURCE = readFileSync(new URL('../../node_modules/axe-core/axe.min.js', import.meta.url))
/** axe is served to the browser as if from our origin, so the page's CSP ('self') lets it run unchanged. */
const AXE_PATH = '/__test/axe.min.js'
const ROLES: Role[] = ['platform_admin', 'school_admin', 'teacher', 'student']

interface AxeNode {
  target: unknown[]
  failureSummary?: string
}
interface AxeViolation {
  id: string
  impact: string | null
  help: string
  nodes: AxeNode[]
}

let t: TestApp
let world: World
let base: string
let browser: Browser
const pathsByRole = new Map<Role | 'anonymous', string[]>()

before(async () => {
  t = await buildTestApp()
  world = await seedWorld(t.database.db)
  pathsByRole.set('anonymous', pagePaths(await crawl(new TestClient(t.app), 'anonymous', ['/', '/login'])))
  for (const role of ROLES) pathsByRole.set(role, pagePaths(await crawlAs(new TestClient(t.app), role, world.logins[role])))
  base = await listen(t)
  browser = await launchChromium()
}, { timeout: 120_000 })

after(async () => {
  if (lesser.length) console.log(`axe: ${lesser.length} moderate/minor findings (not failing):\n  ${[...new Set(lesser)].join('\n  ')}`)
  await browser?.close()
  await t?.close()
})

/** Moderate and minor findings do not fail the build; they are printed as diagnostics to look at. */
const lesser: string[] = []

/** Serious and critical violations on the page as it is now, one line per violation. */
async function audit(page: Page, label: string): Promise<string[]> {
  await page.addScriptTag({ url: AXE_PATH })
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<{ violations: unknown[] }> } }).axe
    return (await axe.run(document, { resultTypes: ['violations'] })).violations
  }) as AxeViolation[]
  const blocking = (v: AxeViolation) => v.impact === 'serious' || v.impact === 'critical'
  for (const v of violations.filter((v) => !blocking(v))) lesser.push(`${label}: ${v.id} (${v.impact}) ${v.help}`)
  return violations
    .filter(blocking)
    .map((v) => `${label}: ${v.id} (${v.impact}) ${v.help} — ${v.nodes.map((n) => JSON.stringify(n.target)).slice(0, 5).join(', ')}${v.nodes.length > 5 ? ` and ${v.nodes.length - 5} more` : ''}`)
}

async function auditPaths(page: Page, who: string, paths: string[]): Promise<string[]> {
  const problems: string[] = []
  for (const path of paths) {
    const res = await page.goto(base + path)
    if (!res || res.status() >= 400) {
      problems.push(`${who} ${path}: HTTP ${res?.status()}`)
      continue
    }
    problems.push(...(await audit(page, `${who} ${path}`)))
  }
  return problems
}

async function newPage(): Promise<Page> {
  const context = await browser.newContext()
  await context.route('**' + AXE_PATH, (route) => route.fulfill({ body: AXE_SOURCE, contentType: 'text/javascript', headers: { 'cache-control': 'max-age=3600' } }))
  context.setDefaultTimeout(STEP_TIMEOUT_MS)
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS)
  return context.newPage()
}

test('the audit finds a critical violation when there is one (axe really runs)', { timeout: 60_000 }, async () => {
  const page = await newPage()
  try {
    await page.route('**/__test/unlabelled.html', (route) =>
      route.fulfill({ contentType: 'text/html', body: '<!DOCTYPE html><html lang="mn"><head><title>x</title></head><body><main><h1>x</h1><input name="q"></main></body></html>' }),
    )
    await page.goto(`${base}/__test/unlabelled.html`)
    const found = await audit(page, 'control')
    assert.ok(found.some((line) => line.startsWith('control: label (critical)')), found.join('\n'))
  } finally {
    await page.context().close()
  }
})

test('no serious or critical axe violations for anonymous visitors, the login errors and a 404', { timeout: 120_000 }, async () => {
  const page = await newPage()
  try {
    const problems = await auditPaths(page, 'anonymous', pathsByRole.get('anonymous')!)
    const response = await loginWithForm(page, base, { ...world.logins.teacher, password: 'wrong-password' })
    assert.equal(response?.status(), 401)
    problems.push(...(await audit(page, 'login with a wrong password (401)')))
    await page.goto(`${base}/login`)
    const [empty] = await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')])
    assert.equal(empty?.status(), 422)
    problems.push(...(await audit(page, 'login with empty fields (422)')))
    assert.equal((await page.goto(`${base}/no/such/page`))?.status(), 404)
    problems.push(...(await audit(page, '404 page')))
    await page.context().setExtraHTTPHeaders({ 'Accept-Language': 'en' })
    await page.goto(`${base}/login`)
    problems.push(...(await audit(page, 'English login page')))
    assert.deepEqual(problems, [])
  } finally {
    await page.context().close()
  }
})

for (const role of ROLES) {
  test(`no serious or critical axe violations on the pages a ${role} reaches`, { timeout: 180_000 }, async () => {
    const page = await newPage()
    try {
      await loginWithForm(page, base, world.logins[role])
      assert.doesNotMatch(new URL(page.url()).pathname, /^\/login/, `${role} could not log in`)
      const paths = pathsByRole.get(role)!
      assert.ok(paths.length > 0, `the crawl found no page for ${role}`)
      assert.deepEqual(await auditPaths(page, role, paths), [])
    } finally {
      await page.context().close()
    }
  })
}
