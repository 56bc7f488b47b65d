import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { sql } from 'kysely'
import { buildTestApp, type TestApp } from './helpers/app.ts'
import { TestClient } from './helpers/client.ts'
import { conversationIdOf, importSamples, makeStudents, waitForAnswers } from './helpers/chat.ts'
import { loadSampleBooks } from '../src/services/textbooks/samples.ts'

/**
 * The chat pages in every state the site crawl cannot reach (it has no conversations): answered
 * (offline passages; long model answers with math), pending, form errors, the wait, the daily
 * limit, a full list, the student's home with and without recent questions. Each must be valid
 * HTML (vnu), have no inline code, and weigh ≤ 14 KB gzipped.
 */

const VNU_JAR = new URL('../node_modules/vnu-jar/build/dist/vnu.jar', import.meta.url).pathname
const MAX_GZIP_BYTES = 14 * 1024

let t: TestApp
const pages: { label: string; status: number; body: string }[] = []

/** Varied Mongolian prose (the sample books), so gzip does not flatter the page weight. */
const PROSE = loadSampleBooks()
  .flatMap((b) => b.blocks.map((x) => x.text))
  .join(' ')

/** A long model answer: a heading, paragraphs, a list, formulas, citations — ~1000 tokens. */
function longAnswer(i: number): string {
  const text = PROSE.slice(i * 2600, i * 2600 + 2600)
  return [
    `## Хариулт ${i}`,
    text.slice(0, 1200) + ' [1]',
    '1. Гэрэл\n2. Ус\n3. Нүүрсхүчлийн хий',
    `Томьёо: $6CO_2 + 6H_2O \\to C_6H_{12}O_6 + 6O_2$ ба $\\frac{${i + 1}}{${i + 2}} + x^2 = y_${i}$ [2].`,
    text.slice(1200) + ' [2]',
  ].join('\n\n')
}

before(async () => {
  t = await buildTestApp()
  const db = t.database.db
  await importSamples(db, ['biology-7.md'])
  const { school, students } = await makeStudents(db, 3)
  const c = new TestClient(t.app)
  await c.login(school.code, students[0]!.username, students[0]!.password)
  const add = (label: string, res: { statusCode: number; body: string }) => pages.push({ label, status: res.statusCode, body: res.body })

  add('list (empty)', await c.get('/chat'))
  add('student home (empty)', await c.get('/student'))
  const id = conversationIdOf((await c.post('/chat', { subject: 'biology', grade: '7', question: 'фотосинтез гэж юу вэ' })).headers.location)
  add('pending', await c.get(`/chat/${id}`))
  await waitForAnswers(c, `/chat/${id}`)
  for (const q of ['хлоропласт гэж юу вэ', 'ургамал яаж амьсгалдаг вэ', 'эсийн бөөм юу хийдэг вэ']) await c.post(`/chat/${id}/messages`, { question: q })
  add('offline, 4 turns', await waitForAnswers(c, `/chat/${id}`))
  // A queued answer (every provider failed; not due for an hour): the page refreshes itself without JS.
  const queued = await db.insertInto('conversations').values({ user_id: students[0]!.id, school_id: school.id, subject: 'biology', grade: 7, title: 'хүлээгдэж буй' }).returning('id').executeTakeFirstOrThrow()
  await sql`
    WITH q AS (INSERT INTO messages (conversation_id, user_id, role, content) VALUES (${queued.id}, ${students[0]!.id}, 'user', 'хүлээгдэж буй асуулт') RETURNING id)
    INSERT INTO messages (conversation_id, user_id, role, content, status, reply_to, run_after)
    SELECT ${queued.id}, ${students[0]!.id}, 'assistant', '', 'queued', q.id, now() + interval '1 hour' FROM q`.execute(db)
  add('queued', await c.get(`/chat/${queued.id}`))
  add('422 new', await c.post('/chat', { subject: '', grade: '', question: '' }))
  add('422 follow-up', await c.post(`/chat/${id}/messages`, { question: 'ф'.repeat(4001) }))
  add('with context', await c.get(`/chat?textbook=${(await db.selectFrom('textbooks').select('id').executeTakeFirstOrThrow()).id}&section=2.1`))

  // A conversation of long model answers with math, written as the broker would have stored them.
  const long = await c.post('/chat', { subject: 'biology', grade: '7', question: 'урт хариулт' })
  const longId = conversationIdOf(long.headers.location)
  await waitForAnswers(c, `/chat/${longId}`)
  const citations = JSON.stringify([
    { n: 1, textbookId: 1, title: 'Биологи 7', section: '2.1', sectionTitle: 'Фотосинтез', pageStart: 5, pageEnd: 6 },
    { n: 2, textbookId: 1, title: 'Биологи 7', section: '2.1', sectionTitle: 'Фотосинтез', pageStart: 6, pageEnd: 6 },
  ])
  for (let i = 0; i < 12; i++) {
    await sql`
      WITH q AS (INSERT INTO messages (conversation_id, user_id, role, content) VALUES (${longId}, ${students[0]!.id}, 'user', ${'Асуулт ' + i}) RETURNING id)
      INSERT INTO messages (conversation_id, user_id, role, content, status, reply_to, kind, citations)
      SELECT ${longId}, ${students[0]!.id}, 'assistant', ${longAnswer(i)}, 'done', q.id, 'llm', ${citations}::jsonb FROM q`.execute(db)
  }
  add('long answers with math', await c.get(`/chat/${longId}`))

  // Over the limits.
  await sql`INSERT INTO messages (conversation_id, user_id, role, content) SELECT ${id}, ${students[0]!.id}, 'user', 'x' || g FROM generate_series(1, 30) g`.execute(db)
  add('429 wait', await c.post(`/chat/${id}/messages`, { question: 'дахиад' }))
  const other = new TestClient(t.app)
  await other.login(school.code, students[1]!.username, students[1]!.password)
  const oid = conversationIdOf((await other.post('/chat', { subject: 'biology', grade: '7', question: 'эс' })).headers.location)
  await waitForAnswers(other, `/chat/${oid}`)
  await sql`INSERT INTO messages (conversation_id, user_id, role, content, created_at) SELECT ${oid}, ${students[1]!.id}, 'user', 'x' || g, now() - interval '61 seconds' FROM generate_series(1, 60) g`.execute(db)
  add('429 daily', await other.post('/chat', { subject: 'biology', grade: '7', question: 'шинэ' }))

  // A full list page.
  for (let i = 0; i < 25; i++) {
    await db.insertInto('conversations').values({ user_id: students[2]!.id, school_id: school.id, subject: 'math', grade: 7, title: `Бутархайг яаж нэмэх вэ? Жишээ ${i} `.repeat(3).slice(0, 80) }).execute()
  }
  const third = new TestClient(t.app)
  await third.login(school.code, students[2]!.username, students[2]!.password)
  add('list (full)', await third.get('/chat'))
  add('student home (recent)', await third.get('/student'))
}, { timeout: 180_000 })

