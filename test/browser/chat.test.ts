import { test, before, after, describe } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { buildTestApp, type TestApp } from '../helpers/app.ts'
import { STEP_TIMEOUT_MS, launchChromium, listen, loginWithForm } from '../helpers/browser.ts'
import { importSamples, llmConfigFor, makeStudents } from '../helpers/chat.ts'
import { startFakeOpenRouter, type FakeOpenRouter } from '../fakes/openrouter.ts'

/**
 * Asking the tutor in a real Chromium, JavaScript on and off: with the fake LLM the answer
 * streams in (JS on) or the page refreshes itself into the full answer (JS off); without an LLM
 * the demo question "фотосинтез гэж юу вэ" gets cited textbook passages either way.
 */

const mn = JSON.parse(readFileSync(new URL('../../locales/mn.json', import.meta.url), 'utf8'))
const AXE_SOURCE = readFileSync(new URL('../../node_modules/axe-core/axe.min.js', import.meta.url), 'utf8')

let browser: Browser
let fake: FakeOpenRouter

interface Site {
  t: TestApp
  base: string
  logins: { school: number; username: string; password: string }[]
}

async function site(withLlm: boolean): Promise<Site> {
  const t = await buildTestApp(withLlm ? { llm: llmConfigFor(fake.url) } : {})
  await importSamples(t.database.db, ['biology-7.md'])
  const { school, students } = await makeStudents(t.database.db, 6)
  const base = await listen(t)
  return { t, base, logins: students.map((s) => ({ school: school.code, username: s.username, password: s.password })) }
}

let llmSite: Site
let offlineSite: Site

before(async () => {
  fake = await startFakeOpenRouter({ tps: 25, tokens: 60 })
  llmSite = await site(true)
  offlineSite = await site(false)
  browser = await launchChromium()
}, { timeout: 120_000 })

after(async () => {
  await browser?.close()
  await llmSite?.t.close()
  await offlineSite?.t.close()
  await fake?.close()
})

interface Session {
  context: BrowserContext
  page: Page
  problems: string[]
}

async function open(s: Site, js: boolean, student: number): Promise<Session> {
  const context = await browser.newContext({ javaScriptEnabled: js, locale: 'mn-MN' })
  // Answers involve retrieval and a paced model: twice the usual step time on a busy machine.
  context.setDefaultTimeout(2 * STEP_TIMEOUT_MS)
  context.setDefaultNavigationTimeout(2 * STEP_TIMEOUT_MS)
  const page = await context.newPage()
  const problems: string[] = []
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) problems.push(`console error on ${page.url()}: ${msg.text()}`)
  })
  page.on('pageerror', (err) => problems.push(`uncaught on ${page.url()}: ${err.message}`))
  page.on('response', (res) => {
    if (new URL(res.url()).pathname === '/favicon.ico') return
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`)
  })
  await loginWithForm(page, s.base, { ...s.logins[student]!, school: s.logins[student]!.school })
  return { context, page, problems }
}

async function askNew(page: Page, base: string, question: string, js: boolean, from = '/chat'): Promise<void> {
  await page.goto(base + from)
  // boot.js loads htmx and its SSE extension after the page: a click before htmx has processed
  // the form would be a plain POST (which works too, the no-JS way).
  if (js) {
    await page.waitForFunction(() => {
      const form = document.querySelector('form[data-hx-post="/chat"]') as (Element & { 'htmx-internal-data'?: { initHash?: unknown } }) | null
      return 'htmx' in window && (window as unknown as { htmx: { createEventSource?: unknown } }).htmx.createEventSource !== undefined && !!form?.['htmx-internal-data']?.initHash
    })
  }
  await page.selectOption('#chat-subject', 'biology')
  await page.selectOption('#chat-grade', '7')
  await page.fill('#chat-question', question)
  await page.click('#new-chat button[type="submit"]')
}

/** axe-core's serious and critical findings (needs JavaScript: evaluate hangs in a JS-off context). */
async function axe(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(AXE_SOURCE)
  type Violation = { id: string; impact: string | null; help: string; nodes: { target: unknown[]; failureSummary?: string }[] }
  const violations = (await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<{ violations: unknown[] }> } }).axe
    return (await axe.run(document, { resultTypes: ['violations'] })).violations
  })) as Violation[]
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} — ${v.nodes.map((n) => `${JSON.stringify(n.target)} ${n.failureSummary ?? ''}`).join('; ')}`)
}

