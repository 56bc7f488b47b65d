import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { crc32, deflateSync } from 'node:zlib'
import type { LightMyRequestResponse } from 'fastify'
import PDFDocument from 'pdfkit'
import { sql } from 'kysely'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { makeSchool, makeUser } from './helpers/factories.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import { createJobHandlers } from '../src/services/jobs/handlers.ts'
import { JobRunner } from '../src/services/jobs/queue.ts'
import { IMPORT_CHUNKS_LEASE } from '../src/services/textbooks/import-chunks.ts'
import { enqueuePdfImport, UploadLimitReached } from '../src/services/textbooks/ingest.ts'
import { importSampleBook, loadSampleBooks } from '../src/services/textbooks/samples.ts'
import { chunkEmbeddingText, createTextbook, insertChunks } from '../src/services/textbooks/store.ts'
import { saveUploadedPdf } from '../src/services/textbooks/uploads.ts'

/**
 * The platform admin's textbook pages with JavaScript off: upload a PDF through the multipart
 * form, watch the job, find the book in the library; bad files get localized messages; CSRF
 * holds on multipart; only platform admins get in.
 */

const FIXTURE = readFileSync(new URL('./fixtures/astronomy-10.pdf', import.meta.url))
/** Small enough that a test can send more than the limit. */
const MAX_BYTES = 64 * 1024

let t: TestApp
let dataDir: string
let runner: JobRunner
let school: { id: number; code: number }
let biologyId: number

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'bagsh-library-admin-'))
  t = await buildTestApp({ dataDir, pdfMaxBytes: MAX_BYTES })
  const embedder = createLocalEmbedder()
  runner = new JobRunner(t.database.db, createJobHandlers({ dataDir, embedder }), { pollMs: 20, retryBaseMs: 10 })
  school = await makeSchool(t.database.db, 'Админы сургууль')
  const biology = loadSampleBooks().find((b) => b.meta.subject === 'biology')!
  biologyId = await importSampleBook(t.database.db, embedder, biology)
})

after(async () => {
  await runner?.stop()
  await t?.close()
  if (dataDir) rmSync(dataDir, { recursive: true, force: true })
})

async function as(role: 'platform_admin' | 'school_admin' | 'teacher' | 'student'): Promise<TestClient> {
  const user = await makeUser(t.database.db, role, role === 'platform_admin' ? null : school.id, { grade: role === 'student' ? 10 : undefined })
  const client = new TestClient(t.app)
  await client.login(role === 'platform_admin' ? null : school.code, user.username, user.password)
  return client
}

type Field = string | { name: string; type: string; data: Buffer }

/** What a browser sends for a multipart form: the parts in the order given. */
async function postMultipart(client: TestClient, url: string, fields: [string, Field][], headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  const form = new FormData()
  for (const [name, value] of fields) {
    if (typeof value === 'string') form.append(name, value)
    else form.append(name, new Blob([new Uint8Array(value.data)], { type: value.type }), value.name)
  }
  const request = new Request('http://localhost/', { method: 'POST', body: form })
  const payload = Buffer.from(await request.arrayBuffer())
  const cookie = [...client.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  return t.app.inject({ method: 'POST', url, payload, headers: { 'content-type': request.headers.get('content-type')!, cookie, ...headers } })
}

const pdf = (data: Buffer, name = 'book.pdf') => ({ name, type: 'application/pdf', data })

/** The upload form's fields, `_csrf` first as the page has it. */
function uploadFields(client: TestClient, meta: Partial<Record<string, string>>, file: Field | null): [string, Field][] {
  const fields: [string, Field][] = [['_csrf', client.csrf!]]
  const values = { subject: 'physics', grade: '10', title: 'Одон орон 10', year: '2026', kind: 'optional', ...meta }
  for (const [k, v] of Object.entries(values)) if (v !== undefined) fields.push([k, v])
  if (file) fields.push(['file', file])
  return fields
}

const uploadsOnDisk = () => {
  try {
    return readdirSync(join(dataDir, 'uploads'))
  } catch {
    return []
  }
}

/** A one-page PDF that is only a picture: what a scan without OCR looks like. */
async function scannedPdf(): Promise<Buffer> {
  const chunk = (type: string, data: Buffer) => {
    const out = Buffer.alloc(12 + data.length)
    out.writeUInt32BE(data.length, 0)
    out.write(type, 4, 'latin1')
    data.copy(out, 8)
    out.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), data])), 8 + data.length)
    return out
  }
  const size = 64
  const header = Buffer.alloc(13)
  header.writeUInt32BE(size, 0)
  header.writeUInt32BE(size, 4)
  header[8] = 8 // 8-bit grayscale
  const pixels = Buffer.alloc((size + 1) * size)
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) pixels[y * (size + 1) + 1 + x] = ((x >> 3) + (y >> 3)) & 1 ? 255 : 0
  const png = Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', header), chunk('IDAT', deflateSync(pixels)), chunk('IEND', Buffer.alloc(0))])
  const doc = new PDFDocument()
  const parts: Buffer[] = []
  doc.on('data', (c: Buffer) => parts.push(c))
  doc.image(png, 50, 50, { width: 400 })
  doc.end()
  await new Promise((resolve) => doc.on('end', resolve))
  return Buffer.concat(parts)
}

