import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeClass, makeSchool, makeUser } from './helpers/factories.ts'

let t: TestApp
before(async () => {
  t = await buildTestApp()
})
after(async () => {
  await t.close()
})

type School = Awaited<ReturnType<typeof makeSchool>>

/** A school with its admin signed in. */
async function adminOf(school?: School) {
  school ??= await makeSchool(t.database.db)
  const admin = await makeUser(t.database.db, 'school_admin', school.id, { displayName: 'Захирал' })
  const client = new TestClient(t.app)
  await client.login(school.code, admin.username, admin.password)
  return { school, admin, client }
}

async function canLogIn(school: number, username: string, password: string): Promise<boolean> {
  const res = await new TestClient(t.app).post('/login', { school: String(school), username, password })
  return res.statusCode === 303
}

/** Signed in still? The home page sends a live session to its area and a dead one to /login. */
async function signedIn(client: TestClient): Promise<boolean> {
  return (await client.get('/')).headers.location !== '/login'
}

/** The temporary password in the show-once box, if the page has one. */
function shownPassword(html: string): string | null {
  return /<dt>Түр нууц үг<\/dt><dd class="mono">([^<]+)<\/dd>/.exec(html)?.[1] ?? null
}

function idFrom(location: unknown): number {
  const m = /\/(\d+)$/.exec(String(location))
  assert.ok(m, `no id in ${String(location)}`)
  return Number(m[1])
}

test('the overview shows the school, its code, its head counts and links', async () => {
  const { school, client } = await adminOf()
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const klass = await makeClass(t.database.db, school.id, teacher.id)
  await makeUser(t.database.db, 'student', school.id, { grade: 7, classId: klass.id })
  await makeUser(t.database.db, 'student', school.id, { grade: 7, classId: klass.id })
  // Another school's people are not counted.
  const other = await makeSchool(t.database.db)
  await makeUser(t.database.db, 'teacher', other.id)
  const res = await client.get('/school')
  assert.equal(res.statusCode, 200)
  assert.ok(res.body.includes(school.name))
  assert.ok(res.body.includes(String(school.code)))
  assert.match(res.body, /Багш: 1</)
  assert.match(res.body, /Анги: 1</)
  assert.match(res.body, /Сурагч: 2</)
  assert.match(res.body, /href="\/school\/teachers"/)
  assert.match(res.body, /href="\/school\/classes"/)
})

test('a created teacher gets a temporary password shown once, and can log in with it', async () => {
  const { school, client } = await adminOf()
  const form = await client.get('/school/teachers')
  assert.equal(form.statusCode, 200)
  assert.match(form.body, /Одоогоор багш бүртгэгдээгүй байна/)
  const res = await client.post('/school/teachers', { displayName: 'Сарантуяа Бат', username: ' Saraa.B ' })
  assert.equal(res.statusCode, 303)
  assert.match(String(res.headers.location), /^\/school\/teachers\/\d+$/)
  const page = await client.get(String(res.headers.location))
  assert.equal(page.statusCode, 200)
  const password = shownPassword(page.body)
  assert.ok(password, 'the password is on the page')
  assert.match(page.body, /дахин харагдахгүй/)
  assert.match(page.body, /saraa\.b/, 'the username is normalized')
  // Never again.
  const again = await client.get(String(res.headers.location))
  assert.equal(shownPassword(again.body), null)
  assert.ok(!again.body.includes(password))
  // Not stored in plain text.
  const row = await t.database.db.selectFrom('users').select(['password_hash', 'role', 'school_id']).where('id', '=', idFrom(res.headers.location)).executeTakeFirstOrThrow()
  assert.ok(!row.password_hash.includes(password))
  assert.equal(row.role, 'teacher')
  assert.equal(row.school_id, school.id)
  // The teacher logs in with it.
  const teacher = new TestClient(t.app)
  const login = await teacher.login(school.code, 'saraa.b', password)
  assert.equal(login.headers.location, '/teacher/classes')
  // And is listed.
  const list = await client.get('/school/teachers')
  assert.match(list.body, /Сарантуяа Бат/)
  assert.match(list.body, /Идэвхтэй/)
})

test('the show-once password cannot be read by another session or on another teacher page', async () => {
  const { school, client } = await adminOf()
  const res = await client.post('/school/teachers', { displayName: 'Багш Нэг', username: 'bagsh.neg' })
  const sealed = client.cookies.get('bagsh_once')
  assert.ok(sealed)
  // Another admin of the same school with the stolen cookie sees nothing.
  const { client: other } = await adminOf(school)
  other.cookies.set('bagsh_once', sealed)
  assert.equal(shownPassword((await other.get(String(res.headers.location))).body), null)
  // On another teacher's page it is not shown (and is gone).
  const second = await makeUser(t.database.db, 'teacher', school.id)
  assert.equal(shownPassword((await client.get(`/school/teachers/${second.id}`)).body), null)
  assert.equal(shownPassword((await client.get(String(res.headers.location))).body), null)
})

