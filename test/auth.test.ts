import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeSchool, makeUser } from './helpers/factories.ts'

let t: TestApp
before(async () => {
  t = await buildTestApp()
})
after(async () => {
  await t.close()
})

test('login page is Mongolian by default and English by Accept-Language or cookie', async () => {
  const c = new TestClient(t.app)
  assert.match((await c.get('/login')).body, /<html lang="mn">/)
  assert.match((await c.get('/login', { 'accept-language': 'en-US,en;q=0.9' })).body, /<html lang="en">/)
  const sw = await c.get('/lang/en?next=/login')
  assert.equal(sw.statusCode, 303)
  assert.equal(sw.headers.location, '/login')
  assert.match((await c.get('/login')).body, /Log in/)
  // Open redirects are refused.
  assert.equal((await c.get('/lang/mn?next=//evil.example')).headers.location, '/')
})

test('a student logs in with school code, username and PIN; the session ends on logout', async () => {
  const school = await makeSchool(t.database.db)
  const student = await makeUser(t.database.db, 'student', school.id, { grade: 7 })
  const c = new TestClient(t.app)
  const res = await c.login(school.code, student.username, student.password)
  assert.equal(res.headers.location, '/student')
  const cookie = res.cookies.find((x) => x.name === 'bagsh_session')!
  assert.equal(cookie.expires, undefined, 'students get a browser-session cookie')
  assert.equal(cookie.httpOnly, true)
  assert.equal(cookie.sameSite, 'Lax')
  assert.equal((await c.get('/student')).statusCode, 200)
  const token = c.cookies.get('bagsh_session')!
  assert.equal((await c.post('/logout')).statusCode, 303)
  // The old token is dead server-side, not just forgotten by the browser.
  const replay = await t.app.inject({ method: 'GET', url: '/student', headers: { cookie: `bagsh_session=${token}` } })
  assert.equal(replay.statusCode, 303)
  assert.match(replay.headers.location as string, /^\/login/)
})

test('wrong password and unknown user get the same message; the same school code is required', async () => {
  const school = await makeSchool(t.database.db)
  const other = await makeSchool(t.database.db)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const c = new TestClient(t.app)
  const wrong = await c.post('/login', { school: String(school.code), username: teacher.username, password: 'nope-nope' })
  const unknown = await c.post('/login', { school: String(school.code), username: 'nobody', password: 'nope-nope' })
  const otherSchool = await c.post('/login', { school: String(other.code), username: teacher.username, password: teacher.password })
  for (const res of [wrong, unknown, otherSchool]) {
    assert.equal(res.statusCode, 401)
    assert.match(res.body, /Сургуулийн код, нэвтрэх нэр эсвэл нууц үг буруу байна/)
  }
})

test('failed logins are throttled per account with a localized message', async () => {
  const school = await makeSchool(t.database.db)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const c = new TestClient(t.app)
  for (let i = 0; i < 5; i++) {
    assert.equal((await c.post('/login', { school: String(school.code), username: teacher.username, password: 'bad' })).statusCode, 401)
  }
  const res = await c.post('/login', { school: String(school.code), username: teacher.username, password: teacher.password })
  assert.equal(res.statusCode, 429)
  assert.match(res.body, /минутын дараа дахин оролдоно уу/)
  assert.ok(Number(res.headers['retry-after']) > 0)
})

test('POST without a CSRF token is refused with a localized page', async () => {
  const c = new TestClient(t.app)
  const res = await c.post('/login', { username: 'x', password: 'y' }, { csrf: false })
  assert.equal(res.statusCode, 403)
  assert.match(res.body, /Маягтын хугацаа дууссан/)
  await c.get('/login')
  const forged = await c.post('/login', { username: 'x', password: 'y', _csrf: 'forged' })
  assert.equal(forged.statusCode, 403)
})

test('passwords are stored as argon2id with m=19456, t=2, p=1', async () => {
  const school = await makeSchool(t.database.db)
  const s = await makeUser(t.database.db, 'student', school.id)
  const row = await t.database.db.selectFrom('users').select('password_hash').where('id', '=', s.id).executeTakeFirstOrThrow()
  assert.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
  assert.ok(!row.password_hash.includes(s.password))
})