const jobIdOf = (res: LightMyRequestResponse) => Number(/^\/admin\/textbooks\/jobs\/(\d+)$/.exec(String(res.headers.location))?.[1])

test('only platform admins reach the textbook pages; everyone else gets a 404, anonymous visitors the login', async () => {
  const { id } = (await t.database.db.selectFrom('textbooks').select('id').where('id', '=', biologyId).executeTakeFirstOrThrow())
  const urls = ['/admin/textbooks', '/admin/textbooks/new', '/admin/textbooks/import', `/admin/textbooks/${id}/delete`]
  for (const role of ['school_admin', 'teacher', 'student'] as const) {
    const client = await as(role)
    for (const url of urls) assert.equal((await client.get(url)).statusCode, 404, `${role} ${url}`)
    await client.get('/library')
    assert.equal((await client.post(`/admin/textbooks/${id}/delete`)).statusCode, 404, `${role} delete`)
    assert.equal((await client.post('/admin/textbooks/reindex')).statusCode, 404, `${role} reindex`)
    const upload = await postMultipart(client, '/admin/textbooks', uploadFields(client, {}, pdf(FIXTURE)))
    assert.equal(upload.statusCode, 404, `${role} upload`)
    const imported = await postMultipart(client, '/admin/textbooks/import', [['_csrf', client.csrf!], ['file', { name: 'x.jsonl', type: 'application/x-ndjson', data: Buffer.from('{}\n') }]])
    assert.equal(imported.statusCode, 404, `${role} import`)
  }
  const anonymous = new TestClient(t.app)
  for (const url of urls) assert.equal((await anonymous.get(url)).headers.location, `/login?next=${encodeURIComponent(url)}`)
  assert.equal(uploadsOnDisk().length, 0, 'nobody but a platform admin wrote a file')
  const admin = await as('platform_admin')
  const list = await admin.get('/admin/textbooks')
  assert.equal(list.statusCode, 200)
  assert.match(list.body, /<th scope="row"><a href="\/library\/\d+">Биологи 7<\/a><\/th>/)
  assert.match(list.body, /aria-current="page">Сурах бичгүүд</)
})

