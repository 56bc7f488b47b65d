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
