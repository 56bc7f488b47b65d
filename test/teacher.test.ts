import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeClass, makeSchool, makeUser } from './helpers/factories.ts'
import { cardsOn } from './teacher-helpers.ts'
import { givenName, transliterate, usernameBase } from '../src/services/classes/usernames.ts'

let t: TestApp
before(async () => {
  t = await buildTestApp()
})
after(async () => {
  await t.close()
})

/** A school with a teacher who is logged in, and one class of theirs. */
async function teacherWithClass(grade = 7) {
  const db = t.database.db
  const school = await makeSchool(db)
  const teacher = await makeUser(db, 'teacher', school.id)
  const klass = await makeClass(db, school.id, teacher.id, grade)
  const client = new TestClient(t.app)
  await client.login(school.code, teacher.username, teacher.password)
  return { school, teacher, klass, client }
}

async function studentsOf(classId: number) {
  return t.database.db.selectFrom('users').selectAll().where('class_id', '=', classId).orderBy('id').execute()
}

test('usernames are the transliterated given name, short and plain a–z', () => {
  assert.equal(transliterate('Мөнх-Эрдэнэ'), 'monherdene')
  assert.equal(transliterate('Цэцэгжаргал'), 'tsetsegjargal')
  assert.equal(transliterate('Хүслэн Ёндон Юмжир Шагдар'), 'huslenyondonyumjirshagdar')
  assert.equal(transliterate('Zoë'), 'zoe')
  assert.equal(givenName('Болдын Бат'), 'Бат')
  assert.equal(givenName('Б.Батбаяр'), 'Батбаяр')
  assert.equal(givenName('Б. Батбаяр'), 'Батбаяр')
  assert.equal(givenName('Ганбаатар Сарнай'), 'Сарнай')
  assert.equal(usernameBase('Доржийн Цэцэгжаргал'), 'tsetsegjarga', 'at most 12 letters')
  assert.equal(usernameBase('Анар'), 'anar')
  assert.equal(usernameBase('123 !!!'), 'student')
  assert.equal(usernameBase('李小龙'), 'student')
  assert.match(usernameBase('<script>alert(1)</script>'), /^[a-z]{1,12}$/)
})

test('my classes lists only my own classes with their head count', async () => {
  const { school, klass, client } = await teacherWithClass()
  const other = await makeUser(t.database.db, 'teacher', school.id)
  const othersClass = await makeClass(t.database.db, school.id, other.id, 5)
  await makeUser(t.database.db, 'student', school.id, { classId: klass.id, grade: 7 })
  const res = await client.get('/teacher/classes')
  assert.equal(res.statusCode, 200)
  assert.match(res.body, new RegExp(`<a href="/teacher/classes/${klass.id}">${klass.name}</a></th><td>7-р анги</td><td>1</td>`))
  assert.doesNotMatch(res.body, new RegExp(`/teacher/classes/${othersClass.id}"`))
  assert.match(res.body, /<th scope="col">/)
  assert.match(res.body, /<label for="class-name">/)
})

