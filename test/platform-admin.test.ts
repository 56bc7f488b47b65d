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

async function platformAdmin() {
  const admin = await makeUser(t.database.db, 'platform_admin', null)
  const client = new TestClient(t.app)
  await client.login(null, admin.username, admin.password)
  return client
}

async function canLogIn(school: number | null, username: string, password: string): Promise<boolean> {
  const res = await new TestClient(t.app).post('/login', { school: school === null ? '' : String(school), username, password })
  return res.statusCode === 303
}

async function signedIn(client: TestClient): Promise<boolean> {
  return (await client.get('/')).headers.location !== '/login'
}

function shownPassword(html: string): string | null {
  return /<dt>Түр нууц үг<\/dt><dd class="mono">([^<]+)<\/dd>/.exec(html)?.[1] ?? null
}

/** A code no other test file's factory will hand out. */
let codeSeq = 700_000_000 + (process.pid % 100_000) * 100
const freshCode = () => String(++codeSeq)

test('the schools page lists every school with code, status and user count', async () => {
  const client = await platformAdmin()
  const school = await makeSchool(t.database.db, 'Эрдэнэт 3-р сургууль')
  await makeUser(t.database.db, 'teacher', school.id)
  await makeUser(t.database.db, 'student', school.id)
  const disabled = await makeSchool(t.database.db)
  await t.database.db.updateTable('schools').set({ disabled_at: new Date() }).where('id', '=', disabled.id).execute()
  const res = await client.get('/admin/schools')
  assert.equal(res.statusCode, 200)
  const row = new RegExp(`<td class="mono">${school.code}</td>\\s*<td><a href="/admin/schools/${school.id}">${school.name}</a></td>\\s*<td>Идэвхтэй</td>\\s*<td>2</td>`)
  assert.match(res.body, row)
  assert.match(res.body, new RegExp(`href="/admin/schools/${disabled.id}">${disabled.name}</a></td>\\s*<td>Идэвхгүй</td>`))
})

test('creating a school leads to its page; a duplicate code is refused with a localized message', async () => {
  const client = await platformAdmin()
  await client.get('/admin/schools')
  const code = freshCode()
  const res = await client.post('/admin/schools', { name: ' Шинэ сургууль ', code })
  assert.equal(res.statusCode, 303)
  const id = Number(/^\/admin\/schools\/(\d+)$/.exec(String(res.headers.location))?.[1])
  assert.ok(id > 0)
  const page = await client.get(`/admin/schools/${id}`)
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /<h1>Шинэ сургууль<\/h1>/)
  assert.ok(page.body.includes(code))
  assert.match(page.body, /Энэ сургуульд админ алга/)

  const duplicate = await client.post('/admin/schools', { name: 'Өөр', code })
  assert.equal(duplicate.statusCode, 422)
  assert.match(duplicate.body, /Ийм кодтой сургууль аль хэдийн бүртгэлтэй байна/)
  assert.match(duplicate.body, /id="code"[^>]*aria-invalid="true"[^>]*aria-describedby="code-error/)
  // In English too.
  await client.get('/lang/en?next=/admin/schools')
  const english = await client.post('/admin/schools', { name: 'Other', code })
  assert.equal(english.statusCode, 422)
  assert.match(english.body, /A school with this code already exists/)
})

