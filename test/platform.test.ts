import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { openDatabase } from '../src/db/index.ts'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'

let t: TestApp
before(async () => {
  t = await buildTestApp()
})
after(async () => {
  await t.close()
})

test('GET /health reports ok with the DB round trip and the version', async () => {
  const res = await t.app.inject('/health')
  assert.equal(res.statusCode, 200)
  const body = res.json()
  assert.equal(body.status, 'ok')
  assert.equal(body.db.ok, true)
  assert.equal(typeof body.db.latency_ms, 'number')
  assert.equal(body.version, t.config.version)
})

test('GET /metrics is Prometheus text with requests by route and status and the DB pool', async () => {
  await t.app.inject('/login')
  await t.app.inject('/no-such-page')
  const res = await t.app.inject('/metrics')
  assert.equal(res.statusCode, 200)
  assert.match(res.headers['content-type'] as string, /^text\/plain/)
  assert.match(res.body, /bagsh_http_requests_total\{method="GET",route="\/login",status="200"\} \d+/)
  assert.match(res.body, /bagsh_http_requests_total\{method="GET",route="unmatched",status="404"\} \d+/)
  assert.match(res.body, /bagsh_http_request_duration_seconds_bucket\{le="0.05",method="GET",route="\/login"\}/)
  assert.match(res.body, /bagsh_db_pool_connections\{state="total"\} \d+/)
})

test('every response carries the security headers; HSTS only over HTTPS', async () => {
  for (const url of ['/login', '/health', '/nope', '/static/css/app.css']) {
    const res = await t.app.inject(url)
    const csp = res.headers['content-security-policy'] as string
    assert.match(csp, /default-src 'self'/, url)
    assert.match(csp, /frame-ancestors 'none'/, url)
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, url)
    assert.equal(res.headers['x-frame-options'], 'DENY', url)
    assert.equal(res.headers['x-content-type-options'], 'nosniff', url)
    assert.ok(res.headers['referrer-policy'], url)
    assert.match(res.headers['permissions-policy'] as string, /microphone=\(self\), camera=\(\)/, url)
    assert.equal(res.headers['strict-transport-security'], undefined, url)
  }
})

test('HSTS and Secure cookies in production behind the TLS proxy', async () => {
  const prod = await buildApp({
    config: loadConfig({ NODE_ENV: 'production', SESSION_SECRET: 'x'.repeat(40), LOG_LEVEL: 'silent' }, { seedDemo: false }),
    database: t.database,
    logger: false,
  })
  const res = await prod.inject({ url: '/login', headers: { 'x-forwarded-proto': 'https' } })
  assert.match(res.headers['strict-transport-security'] as string, /max-age=\d+/)
  const csrf = res.cookies.find((c) => c.name === 'bagsh_csrf')!
  assert.equal(csrf.secure, true)
  await prod.close()
})

test('htmx 1.9.12 is served from our origin with immutable caching; static files too', async () => {
  const htmx = await t.app.inject('/static/vendor/htmx.min.js?v=1.9.12')
  assert.equal(htmx.statusCode, 200)
  assert.match(htmx.body, /version:"1\.9\.12"/)
  assert.match(htmx.headers['cache-control'] as string, /immutable/)
  assert.equal((await t.app.inject('/static/vendor/htmx.js')).statusCode, 404, 'only the two files we use')
  const page = (await t.app.inject('/login')).body
  const css = /href="(\/static\/css\/app\.css\?v=[0-9a-f]+)"/.exec(page)
  assert.ok(css, 'versioned stylesheet link')
  assert.match((await t.app.inject(css[1])).headers['cache-control'] as string, /immutable/)
  assert.match(page, /data-htmx="\/static\/vendor\/htmx\.min\.js\?v=1\.9\.12"/)
})