test('creating a teacher refuses bad input with localized field messages', async () => {
  const { school, client } = await adminOf()
  const taken = await makeUser(t.database.db, 'teacher', school.id)
  await client.get('/school/teachers')

  const empty = await client.post('/school/teachers', { displayName: '  ', username: '' })
  assert.equal(empty.statusCode, 422)
  assert.match(empty.body, /Нэрийг бичнэ үү/)
  assert.match(empty.body, /Нэвтрэх нэр латин жижиг үсэг/)
  assert.match(empty.body, /id="displayName"[^>]*aria-invalid="true"[^>]*aria-describedby="displayName-error"/)
  assert.match(empty.body, /id="displayName-error"/)

  const missing = await client.post('/school/teachers', {})
  assert.equal(missing.statusCode, 422)

  const long = await client.post('/school/teachers', { displayName: 'я'.repeat(201), username: 'long.name' })
  assert.equal(long.statusCode, 422)
  assert.match(long.body, /Нэр хэт урт байна/)

  // Postgres cannot store NUL; it must be a field message, not a 500.
  const nul = await client.post('/school/teachers', { displayName: 'Бат\u0000Болд', username: 'nul.byte' })
  assert.equal(nul.statusCode, 422)
  assert.match(nul.body, /хэвлэгдэхгүй тэмдэгт/)

  for (const username of ['Bad Name!', 'бат', '.dot', 'a'.repeat(33), "x' OR 1=1 --"]) {
    const res = await client.post('/school/teachers', { displayName: 'Нэр', username })
    assert.equal(res.statusCode, 422, username)
    assert.match(res.body, /Нэвтрэх нэр латин жижиг үсэг/)
  }

  const duplicate = await client.post('/school/teachers', { displayName: 'Давхар', username: taken.username.toUpperCase() })
  assert.equal(duplicate.statusCode, 422)
  assert.match(duplicate.body, /аль хэдийн бүртгэлтэй/)
  assert.match(duplicate.body, /value="Давхар"/, 'the form keeps what was typed')

  // Absurd sizes and repeated fields are refused by shape: a localized 400, not a 500.
  const huge = await client.post('/school/teachers', { displayName: 'я'.repeat(5000), username: 'huge' })
  assert.equal(huge.statusCode, 400)
  assert.match(huge.body, /Буруу хүсэлт/)
  const twice = await client.post('/school/teachers', { displayName: ['A', 'B'], username: 'twice' })
  assert.equal(twice.statusCode, 400)

  const count = await t.database.db.selectFrom('users').select((eb) => eb.fn.countAll<string>().as('n')).where('school_id', '=', school.id).where('role', '=', 'teacher').executeTakeFirstOrThrow()
  assert.equal(Number(count.n), 1, 'nothing was created')
})

test('hostile text in names is escaped on every page', async () => {
  const { school, client } = await adminOf()
  const res = await client.post('/school/teachers', { displayName: '<script>alert(1)</script>', username: 'xss' })
  assert.equal(res.statusCode, 303)
  const teacherId = idFrom(res.headers.location)
  await t.database.db.insertInto('classes').values({ school_id: school.id, teacher_id: teacherId, name: '<img src=x onerror=alert(1)>', grade: 5 }).execute()
  for (const url of [`/school/teachers/${teacherId}`, '/school/teachers', '/school/classes']) {
    const page = await client.get(url)
    assert.equal(page.statusCode, 200, url)
    assert.ok(!page.body.includes('<script>alert(1)'), url)
    assert.ok(!page.body.includes('<img src=x'), url)
    assert.ok(page.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), url)
  }
})