test('creating a school refuses bad codes and names', async () => {
  const client = await platformAdmin()
  await client.get('/admin/schools')
  const before = await t.database.db.selectFrom('schools').select('id').execute()
  for (const code of ['abc', '-1', '0', '1e3', '', ' ', '1.5', '0x10', '1234567890', '٣٣']) {
    const res = await client.post('/admin/schools', { name: 'Сургууль', code })
    assert.equal(res.statusCode, 422, `code ${JSON.stringify(code)}`)
    assert.match(res.body, /Сургуулийн код нь 1-ээс их, 9 хүртэл оронтой тоо байх ёстой/)
  }
  const empty = await client.post('/admin/schools', { name: '   ', code: freshCode() })
  assert.equal(empty.statusCode, 422)
  assert.match(empty.body, /Сургуулийн нэрийг бичнэ үү/)
  const long = await client.post('/admin/schools', { name: 'я'.repeat(201), code: freshCode() })
  assert.equal(long.statusCode, 422)
  assert.match(long.body, /хэт урт/)
  const nul = await client.post('/admin/schools', { name: 'Сургууль\u0000', code: freshCode() })
  assert.equal(nul.statusCode, 422)
  assert.match(nul.body, /хэвлэгдэхгүй тэмдэгт/)
  const missing = await client.post('/admin/schools', {})
  assert.equal(missing.statusCode, 422)
  const huge = await client.post('/admin/schools', { name: 'я'.repeat(5000), code: freshCode() })
  assert.equal(huge.statusCode, 400)
  const twice = await client.post('/admin/schools', { name: 'A', code: [freshCode(), freshCode()] })
  assert.equal(twice.statusCode, 400)
  const after = await t.database.db.selectFrom('schools').select('id').execute()
  assert.equal(after.length, before.length, 'nothing was created')
})

test('hostile school and admin names are escaped', async () => {
  const client = await platformAdmin()
  await client.get('/admin/schools')
  const res = await client.post('/admin/schools', { name: '<script>alert(1)</script>', code: freshCode() })
  assert.equal(res.statusCode, 303)
  const url = String(res.headers.location)
  await client.get(url)
  assert.equal((await client.post(`${url}/admins`, { displayName: '"><img src=x onerror=alert(1)>', username: 'xss' })).statusCode, 303)
  for (const page of ['/admin/schools', url]) {
    const body = (await client.get(page)).body
    assert.ok(!body.includes('<script>alert(1)'), page)
    assert.ok(!body.includes('<img src=x'), page)
    assert.ok(body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), page)
  }
})

test('renaming a school', async () => {
  const client = await platformAdmin()
  const school = await makeSchool(t.database.db)
  await client.get(`/admin/schools/${school.id}`)
  const res = await client.post(`/admin/schools/${school.id}/rename`, { name: '  Шинэ нэр  ' })
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/admin/schools/${school.id}`)
  assert.match((await client.get(`/admin/schools/${school.id}`)).body, /<h1>Шинэ нэр<\/h1>/)
  assert.match((await client.get('/admin/schools')).body, /Шинэ нэр/)

  const empty = await client.post(`/admin/schools/${school.id}/rename`, { name: '' })
  assert.equal(empty.statusCode, 422)
  assert.match(empty.body, /Сургуулийн нэрийг бичнэ үү/)
  assert.match(empty.body, /id="schoolName"[^>]*aria-invalid="true"/)
  const long = await client.post(`/admin/schools/${school.id}/rename`, { name: 'я'.repeat(201) })
  assert.equal(long.statusCode, 422)
  assert.equal((await client.post(`/admin/schools/${school.id}/rename`, { name: 'a\u0000b' })).statusCode, 422)
  assert.equal((await client.post(`/admin/schools/${school.id}/rename`, { name: ['a', 'b'] })).statusCode, 400)
  const row = await t.database.db.selectFrom('schools').select('name').where('id', '=', school.id).executeTakeFirstOrThrow()
  assert.equal(row.name, 'Шинэ нэр')
})

test('disabling a school signs out all its users and keeps them out until it is enabled', async () => {
  const client = await platformAdmin()
  const school = await makeSchool(t.database.db)
  const other = await makeSchool(t.database.db)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const student = await makeUser(t.database.db, 'student', school.id)
  const schoolAdmin = await makeUser(t.database.db, 'school_admin', school.id)
  const outsider = await makeUser(t.database.db, 'teacher', other.id)
  const sessions = await Promise.all(
    [teacher, student, schoolAdmin, outsider].map(async (u) => {
      const c = new TestClient(t.app)
      await c.login(u === outsider ? other.code : school.code, u.username, u.password)
      return c
    }),
  )
  await client.get(`/admin/schools/${school.id}`)
  const res = await client.post(`/admin/schools/${school.id}/disable`)
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/admin/schools/${school.id}`)
  for (const c of sessions.slice(0, 3)) assert.equal(await signedIn(c), false)
  assert.ok(await signedIn(sessions[3]), 'another school is not affected')
  assert.equal(await canLogIn(school.code, teacher.username, teacher.password), false)
  assert.equal(await canLogIn(school.code, student.username, student.password), false)
  const page = await client.get(`/admin/schools/${school.id}`)
  assert.match(page.body, /Энэ сургууль идэвхгүй байна/)
  assert.match(page.body, new RegExp(`action="/admin/schools/${school.id}/enable"`))

  assert.equal((await client.post(`/admin/schools/${school.id}/enable`)).statusCode, 303)
  assert.equal(await canLogIn(school.code, teacher.username, teacher.password), true)
  assert.equal(await canLogIn(school.code, schoolAdmin.username, schoolAdmin.password), true)
})