test('a PDF uploaded without JavaScript goes to its progress page and ends searchable', async () => {
  const admin = await as('platform_admin')
  const form = await admin.get('/admin/textbooks/new')
  assert.equal(form.statusCode, 200)
  assert.match(form.body, /<form method="post" action="\/admin\/textbooks" enctype="multipart\/form-data"[^>]*>\s*<input type="hidden" name="_csrf"/)

  const res = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, {}, pdf(FIXTURE, 'Одон орон 10.pdf')))
  assert.equal(res.statusCode, 303, res.body.slice(0, 500))
  const jobId = jobIdOf(res)
  assert.ok(jobId > 0)

  // Queued: the page refreshes itself without JavaScript (a <noscript> meta, never a Refresh
  // header, which would reload it under htmx too); htmx polls the same URL for the progress partial alone.
  const waiting = await admin.get(`/admin/textbooks/jobs/${jobId}`)
  assert.equal(waiting.statusCode, 200)
  assert.equal(waiting.headers.refresh, undefined)
  assert.ok(waiting.body.includes('<noscript><meta http-equiv="refresh" content="3"></noscript>'))
  assert.match(waiting.body, /<script src="\/static\/js\/reload\.js\?v=\w+" data-refresh="3" defer><\/script>/, 'browsers without htmx (IE11) reload it')
  assert.match(waiting.body, /<h1>PDF оруулах ажил №\d+<\/h1>/)
  assert.match(waiting.body, /Одон орон 10/)
  const fragment = await admin.get(`/admin/textbooks/jobs/${jobId}`, { 'hx-request': 'true' })
  assert.equal(fragment.statusCode, 200)
  assert.ok(!fragment.body.includes('<html'), 'a fragment, not a page')
  assert.match(fragment.body, new RegExp(`^<div id="job" class="job" data-hx-get="/admin/textbooks/jobs/${jobId}" data-hx-trigger="every 2s" data-hx-swap="outerHTML">`))
  assert.match(String(fragment.headers.vary), /HX-Request/)
  assert.equal(fragment.headers.refresh, undefined)
  assert.ok(!fragment.body.includes('<noscript>'))

  const job = await runner.runJob(jobId)
  assert.equal(job.status, 'done', String(job.error))

  const done = await admin.get(`/admin/textbooks/jobs/${jobId}`)
  assert.equal(done.statusCode, 200)
  assert.equal(done.headers.refresh, undefined)
  assert.ok(!done.body.includes('http-equiv="refresh"') && !done.body.includes('reload.js'), 'a finished job stops refreshing')
  assert.match(done.body, /Дууслаа: сурах бичиг хайлтад орлоо\./)
  assert.ok(!done.body.includes('data-hx-trigger'), 'and stops polling')
  const bookId = Number(/href="\/library\/(\d+)">Номын санд нээх/.exec(done.body)?.[1])
  assert.ok(bookId > 0)

  const found = await admin.get(`/library/search?q=${encodeURIComponent('сарны хиртэлт')}`)
  assert.match(found.body, new RegExp(`<ol class="results">\\s*<li>\\s*<h3><a href="/library/${bookId}\\?page=101#p-101"`))
  const page = await admin.get(`/library/${bookId}?page=101`)
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /Сарны хиртэлт/)
  const list = await admin.get('/admin/textbooks')
  assert.match(list.body, new RegExp(`<a href="/library/${bookId}">Одон орон 10</a>`))
})

test('a file that is not a PDF gets a localized message at the file field, and nothing is kept', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks/new')
  const before = uploadsOnDisk().length
  const res = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, {}, { name: 'notes.pdf', type: 'application/pdf', data: Buffer.from('Энэ бол PDF биш, энгийн текст.\n'.repeat(100)) }))
  assert.equal(res.statusCode, 422)
  assert.match(res.body, /<input id="file" name="file" type="file"[^>]*aria-invalid="true" aria-describedby="file-error file-hint">/)
  assert.match(res.body, /<small class="error" id="file-error">Энэ файл PDF биш байна\./)
  // The rest of the form is kept.
  assert.match(res.body, /<input id="title" name="title" value="Одон орон 10"/)
  assert.match(res.body, /<option value="physics" selected>/)
  assert.equal(uploadsOnDisk().length, before)
})

test('a file over the limit gets a localized message; a body announced far over it is refused before it is read', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks/new')
  const before = uploadsOnDisk().length
  const big = Buffer.concat([FIXTURE, Buffer.alloc(MAX_BYTES, 0x20)])
  const res = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, {}, pdf(big)))
  assert.equal(res.statusCode, 422)
  assert.match(res.body, /<small class="error" id="file-error">Файл хэт том байна\./)
  const huge = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, {}, pdf(Buffer.concat([big, big, big]))))
  assert.equal(huge.statusCode, 413)
  assert.match(huge.body, /Файл хэт том байна/)
  assert.equal(uploadsOnDisk().length, before)
})

