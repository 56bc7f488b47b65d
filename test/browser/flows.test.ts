import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { buildTestApp, type TestApp } from '../helpers/app.ts'
import { makeClass } from '../helpers/factories.ts'
import { seedWorld, type World } from '../helpers/crawl.ts'
import { STEP_TIMEOUT_MS, launchChromium, listen, loginWithForm } from '../helpers/browser.ts'

/**
 * The flows people depend on, in a real Chromium, each run with JavaScript off and on: logging
 * in and out, and a teacher adding a class of students and printing their login cards.
 */

const mn = JSON.parse(readFileSync(new URL('../../locales/mn.json', import.meta.url), 'utf8'))
/** pdfinfo / pdftotext from poppler-utils, with a clear message when they are not installed. */
async function poppler(command: string, args: string[]): Promise<string> {
  try {
    return (await promisify(execFile)(command, args)).stdout
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') throw new Error(`${command} is missing: run \`apt-get install -y poppler-utils\` (.ci/run does).`)
    throw err
  }
}
const NAMES = [
  'Бат-Эрдэнэ Болд', 'Сарнай Ганбаатар', 'Тэмүүлэн Дорж', 'Анужин Мөнх-Очир', 'Хонгорзул Энхбаяр', 'Билгүүн Сүхбаатар',
  'Номин-Эрдэнэ Цэрэн', 'Ариунболд Батхуяг', 'Мөнхзул Очирбат', 'Төгөлдөр Ганзориг', 'Энхжин Пүрэвдорж', 'Өлзийсайхан Лхагва',
]
// A4 in PostScript points; Chromium rounds to its own units, so allow a couple of points.
const A4 = { width: 594.96, height: 841.92, tolerance: 2 }

let t: TestApp
let world: World
let base: string
let browser: Browser

before(async () => {
  t = await buildTestApp()
  world = await seedWorld(t.database.db, 3)
  base = await listen(t)
  browser = await launchChromium()
}, { timeout: 120_000 })

after(async () => {
  await browser?.close()
  await t?.close()
})

interface Session {
  context: BrowserContext
  page: Page
  /** Console errors (CSP violations included), uncaught exceptions and failed requests. */
  problems: string[]
}

/** A fresh browser profile (no cookies), Mongolian like the schools' PCs. */
async function open(js: boolean): Promise<Session> {
  const context = await browser.newContext({ javaScriptEnabled: js, locale: 'mn-MN' })
  context.setDefaultTimeout(STEP_TIMEOUT_MS)
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS)
  const page = await context.newPage()
  const problems: string[] = []
  page.on('console', (msg) => {
    // Failed loads are reported below with their URL; pages with an error status are asserted by the tests.
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console error on ${page.url()}: ${msg.text()}`)
  })
  page.on('response', (res) => {
    // Chromium asks for /favicon.ico on its own, now and then; the app has none (yet).
    if (new URL(res.url()).pathname === '/favicon.ico') return
    if (res.status() >= 400 && res.request().resourceType() !== 'document') problems.push(`HTTP ${res.status()} for ${res.url()} (from ${page.url()})`)
  })
  page.on('pageerror', (err) => problems.push(`uncaught on ${page.url()}: ${err.message}`))
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure()?.errorText ?? ''}`))
  return { context, page, problems }
}

const pathOf = (page: Page) => new URL(page.url()).pathname

async function logout(page: Page): Promise<void> {
  await Promise.all([page.waitForURL(`${base}/login`), page.click('form[action="/logout"] button[type="submit"]')])
}

/** With JavaScript on, htmx must have loaded (boot.js loads it where EventSource exists). */
async function assertHtmxLoaded(page: Page): Promise<void> {
  await page.waitForFunction(() => typeof (window as unknown as { htmx?: unknown }).htmx === 'object', null, { timeout: 5000 })
  assert.equal(await page.evaluate(() => (window as unknown as { htmx: { version: string } }).htmx.version), '1.9.12')
}