test('a created school admin gets a password shown once and can log in to the school pages', async () => {
  const client = await platformAdmin()
  const school = await makeSchool(t.database.db)
  await client.get(`/admin/schools/${school.id}`)
  const res = await client.post(`/admin/schools/${school.id}/admins`, { displayName: 'Захирал Дорж', username: 'Dorj' })
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/admin/schools/${school.id}`)
  const page = await client.get(`/admin/schools/${school.id}`)
  const password = shownPassword(page.body)
  assert.ok(password)
  assert.match(page.body, /Захирал Дорж/)
  assert.match(page.body, /<dd class="mono">dorj<\/dd>/)
  assert.equal(shownPassword((await client.get(`/admin/schools/${school.id}`)).body), null, 'shown once')
  const row = await t.database.db.selectFrom('users').select(['role', 'school_id']).where('username', '=', 'dorj').where('school_id', '=', school.id).executeTakeFirstOrThrow()
  assert.equal(row.role, 'school_admin')

  const admin = new TestClient(t.app)
  assert.equal((await admin.login(school.code, 'dorj', password)).headers.location, '/school')
  assert.equal((await admin.get('/school')).statusCode, 200)
})

test('creating a school admin refuses bad input', async () => {
  const client = await platformAdmin()
  const school = await makeSchool(t.database.db)
  const taken = await makeUser(t.database.db, 'teacher', school.id)
  await client.get(`/admin/schools/${school.id}`)
  const empty = await client.post(`/admin/schools/${school.id}/admins`, { displayName: '', username: '' })
  assert.equal(empty.statusCode, 422)
  assert.match(empty.body, /Нэрийг бичнэ үү/)
  assert.match(empty.body, /id="username"[^>]*aria-invalid="true"/)
  const bad = await client.post(`/admin/schools/${school.id}/admins`, { displayName: 'X', username: '<b>' })
  assert.equal(bad.statusCode, 422)
  assert.ok(!bad.body.includes('value="<b>"'))
  const duplicate = await client.post(`/admin/schools/${school.id}/admins`, { displayName: 'X', username: taken.username })
  assert.equal(duplicate.statusCode, 422)
  assert.match(duplicate.body, /аль хэдийн бүртгэлтэй/)
  assert.equal((await client.post(`/admin/schools/${school.id}/admins`, { displayName: 'я'.repeat(201), username: 'longname' })).statusCode, 422)
  assert.equal((await client.post(`/admin/schools/${school.id}/admins`, { displayName: ['a', 'b'], username: 'x' })).statusCode, 400)
  const admins = await t.database.db.selectFrom('users').select('id').where('school_id', '=', school.id).where('role', '=', 'school_admin').execute()
  assert.equal(admins.length, 0)
})

test('resetting a school admin\'s password: shown once, the old one and its sessions stop working', async () => {
  const client = await platformAdmin()
  const school = await makeSchool(t.database.db)
  const schoolAdmin = await makeUser(t.database.db, 'school_admin', school.id)
  const session = new TestClient(t.app)
  await session.login(school.code, schoolAdmin.username, schoolAdmin.password)
  await client.get(`/admin/schools/${school.id}`)
  const res = await client.post(`/admin/schools/${school.id}/admins/${schoolAdmin.id}/reset-password`)
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/admin/schools/${school.id}`)
  const password = shownPassword((await client.get(`/admin/schools/${school.id}`)).body)
  assert.ok(password)
  assert.equal(await signedIn(session), false)
  assert.equal(await canLogIn(school.code, schoolAdmin.username, schoolAdmin.password), false)
  assert.equal(await canLogIn(school.code, schoolAdmin.username, password), true)
})

