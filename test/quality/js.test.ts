import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { globSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { buildTestApp, type TestApp } from '../helpers/app.ts'

/**
 * Shipped JavaScript must run on the oldest browsers we serve (Chrome 49 / Firefox 52): our own
 * files and the htmx files we serve, checked for syntax and for built-ins those browsers lack.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ES_CHECK = join(ROOT, 'node_modules/es-check/lib/cli/index.js')
const BROWSERS = 'chrome >= 49, firefox >= 52'
const OURS = globSync('static/**/*.js', { cwd: ROOT }).sort()
const VENDOR = ['node_modules/htmx.org/dist/htmx.min.js', 'node_modules/htmx.org/dist/ext/sse.js']

async function esCheck(args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [ES_CHECK, ...args, '--noColor', '--noCache'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 })
    return { ok: true, output: stdout + stderr }
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string }
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message }
  }
}

test('es-check rejects what Chrome 49 cannot run (the check itself works)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bagsh-escheck-'))
  try {
    writeFileSync(join(dir, 'syntax.js'), 'async function f(a) { return a ?? 1 }\n')
    writeFileSync(join(dir, 'builtin.js'), 'var x = Object.entries({ a: 1 });\n')
    const syntax = await esCheck(['checkBrowser', join(dir, 'syntax.js'), `--browserslistQuery=${BROWSERS}`])
    assert.equal(syntax.ok, false)
    assert.match(syntax.output, /SyntaxError/)
    const builtin = await esCheck(['checkBrowser', join(dir, 'builtin.js'), `--browserslistQuery=${BROWSERS}`, '--checkFeatures'])
    assert.equal(builtin.ok, false)
    assert.match(builtin.output, /ObjectEntries/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test(`our JS and the served htmx pass es-check checkBrowser for "${BROWSERS}" with --checkFeatures`, async () => {
  assert.ok(OURS.length > 0, 'no static/**/*.js found')
  const res = await esCheck(['checkBrowser', ...OURS, ...VENDOR, `--browserslistQuery=${BROWSERS}`, '--checkFeatures'])
  assert.ok(res.ok, res.output)
})

test('our own JS is plain ES5 (the house rule: no let/const/arrows/template literals)', async () => {
  const res = await esCheck(['es5', ...OURS])
  assert.ok(res.ok, res.output)
})

let t: TestApp
before(async () => {
  t = await buildTestApp()
}, { timeout: 120_000 })
after(async () => {
  await t?.close()
})

test('htmx served at /static/vendor/htmx.min.js is exactly 1.9.12 and cached immutable', async () => {
  for (const url of ['/static/vendor/htmx.min.js', '/static/vendor/ext/sse.js']) {
    const res = await t.app.inject(url)
    assert.equal(res.statusCode, 200, url)
    assert.match(String(res.headers['content-type']), /javascript/, url)
    assert.match(String(res.headers['cache-control']), /\bimmutable\b/, url)
    assert.match(String(res.headers['cache-control']), /max-age=\d{7,}/, url)
  }
  const htmx = await t.app.inject('/static/vendor/htmx.min.js')
  assert.deepEqual([...htmx.body.matchAll(/version:\s*"([^"]+)"/g)].map((m) => m[1]), ['1.9.12'])
  // Pages ask for the same version they get.
  const page = (await t.app.inject('/login')).body
  assert.match(page, /data-htmx="\/static\/vendor\/htmx\.min\.js\?v=1\.9\.12"/)
})