describe('with the LLM', () => {
  test('JS on: the answer streams in token by token, then the rendered answer with citations replaces it', async () => {
    const { context, page, problems } = await open(llmSite, true, 0)
    try {
      await askNew(page, llmSite.base, 'Фотосинтез гэж юу вэ?', true)
      // htmx swapped the conversation in and pushed its URL: no page load, no Refresh.
      await page.waitForURL(/\/chat\/\d+$/)
      await page.waitForSelector('.answer.pending .answer-text span')
      const partial = await page.textContent('.answer.pending .answer-text')
      assert.ok(partial && partial.length > 0 && !(await page.$('.answer .citations')), 'tokens shown before the answer is complete')
      await page.waitForSelector('.answer:not(.pending) .citations a[href^="/library/"]')
      const body = await page.textContent('.answer .answer-body')
      assert.match(body ?? '', /^Фотосинтез бол ногоон ургамал/)
      assert.ok((await page.textContent('.answer .sources'))!.includes(mn.chat.sources))
      assert.ok(await page.$('.answer .answer-body .katex'), 'math rendered (KaTeX, server side)')
      // A follow-up streams into the same page, under the first turn.
      await page.fill('#question', 'Хлорофилл гэж юу вэ?')
      await page.click('#ask button[type="submit"]')
      await page.waitForSelector('.turn:nth-child(2) .answer.pending')
      assert.equal(await page.inputValue('#question'), '', 'the question box is emptied')
      await page.waitForSelector('.turn:nth-child(2) .answer:not(.pending) .citations')
      assert.equal(await page.$$eval('.turn', (els) => els.length), 2)
      assert.deepEqual(await axe(page), [])
      assert.deepEqual(problems, [])
    } finally {
      await context.close()
    }
  })

  test('JS off: the page says "Бодож байна…" and refreshes itself into the full answer', async () => {
    // Slow enough (~5 s) that the first page is still thinking: its <noscript> refresh brings the answer.
    fake.setScript('*', { tps: 12, tokens: 60 }, {})
    const { context, page, problems } = await open(llmSite, false, 1)
    try {
      await askNew(page, llmSite.base, 'Хлоропласт юу хийдэг вэ?', false)
      await page.waitForURL(/\/chat\/\d+$/)
      const first = await page.textContent('main')
      assert.ok(first!.includes(mn.chat.thinking), 'thinking')
      assert.equal(await page.getAttribute('head noscript meta[http-equiv="refresh"]', 'content'), '3')
      await page.waitForSelector('.answer:not(.pending) .citations a[href^="/library/"]', { timeout: 30_000 })
      assert.equal(await page.$('head noscript'), null, 'the answered page stops refreshing')
      assert.match((await page.textContent('.answer .answer-body')) ?? '', /^Фотосинтез бол ногоон ургамал/)
      assert.ok(await page.$('.answer .answer-body .katex'), 'math rendered (KaTeX, server side)')
      assert.deepEqual(problems, [])
    } finally {
      fake.setScript('*', {})
      await context.close()
    }
  })
})

describe('a page loaded while its answer is pending', () => {
  test('JS on: the answer streams without reloading the page; what the student types meanwhile stays', async () => {
    // Slow enough to outlast the <noscript> refresh interval (3 s) several times.
    fake.setScript('*', { tps: 8, tokens: 60 }, {})
    const { context, page, problems } = await open(llmSite, true, 4)
    try {
      await askNew(page, llmSite.base, 'Навчны нүх юунд хэрэгтэй вэ?', true)
      await page.waitForURL(/\/chat\/\d+$/)
      await page.waitForSelector('.answer.pending')
      // A real page load of the conversation (a reload; or a plain POST → 303 before htmx is ready).
      await page.reload()
      assert.ok(await page.$('.answer.pending'), 'still pending after the reload')
      assert.ok(await page.$('noscript'), 'the no-JS refresh is there, inert')
      let loads = 0
      page.on('framenavigated', (frame) => {
        if (frame === page.mainFrame()) loads++
      })
      await page.fill('#question', 'Миний дараагийн асуулт')
      await page.waitForSelector('.answer:not(.pending) .citations a[href^="/library/"]', { timeout: 30_000 })
      assert.equal(await page.inputValue('#question'), 'Миний дараагийн асуулт', 'the draft survived the whole answer')
      assert.equal(loads, 0, 'the page never reloaded')
      assert.deepEqual(problems, [])
    } finally {
      fake.setScript('*', {})
      await context.close()
    }
  })
})

describe('a browser with JavaScript that cannot stream (no EventSource, like IE11)', () => {
  test('the page reloads itself into the answer, but not over a question being typed', async () => {
    // ~5 s per answer: the first page is still thinking, and chat.js reloads it after 3 s.
    fake.setScript('*', { tps: 12, tokens: 60 }, { tps: 12, tokens: 60 }, {})
    const { context, page, problems } = await open(llmSite, true, 5)
    try {
      await page.addInitScript(() => {
        delete (window as unknown as { EventSource?: unknown }).EventSource
      })
      let loads = 0
      page.on('framenavigated', (frame) => {
        if (frame === page.mainFrame()) loads++
      })
      // No htmx here (boot.js loads it only with EventSource): the forms post the plain way.
      await askNew(page, llmSite.base, 'Ургамлын үндэс юу хийдэг вэ?', false)
      await page.waitForURL(/\/chat\/\d+$/)
      assert.ok(await page.$('.answer.pending'), 'thinking')
      const before = loads
      await page.waitForSelector('.answer:not(.pending) .citations a[href^="/library/"]', { timeout: 30_000 })
      assert.ok(loads > before, 'reloaded into the answer')

      // A follow-up; the student starts typing the next question while it is answered.
      await page.fill('#question', 'Үндэс яагаад газар доор ургадаг вэ?')
      await Promise.all([page.waitForNavigation(), page.click('#ask button[type="submit"]')])
      await page.waitForSelector('.turn:nth-child(2) .answer.pending')
      await page.fill('#question', 'Миний ноорог')
      const typed = loads
      await page.waitForSelector('.turn:nth-child(2) .answer-fallback a', { state: 'visible', timeout: 15_000 })
      assert.equal(loads, typed, 'no reload over the draft')
      assert.equal(await page.inputValue('#question'), 'Миний ноорог')
      // The draft is sent or cleared: the next check reloads into the answer.
      await page.fill('#question', '')
      await page.waitForSelector('.turn:nth-child(2) .answer:not(.pending) .answer-body', { timeout: 30_000 })
      assert.deepEqual(problems, [])
    } finally {
      fake.setScript('*', {})
      await context.close()
    }
  })
})

