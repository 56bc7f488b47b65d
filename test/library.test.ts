import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeSchool, makeUser } from './helpers/factories.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import { importSampleBook, loadSampleBooks } from '../src/services/textbooks/samples.ts'
import { chunkEmbeddingText, createTextbook, insertChunks, insertPages, markFailed, markReady } from '../src/services/textbooks/store.ts'
import type { Role } from '../src/db/schema.ts'

/** The library as readers see it, JavaScript off: browsing, searching, reading a page. */

let t: TestApp
let school: { id: number; code: number }
const books = new Map<string, number>()
let hostileId: number
let failedId: number

before(async () => {
  t = await buildTestApp()
  const { db } = t.database
  school = await makeSchool(db, 'Номын сангийн сургууль')
  const embedder = createLocalEmbedder()
  for (const book of loadSampleBooks()) books.set(book.meta.subject, await importSampleBook(db, embedder, book))

  // A book whose text tries to inject markup: it must come out as text everywhere.
  const hostile = `Хорт <script>alert("x")</script> <img src=x onerror=alert(1)> текст "квант" & 'бусад'`
  const { id } = await createTextbook(db, { subject: 'informatics', grade: 10, title: 'Мэдээлэл <b>зүй</b> 10' })
  const chunks = [{ ord: 0, sectionPath: '1', sectionTitle: 'Аюулгүй <i>байдал</i>', pageStart: 1, pageEnd: 1, pdfPageStart: 1, pdfPageEnd: 1, content: hostile }]
  const embeddings = await embedder.embed(chunks.map(chunkEmbeddingText))
  await db.transaction().execute(async (trx) => {
    await insertPages(trx, id, [{ pdfPage: 1, label: null, number: null, text: `1 Аюулгүй <i>байдал</i>\n\n${hostile}` }])
    await insertChunks(trx, id, chunks, embeddings, embedder.model)
    await markReady(trx, id, { toc: [{ path: '1', title: 'Аюулгүй <i>байдал</i>', level: 1, page: 1, pdfPage: 1 }], pageCount: 1, embeddingModel: embedder.model })
  })
  hostileId = id
  failedId = (await createTextbook(db, { subject: 'history', grade: 9, title: 'Эвдэрсэн ном' })).id
  await markFailed(db, failedId, 'textbooks.errors.corrupt')
})

after(async () => {
  await t?.close()
})

async function as(role: Role, grade?: number): Promise<TestClient> {
  const user = await makeUser(t.database.db, role, role === 'platform_admin' ? null : school.id, { grade })
  const client = new TestClient(t.app)
  await client.login(role === 'platform_admin' ? null : school.code, user.username, user.password)
  return client
}

const search = (client: TestClient, q: string, extra = '') => client.get(`/library/search?q=${encodeURIComponent(q)}${extra}`)
const firstResultLink = (html: string) => /<ol class="results">\s*<li>\s*<h3><a href="([^"]+)"/.exec(html)?.[1]?.replace(/&amp;/g, '&')

test('a teacher sees every ready sample book, grouped by grade; failed books are not listed', async () => {
  const client = await as('teacher')
  const res = await client.get('/library')
  assert.equal(res.statusCode, 200)
  for (const book of loadSampleBooks()) assert.ok(res.body.includes(`>${book.meta.title}</a>`), `${book.meta.title} is listed`)
  assert.match(res.body, /<h3>7-р анги<\/h3>/)
  assert.ok(!res.body.includes('Эвдэрсэн ном'))
  assert.match(res.body, /aria-current="page">Номын сан</)
})