test('a corrupt PDF and a scanned one are accepted, then fail on the progress page saying what to do', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks/new')
  const cases = [
    { title: 'Эвдэрсэн ном', data: Buffer.concat([FIXTURE.subarray(0, 2000), Buffer.alloc(3000, 0x41)]), message: /PDF файл эвдэрсэн/ },
    { title: 'Скан хийсэн ном', data: await scannedPdf(), message: /PDF-ийн 1-р хуудсанд текст алга: скан хийсэн зураг байна/ },
  ]
  for (const { title, data, message } of cases) {
    const res = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, { title }, pdf(data)))
    assert.equal(res.statusCode, 303, title)
    const job = await runner.runJob(jobIdOf(res))
    assert.equal(job.status, 'failed', title)
    const page = await admin.get(`/admin/textbooks/jobs/${job.id}`)
    assert.equal(page.statusCode, 200)
    assert.equal(page.headers.refresh, undefined)
    assert.ok(!page.body.includes('http-equiv="refresh"'))
    assert.match(page.body, new RegExp(`<p class="error" role="alert">${message.source}`), title)
    assert.match(page.body, /Дээрх зааврын дагуу засаад дахин оролдоно уу\. <a href="\/admin\/textbooks\/new\?replaces=\d+">Дахин оруулах</)
    const list = await admin.get('/admin/textbooks')
    assert.match(list.body, new RegExp(`${title}</th>[\\s\\S]*?Амжилтгүй[\\s\\S]*?<span class="error">${message.source}`), title)
    const search = await admin.get(`/library/search?q=${encodeURIComponent(title)}`)
    assert.ok(!search.body.includes(title + ','), `${title} is not searchable`)
  }
})

test('metadata errors re-render the form with field messages (422), and the upload is not kept', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks/new')
  const before = uploadsOnDisk().length
  const res = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, { subject: 'alchemy', grade: '13', title: '', year: '99' }, pdf(FIXTURE)))
  assert.equal(res.statusCode, 422)
  for (const field of ['subject', 'grade', 'title', 'year', 'file']) assert.match(res.body, new RegExp(`id="${field}-error"`), field)
  assert.match(res.body, /PDF файлаа дахин сонгоно уу/)
  assert.equal(uploadsOnDisk().length, before)
  // No file at all, and the form as a urlencoded post (what a crawler or an odd client sends).
  const empty = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, {}, { name: '', type: 'application/octet-stream', data: Buffer.alloc(0) }))
  assert.equal(empty.statusCode, 422)
  assert.match(empty.body, /PDF файлаа сонгоно уу\./)
  const urlencoded = await admin.post('/admin/textbooks', { subject: 'physics', grade: '10', title: 'x', file: 'not-a-file' })
  assert.equal(urlencoded.statusCode, 422)
  assert.match(urlencoded.body, /PDF файлаа сонгоно уу\./)
})

test('CSRF holds on multipart: no token, a wrong one, or one after the file is refused before the file is written', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks/new')
  const before = uploadsOnDisk().length
  const good = uploadFields(admin, {}, pdf(FIXTURE))
  const cases: [string, [string, Field][]][] = [
    ['no token', good.slice(1)],
    ['wrong token', [['_csrf', 'x'.repeat(43)], ...good.slice(1)]],
    ['token after the file', [...good.slice(1), good[0]!]],
  ]
  for (const [label, fields] of cases) {
    const res = await postMultipart(admin, '/admin/textbooks', fields)
    assert.equal(res.statusCode, 403, label)
    assert.match(res.body, /Маягтын хугацаа дууссан/, label)
  }
  assert.equal(uploadsOnDisk().length, before, 'no file was written')
  assert.equal(Number((await t.database.db.selectFrom('jobs').select((eb) => eb.fn.countAll<string>().as('n')).where('kind', '=', 'ingest_pdf').executeTakeFirstOrThrow()).n) > 0, true)
  // htmx sends the token as a header instead.
  const withHeader = await postMultipart(admin, '/admin/textbooks', good.slice(1), { 'x-csrf-token': admin.csrf! })
  assert.equal(withHeader.statusCode, 303)
})