test('a teacher creates a class; bad names and grades re-render the form with 422', async () => {
  const { client } = await teacherWithClass()
  const res = await client.post('/teacher/classes', { name: '  8Б  ', grade: '8' })
  assert.equal(res.statusCode, 303)
  const id = /^\/teacher\/classes\/(\d+)$/.exec(res.headers.location as string)?.[1]
  assert.ok(id, 'redirects to the new class page')
  const page = await client.get(`/teacher/classes/${id}`)
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /<h1>8Б анги<\/h1>/)
  assert.match(page.body, /8-р анги/)

  const cases: [Record<string, string>, RegExp][] = [
    [{ name: '', grade: '5' }, /Ангийн нэрийг бичнэ үү/],
    [{ name: '   ', grade: '5' }, /Ангийн нэрийг бичнэ үү/],
    [{ name: 'x'.repeat(101), grade: '5' }, /100 хүртэл тэмдэгттэй/],
    [{ name: '5А', grade: '0' }, /1-ээс 12 хүртэлх ангийг сонгоно уу/],
    [{ name: '5А', grade: '13' }, /1-ээс 12 хүртэлх ангийг сонгоно уу/],
    [{ name: '5А', grade: 'abc' }, /1-ээс 12 хүртэлх ангийг сонгоно уу/],
    [{ name: '5А', grade: '5.5' }, /1-ээс 12 хүртэлх ангийг сонгоно уу/],
    [{ name: '5А' }, /1-ээс 12 хүртэлх ангийг сонгоно уу/],
  ]
  for (const [form, message] of cases) {
    const bad = await client.post('/teacher/classes', form)
    assert.equal(bad.statusCode, 422, JSON.stringify(form))
    assert.match(bad.body, message)
    assert.match(bad.body, /aria-invalid="true"/)
  }
  // The typed name comes back in the form, escaped.
  const hostile = await client.post('/teacher/classes', { name: '"><script>alert(1)</script>', grade: '99' })
  assert.equal(hostile.statusCode, 422)
  assert.doesNotMatch(hostile.body, /<script>alert/)
  assert.match(hostile.body, /value="&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;"/)
  // Duplicate fields and oversized input are bad requests, never a 500.
  assert.equal((await client.post('/teacher/classes', { name: ['a', 'b'], grade: '5' })).statusCode, 400)
  assert.equal((await client.post('/teacher/classes', { name: 'x'.repeat(5000), grade: '5' })).statusCode, 400)
})