describe('a stream held back by a proxy', () => {
  test('JS on: nothing arrives for 10 s, so the answer offers the link to the plain page', async () => {
    const { context, page, problems } = await open(llmSite, true, 2)
    try {
      // A buffering proxy, as the page sees it: the event stream connects and nothing ever arrives.
      // (Playwright cannot route EventSource requests, so EventSource itself is replaced.)
      await page.addInitScript(() => {
        function HeldEventSource(this: { readyState: number; url: string }, url: string) {
          this.readyState = 0
          this.url = url
        }
        HeldEventSource.prototype.addEventListener = function () {}
        HeldEventSource.prototype.removeEventListener = function () {}
        HeldEventSource.prototype.close = function (this: { readyState: number }) {
          this.readyState = 2
        }
        Object.assign(HeldEventSource, { CONNECTING: 0, OPEN: 1, CLOSED: 2 })
        ;(window as unknown as { EventSource: unknown }).EventSource = HeldEventSource
      })
      await askNew(page, llmSite.base, 'Навч ямар үүрэгтэй вэ?', true)
      await page.waitForSelector('.answer.pending')
      assert.equal(await page.isVisible('.answer-fallback a'), false)
      await page.waitForSelector('.answer-fallback a', { state: 'visible', timeout: 15_000 })
      const href = await page.getAttribute('.answer-fallback a', 'href')
      assert.match(href ?? '', /^\/chat\/\d+\?answer=\d+#answer-\d+$/)
      // The plain page: it refreshes itself until the answer is there.
      await page.click('.answer-fallback a')
      await page.waitForSelector('.answer:not(.pending) .answer-body')
      assert.deepEqual(problems, [])
    } finally {
      await context.close()
    }
  })
})

describe('the student home', () => {
  test('JS on: asked from /student, the answer streams in; the home then lists the conversation; axe-clean', async () => {
    const { context, page, problems } = await open(llmSite, true, 3)
    try {
      await page.goto(`${llmSite.base}/student`)
      assert.equal(await page.inputValue('#chat-grade'), '7', "the student's grade is chosen")
      assert.deepEqual(await axe(page), [])
      await askNew(page, llmSite.base, 'Навчны өнгө юунаас болдог вэ?', true, '/student')
      await page.waitForURL(/\/chat\/\d+$/)
      await page.waitForSelector('.answer:not(.pending) .citations a[href^="/library/"]')
      await page.goto(`${llmSite.base}/student`)
      assert.equal(await page.textContent('.conversations a'), 'Навчны өнгө юунаас болдог вэ?')
      assert.ok(await page.$('main a[href="/library"]'))
      assert.deepEqual(await axe(page), [])
      assert.deepEqual(problems, [])
    } finally {
      await context.close()
    }
  })
})

describe('offline (no LLM): textbook passages', () => {
  for (const js of [true, false]) {
    test(`JS ${js ? 'on' : 'off'}: "фотосинтез гэж юу вэ" gets cited passages, labelled as such`, async () => {
      const { context, page, problems } = await open(offlineSite, js, js ? 0 : 1)
      try {
        await askNew(page, offlineSite.base, 'фотосинтез гэж юу вэ', js)
        await page.waitForURL(/\/chat\/\d+$/)
        await page.waitForSelector('.answer.offline .citations a')
        assert.equal(await page.textContent('.answer.offline .speaker'), mn.chat.offline.label)
        assert.ok(await page.$('.answer.offline blockquote'))
        const cites = await page.$$eval('.answer.offline .citations a', (as) => as.map((a) => a.textContent))
        assert.ok(cites.some((c) => /^Биологи 7, 2\.1 Фотосинтез, х\. \d+/.test(c ?? '')), cites.join(' | '))
        // The citation opens the textbook page in the library.
        await page.click('.answer.offline .citations a')
        await page.waitForURL(/\/library\/\d+\?page=\d+/)
        assert.ok((await page.textContent('main'))!.includes('Фотосинтез'))
        assert.deepEqual(problems, [])
      } finally {
        await context.close()
      }
    })
  }
})
