import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeSchool, makeUser } from './helpers/factories.ts'
import { Housekeeper, sweepExpired } from '../src/services/housekeeping.ts'
import { THROTTLE_WINDOW_MS } from '../src/services/auth/login.ts'

let t: TestApp
before(async () => {
  t = await buildTestApp()
})
after(async () => {
  await t.close()
})

test('expired sessions and old login failures are swept; live ones stay and still work', async () => {
  const db = t.database.db
  const school = await makeSchool(db)
  const student = await makeUser(db, 'student', school.id, { grade: 7 })
  const c = new TestClient(t.app)
  await c.login(school.code, student.username, student.password)
  assert.equal((await c.get('/student')).statusCode, 200)

  const past = new Date(Date.now() - 60_000)
  await db
    .insertInto('sessions')
    .values([
      { id: 'expired-a', user_id: student.id, expires_at: past, idle_timeout: true },
      { id: 'expired-b', user_id: student.id, expires_at: new Date(Date.now() - 86_400_000), idle_timeout: false },
    ])
    .execute()
  const old = new Date(Date.now() - THROTTLE_WINDOW_MS - 60_000)
  await db.insertInto('login_failures').values([{ key: 'acct:1:old', at: old }, { key: 'acct:1:recent' }]).execute()

  assert.deepEqual(await sweepExpired(db), { sessions: 2 })
  const left = await db.selectFrom('sessions').select('id').where('user_id', '=', student.id).execute()
  assert.equal(left.length, 1, 'only the live session is left')
  assert.ok(!left.some((s) => s.id.startsWith('expired')))
  const failures = await db.selectFrom('login_failures').select('key').where('key', 'like', 'acct:1:%').execute()
  assert.deepEqual(failures.map((f) => f.key), ['acct:1:recent'])
  // The live session still works after the sweep; a second sweep finds nothing.
  assert.equal((await c.get('/student')).statusCode, 200)
  assert.deepEqual(await sweepExpired(db), { sessions: 0 })
})

test('a large backlog is deleted in bounded batches over several rounds', async () => {
  const db = t.database.db
  const school = await makeSchool(db)
  const student = await makeUser(db, 'student', school.id, { grade: 5 })
  const past = new Date(Date.now() - 60_000)
  await db
    .insertInto('sessions')
    .values(Array.from({ length: 25 }, (_, i) => ({ id: `backlog-${i}`, user_id: student.id, expires_at: past, idle_timeout: true })))
    .execute()
  assert.deepEqual(await sweepExpired(db, 10), { sessions: 10 })
  assert.deepEqual(await sweepExpired(db, 10), { sessions: 10 })
  assert.deepEqual(await sweepExpired(db, 10), { sessions: 5 })
  assert.deepEqual(await sweepExpired(db, 10), { sessions: 0 })
})

test('the housekeeper logs what it deleted and survives a failing round', async () => {
  const db = t.database.db
  const school = await makeSchool(db)
  const student = await makeUser(db, 'student', school.id, { grade: 5 })
  await db.insertInto('sessions').values({ id: 'hk-expired', user_id: student.id, expires_at: new Date(Date.now() - 1000), idle_timeout: true }).execute()
  const logged: { level: string; obj: object; msg: string }[] = []
  const log = { info: (obj: object, msg: string) => logged.push({ level: 'info', obj, msg }), warn: (obj: object, msg: string) => logged.push({ level: 'warn', obj, msg }) }
  await new Housekeeper(db, log).tick()
  assert.deepEqual(logged, [{ level: 'info', obj: { sessions: 1 }, msg: 'expired sessions deleted' }])
  // A database that fails (here: every use of it throws) is logged, not thrown.
  const failing = new Housekeeper(new Proxy(db, { get: () => { throw new Error('database down') } }), log)
  await failing.tick()
  assert.equal(logged.at(-1)?.level, 'warn')
  assert.equal(logged.at(-1)?.msg, 'housekeeping round failed')
})