test('ids outside a school, unknown or malformed are 404 for every /admin route', async () => {
  const client = await platformAdmin()
  const school = await makeSchool(t.database.db)
  const other = await makeSchool(t.database.db)
  const otherAdmin = await makeUser(t.database.db, 'school_admin', other.id)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const student = await makeUser(t.database.db, 'student', school.id)
  const platform = await makeUser(t.database.db, 'platform_admin', null)
  await client.get('/admin/schools')
  // Only this school's school admins can be reset through this school's URL.
  for (const userId of [otherAdmin.id, teacher.id, student.id, platform.id, 999999999, 'abc', '-1', '1e3', '9999999999']) {
    const res = await client.post(`/admin/schools/${school.id}/admins/${userId}/reset-password`)
    assert.equal(res.statusCode, 404, `user ${userId}`)
  }
  assert.ok(await canLogIn(other.code, otherAdmin.username, otherAdmin.password))
  assert.ok(await canLogIn(school.code, teacher.username, teacher.password))

  for (const id of ['999999999', 'abc', '-1', '0x1', '1e3', '9999999999', '%3Cscript%3E']) {
    assert.equal((await client.get(`/admin/schools/${id}`)).statusCode, 404, `GET ${id}`)
    for (const action of ['rename', 'disable', 'enable', 'admins', `admins/${otherAdmin.id}/reset-password`]) {
      const res = await client.post(`/admin/schools/${id}/${action}`, { name: 'X', displayName: 'X', username: 'x' })
      assert.equal(res.statusCode, 404, `POST ${id}/${action}`)
      assert.match(res.body, /Хуудас олдсонгүй/)
    }
  }
})

test('school admins, teachers and students get 404 on every /admin route; anonymous visitors go to login', async () => {
  const school = await makeSchool(t.database.db)
  const schoolAdmin = await makeUser(t.database.db, 'school_admin', school.id)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const student = await makeUser(t.database.db, 'student', school.id)
  const gets = ['/admin/schools', `/admin/schools/${school.id}`]
  const posts = [
    '/admin/schools',
    `/admin/schools/${school.id}/rename`,
    `/admin/schools/${school.id}/disable`,
    `/admin/schools/${school.id}/enable`,
    `/admin/schools/${school.id}/admins`,
    `/admin/schools/${school.id}/admins/${schoolAdmin.id}/reset-password`,
  ]
  for (const who of [schoolAdmin, teacher, student]) {
    const c = new TestClient(t.app)
    await c.login(school.code, who.username, who.password)
    for (const url of gets) assert.equal((await c.get(url)).statusCode, 404, `GET ${url}`)
    for (const url of posts) assert.equal((await c.post(url, { name: 'Hacked', code: freshCode(), displayName: 'X', username: 'hacker' })).statusCode, 404, `POST ${url}`)
  }
  const anonymous = new TestClient(t.app)
  for (const url of gets) assert.equal((await anonymous.get(url)).statusCode, 303, url)
  await anonymous.get('/login')
  for (const url of posts) assert.equal((await anonymous.post(url)).statusCode, 303, url)
  const row = await t.database.db.selectFrom('schools').select(['name', 'disabled_at']).where('id', '=', school.id).executeTakeFirstOrThrow()
  assert.notEqual(row.name, 'Hacked')
  assert.equal(row.disabled_at, null)
  assert.ok(await canLogIn(school.code, schoolAdmin.username, schoolAdmin.password))
})