after(async () => {
  await t?.close()
})

test('each state was reached with its status', () => {
  const expected: Record<string, number> = {
    'list (empty)': 200, pending: 200, 'offline, 4 turns': 200, queued: 200, '422 new': 422, '422 follow-up': 422, 'with context': 200,
    'long answers with math': 200, '429 wait': 429, '429 daily': 429, 'list (full)': 200,
    'student home (empty)': 200, 'student home (recent)': 200,
  }
  assert.deepEqual(Object.fromEntries(pages.map((p) => [p.label, p.status])), expected)
  assert.match(pages.find((p) => p.label === 'long answers with math')!.body, /class="katex"/)
  // Without JavaScript a pending answer's page refreshes itself (slower when queued); with it, it streams.
  const queued = pages.find((p) => p.label === 'queued')!.body
  assert.ok(queued.includes('<noscript><meta http-equiv="refresh" content="10"></noscript>'))
  assert.match(queued, /<ol class="turns" id="turns" data-refresh="10">/)
})

test(`every chat page is at most ${MAX_GZIP_BYTES} bytes gzipped`, () => {
  const sizes = pages.map((p) => ({ label: p.label, size: gzipSync(p.body).length }))
  if (process.env.SHOW_SIZES) console.log(sizes)
  assert.deepEqual(sizes.filter((s) => s.size > MAX_GZIP_BYTES), [], JSON.stringify(sizes))
})

test('no inline scripts, styles or event handlers', () => {
  for (const p of pages) {
    for (const m of p.body.matchAll(/<([a-zA-Z][a-zA-Z0-9-]*)\b[^>]*>/g)) {
      const tag = m[0]
      assert.ok(!(m[1]!.toLowerCase() === 'script' && !/\ssrc=/.test(tag)), `${p.label}: inline script`)
      assert.ok(m[1]!.toLowerCase() !== 'style', `${p.label}: <style>`)
      assert.ok(!/\sstyle\s*=/i.test(tag), `${p.label}: style attribute ${tag}`)
      assert.ok(!/\son[a-z]+\s*=/i.test(tag), `${p.label}: handler ${tag}`)
    }
  }
})

test('every chat page is valid HTML (vnu)', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bagsh-chat-vnu-'))
  try {
    const files = pages.map((p, i) => {
      const file = join(dir, `${i}-${p.label.replace(/[^a-z0-9]+/gi, '_')}.html`)
      writeFileSync(file, p.body)
      return file
    })
    let stderr = ''
    try {
      ;({ stderr } = await promisify(execFile)('java', ['-jar', VNU_JAR, '--errors-only', '--format', 'json', ...files], { maxBuffer: 64 * 1024 * 1024 }))
    } catch (err) {
      const e = err as { code?: unknown; stderr?: string }
      if (e.code === 'ENOENT') throw new Error('java not found: vnu-jar needs Java')
      stderr = e.stderr ?? ''
    }
    const messages = (JSON.parse(stderr) as { messages: { type: string; url?: string; message: string; extract?: string }[] }).messages
    const errors = messages.filter((m) => m.type === 'error' || m.type === 'non-document-error').map((m) => `${m.url?.split('/').pop()}: ${m.message} — ${m.extract ?? ''}`)
    assert.deepEqual(errors, [])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