test('bulk add: transliterated usernames unique in the school, 6-digit PINs that log in, cards shown once', async () => {
  const { school, klass, client } = await teacherWithClass(6)
  const res = await client.post(`/teacher/classes/${klass.id}/students`, {
    names: '  Болдын Бат  \r\n\r\nДоржийн Бат\n\n   \nГанбаатарын Мөнх-Эрдэнэ\n李小龙\n',
  })
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/teacher/classes/${klass.id}/cards`)

  const page = await client.get(res.headers.location as string)
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /ПИН кодыг дахин харуулахгүй/)
  assert.match(page.body, /<button type="button" hidden data-print>/)
  assert.match(page.body, /<script src="\/static\/js\/print\.js\?v=[0-9a-f]+" defer><\/script>/)
  assert.match(page.body, /<link rel="stylesheet" href="\/static\/css\/print\.css\?v=[0-9a-f]+" media="print">/)
  const cards = cardsOn(page)
  assert.deepEqual(
    cards.map((c) => [c.name, c.username]),
    [
      ['Болдын Бат', 'bat'],
      ['Доржийн Бат', 'bat2'],
      ['Ганбаатарын Мөнх-Эрдэнэ', 'monherdene'],
      ['李小龙', 'student'],
    ],
  )
  for (const card of cards) {
    assert.match(card.pin, /^\d{6}$/)
    assert.equal(card.schoolCode, String(school.code))
    assert.equal(card.school, school.name)
    assert.equal(card.className, klass.name)
  }

  // Stored as the class's students, grade from the class, PINs only as argon2id hashes.
  const rows = await studentsOf(klass.id)
  assert.equal(rows.length, 4)
  for (const row of rows) {
    assert.equal(row.role, 'student')
    assert.equal(row.grade, 6)
    assert.equal(row.school_id, school.id)
    assert.match(row.password_hash, /^\$argon2id\$/)
    for (const card of cards) assert.ok(!row.password_hash.includes(card.pin))
  }

  // A student logs in with what is printed on the card.
  const student = new TestClient(t.app)
  const login = await student.login(cards[0].schoolCode, cards[0].username, cards[0].pin)
  assert.equal(login.headers.location, '/student')
  assert.equal((await student.get('/student')).statusCode, 200)

  // Shown once: a reload shows no PINs, only the way to make new ones.
  const again = await client.get(`/teacher/classes/${klass.id}/cards`)
  assert.equal(again.statusCode, 200)
  assert.equal(cardsOn(again).length, 0)
  for (const card of cards) assert.ok(!again.body.includes(card.pin))
  assert.match(again.body, /action="\/teacher\/classes\/\d+\/reset-pins"/)
  assert.match(again.body, /<input type="checkbox" id="confirm" name="confirm" value="yes" required>/)

  // The roster lists them, with a reset button that names each student.
  const roster = await client.get(`/teacher/classes/${klass.id}`)
  assert.match(roster.body, /<th scope="row">Болдын Бат<\/th><td class="username mono">bat<\/td><td>6<\/td>/)
  assert.match(roster.body, /ПИН шинэчлэх<span class="visually-hidden"> \(Доржийн Бат\)<\/span><\/button>/)
  for (const card of cards) assert.ok(!roster.body.includes(card.pin), 'the roster never shows PINs')

  // A second paste in another class of the same school continues the numbering.
  const klass2 = await makeClass(t.database.db, school.id, (await t.database.db.selectFrom('classes').select('teacher_id').where('id', '=', klass.id).executeTakeFirstOrThrow()).teacher_id, 6)
  const res2 = await client.post(`/teacher/classes/${klass2.id}/students`, { names: 'Бат\nБат\nМөнх-Эрдэнэ' })
  assert.equal(res2.statusCode, 303)
  const cards2 = cardsOn(await client.get(`/teacher/classes/${klass2.id}/cards`))
  assert.deepEqual(cards2.map((c) => c.username), ['bat3', 'bat4', 'monherdene2'])
})

test('usernames of another school do not count, staff usernames in the school do', async () => {
  const { school, klass, client } = await teacherWithClass()
  const elsewhere = await teacherWithClass()
  await client.post(`/teacher/classes/${klass.id}/students`, { names: 'Анар' })
  // A teacher named "saran" in this school takes that name.
  await t.database.db.updateTable('users').set({ username: 'Saran' }).where('role', '=', 'teacher').where('school_id', '=', school.id).execute()
  await client.post(`/teacher/classes/${klass.id}/students`, { names: 'Саран' })
  assert.deepEqual((await studentsOf(klass.id)).map((s) => s.username), ['anar', 'saran2'])
  await elsewhere.client.post(`/teacher/classes/${elsewhere.klass.id}/students`, { names: 'Анар' })
  assert.deepEqual((await studentsOf(elsewhere.klass.id)).map((s) => s.username), ['anar'])
})

test('bad pastes are all-or-nothing with a localized message naming the lines', async () => {
  const { klass, client } = await teacherWithClass()
  const url = `/teacher/classes/${klass.id}/students`

  const empty = await client.post(url, { names: '\n  \n\t\n' })
  assert.equal(empty.statusCode, 422)
  assert.match(empty.body, /Дор хаяж нэг сурагчийн нэр бичнэ үү/)
  assert.match(empty.body, /aria-invalid="true"/)
  assert.match(empty.body, /aria-describedby="names-hint names-error"/)
  assert.equal((await client.post(url, {})).statusCode, 422)

  const many = Array.from({ length: 101 }, (_, i) => `Сурагч ${i + 1}`).join('\n')
  const tooMany = await client.post(url, { names: many })
  assert.equal(tooMany.statusCode, 422)
  assert.match(tooMany.body, /Нэг удаад 100 хүртэл нэр нэмнэ. Та 101 нэр оруулсан/)
  assert.ok(tooMany.body.includes('Сурагч 101</textarea>'), 'the paste is kept for fixing')

  const long = await client.post(url, { names: `Бат\nБолд\n${'Ж'.repeat(101)}\nДорж` })
  assert.equal(long.statusCode, 422)
  assert.match(long.body, /Урт нэртэй мөр: 3\./)
  assert.equal((await client.post(url, { names: `${'Ж'.repeat(100)}` })).statusCode, 303, '100 characters is fine')

  const control = await client.post(url, { names: 'Бат\nБол\u0000д' })
  assert.equal(control.statusCode, 422)
  assert.match(control.body, /Мөр: 2\./)

  assert.equal((await client.post(url, { names: ['a', 'b'] })).statusCode, 400)
  assert.equal((await studentsOf(klass.id)).length, 1, 'only the one valid paste created anyone')

  client.headers = { 'accept-language': 'en' }
  const en = await client.post(url, { names: many })
  assert.match(en.body, /You can add at most 100 names at a time. You entered 101/)
  client.headers = {}
})

test('hostile names are escaped in the roster and on the cards', async () => {
  const { klass, client } = await teacherWithClass()
  const hostile = '<script>alert(1)</script>'
  await client.post(`/teacher/classes/${klass.id}/students`, { names: `${hostile}\n<img src=x onerror=alert(1)>\n"'&` })
  const cards = await client.get(`/teacher/classes/${klass.id}/cards`)
  const roster = await client.get(`/teacher/classes/${klass.id}`)
  for (const res of [cards, roster]) {
    assert.doesNotMatch(res.body, /<script>alert|<img src=x/)
    assert.ok(res.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'))
  }
  assert.deepEqual(cardsOn(cards).map((c) => c.name), [hostile, '<img src=x onerror=alert(1)>', `"'&`])
  for (const c of cardsOn(cards)) assert.match(c.username, /^[a-z]+[0-9]*$/)
})

test('a full paste of 100 names: 10 printed sheets, and the sealed cookie stays under 4 KB', async () => {
  const { klass, client } = await teacherWithClass()
  const names = Array.from({ length: 100 }, (_, i) => `Сурагч Номин ${i + 1}`).join('\n')
  const res = await client.post(`/teacher/classes/${klass.id}/students`, { names })
  assert.equal(res.statusCode, 303)
  const once = res.cookies.find((c) => c.name === 'bagsh_once')!
  assert.ok(once.value.length + once.name.length < 4000, `cookie is ${once.value.length} bytes`)
  assert.equal(once.httpOnly, true)
  const page = await client.get(`/teacher/classes/${klass.id}/cards`)
  const cards = cardsOn(page)
  assert.equal(cards.length, 100)
  assert.equal(new Set(cards.map((c) => c.username)).size, 100)
  assert.equal(cards[0].username, 'nomin')
  assert.equal(cards[99].username, 'nomin100')
  assert.equal(page.body.match(/<div class="card-sheet">/g)?.length, 10)
})

test('resetting one PIN: old PIN and old session are dead, the new PIN works, one card is shown', async () => {
  const { school, klass, client } = await teacherWithClass()
  const student = await makeUser(t.database.db, 'student', school.id, { classId: klass.id, grade: 7, displayName: 'Сүхийн Тэмүүлэн' })
  const classmate = await makeUser(t.database.db, 'student', school.id, { classId: klass.id, grade: 7 })
  const device = new TestClient(t.app)
  await device.login(school.code, student.username, student.password)
  const mate = new TestClient(t.app)
  await mate.login(school.code, classmate.username, classmate.password)

  const res = await client.post(`/teacher/students/${student.id}/reset-pin`)
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/teacher/classes/${klass.id}/cards`)
  const cards = cardsOn(await client.get(res.headers.location as string))
  assert.equal(cards.length, 1)
  assert.equal(cards[0].name, 'Сүхийн Тэмүүлэн')
  assert.equal(cards[0].username, student.username)
  assert.match(cards[0].pin, /^\d{6}$/)

  const stale = await device.get('/student')
  assert.equal(stale.statusCode, 303, 'the old session is dead')
  const old = await new TestClient(t.app).post('/login', { school: String(school.code), username: student.username, password: student.password })
  if (cards[0].pin !== student.password) assert.equal(old.statusCode, 401, 'the old PIN no longer works')
  await new TestClient(t.app).login(school.code, student.username, cards[0].pin)
  assert.equal((await mate.get('/student')).statusCode, 200, 'classmates stay logged in')
})

test('resetting a whole class needs the confirmation box, then shows every new PIN once', async () => {
  const { school, klass, client } = await teacherWithClass()
  const a = await makeUser(t.database.db, 'student', school.id, { classId: klass.id, grade: 7, password: '111111' })
  const b = await makeUser(t.database.db, 'student', school.id, { classId: klass.id, grade: 7, password: '222222' })
  // A student of another class of the same teacher is not touched.
  const otherClass = await makeClass(t.database.db, school.id, (await t.database.db.selectFrom('classes').select('teacher_id').where('id', '=', klass.id).executeTakeFirstOrThrow()).teacher_id, 7)
  const outsider = await makeUser(t.database.db, 'student', school.id, { classId: otherClass.id, grade: 7, password: '333333' })
  const outsiderDevice = new TestClient(t.app)
  await outsiderDevice.login(school.code, outsider.username, outsider.password)
  const aDevice = new TestClient(t.app)
  await aDevice.login(school.code, a.username, a.password)

  const gone = await client.get(`/teacher/classes/${klass.id}/cards`)
  assert.match(gone.body, /зөвхөн нэг удаа харуулдаг/)
  assert.match(gone.body, /Энэ ангийн 2 сурагчийн одоогийн ПИН код/)
  const unconfirmed = await client.post(`/teacher/classes/${klass.id}/reset-pins`, {})
  assert.equal(unconfirmed.statusCode, 422)
  assert.match(unconfirmed.body, /aria-invalid="true" aria-describedby="confirm-error"/)
  assert.match(unconfirmed.body, /нүдийг чагтална уу/)
  assert.equal((await aDevice.get('/student')).statusCode, 200, 'nothing was reset')

  const res = await client.post(`/teacher/classes/${klass.id}/reset-pins`, { confirm: 'yes' })
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, `/teacher/classes/${klass.id}/cards`)
  const cards = cardsOn(await client.get(`/teacher/classes/${klass.id}/cards`))
  assert.deepEqual(cards.map((c) => c.username).sort(), [a.username, b.username].sort())
  assert.equal(cardsOn(await client.get(`/teacher/classes/${klass.id}/cards`)).length, 0, 'shown once')
  assert.equal((await aDevice.get('/student')).statusCode, 303, 'old sessions are dead')
  for (const card of cards) await new TestClient(t.app).login(school.code, card.username, card.pin)

  // The other class's student keeps both their session and their PIN.
  assert.equal((await outsiderDevice.get('/student')).statusCode, 200)
  await new TestClient(t.app).login(school.code, outsider.username, outsider.password)
})

test('a class without students offers to add them instead of resetting', async () => {
  const { klass, client } = await teacherWithClass()
  const res = await client.get(`/teacher/classes/${klass.id}/cards`)
  assert.equal(res.statusCode, 200)
  assert.doesNotMatch(res.body, /reset-pins/)
  assert.match(res.body, new RegExp(`href="/teacher/classes/${klass.id}#add-students"`))
  const roster = await client.get(`/teacher/classes/${klass.id}`)
  assert.match(roster.body, /<label for="names">/)
  assert.match(roster.body, /<textarea id="names" name="names"/)
  assert.equal(roster.body.match(/<button type="submit"/g)?.length, 2, 'logout and add students')
})

test('the sealed PINs only open in the session that made them', async () => {
  const { school, teacher, klass, client } = await teacherWithClass()
  const res = await client.post(`/teacher/classes/${klass.id}/students`, { names: 'Тэмүүжин' })
  const sealed = client.cookies.get('bagsh_once')!
  // The same teacher logged in elsewhere, carrying a copy of the cookie.
  const elsewhere = new TestClient(t.app)
  await elsewhere.login(school.code, teacher.username, teacher.password)
  elsewhere.cookies.set('bagsh_once', sealed)
  assert.equal(cardsOn(await elsewhere.get(res.headers.location as string)).length, 0)
  assert.equal(cardsOn(await client.get(res.headers.location as string)).length, 1)
})

test('two teachers of one school pasting at the same moment get distinct usernames', async () => {
  const { school, klass, client } = await teacherWithClass()
  const other = await makeUser(t.database.db, 'teacher', school.id)
  const otherClass = await makeClass(t.database.db, school.id, other.id, 7)
  const otherClient = new TestClient(t.app)
  await otherClient.login(school.code, other.username, other.password)
  const [a, b] = await Promise.all([
    client.post(`/teacher/classes/${klass.id}/students`, { names: 'Бат\nБат\nСараа' }),
    otherClient.post(`/teacher/classes/${otherClass.id}/students`, { names: 'Бат\nСараа\nБат' }),
  ])
  assert.equal(a.statusCode, 303)
  assert.equal(b.statusCode, 303)
  const usernames = [...(await studentsOf(klass.id)), ...(await studentsOf(otherClass.id))].map((s) => s.username).sort()
  assert.deepEqual(usernames, ['bat', 'bat2', 'bat3', 'bat4', 'saraa', 'saraa2'])
})
