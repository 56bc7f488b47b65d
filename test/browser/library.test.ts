import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { buildTestApp, type TestApp } from '../helpers/app.ts'
import { seedWorld, type World } from '../helpers/crawl.ts'
import { STEP_TIMEOUT_MS, launchChromium, listen, loginWithForm } from '../helpers/browser.ts'
import { createLocalEmbedder } from '../../src/services/embeddings/local.ts'
import { createJobHandlers } from '../../src/services/jobs/handlers.ts'
import { JobRunner } from '../../src/services/jobs/queue.ts'

/**
 * In a real Chromium, JavaScript off and on: an admin uploads a PDF through the form (the browser
 * builds the multipart body, `_csrf` before the file), watches its progress page, and the book
 * is then found through the library's search box; a non-PDF gets its message at the file field.
 */

const FIXTURE = fileURLToPath(new URL('../fixtures/astronomy-10.pdf', import.meta.url))

let t: TestApp
let world: World
let base: string
let browser: Browser
let runner: JobRunner
let dataDir: string

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'bagsh-browser-library-'))
  // One admin uploads in both runs, more than the hourly limit (tested in test/library-admin.test.ts).
  t = await buildTestApp({ dataDir, pdfUploadsPerHour: 10 })
  world = await seedWorld(t.database.db, 1)
  runner = new JobRunner(t.database.db, createJobHandlers({ dataDir, embedder: createLocalEmbedder() }), { pollMs: 50 })
  base = await listen(t)
  browser = await launchChromium()
}, { timeout: 120_000 })

after(async () => {
  await runner?.stop()
  await browser?.close()
  await t?.close()
  if (dataDir) rmSync(dataDir, { recursive: true, force: true })
})

async function open(js: boolean): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ javaScriptEnabled: js, locale: 'mn-MN' })
  context.setDefaultTimeout(STEP_TIMEOUT_MS)
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS)
  const page = await context.newPage()
  const problems: string[] = []
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console error on ${page.url()}: ${msg.text()}`)
  })
  page.on('pageerror', (err) => problems.push(`uncaught on ${page.url()}: ${err.message}`))
  return { context, page, problems }
}

async function fillUpload(page: Page, title: string, file: string | { name: string; mimeType: string; buffer: Buffer }): Promise<void> {
  await page.goto(`${base}/admin/textbooks/new`)
  await page.selectOption('#subject', 'physics')
  await page.selectOption('#grade', '10')
  await page.fill('#title', title)
  await page.fill('#year', '2026')
  await page.setInputFiles('#file', file)
}

for (const js of [false, true]) {
  describe(`JavaScript ${js ? 'on' : 'off'}`, () => {
    test('an admin uploads a PDF, watches its progress, and the book is found in the library', { timeout: 90_000 }, async () => {
      const s = await open(js)
      try {
        await loginWithForm(s.page, base, world.logins.platform_admin)
        const title = `Одон орон 10 (${js ? 'JS' : 'no JS'})`
        await fillUpload(s.page, title, FIXTURE)
        const [landed] = await Promise.all([s.page.waitForNavigation(), s.page.click('form[action="/admin/textbooks"] button[type="submit"]')])
        assert.equal(landed?.status(), 200)
        const jobId = Number(/\/admin\/textbooks\/jobs\/(\d+)$/.exec(s.page.url())?.[1])
        assert.ok(jobId > 0, s.page.url())
        assert.equal(landed?.headers().refresh, undefined, 'no Refresh header: htmx polls (JS on), a <noscript> meta refreshes (JS off)')
        assert.match((await s.page.textContent('h1')) ?? '', /PDF оруулах ажил/)

        // The job runs in the background; the page notices by itself (<noscript> refresh, or htmx polling).
        await runner.runJob(jobId)
        await s.page.waitForSelector('#job .success', { timeout: 15_000 })
        await Promise.all([s.page.waitForNavigation(), s.page.click('#job .success a')])
        assert.match(new URL(s.page.url()).pathname, /^\/library\/\d+$/)

        await s.page.goto(`${base}/library`)
        await s.page.fill('#q', 'sarnii hirtelt')
        await Promise.all([s.page.waitForNavigation(), s.page.click('form[action="/library/search"] button[type="submit"]')])
        const first = s.page.locator('.results li h3 a').first()
        assert.match((await first.textContent()) ?? '', /Одон орон 10/)
        await Promise.all([s.page.waitForNavigation(), first.click()])
        assert.match(new URL(s.page.url()).hash, /^#p-10\d$/)
        assert.match((await s.page.textContent('.book-page')) ?? '', /хиртэлт/)
        assert.deepEqual(s.problems, [])
      } finally {
        await s.context.close()
      }
    })

    test('a file that is not a PDF comes back with the message at the file field', { timeout: 60_000 }, async () => {
      const s = await open(js)
      try {
        await loginWithForm(s.page, base, world.logins.platform_admin)
        await fillUpload(s.page, 'Буруу файл', { name: 'notes.pdf', mimeType: 'application/pdf', buffer: Buffer.from('Энэ PDF биш.\n'.repeat(200)) })
        const [res] = await Promise.all([s.page.waitForNavigation(), s.page.click('form[action="/admin/textbooks"] button[type="submit"]')])
        assert.equal(res?.status(), 422)
        assert.match((await s.page.textContent('#file-error')) ?? '', /PDF биш байна/)
        assert.equal(await s.page.getAttribute('#file', 'aria-invalid'), 'true')
        assert.equal(await s.page.inputValue('#title'), 'Буруу файл')
        assert.deepEqual(s.problems, [])
      } finally {
        await s.context.close()
      }
    })
  })
}