test('a student session ends after 2 idle hours; activity slides it forward', async () => {
  const school = await makeSchool(t.database.db)
  const student = await makeUser(t.database.db, 'student', school.id)
  const c = new TestClient(t.app)
  await c.login(school.code, student.username, student.password)
  const db = t.database.db
  const row = () => db.selectFrom('sessions').select(['expires_at', 'idle_timeout']).where('user_id', '=', student.id).executeTakeFirstOrThrow()
  const first = await row()
  assert.equal(first.idle_timeout, true)
  const idleMs = first.expires_at.getTime() - Date.now()
  assert.ok(idleMs > 119 * 60_000 && idleMs <= 120 * 60_000, `2-hour idle timeout, got ${idleMs} ms`)
  // Pretend 30 idle minutes passed: the next request pushes expiry back to 2 hours from now.
  await db.updateTable('sessions').set({ expires_at: new Date(Date.now() + 90 * 60_000) }).where('user_id', '=', student.id).execute()
  assert.equal((await c.get('/student')).statusCode, 200)
  assert.ok((await row()).expires_at.getTime() - Date.now() > 119 * 60_000)
  // Past the idle timeout the session is gone.
  await db.updateTable('sessions').set({ expires_at: new Date(Date.now() - 1000) }).where('user_id', '=', student.id).execute()
  const expired = await c.get('/student')
  assert.equal(expired.statusCode, 303)
  assert.equal((await db.selectFrom('sessions').select('id').where('user_id', '=', student.id).execute()).length, 0)
})

test('staff get a persistent 30-day cookie; the stored session id is the SHA-256 of the token', async () => {
  const school = await makeSchool(t.database.db)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const c = new TestClient(t.app)
  const res = await c.login(school.code, teacher.username, teacher.password)
  assert.equal(res.headers.location, '/teacher/classes')
  const cookie = res.cookies.find((x) => x.name === 'bagsh_session')!
  assert.ok(cookie.expires && cookie.expires.getTime() > Date.now() + 29 * 24 * 3600_000)
  const { createHash } = await import('node:crypto')
  const stored = await t.database.db.selectFrom('sessions').select('id').where('user_id', '=', teacher.id).execute()
  assert.deepEqual(stored.map((s) => s.id), [createHash('sha256').update(cookie.value).digest('hex')])
})

test('a disabled user or school loses its session at the next request', async () => {
  const db = t.database.db
  const school = await makeSchool(db)
  const student = await makeUser(db, 'student', school.id)
  const c = new TestClient(t.app)
  await c.login(school.code, student.username, student.password)
  await db.updateTable('schools').set({ disabled_at: new Date() }).where('id', '=', school.id).execute()
  assert.equal((await c.get('/student')).statusCode, 303)
  const again = await c.post('/login', { school: String(school.code), username: student.username, password: student.password })
  assert.equal(again.statusCode, 401)
})

test('failed logins are throttled per IP across accounts', async () => {
  const c = new TestClient(t.app)
  c.remoteAddress = '203.0.113.9'
  let last
  for (let i = 0; i < 31; i++) last = await c.post('/login', { school: '1', username: `ghost${i}`, password: 'bad' })
  assert.equal(last!.statusCode, 429)
})

test('platform admins log in with an empty school code; a school code does not match them', async () => {
  const admin = await makeUser(t.database.db, 'platform_admin', null)
  const c = new TestClient(t.app)
  assert.equal((await c.post('/login', { school: '1', username: admin.username, password: admin.password })).statusCode, 401)
  const res = await c.login(null, admin.username, admin.password)
  assert.equal(res.headers.location, '/admin/schools')
})

test('logs carry request ids and never the password, PIN or session token', async () => {
  const { buildApp, loggerOptions } = await import('../src/app.ts')
  const { loadConfig } = await import('../src/config.ts')
  const { Writable } = await import('node:stream')
  const lines: string[] = []
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  const app = await buildApp({
    config: loadConfig({ NODE_ENV: 'test' }, { sessionSecret: 'k'.repeat(40), seedDemo: false, logLevel: 'trace' }),
    database: t.database,
    logger: { ...loggerOptions('trace'), stream },
  })
  const school = await makeSchool(t.database.db)
  const student = await makeUser(t.database.db, 'student', school.id, { password: '918273' })
  const c = new TestClient(app)
  const res = await c.login(school.code, student.username, '918273')
  await c.get('/student')
  await app.close()
  const log = lines.join('')
  assert.ok(res.headers['x-request-id'])
  assert.match(log, /"reqId":/)
  assert.doesNotMatch(log, /918273/)
  assert.ok(!log.includes(c.cookies.get('bagsh_session')!))
})

test('control characters in login fields are refused like any wrong login, not a 500', async () => {
  const c = new TestClient(t.app)
  c.remoteAddress = '198.51.100.7'
  for (const form of [
    { school: '1', username: 'a\u0000b', password: 'x' },
    { school: '1\u0000', username: 'a', password: 'x' },
    { school: '', username: 'admin\u0007', password: 'p\u0000' },
  ]) {
    assert.equal((await c.post('/login', form)).statusCode, 401)
  }
})
