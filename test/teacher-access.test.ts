import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeClass, makeSchool, makeUser } from './helpers/factories.ts'
import { cardsOn } from './teacher-helpers.ts'

let t: TestApp
before(async () => {
  t = await buildTestApp()
})
after(async () => {
  await t.close()
})

type Who = 'owner' | 'colleague' | 'schoolAdmin' | 'otherTeacher' | 'otherAdmin' | 'student' | 'platformAdmin'

/** School A: a class with its teacher, a colleague, an admin and a student; school B: a teacher and an admin. */
async function world() {
  const db = t.database.db
  const schoolA = await makeSchool(db)
  const schoolB = await makeSchool(db)
  const owner = await makeUser(db, 'teacher', schoolA.id)
  const klass = await makeClass(db, schoolA.id, owner.id, 7)
  const student = await makeUser(db, 'student', schoolA.id, { classId: klass.id, grade: 7, password: '424242' })
  const people = {
    owner: { school: schoolA, user: owner },
    colleague: { school: schoolA, user: await makeUser(db, 'teacher', schoolA.id) },
    schoolAdmin: { school: schoolA, user: await makeUser(db, 'school_admin', schoolA.id) },
    otherTeacher: { school: schoolB, user: await makeUser(db, 'teacher', schoolB.id) },
    otherAdmin: { school: schoolB, user: await makeUser(db, 'school_admin', schoolB.id) },
    student: { school: schoolA, user: student },
    platformAdmin: { school: null, user: await makeUser(db, 'platform_admin', null) },
  }
  const as = async (who: Who) => {
    const c = new TestClient(t.app)
    const p = people[who]
    await c.login(p.school?.code ?? null, p.user.username, p.user.password)
    return c
  }
  return { schoolA, schoolB, klass, student, owner, people, as }
}

/** Every route of the teacher area that names a class or a student. */
function routesFor(classId: string | number, studentId: string | number) {
  return [
    { method: 'GET', url: `/teacher/classes/${classId}` },
    { method: 'GET', url: `/teacher/classes/${classId}/cards` },
    { method: 'POST', url: `/teacher/classes/${classId}/students`, form: { names: 'Нэвтрэгч' } },
    { method: 'POST', url: `/teacher/classes/${classId}/reset-pins`, form: { confirm: 'yes' } },
    { method: 'POST', url: `/teacher/students/${studentId}/reset-pin`, form: {} },
  ] as const
}

async function send(c: TestClient, route: ReturnType<typeof routesFor>[number]) {
  return route.method === 'GET' ? c.get(route.url) : c.post(route.url, route.form)
}

test('nobody but the class teacher and their school admin reaches a class: 404 on every route', async () => {
  const w = await world()
  for (const who of ['colleague', 'otherTeacher', 'otherAdmin', 'student', 'platformAdmin'] as const) {
    const c = await w.as(who)
    for (const route of routesFor(w.klass.id, w.student.id)) {
      const res = await send(c, route)
      assert.equal(res.statusCode, 404, `${who} ${route.method} ${route.url}`)
      assert.match(res.body, /Хуудас олдсонгүй/)
      if (who !== 'student') assert.ok(!res.body.includes(w.student.username), 'nothing about the student leaks')
      assert.equal(res.cookies.find((x) => x.name === 'bagsh_once'), undefined, 'no PINs were sealed')
    }
  }
  // Nothing happened: no one was added, the student's PIN still works.
  const rows = await t.database.db.selectFrom('users').select('id').where('class_id', '=', w.klass.id).execute()
  assert.equal(rows.length, 1)
  await new TestClient(t.app).login(w.schoolA.code, w.student.username, '424242')
})

test('"my classes" is for teachers only', async () => {
  const w = await world()
  for (const who of ['schoolAdmin', 'student', 'platformAdmin'] as const) {
    const c = await w.as(who)
    assert.equal((await c.get('/teacher/classes')).statusCode, 404, who)
    assert.equal((await c.post('/teacher/classes', { name: '9В', grade: '9' })).statusCode, 404, who)
  }
  const colleague = await w.as('colleague')
  const list = await colleague.get('/teacher/classes')
  assert.equal(list.statusCode, 200)
  assert.ok(!list.body.includes(`/teacher/classes/${w.klass.id}"`), "a colleague's list does not show my class")
})