test('delete asks for confirmation, then removes the book from the library and from search', async () => {
  const admin = await as('platform_admin')
  const embedder = createLocalEmbedder()
  const book = loadSampleBooks().find((b) => b.meta.subject === 'math')!
  const id = await importSampleBook(t.database.db, embedder, book)
  const list = await admin.get('/admin/textbooks')
  assert.ok(list.body.includes(`href="/admin/textbooks/${id}/delete"`))
  const confirm = await admin.get(`/admin/textbooks/${id}/delete`)
  assert.equal(confirm.statusCode, 200)
  assert.match(confirm.body, /<h1>«Математик 6»-г устгах уу\?<\/h1>/)
  assert.match(confirm.body, new RegExp(`<form method="post" action="/admin/textbooks/${id}/delete"`))
  assert.equal((await admin.get(`/library/${id}`)).statusCode, 200, 'still there until confirmed')
  const res = await admin.post(`/admin/textbooks/${id}/delete`)
  assert.equal(res.statusCode, 303)
  assert.equal(res.headers.location, '/admin/textbooks?deleted=1')
  assert.match((await admin.get('/admin/textbooks?deleted=1')).body, /Сурах бичиг устгагдлаа\./)
  assert.equal((await admin.get(`/library/${id}`)).statusCode, 404)
  assert.equal((await admin.get(`/admin/textbooks/${id}/delete`)).statusCode, 404)
  assert.equal((await admin.post(`/admin/textbooks/${id}/delete`)).statusCode, 404)
  const search = await admin.get(`/library/search?q=${encodeURIComponent('бутархай')}&subject=math`)
  assert.ok(!search.body.includes(`/library/${id}?`))
})

test('a book being imported cannot be deleted yet', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks/new')
  const res = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, { title: 'Оруулж буй ном' }, pdf(FIXTURE)))
  const jobId = jobIdOf(res)
  const { textbookId } = (await t.database.db.selectFrom('jobs').select('payload').where('id', '=', jobId).executeTakeFirstOrThrow()).payload as { textbookId: number }
  const confirm = await admin.get(`/admin/textbooks/${textbookId}/delete`)
  assert.equal(confirm.statusCode, 200)
  assert.match(confirm.body, /одоо оруулж байна/)
  assert.ok(!confirm.body.includes(`action="/admin/textbooks/${textbookId}/delete"`))
  const refused = await admin.post(`/admin/textbooks/${textbookId}/delete`)
  assert.equal(refused.statusCode, 400)
  assert.match(refused.body, /одоо оруулж байна/)
  assert.equal((await runner.runJob(jobId)).status, 'done')
})

test('a new version replaces the old one only when it is ready', async () => {
  const admin = await as('platform_admin')
  const form = await admin.get(`/admin/textbooks/new?replaces=${biologyId}`)
  assert.equal(form.statusCode, 200)
  assert.match(form.body, /«Биологи 7» \(хувилбар 1\)-ийн шинэ хувилбар/)
  assert.match(form.body, new RegExp(`<input type="hidden" name="replaces" value="${biologyId}">`))
  assert.match(form.body, /<input id="title" name="title" value="Биологи 7"/)
  const res = await postMultipart(admin, '/admin/textbooks', [...uploadFields(admin, { subject: 'biology', grade: '7', title: 'Биологи 7', kind: 'required' }, null), ['replaces', String(biologyId)], ['file', pdf(FIXTURE)]])
  assert.equal(res.statusCode, 303)
  assert.equal((await admin.get(`/library/${biologyId}`)).statusCode, 200, 'the old version is readable while the new one imports')
  assert.equal((await runner.runJob(jobIdOf(res))).status, 'done')
  assert.equal((await admin.get(`/library/${biologyId}`)).statusCode, 404, 'replaced')
  assert.match((await admin.get('/admin/textbooks')).body, /Биологи 7<\/a> <span class="muted">\(хувилбар 2\)<\/span>/)
})

test('re-index is a visible job', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks')
  const res = await admin.post('/admin/textbooks/reindex')
  assert.equal(res.statusCode, 303)
  const jobId = jobIdOf(res)
  assert.match((await admin.get(`/admin/textbooks/jobs/${jobId}`)).body, /<h1>Дахин индексжүүлэх ажил №\d+<\/h1>/)
  assert.equal((await runner.runJob(jobId)).status, 'done')
  const done = await admin.get(`/admin/textbooks/jobs/${jobId}`)
  assert.match(done.body, /Дууссан/)
})

test('job and textbook ids that do not exist, or are not numbers, are 404s', async () => {
  const admin = await as('platform_admin')
  for (const url of ['/admin/textbooks/jobs/999999999', '/admin/textbooks/jobs/abc', '/admin/textbooks/jobs/1234567890', '/admin/textbooks/999999/delete', '/admin/textbooks/x/delete', '/admin/textbooks/new?replaces=999999']) {
    assert.equal((await admin.get(url)).statusCode, 404, url)
  }
})