test('a student sees their own grade first and can show all grades; filters are plain GET forms', async () => {
  const client = await as('student', 7)
  const own = await client.get('/library')
  assert.equal(own.statusCode, 200)
  assert.match(own.body, /Таны ангийн \(7-р анги\)/)
  assert.ok(own.body.includes('>Биологи 7</a>'))
  assert.ok(!own.body.includes('>Физик 8</a>'), 'grade 8 is not shown by default')
  assert.match(own.body, /<option value="7" selected>/)
  const all = await client.get('/library?grade=')
  assert.ok(all.body.includes('>Физик 8</a>') && all.body.includes('>Биологи 7</a>'))
  const physics = await client.get('/library?grade=&subject=physics')
  assert.ok(physics.body.includes('>Физик 8</a>'))
  assert.ok(!physics.body.includes('>Биологи 7</a>'))
  // Unknown filter values mean "all", never an error.
  const odd = await client.get('/library?grade=99&subject=%3Cscript%3E')
  assert.equal(odd.statusCode, 200)
  assert.ok(odd.body.includes('>Биологи 7</a>'))
})

for (const [q, role] of [['фотосинтезийн явц', 'teacher'], ['fotosintez', 'teacher'], ['фотосинтезийн явц', 'student'], ['fotosintez', 'student']] as const) {
  test(`searching "${q}" as a ${role} without JavaScript finds the photosynthesis page, and its link shows that page`, async () => {
    const client = await as(role, role === 'student' ? 7 : undefined)
    const res = await search(client, q)
    assert.equal(res.statusCode, 200)
    // Section 2.1 "Фотосинтез" runs over pages 5 and 6 of the biology book.
    const link = firstResultLink(res.body)
    const m = new RegExp(`^/library/${books.get('biology')}\\?page=([56])#p-([56])$`).exec(link ?? '')
    assert.ok(m && m[1] === m[2], `first result ${link}`)
    assert.match(res.body, /<mark>[Фф]отосинтез/)
    const page = await client.get(link!.split('#')[0]!)
    assert.equal(page.statusCode, 200)
    assert.match(page.body, new RegExp(`<section class="book-page" id="p-${m[1]}"`))
    assert.match(page.body, /aria-current="location">2\.1 Фотосинтез</)
    assert.match(page.body, /Фотосинтезийн (явцыг|хурдад)/)
  })
}

test('a search filtered to another subject does not return the biology page; the subject filter is kept', async () => {
  const client = await as('teacher')
  const res = await search(client, 'фотосинтез', '&subject=physics')
  assert.equal(res.statusCode, 200)
  assert.ok(!res.body.includes(`/library/${books.get('biology')}?`))
  assert.match(res.body, /<option value="physics" selected>/)
})

test('an empty search shows the form; a search with no hits says so; an overlong one is a field message', async () => {
  const client = await as('teacher')
  const empty = await client.get('/library/search')
  assert.equal(empty.statusCode, 200)
  assert.match(empty.body, /<input id="q" name="q" type="search"/)
  const none = await search(client, 'фотосинтез', '&subject=music')
  assert.equal(none.statusCode, 200)
  assert.match(none.body, /Юу ч олдсонгүй/)
  const long = await search(client, 'а'.repeat(201))
  assert.equal(long.statusCode, 422)
  assert.match(long.body, /aria-invalid="true" aria-describedby|aria-describedby="q-hint q-error" aria-invalid="true"/)
  assert.match(long.body, /200 тэмдэгтээс богино/)
  const huge = await search(client, 'а'.repeat(3000))
  assert.ok([400, 422].includes(huge.statusCode), `status ${huge.statusCode}`)
})

test('nonsense finds nothing and says so, in Cyrillic or Latin letters; a real word still finds its page', async () => {
  const client = await as('student', 7)
  for (const q of ['qwzxv', 'ыыыыы', 'qwzx vbnm', 'zzzzzz ёёёё']) {
    const res = await search(client, q)
    assert.equal(res.statusCode, 200, q)
    assert.match(res.body, /Юу ч олдсонгүй/, q)
    assert.ok(!res.body.includes('<ol class="results">'), q)
  }
  const en = await client.get(`/library/search?q=${encodeURIComponent('ыыыыы')}`, { 'accept-language': 'en' })
  assert.match(en.body, /Nothing found/)
  const found = await search(client, 'хлорофилл')
  assert.ok(firstResultLink(found.body)?.startsWith(`/library/${books.get('biology')}?`))
})