test('anonymous visitors are sent to log in', async () => {
  const w = await world()
  const c = new TestClient(t.app)
  for (const route of [...routesFor(w.klass.id, w.student.id), { method: 'GET', url: '/teacher/classes' } as const]) {
    const res = await send(c, route as ReturnType<typeof routesFor>[number])
    assert.equal(res.statusCode, 303, route.url)
    assert.match(res.headers.location as string, /^\/login/)
  }
})

test('the school admin of the same school manages the class', async () => {
  const w = await world()
  const admin = await w.as('schoolAdmin')
  const page = await admin.get(`/teacher/classes/${w.klass.id}`)
  assert.equal(page.statusCode, 200)
  assert.ok(page.body.includes(w.student.username))
  assert.match(page.body, /href="\/school\/classes"/)

  const add = await admin.post(`/teacher/classes/${w.klass.id}/students`, { names: 'Оюун' })
  assert.equal(add.statusCode, 303)
  const cards = cardsOn(await admin.get(add.headers.location as string))
  assert.deepEqual(cards.map((c) => c.username), ['oyuun'])

  const reset = await admin.post(`/teacher/students/${w.student.id}/reset-pin`)
  assert.equal(reset.statusCode, 303)
  const one = cardsOn(await admin.get(reset.headers.location as string))
  assert.equal(one.length, 1)
  await new TestClient(t.app).login(w.schoolA.code, w.student.username, one[0].pin)

  assert.equal((await admin.post(`/teacher/classes/${w.klass.id}/reset-pins`, { confirm: 'yes' })).statusCode, 303)
  assert.equal(cardsOn(await admin.get(`/teacher/classes/${w.klass.id}/cards`)).length, 2)
})

test('ids that are not numbers, zero, too long or unknown are 404, not 500', async () => {
  const w = await world()
  const owner = await w.as('owner')
  for (const id of ['abc', '0', '-1', '1.5', '99999999999', '999999999', '%20', '1e3', '00' + w.klass.id]) {
    for (const route of routesFor(id, id)) {
      const res = await send(owner, route)
      assert.equal(res.statusCode, 404, `${route.method} ${route.url}`)
    }
  }
})

test('a PIN reset only works on students: not on teachers, admins or students without a class', async () => {
  const w = await world()
  const owner = await w.as('owner')
  const loose = await makeUser(t.database.db, 'student', w.schoolA.id, { grade: 7 })
  for (const id of [w.owner.id, w.people.colleague.user.id, w.people.schoolAdmin.user.id, loose.id]) {
    assert.equal((await owner.post(`/teacher/students/${id}/reset-pin`)).statusCode, 404)
  }
  // The teacher's own password still works.
  await new TestClient(t.app).login(w.schoolA.code, w.owner.username, w.owner.password)
})

test("a student's login is untouched by changes to other classes and other schools", async () => {
  const w = await world()
  const device = await w.as('student')
  // Another teacher of another school fills and resets their own class.
  const other = await w.as('otherTeacher')
  const otherClass = await makeClass(t.database.db, w.schoolB.id, w.people.otherTeacher.user.id, 7)
  assert.equal((await other.post(`/teacher/classes/${otherClass.id}/students`, { names: 'Бат\nБолд' })).statusCode, 303)
  assert.equal((await other.post(`/teacher/classes/${otherClass.id}/reset-pins`, { confirm: 'yes' })).statusCode, 303)
  // A colleague in the same school does the same with theirs.
  const colleague = await w.as('colleague')
  const colleagueClass = await makeClass(t.database.db, w.schoolA.id, w.people.colleague.user.id, 7)
  assert.equal((await colleague.post(`/teacher/classes/${colleagueClass.id}/students`, { names: 'Сараа' })).statusCode, 303)
  assert.equal((await colleague.post(`/teacher/classes/${colleagueClass.id}/reset-pins`, { confirm: 'yes' })).statusCode, 303)

  assert.equal((await device.get('/student')).statusCode, 200)
  await new TestClient(t.app).login(w.schoolA.code, w.student.username, '424242')
})