test('error pages are localized and never show a stack trace', async () => {
  const c = new TestClient(t.app)
  const notFound = await c.get('/definitely/not/here')
  assert.equal(notFound.statusCode, 404)
  assert.match(notFound.body, /Хуудас олдсонгүй/)
  const en = await c.get('/nope', { 'accept-language': 'en' })
  assert.match(en.body, /Page not found/)

  await c.get('/login')
  // Wrong types: a field sent twice arrives as an array.
  const dup = await c.post('/login', { username: ['a', 'b'], password: 'x' })
  assert.equal(dup.statusCode, 400)
  assert.match(dup.body, /Буруу хүсэлт/)
  // Oversized body.
  const big = await t.app.inject({
    method: 'POST',
    url: '/login',
    payload: 'username=' + 'a'.repeat(2 * 1024 * 1024),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  })
  assert.equal(big.statusCode, 413)
  assert.match(big.body, /Хэт том/)
  // Malformed JSON / unsupported content types.
  const json = await t.app.inject({ method: 'POST', url: '/login', payload: '{bad', headers: { 'content-type': 'application/json' } })
  assert.ok([400, 403].includes(json.statusCode))
  const weird = await t.app.inject({ method: 'POST', url: '/login', payload: 'x', headers: { 'content-type': 'text/x-nope' } })
  assert.equal(weird.statusCode, 400)
  for (const res of [notFound, dup, big, json, weird]) {
    assert.doesNotMatch(res.body, /at [\w.]+ \(|node_modules|Error:/)
  }
})

test('over the per-IP limit the visitor gets a localized 429 page with the wait in seconds', async () => {
  const limited = await buildTestApp({ rateLimitPerMinute: 3 })
  try {
    let last
    for (let i = 0; i < 4; i++) last = await limited.app.inject('/login')
    assert.equal(last!.statusCode, 429)
    assert.match(last!.body, /Бага хүлээнэ үү \(\d+ секунд\)/)
    assert.ok(Number(last!.headers['retry-after']) > 0)
    assert.equal((await limited.app.inject('/health')).statusCode, 200, 'health checks are never limited')
  } finally {
    await limited.close()
  }
})

test('when the database is unreachable: /health is 503 degraded and pages say so with 503', async () => {
  const down = await openDatabase({ databaseUrl: 'postgres://bagsh:x@127.0.0.1:1/bagsh', dataDir: '' })
  const app = await buildApp({
    config: loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' }, { sessionSecret: 's'.repeat(40), seedDemo: false }),
    database: down,
    logger: false,
  })
  try {
    const health = await app.inject('/health')
    assert.equal(health.statusCode, 503)
    assert.equal(health.json().status, 'degraded')
    assert.equal(health.json().db.ok, false)
    // A request that needs the database (a session lookup) gets the localized 503 page.
    const page = await app.inject({ url: '/student', headers: { cookie: 'bagsh_session=' + 'a'.repeat(32) } })
    assert.equal(page.statusCode, 503)
    assert.match(page.body, /Түр ажиллахгүй байна/)
  } finally {
    await app.close()
    await down.close()
  }
})

test('HTML, CSS and JS are sent gzipped to browsers that accept it', async () => {
  const page = await t.app.inject({ url: '/login', headers: { 'accept-encoding': 'gzip' } })
  assert.equal(page.headers['content-encoding'], 'gzip')
  const css = /href="(\/static\/css\/app\.css\?v=[0-9a-f]+)"/.exec((await t.app.inject('/login')).body)![1]
  assert.equal((await t.app.inject({ url: css, headers: { 'accept-encoding': 'gzip' } })).headers['content-encoding'], 'gzip')
  const htmx = await t.app.inject({ url: '/static/vendor/htmx.min.js?v=1.9.12', headers: { 'accept-encoding': 'gzip' } })
  assert.equal(htmx.headers['content-encoding'], 'gzip')
  assert.ok(htmx.rawPayload.length < 20_000, `htmx gzipped is ~16 KB, got ${htmx.rawPayload.length}`)
})