test('hostile queries and hostile book text are escaped everywhere', async () => {
  const client = await as('teacher')
  const q = `"><script>alert(1)</script> квант`
  const res = await search(client, q)
  assert.equal(res.statusCode, 200)
  assert.ok(!res.body.includes('<script>alert'), 'no script from the query or the text')
  assert.ok(!res.body.includes('<img src=x'), 'no img from the text')
  assert.ok(res.body.includes('&lt;script&gt;'))
  assert.ok(res.body.includes(`/library/${hostileId}?page=1#p-1`), 'the hostile book is found')
  assert.ok(res.body.includes('Мэдээлэл &lt;b&gt;зүй&lt;/b&gt; 10'))
  const page = await client.get(`/library/${hostileId}`)
  assert.equal(page.statusCode, 200)
  assert.ok(!/<script>alert|<img src=x|<b>зүй|<i>байдал/.test(page.body))
  assert.ok(page.body.includes('&lt;img src=x onerror=alert(1)&gt;'))
})

test('a textbook page has its contents, prev/next links and a page jump', async () => {
  const client = await as('teacher')
  const id = books.get('biology')!
  const first = await client.get(`/library/${id}`)
  assert.equal(first.statusCode, 200)
  assert.match(first.body, /<h2 id="toc-title">Гарчиг<\/h2>/)
  assert.ok(first.body.includes(`href="/library/${id}?page=5#p-5"`), 'the contents link to 2.1 on page 5')
  assert.ok(!first.body.includes('rel="prev"'))
  const five = await client.get(`/library/${id}?page=5`)
  assert.ok(five.body.includes(`href="/library/${id}?page=4#p-4" rel="prev"`))
  assert.ok(five.body.includes(`href="/library/${id}?page=6#p-6" rel="next"`))
  assert.match(five.body, /aria-current="location">2\.1 Фотосинтез/)
  assert.match(five.body, /<form method="get" action="\/library\/\d+" class="filters">/)
})

test('bad ids, non-ready books and bad pages are 404s, never 500s', async () => {
  const client = await as('student', 7)
  const id = books.get('biology')!
  for (const url of [
    '/library/999999999',
    '/library/0',
    '/library/abc',
    '/library/1234567890',
    `/library/${failedId}`,
    `/library/${id}?page=9999`,
    `/library/${id}?page=abc`,
    `/library/${id}?page=-1`,
    `/library/${id}?page=1.5`,
    `/library/${id}?page=%3Cscript%3E`,
    `/library/${id}?page=${'9'.repeat(30)}`,
  ]) {
    const res = await client.get(url)
    assert.equal(res.statusCode, 404, url)
    assert.match(res.body, /Хуудас олдсонгүй/, url)
  }
})

test('every signed-in role may read the library; anonymous visitors are sent to log in', async () => {
  for (const role of ['platform_admin', 'school_admin', 'teacher', 'student'] as const) {
    const client = await as(role, role === 'student' ? 7 : undefined)
    assert.equal((await client.get('/library')).statusCode, 200, role)
    assert.equal((await client.get(`/library/${books.get('physics')}`)).statusCode, 200, role)
    assert.equal((await search(client, 'ом')).statusCode, 200, role)
  }
  const anonymous = new TestClient(t.app)
  for (const url of ['/library', '/library/search?q=x', `/library/${books.get('physics')}`]) {
    const res = await anonymous.get(url)
    assert.equal(res.statusCode, 303, url)
    assert.match(String(res.headers.location), /^\/login\?next=/)
  }
})

test('students get an "ask about this section" link to the chat once the chat exists', async () => {
  const student = await as('student', 7)
  const teacher = await as('teacher')
  const url = `/library/${books.get('biology')}?page=5`
  const chat = t.app.hasRoute({ method: 'GET', url: '/chat' })
  const link = `href="/chat?textbook=${books.get('biology')}&amp;section=2.1"`
  assert.equal((await student.get(url)).body.includes(link), chat)
  assert.ok(!(await teacher.get(url)).body.includes('/chat?'))
})