/** A JSONL import file (docs/import-format.md) with embeddings of the deployment's own model. */
async function importFile(title: string, edit: (lines: Record<string, unknown>[]) => void = () => {}): Promise<Buffer> {
  const embedder = createLocalEmbedder()
  const passages = [
    { order: 0, section_path: '1.1', section_title: 'Сансрын хөлөг', page_start: 40, page_end: 40, content: 'Сансрын хөлөг пуужингийн тусламжтай тойрог замд гардаг. Тойрог замын хурд секундэд найман километр орчим.' },
    { order: 1, section_path: '1.1', section_title: 'Сансрын хөлөг', page_start: 40, page_end: 41, content: 'Жин алга болох үзэгдэл хөлөг чөлөөт уналтад байгаатай холбоотой.' },
    { order: 2, section_path: '1.2', section_title: 'Хиймэл дагуул', page_start: 42, page_end: 42, content: 'Хиймэл дагуул цаг агаарын мэдээ, холбоо, байршил тогтооход хэрэглэгддэг.' },
  ]
  const vectors = await embedder.embed(passages.map((p) => `${p.section_title}\n${p.content}`))
  const lines: Record<string, unknown>[] = [
    { format: 'bagsh-chunks', version: 1, textbook: { subject: 'physics', grade: 11, title, year: 2025 }, embedding: { model: embedder.model, dimensions: embedder.dimensions } },
    ...passages.map((p, i) => ({ ...p, embedding: vectors[i]!.map((x) => Math.round(x * 1e6) / 1e6) })),
  ]
  edit(lines)
  return Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n') + '\n')
}

const jsonl = (data: Buffer) => ({ name: 'book.jsonl', type: 'application/x-ndjson', data })

test('importing pre-computed passages (JSONL): the book is searchable at once, no embedding done here', async () => {
  const admin = await as('platform_admin')
  const page = await admin.get('/admin/textbooks/import')
  assert.equal(page.statusCode, 200)
  assert.match(page.body, /bagsh-local-ngram-v1 загварын 768 хэмжээст/)
  const res = await postMultipart(admin, '/admin/textbooks/import', [['_csrf', admin.csrf!], ['file', jsonl(await importFile('Сансар судлал 11'))]])
  assert.equal(res.statusCode, 303, res.body.slice(0, 300))
  const id = Number(/^\/admin\/textbooks\?imported=(\d+)$/.exec(String(res.headers.location))?.[1])
  assert.ok(id > 0)
  const list = await admin.get(String(res.headers.location))
  assert.match(list.body, /«Сансар судлал 11» оруулагдаж, хайлтад орлоо \(3 хэсэг\)/)
  const found = await admin.get(`/library/search?q=${encodeURIComponent('хиймэл дагуул')}`)
  assert.match(found.body, new RegExp(`<ol class="results">\\s*<li>\\s*<h3><a href="/library/${id}\\?page=42#p-42"`))
})

