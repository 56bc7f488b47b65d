import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import type { Browser, Page } from 'playwright-core'
import { buildTestApp, type TestApp } from '../helpers/app.ts'
import { launchChromium, listen } from '../helpers/browser.ts'
import { renderAnswer } from '../../src/services/render/answer.ts'
import { renderKatex } from '../../src/services/render/math.ts'
import { sanitizeAnswerHtml } from '../../src/services/render/sanitize.ts'
import { mathStylesheetUrl } from '../../src/services/render/assets.ts'
import { readCorpus } from '../../src/services/render/vocab-build.ts'
import { fontsUsed } from '../fixtures/katex-fonts.ts'
import { PHYSICS_ANSWER, QUADRATIC_ANSWER, SAMPLE_CITATIONS } from '../fixtures/answers.ts'

/**
 * Rendered math in a real Chromium under the app's real CSP: no violation, the fonts we expect,
 * and the same layout as KaTeX's own inline-styled output (the classes replace the styles
 * faithfully). Pages are fulfilled by the test on the app's origin; CSS and fonts come from the app.
 */

let t: TestApp
let base: string
let browser: Browser
let csp: string

before(async () => {
  t = await buildTestApp()
  base = await listen(t)
  browser = await launchChromium()
  csp = String((await t.app.inject({ url: '/login' })).headers['content-security-policy'])
}, { timeout: 120_000 })

after(async () => {
  await browser?.close()
  await t?.close()
})

const page = (body: string) =>
  `<!DOCTYPE html><html lang="mn"><head><meta charset="utf-8"><title>t</title><link rel="stylesheet" href="${mathStylesheetUrl()}"></head><body>${body}</body></html>`

/** Opens `html` at a URL of the app's origin, with or without the app's CSP; reports CSP messages and font requests. */
async function open(path: string, html: string, withCsp: boolean): Promise<{ page: Page; violations: string[]; fonts: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } })
  const p = await context.newPage()
  const violations: string[] = []
  const fonts: string[] = []
  p.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text())
  })
  p.on('request', (r) => {
    const m = /\/static\/math\/fonts\/([^?]+)/.exec(r.url())
    if (m) fonts.push(m[1])
  })
  await p.route(`${base}${path}`, (route) =>
    route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', headers: withCsp ? { 'content-security-policy': csp } : {}, body: html }),
  )
  await p.goto(`${base}${path}`)
  await p.evaluate(() => document.fonts.ready.then(() => undefined))
  return { page: p, violations, fonts }
}

/** Boxes of every glyph-bearing span, relative to its .katex root, in document order. */
async function layout(p: Page): Promise<number[][]> {
  return p.evaluate(() => {
    const out: number[][] = []
    document.querySelectorAll('.katex').forEach((root) => {
      const r0 = root.getBoundingClientRect()
      out.push([r0.width, r0.height])
      root.querySelectorAll('span, svg').forEach((el) => {
        const hasText = Array.from(el.childNodes).some((n) => n.nodeType === 3 && (n.textContent ?? '').replace(/[\s\u200b]/g, ''))
        if (!hasText && el.tagName.toLowerCase() !== 'svg') return
        const r = el.getBoundingClientRect()
        out.push([r.left - r0.left, r.top - r0.top, r.width, r.height])
      })
    })
    return out
  })
}

test('a rendered answer with math: no CSP violation, and exactly the fonts the budget counts', async () => {
  const { html } = renderAnswer(QUADRATIC_ANSWER + '\n\n' + PHYSICS_ANSWER, { citations: SAMPLE_CITATIONS })
  const { page: p, violations, fonts } = await open('/__render-answer', page(`<main>${html}</main>`), true)
  assert.deepEqual(violations, [])
  assert.deepEqual([...new Set(fonts)].sort(), [...fontsUsed(html)].sort())
  assert.ok(fonts.every((f) => f.endsWith('.woff2')), fonts.join())
  // The math is laid out (KaTeX's CSS applied): a fraction has height, the display formula is a block.
  const sizes = await p.evaluate(() => Array.from(document.querySelectorAll('.katex-display')).map((e) => e.getBoundingClientRect().height))
  assert.ok(sizes.length >= 3 && sizes.every((h) => h > 20), sizes.join())
  await p.context().close()
})

test('classes reproduce KaTeX’s inline-styled layout for the whole corpus (≤ 0.5 px)', async () => {
  const corpus = readCorpus()
  const raw = corpus.map(({ tex, display }) => `<p><span class="math">${renderKatex(tex, display)}</span></p>`)
  const ours = await open('/__render-ours', page(raw.map((h) => sanitizeAnswerHtml(h)).join('\n')), true)
  // KaTeX's own output needs inline styles: that page goes without the CSP.
  const reference = await open('/__render-reference', page(raw.join('\n')), false)
  assert.deepEqual(ours.violations, [])
  const a = await layout(ours.page)
  const b = await layout(reference.page)
  assert.equal(a.length, b.length)
  let worst = 0
  let where = -1
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a[i].length; j++) {
      const d = Math.abs(a[i][j] - b[i][j])
      if (d > worst) [worst, where] = [d, i]
    }
  }
  assert.ok(worst <= 0.5, `layout differs by ${worst.toFixed(2)} px at box ${where}`)
  await ours.page.context().close()
  await reference.page.context().close()
})
