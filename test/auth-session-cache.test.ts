import { test, before, after, afterEach, mock } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeClass, makeSchool, makeUser } from './helpers/factories.ts'
import { cardsOn } from './teacher-helpers.ts'
import { setSchoolDisabled } from '../src/services/accounts/schools.ts'
import { clearSessionCache, STUDENT_IDLE_MS, STUDENT_REFRESH_AFTER_MS } from '../src/services/auth/sessions.ts'

/**
 * The in-process session cache (docs/decisions/012): a checked session is trusted from memory
 * for `sessionCacheMs`, every invalidation in this process takes effect at once, the idle expiry
 * still slides, and a change made behind its back (another instance) is seen within the TTL.
 */

const TTL_MS = 10_000
let t: TestApp
before(async () => {
  t = await buildTestApp({ sessionCacheMs: TTL_MS })
})
afterEach(() => {
  mock.timers.reset()
  clearSessionCache()
})
after(async () => {
  await t.close()
})

/** How many statements read or write the sessions table while `fn` runs. */
async function sessionStatements(fn: () => Promise<unknown>): Promise<number> {
  let n = 0
  const stop = t.database.onStatement((sql) => {
    if (/"sessions"|\bsessions\b/.test(sql)) n++
  })
  try {
    await fn()
  } finally {
    stop()
  }
  return n
}

async function student() {
  const school = await makeSchool(t.database.db)
  const user = await makeUser(t.database.db, 'student', school.id, { grade: 7 })
  const c = new TestClient(t.app)
  await c.login(school.code, user.username, user.password)
  return { school, user, c }
}

test('a checked session is trusted from memory: the next requests read no session row', async () => {
  const { c } = await student()
  assert.equal(await sessionStatements(async () => assert.equal((await c.get('/student')).statusCode, 200)), 1)
  assert.equal(await sessionStatements(async () => assert.equal((await c.get('/student')).statusCode, 200)), 0)
  assert.equal(await sessionStatements(async () => assert.equal((await c.get('/chat')).statusCode, 200)), 0)
  // Garbage and unknown tokens are never cached: each one is asked for (and refused).
  const stranger = new TestClient(t.app)
  stranger.cookies.set('bagsh_session', 'x'.repeat(32))
  for (let i = 0; i < 2; i++) assert.equal((await stranger.get('/student')).statusCode, 303)
})

test('logout ends the session at once, also for a copy of its cookie', async () => {
  const { c } = await student()
  assert.equal((await c.get('/student')).statusCode, 200)
  const token = c.cookies.get('bagsh_session')!
  assert.equal((await c.post('/logout')).statusCode, 303)
  const copy = new TestClient(t.app)
  copy.cookies.set('bagsh_session', token)
  assert.equal((await copy.get('/student')).statusCode, 303)
  assert.equal((await c.get('/student')).statusCode, 303)
})

test('new PINs end the cached sessions at once; the new PIN logs in', async () => {
  const school = await makeSchool(t.database.db)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const klass = await makeClass(t.database.db, school.id, teacher.id, 7)
  const pupil = await makeUser(t.database.db, 'student', school.id, { classId: klass.id, grade: 7 })
  const device = new TestClient(t.app)
  await device.login(school.code, pupil.username, pupil.password)
  assert.equal((await device.get('/student')).statusCode, 200)
  assert.equal(await sessionStatements(() => device.get('/student')), 0, 'cached')

  const teacherClient = new TestClient(t.app)
  await teacherClient.login(school.code, teacher.username, teacher.password)
  await teacherClient.get(`/teacher/classes/${klass.id}/cards`)
  assert.equal((await teacherClient.post(`/teacher/classes/${klass.id}/reset-pins`, { confirm: 'yes' })).statusCode, 303)
  assert.equal((await device.get('/student')).statusCode, 303, 'the cached session died with the old PIN')

  const cards = await teacherClient.get(`/teacher/classes/${klass.id}/cards`)
  const pin = cardsOn(cards).find((card) => card.username === pupil.username)?.pin
  assert.ok(pin, 'the new PIN is shown')
  const again = new TestClient(t.app)
  await again.login(school.code, pupil.username, pin)
  assert.equal((await again.get('/student')).statusCode, 200)
  assert.equal((await again.get('/student')).statusCode, 200)
})

test('disabling a school ends its cached sessions at once, and only its own', async () => {
  const a = await student()
  const b = await student()
  for (const s of [a, b]) assert.equal((await s.c.get('/student')).statusCode, 200)
  await t.database.db.transaction().execute((trx) => setSchoolDisabled(trx, a.school.id, true))
  assert.equal((await a.c.get('/student')).statusCode, 303)
  assert.equal((await b.c.get('/student')).statusCode, 200)
})

test('a student\'s idle expiry still slides forward on requests served from the cache', async () => {
  mock.timers.enable({ apis: ['Date'], now: Date.now() })
  const { user, c } = await student()
  const row = () => t.database.db.selectFrom('sessions').select('expires_at').where('user_id', '=', user.id).executeTakeFirstOrThrow()
  // 5 s before the refresh is due (every STUDENT_REFRESH_AFTER_MS), so the cached copy is as stored.
  await t.database.db.updateTable('sessions').set({ expires_at: new Date(Date.now() + STUDENT_IDLE_MS - STUDENT_REFRESH_AFTER_MS + 5_000) }).where('user_id', '=', user.id).execute()
  assert.equal((await c.get('/student')).statusCode, 200)
  // 6 s later (well within the cache's lifetime) the refresh is due and written, from the cache path.
  mock.timers.tick(6_000)
  const writes = await sessionStatements(async () => assert.equal((await c.get('/student')).statusCode, 200))
  assert.equal(writes, 1, 'one UPDATE, no SELECT')
  assert.ok((await row()).expires_at.getTime() > Date.now() + STUDENT_IDLE_MS - 1000)
  assert.equal(await sessionStatements(() => c.get('/student')), 0, 'and not again on the next request')
})

test('a change made behind the cache\'s back (another instance) is seen within its lifetime', async () => {
  mock.timers.enable({ apis: ['Date'], now: Date.now() })
  const { user, c } = await student()
  assert.equal((await c.get('/student')).statusCode, 200)
  // Another instance logged the student out: this one trusts its copy for at most TTL_MS.
  await t.database.db.deleteFrom('sessions').where('user_id', '=', user.id).execute()
  assert.equal((await c.get('/student')).statusCode, 200)
  mock.timers.tick(TTL_MS)
  assert.equal((await c.get('/student')).statusCode, 303)
})

test('with the cache off (sessionCacheMs 0) every request reads its session', async () => {
  const off = await buildTestApp({ sessionCacheMs: 0 })
  try {
    const school = await makeSchool(off.database.db)
    const user = await makeUser(off.database.db, 'student', school.id)
    const c = new TestClient(off.app)
    await c.login(school.code, user.username, user.password)
    let reads = 0
    const stop = off.database.onStatement((sql) => {
      if (/from "sessions"/.test(sql)) reads++
    })
    for (let i = 0; i < 3; i++) await c.get('/student')
    stop()
    assert.equal(reads, 3)
  } finally {
    await off.close()
  }
})