test('an import with one bad line is rejected whole, naming the line; a wrong model, no file, no token too', async () => {
  const admin = await as('platform_admin')
  await admin.get('/admin/textbooks/import')
  const count = async () => Number((await t.database.db.selectFrom('textbooks').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)
  const before = await count()
  const bad = await importFile('Алдаатай импорт', (lines) => {
    ;(lines[3]!.embedding as unknown[])[5] = 'x'
  })
  const res = await postMultipart(admin, '/admin/textbooks/import', [['_csrf', admin.csrf!], ['file', jsonl(bad)]])
  assert.equal(res.statusCode, 422)
  assert.match(res.body, /<small class="error" id="file-error">Файлыг оруулсангүй: 1 алдаа олдлоо/)
  assert.match(res.body, /<li>4-р мөр: «embedding»-ийн 5-р элемент төгсгөлөг тоо биш байна\.<\/li>/)
  assert.equal(await count(), before, 'nothing of the file was kept')
  const search = await admin.get(`/library/search?q=${encodeURIComponent('хиймэл дагуул')}`)
  assert.ok(!search.body.includes('Алдаатай импорт'))

  const otherModel = await importFile('Өөр загвар', (lines) => {
    ;(lines[0]!.embedding as Record<string, unknown>).model = 'text-embedding-3-small'
  })
  const mismatch = await postMultipart(admin, '/admin/textbooks/import', [['_csrf', admin.csrf!], ['file', jsonl(otherModel)]])
  assert.equal(mismatch.statusCode, 422)
  assert.match(mismatch.body, /<li>1-р мөр: Файлын embedding-ийг text-embedding-3-small/)

  const none = await postMultipart(admin, '/admin/textbooks/import', [['_csrf', admin.csrf!], ['file', { name: '', type: 'application/octet-stream', data: Buffer.alloc(0) }]])
  assert.equal(none.statusCode, 422)
  assert.match(none.body, /JSONL файлаа сонгоно уу\./)
  const forged = await postMultipart(admin, '/admin/textbooks/import', [['file', jsonl(await importFile('Хуурамч'))]])
  assert.equal(forged.statusCode, 403)
  assert.equal(await count(), before)

  const big = await importFile('Хэт том импорт', (lines) => {
    for (let i = 3; i < 40; i++) lines.push({ ...lines[1]!, order: i })
  })
  assert.ok(big.length > MAX_BYTES)
  const tooLarge = await postMultipart(admin, '/admin/textbooks/import', [['_csrf', admin.csrf!], ['file', jsonl(big)]])
  assert.ok([413, 422].includes(tooLarge.statusCode), String(tooLarge.statusCode))
  assert.match(tooLarge.body, /Файл хэт том байна/)
  assert.equal(await count(), before)
})

test('an admin may upload 2 PDFs an hour: the third is refused with the wait and nothing is written; other admins are not limited', async () => {
  const db = t.database.db
  const admin = await as('platform_admin')
  let adminId = 0
  for (const title of ['Цагийн хязгаар 1', 'Цагийн хязгаар 2']) {
    await admin.get('/admin/textbooks/new')
    const res = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, { title }, pdf(FIXTURE)))
    assert.equal(res.statusCode, 303)
    const job = await db.selectFrom('jobs').select('payload').where('id', '=', jobIdOf(res)).executeTakeFirstOrThrow()
    adminId = (job.payload as { requestedBy: number }).requestedBy
  }
  assert.ok(adminId > 0, 'the job records who uploaded')
  const counts = async () => ({
    books: Number((await db.selectFrom('textbooks').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n),
    jobs: Number((await db.selectFrom('jobs').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n),
    files: uploadsOnDisk().length,
  })
  const before = await counts()
  // The form says so before a file is chosen.
  const form = await admin.get('/admin/textbooks/new')
  assert.equal(form.statusCode, 200)
  assert.match(form.body, /Нэг админ цагт хамгийн ихдээ 2 PDF файл оруулж болно\. Бага хүлээнэ үү \((59|60) минут\)/)
  const refused = await postMultipart(admin, '/admin/textbooks', uploadFields(admin, { title: 'Цагийн хязгаар 3' }, pdf(FIXTURE)))
  assert.equal(refused.statusCode, 429)
  assert.ok(Number(refused.headers['retry-after']) > 3000)
  assert.match(refused.body, /<small class="error" id="file-error">Нэг админ цагт хамгийн ихдээ 2 PDF файл оруулж болно\. Бага хүлээнэ үү \((59|60) минут\)/)
  assert.match(refused.body, /aria-invalid="true" aria-describedby="file-error file-hint"/)
  assert.deepEqual(await counts(), before, 'no textbook, job or file was written')
  assert.equal(await db.selectFrom('textbooks').select('id').where('title', '=', 'Цагийн хязгаар 3').executeTakeFirst(), undefined)

  // In English too.
  const en = await admin.get('/admin/textbooks/new', { 'accept-language': 'en' })
  assert.match(en.body, /An admin can upload at most 2 PDFs per hour\. Please wait \((59|60) min\)/)

  // Another admin's hour is their own.
  const other = await as('platform_admin')
  await other.get('/admin/textbooks/new')
  assert.equal((await postMultipart(other, '/admin/textbooks', uploadFields(other, { title: 'Өөр админ' }, pdf(FIXTURE)))).statusCode, 303)

  // Once the uploads are more than an hour old, the first admin may upload again.
  await db.updateTable('jobs').set({ created_at: sql<Date>`now() - interval '61 minutes'` }).where(sql`payload->>'requestedBy'`, '=', String(adminId)).execute()
  const again = await admin.get('/admin/textbooks/new')
  assert.ok(!again.body.includes('хамгийн ихдээ 2 PDF'))
  assert.equal((await postMultipart(admin, '/admin/textbooks', uploadFields(admin, { title: 'Цагийн хязгаар 4' }, pdf(FIXTURE)))).statusCode, 303)
})

test('two uploads at the same moment cannot both pass the limit: the service checks it in the transaction that queues the job', async () => {
  const db = t.database.db
  const user = await makeUser(db, 'platform_admin', null)
  const limit = { userId: user.id, perHour: 1 }
  const upload = () => saveUploadedPdf(dataDir, Readable.from([FIXTURE]))
  const first = await upload()
  const second = await upload()
  const results = await Promise.allSettled([enqueuePdfImport(db, { subject: 'physics', grade: 10, title: 'Зэрэг 1' }, first, limit), enqueuePdfImport(db, { subject: 'physics', grade: 10, title: 'Зэрэг 2' }, second, limit)])
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1)
  const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
  assert.ok(failed.reason instanceof UploadLimitReached)
  assert.ok(failed.reason.retryAfterSeconds > 3500 && failed.reason.retryAfterSeconds <= 3600)
  // The refused upload's file is gone; the accepted one is kept for its job.
  const kept = [first, second].filter((u) => existsSync(u.path))
  assert.equal(kept.length, 1)
})