for (const js of [false, true]) {
  describe(`JavaScript ${js ? 'on' : 'off'}`, () => {
    test('a teacher and a student log in through the form, land on their home page, and log out', { timeout: 60_000 }, async () => {
      const s = await open(js)
      try {
        const teacher = await loginWithForm(s.page, base, world.logins.teacher)
        assert.equal(teacher?.status(), 200)
        assert.equal(pathOf(s.page), '/teacher/classes')
        if (js) await assertHtmxLoaded(s.page)
        await logout(s.page)
        // The session is gone: the home page sends us back to the login form.
        await s.page.goto(`${base}/teacher/classes`)
        assert.equal(pathOf(s.page), '/login')

        const student = await loginWithForm(s.page, base, world.logins.student)
        assert.equal(student?.status(), 200)
        assert.equal(pathOf(s.page), '/student')
        await logout(s.page)
        await s.page.goto(`${base}/student`)
        assert.equal(pathOf(s.page), '/login')
        assert.deepEqual(s.problems, [])
      } finally {
        await s.context.close()
      }
    })

    test('a wrong password shows the localized error next to the form', { timeout: 60_000 }, async () => {
      const s = await open(js)
      try {
        const res = await loginWithForm(s.page, base, { ...world.logins.student, password: '000000' })
        assert.equal(res?.status(), 401)
        assert.equal(pathOf(s.page), '/login')
        assert.equal((await s.page.textContent('[role="alert"]'))?.trim(), mn.auth.invalid)
        assert.equal(await s.page.inputValue('#username'), world.logins.student.username, 'the username is kept')
        assert.equal(await s.page.inputValue('#password'), '', 'the password is not sent back')
        assert.deepEqual(s.problems, [])
      } finally {
        await s.context.close()
      }
    })

    test('a teacher pastes 12 names, gets 12 login cards, prints them on 2 A4 pages; a new student logs in', { timeout: 120_000 }, async () => {
      const klass = await makeClass(t.database.db, world.school.id, world.teacherId, 5)
      const s = await open(js)
      const dir = mkdtempSync(join(tmpdir(), 'bagsh-cards-'))
      try {
        await loginWithForm(s.page, base, world.logins.teacher)
        const classUrl = `${base}/teacher/classes/${klass.id}`
        const res = await s.page.goto(classUrl)
        assert.equal(res?.status(), 200, `class page ${classUrl}`)
        if (js) await assertHtmxLoaded(s.page)
        await s.page.fill('textarea[name="names"]', NAMES.join('\n'))
        await Promise.all([
          s.page.waitForURL(`${classUrl}/cards`),
          s.page.click('form:has(textarea[name="names"]) button[type="submit"]'),
        ])

        const cards = s.page.locator('.login-card')
        assert.equal(await cards.count(), 12)
        const usernames: string[] = []
        for (let i = 0; i < 12; i++) {
          const card = cards.nth(i)
          const username = (await card.locator('.username').innerText()).trim()
          const pin = (await card.locator('.pin').innerText()).trim()
          assert.match(username, /^[a-z0-9][a-z0-9._-]*$/, `card ${i + 1} username`)
          assert.match(pin, /^\d{6}$/, `card ${i + 1} PIN`)
          usernames.push(username)
        }
        assert.equal(new Set(usernames).size, 12, 'usernames are unique')
        const firstPin = (await cards.nth(0).locator('.pin').innerText()).trim()

        // Print: navigation, forms and buttons disappear; the cards stay.
        await s.page.emulateMedia({ media: 'print' })
        for (const selector of ['nav', 'form', 'header', 'button']) {
          const all = s.page.locator(selector)
          for (let i = 0; i < (await all.count()); i++) assert.ok(await all.nth(i).isHidden(), `${selector} #${i + 1} is hidden in print`)
        }
        assert.ok(await cards.first().isVisible(), 'cards show in print')

        // The PDF Chromium prints (A4 from print.css), checked with poppler.
        const pdf = join(dir, 'cards.pdf')
        writeFileSync(pdf, await s.page.pdf({ format: 'A4', preferCSSPageSize: true, printBackground: true }))
        const info = await poppler('pdfinfo', [pdf])
        const size = /Page size:\s+([\d.]+) x ([\d.]+) pts/.exec(info)
        assert.ok(size, info)
        assert.ok(Math.abs(Number(size[1]) - A4.width) <= A4.tolerance && Math.abs(Number(size[2]) - A4.height) <= A4.tolerance, `not A4: ${size[0]}`)
        assert.equal(Number(/Pages:\s+(\d+)/.exec(info)?.[1]), 2, `12 cards at 10 a sheet make 2 pages:\n${info}`)
        const text = await poppler('pdftotext', ['-layout', pdf, '-'])
        for (const username of usernames) assert.ok(text.includes(username), `${username} is in the PDF`)
        assert.ok(text.includes(firstPin), 'PINs are in the PDF')
        assert.deepEqual(s.problems, [])

        // One of the new students logs in on another computer with the card's username and PIN.
        const student = await open(js)
        try {
          await loginWithForm(student.page, base, { school: world.school.code, username: usernames[0], password: firstPin })
          assert.equal(pathOf(student.page), '/student')
          assert.deepEqual(student.problems, [])
        } finally {
          await student.context.close()
        }
      } finally {
        rmSync(dir, { recursive: true, force: true })
        await s.context.close()
      }
    })
  })
}