test('resetting a password shows a new one once; the old one and its sessions stop working', async () => {
  const { school, client } = await adminOf()
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const session = new TestClient(t.app)
  await session.login(school.code, teacher.username, teacher.password)
  assert.ok(await signedIn(session))

  await client.get(`/school/teachers/${teacher.id}`)
  const res = await client.post(`/school/teachers/${teacher.id}/reset-password`)
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/school/teachers/${teacher.id}`)
  const password = shownPassword((await client.get(`/school/teachers/${teacher.id}`)).body)
  assert.ok(password)
  assert.equal(shownPassword((await client.get(`/school/teachers/${teacher.id}`)).body), null)

  assert.equal(await signedIn(session), false, 'the old session is dead')
  assert.equal(await canLogIn(school.code, teacher.username, teacher.password), false)
  assert.equal(await canLogIn(school.code, teacher.username, password), true)
  // The admin's own session is untouched.
  assert.ok(await signedIn(client))
})

test('a disabled teacher is signed out and cannot log in until enabled again', async () => {
  const { school, client } = await adminOf()
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const session = new TestClient(t.app)
  await session.login(school.code, teacher.username, teacher.password)

  await client.get(`/school/teachers/${teacher.id}`)
  const res = await client.post(`/school/teachers/${teacher.id}/disable`)
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/school/teachers/${teacher.id}`)
  assert.equal(await signedIn(session), false)
  assert.equal(await canLogIn(school.code, teacher.username, teacher.password), false)
  const page = await client.get(`/school/teachers/${teacher.id}`)
  assert.match(page.body, /Идэвхгүй/)
  assert.match(page.body, new RegExp(`action="/school/teachers/${teacher.id}/enable"`))
  // A disabled teacher is not offered for new classes.
  assert.ok(!(await client.get('/school/classes')).body.includes(`value="${teacher.id}"`))

  assert.equal((await client.post(`/school/teachers/${teacher.id}/enable`)).statusCode, 303)
  assert.equal(await canLogIn(school.code, teacher.username, teacher.password), true)
  assert.match((await client.get(`/school/teachers/${teacher.id}`)).body, /Идэвхтэй/)
})

test('the teacher page lists their classes with links to the class pages', async () => {
  const { school, client } = await adminOf()
  const teacher = await makeUser(t.database.db, 'teacher', school.id, { displayName: 'Номин Багш' })
  const mine = await makeClass(t.database.db, school.id, teacher.id, 9)
  const someoneElses = await makeClass(t.database.db, school.id, null, 9)
  const page = await client.get(`/school/teachers/${teacher.id}`)
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /Номин Багш/)
  assert.ok(page.body.includes(teacher.username))
  assert.ok(page.body.includes(`href="/teacher/classes/${mine.id}"`))
  assert.ok(!page.body.includes(`href="/teacher/classes/${someoneElses.id}"`))
})

test('the classes page lists every class of the school and creates one for an active teacher', async () => {
  const { school, client } = await adminOf()
  const teacher = await makeUser(t.database.db, 'teacher', school.id, { displayName: 'Туяа Багш' })
  const existing = await makeClass(t.database.db, school.id, teacher.id, 3)
  await makeUser(t.database.db, 'student', school.id, { grade: 3, classId: existing.id })
  const otherSchool = await makeSchool(t.database.db)
  const foreignTeacher = await makeUser(t.database.db, 'teacher', otherSchool.id)
  const foreignClass = await makeClass(t.database.db, otherSchool.id, foreignTeacher.id)

  const page = await client.get('/school/classes')
  assert.equal(page.statusCode, 200)
  assert.ok(page.body.includes(`href="/teacher/classes/${existing.id}"`))
  assert.ok(!page.body.includes(`href="/teacher/classes/${foreignClass.id}"`))
  assert.match(page.body, /Туяа Багш/)
  assert.ok(page.body.includes(`<option value="${teacher.id}"`))
  assert.ok(!page.body.includes(`value="${foreignTeacher.id}"`), 'only this school\'s teachers are offered')

  const res = await client.post('/school/classes', { name: ' 10Б ', grade: '10', teacherId: String(teacher.id) })
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, '/school/classes')
  const row = await t.database.db.selectFrom('classes').selectAll().where('school_id', '=', school.id).where('name', '=', '10Б').executeTakeFirstOrThrow()
  assert.equal(row.grade, 10)
  assert.equal(row.teacher_id, teacher.id)
  assert.ok((await client.get('/school/classes')).body.includes(`href="/teacher/classes/${row.id}"`))
})

test('creating a class refuses bad input and teachers who are not this school\'s active teachers', async () => {
  const { school, client } = await adminOf()
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const disabled = await makeUser(t.database.db, 'teacher', school.id)
  await t.database.db.updateTable('users').set({ disabled_at: new Date() }).where('id', '=', disabled.id).execute()
  const student = await makeUser(t.database.db, 'student', school.id)
  const otherSchool = await makeSchool(t.database.db)
  const foreignTeacher = await makeUser(t.database.db, 'teacher', otherSchool.id)
  await client.get('/school/classes')

  for (const grade of ['0', '13', 'abc', '-1', '1e1', '', '7.5']) {
    const res = await client.post('/school/classes', { name: '7А', grade, teacherId: String(teacher.id) })
    assert.equal(res.statusCode, 422, `grade ${grade}`)
    assert.match(res.body, /id="grade"[^>]*aria-invalid="true"/)
  }
  const empty = await client.post('/school/classes', { name: ' ', grade: '7', teacherId: String(teacher.id) })
  assert.equal(empty.statusCode, 422)
  assert.match(empty.body, /id="name"[^>]*aria-invalid="true"/)
  const long = await client.post('/school/classes', { name: 'А'.repeat(101), grade: '7', teacherId: String(teacher.id) })
  assert.equal(long.statusCode, 422)
  for (const teacherId of [String(foreignTeacher.id), String(disabled.id), String(student.id), '', 'abc', '99999999999']) {
    const res = await client.post('/school/classes', { name: '7А', grade: '7', teacherId })
    assert.equal(res.statusCode, 422, `teacher ${teacherId}`)
    assert.match(res.body, /Энэ сургуулийн идэвхтэй багшийг сонгоно уу/)
  }
  const twice = await client.post('/school/classes', { name: ['7А', '7Б'], grade: '7', teacherId: String(teacher.id) })
  assert.equal(twice.statusCode, 400)
  const classes = await t.database.db.selectFrom('classes').select('id').where('school_id', 'in', [school.id, otherSchool.id]).execute()
  assert.equal(classes.length, 0, 'nothing was created')
})