test('a book a killed chunk import left in processing can be deleted; one an import is still writing to cannot', async () => {
  const db = t.database.db
  const admin = await as('platform_admin')
  const embedder = createLocalEmbedder()
  // What `bagsh import-chunks` killed half-way leaves: the book in 'processing' with some passages
  // and its lease, which nobody renews any more.
  const { id } = await createTextbook(db, { subject: 'physics', grade: 11, title: 'Тасалдсан импорт' })
  const chunk = { ord: 0, sectionPath: '1', sectionTitle: 'Эхлэл', pageStart: 1, pageEnd: 1, pdfPageStart: 1, pdfPageEnd: 1, content: 'Тасалдсан импортын хэсэг.' }
  await insertChunks(db, id, [chunk], await embedder.embed([chunkEmbeddingText(chunk)]), embedder.model)
  const lease = await db
    .insertInto('jobs')
    .values({ kind: IMPORT_CHUNKS_LEASE, payload: JSON.stringify({ textbookId: id }), status: 'running', attempts: 1, max_attempts: 1, locked_by: 'import-chunks', locked_until: sql<Date>`now() + interval '1 minute'` })
    .returning('id')
    .executeTakeFirstOrThrow()

  // While the lease is live the import may still be running: not yet.
  const busy = await admin.get(`/admin/textbooks/${id}/delete`)
  assert.match(busy.body, /одоо оруулж байна/)
  assert.ok(!busy.body.includes(`action="/admin/textbooks/${id}/delete"`))
  assert.equal((await admin.post(`/admin/textbooks/${id}/delete`)).statusCode, 400)

  // The lease ran out: the import is dead, the admin is told so and may delete the book.
  await db.updateTable('jobs').set({ locked_until: sql<Date>`now() - interval '1 second'` }).where('id', '=', lease.id).execute()
  const confirm = await admin.get(`/admin/textbooks/${id}/delete`)
  assert.equal(confirm.statusCode, 200)
  assert.match(confirm.body, /дуусалгүй тасалдсан/)
  assert.ok(confirm.body.includes(`action="/admin/textbooks/${id}/delete"`))
  const deleted = await admin.post(`/admin/textbooks/${id}/delete`)
  assert.equal(deleted.statusCode, 303)
  assert.equal(await db.selectFrom('textbooks').select('id').where('id', '=', id).executeTakeFirst(), undefined)
  assert.equal(Number((await db.selectFrom('chunks').select((eb) => eb.fn.countAll<string>().as('n')).where('textbook_id', '=', id).executeTakeFirstOrThrow()).n), 0)
  assert.equal(await db.selectFrom('jobs').select('id').where('id', '=', lease.id).executeTakeFirst(), undefined, 'the dead lease went with the book')

  // Killed before it even took its lease: no job, no lease, deletable at once.
  const orphan = await createTextbook(db, { subject: 'physics', grade: 11, title: 'Лизгүй импорт' })
  assert.equal((await admin.post(`/admin/textbooks/${orphan.id}/delete`)).statusCode, 303)
})