test('a school without active teachers is told to add one before adding classes', async () => {
  const { client } = await adminOf()
  const page = await client.get('/school/classes')
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /Анги нэмэхийн өмнө идэвхтэй багш бүртгэнэ үү/)
})

test('another school\'s teachers, and anyone who is not a teacher of this school, are 404 for every route', async () => {
  const { school, admin, client } = await adminOf()
  const otherSchool = await makeSchool(t.database.db)
  const foreignTeacher = await makeUser(t.database.db, 'teacher', otherSchool.id)
  const foreignAdmin = await makeUser(t.database.db, 'school_admin', otherSchool.id)
  const fellowAdmin = await makeUser(t.database.db, 'school_admin', school.id)
  const student = await makeUser(t.database.db, 'student', school.id)
  const platformAdmin = await makeUser(t.database.db, 'platform_admin', null)
  await client.get('/school')

  const ids = [foreignTeacher.id, foreignAdmin.id, fellowAdmin.id, admin.id, student.id, platformAdmin.id, 999999999]
  const garbage = ['abc', '-1', '0x1', '1e3', '9999999999', '1%27%20OR%201=1', '%3Cscript%3E']
  for (const id of [...ids.map(String), ...garbage]) {
    assert.equal((await client.get(`/school/teachers/${id}`)).statusCode, 404, `GET ${id}`)
    for (const action of ['reset-password', 'disable', 'enable']) {
      const res = await client.post(`/school/teachers/${id}/${action}`)
      assert.equal(res.statusCode, 404, `POST ${id}/${action}`)
      assert.match(res.body, /Хуудас олдсонгүй/)
    }
  }
  // Nothing happened to any of them.
  assert.ok(await canLogIn(otherSchool.code, foreignTeacher.username, foreignTeacher.password))
  assert.ok(await canLogIn(otherSchool.code, foreignAdmin.username, foreignAdmin.password))
  assert.ok(await canLogIn(school.code, fellowAdmin.username, fellowAdmin.password))
  assert.ok(await signedIn(client), 'disabling oneself through the teacher routes is impossible')
  // The foreign school's names never show up on this school's pages.
  for (const url of ['/school', '/school/teachers', '/school/classes']) {
    assert.ok(!(await client.get(url)).body.includes(foreignTeacher.username), url)
  }
})

test('teachers, students and platform admins get 404 on every /school route; anonymous visitors go to login', async () => {
  const school = await makeSchool(t.database.db)
  const teacher = await makeUser(t.database.db, 'teacher', school.id)
  const student = await makeUser(t.database.db, 'student', school.id)
  const platformAdmin = await makeUser(t.database.db, 'platform_admin', null)
  const gets = ['/school', '/school/teachers', `/school/teachers/${teacher.id}`, '/school/classes']
  const posts = ['/school/teachers', `/school/teachers/${teacher.id}/reset-password`, `/school/teachers/${teacher.id}/disable`, `/school/teachers/${teacher.id}/enable`, '/school/classes']
  for (const [code, who] of [[school.code, teacher], [school.code, student], [null, platformAdmin]] as const) {
    const c = new TestClient(t.app)
    await c.login(code, who.username, who.password)
    for (const url of gets) assert.equal((await c.get(url)).statusCode, 404, `GET ${url}`)
    for (const url of posts) assert.equal((await c.post(url, { displayName: 'X', username: 'x', name: 'X', grade: '1', teacherId: String(teacher.id) })).statusCode, 404, `POST ${url}`)
  }
  const anonymous = new TestClient(t.app)
  for (const url of gets) {
    const res = await anonymous.get(url)
    assert.equal(res.statusCode, 303, url)
    assert.match(String(res.headers.location), /^\/login\?next=/)
  }
  await anonymous.get('/login')
  for (const url of posts) assert.equal((await anonymous.post(url)).statusCode, 303, url)
  // The teacher was not touched by any of it.
  assert.ok(await canLogIn(school.code, teacher.username, teacher.password))
})
