import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { sql } from 'kysely'
import type { Database } from '../src/db/index.ts'
import { createLocalEmbedder } from '../src/services/embeddings/local.ts'
import {
  analyzeQuery,
  isInflectedForm,
  normalizeText,
  stem,
  stemPrefixes,
  transliterate,
  transliterateWord,
} from '../src/services/retrieval/normalize.ts'
import { ALL_LEGS, retrievePassages, type Passage, type RetrieveOptions } from '../src/services/retrieval/retrieve.ts'
import { buildSnippet, snippetHtml } from '../src/services/retrieval/snippet.ts'
import { clearSimilarWordsCache, similarityLookups, similarityTerms } from '../src/services/retrieval/vocabulary.ts'
import { chunkBlocks } from '../src/services/textbooks/chunk.ts'
import { importSampleBook, loadSampleBooks, parseSampleBook, SampleFormatError } from '../src/services/textbooks/samples.ts'
import { chunkEmbeddingText, createTextbook, deleteTextbook, insertChunks, insertPages, markFailed, markReady, type ChunkInput } from '../src/services/textbooks/store.ts'
import { FormError } from '../src/services/errors.ts'
import { freshDatabase } from './helpers/db.ts'

const embedder = createLocalEmbedder()
let database: Database
const ids = new Map<string, number>()

before(async () => {
  database = await freshDatabase()
  for (const book of loadSampleBooks()) ids.set(book.file.replace(/\.md$/, ''), await importSampleBook(database.db, embedder, book))
})
after(async () => {
  await database.close()
})

const search = (query: string, options: Omit<RetrieveOptions, 'query'> = {}) => retrievePassages(database.db, { query, ...options }, embedder)
const where = (p: Passage) => `${p.textbook.title} p.${p.pageStart}-${p.pageEnd}`

/** A small ready textbook made of the given chunk texts, one section, one page each. */
async function makeBook(meta: { subject: string; grade: number; title?: string }, texts: string[], ready = true) {
  const { id } = await createTextbook(database.db, { title: `Туршилт ${meta.subject} ${meta.grade} ${Math.random()}`, ...meta })
  const chunks: ChunkInput[] = texts.map((content, i) => ({
    ord: i,
    sectionPath: '1.1',
    sectionTitle: 'Туршилтын сэдэв',
    pageStart: i + 1,
    pageEnd: i + 1,
    pdfPageStart: i + 1,
    pdfPageEnd: i + 1,
    content,
  }))
  const vectors = await embedder.embed(chunks.map(chunkEmbeddingText))
  await database.db.transaction().execute(async (trx) => {
    await insertChunks(trx, id, chunks, vectors, embedder.model)
    if (ready) await markReady(trx, id)
  })
  return id
}

// --- normalization, transliteration, stemming -------------------------------------------------

test('normalization: lower case, ё→е, ө and ү kept, punctuation and soft hyphens gone, lookalike Latin letters fixed', () => {
  assert.equal(normalizeText('Ёс ЁРООЛ'), 'ес ероол')
  assert.equal(normalizeText('ӨВӨЛ, Үүр!'), 'өвөл үүр')
  assert.equal(normalizeText('«Фото\u00adсинтез» — гэж юу вэ?'), 'фотосинтез гэж юу вэ')
  // "Cонгууль" typed with a Latin C; "H₂O" keeps its letters and digit.
  assert.equal(normalizeText('Cонгууль H₂O   3,5'), 'сонгууль h2o 3 5')
  assert.equal(normalizeText('   '), '')
})

test('Latin-script queries are transliterated to Cyrillic', () => {
  assert.equal(transliterate('fotosintez gej yu ve'), 'фотосинтез гэж юу вэ')
  assert.equal(transliterate('omiin'), 'омын')
  assert.equal(transliterate('narnii zai'), 'нарны зай')
  assert.equal(transliterate('tsahilgaan shuudan chuluu'), 'цахилгаан шуудан чулуу')
  assert.equal(transliterate('khuchdel'), 'хүчдэл')
  assert.equal(transliterate('öndör nüüdel'), 'өндөр нүүдэл')
  // ө/ү typed as o/u: the other readings are candidates too.
  assert.ok(transliterateWord('huuli').includes('хууль'))
  assert.ok(transliterateWord('hovsgol').includes('хөвсгөл'))
  assert.ok(transliterateWord('huchil').includes('хүчил'))
  assert.ok(transliterateWord('fotosintez').length <= 16)
  // Cyrillic passes through untouched.
  assert.equal(transliterate('Омын хууль'), 'омын хууль')
})

test('stemming-lite strips case endings and restores fleeting vowels; stopwords leave the query', () => {
  assert.equal(stem('фотосинтезийн'), 'фотосинтез')
  assert.equal(stem('хуулийн'), 'хуул')
  assert.equal(stem('ургамлуудын'), 'ургамл')
  assert.ok(stemPrefixes('гэрлийн').includes('гэрэл'))
  assert.ok(isInflectedForm('хуул', 'хууль'))
  assert.ok(isInflectedForm('хүч', 'хүчний'))
  assert.ok(!isInflectedForm('хүч', 'хүчилтөрөгч'), 'another word, not an inflection')
  assert.deepEqual(
    analyzeQuery('Фотосинтез гэж юу вэ?').tokens.map((t) => t.text),
    ['фотосинтез'],
  )
  assert.deepEqual(analyzeQuery('gej yu ve').tokens, [])
})

// --- the three legs and fusion -----------------------------------------------------------------

test('"фотосинтезийн явц" and "fotosintez" find the photosynthesis pages of Биологи 7', async () => {
  for (const q of ['фотосинтезийн явц', 'fotosintez', 'fotosintez gej yu ve', 'Фотосинтез гэж юу вэ?']) {
    const [first] = await search(q)
    assert.ok(first, q)
    assert.equal(first.textbook.id, ids.get('biology-7'), `${q}: ${where(first)}`)
    assert.equal(first.section.title, 'Фотосинтез')
    assert.ok(first.pageStart >= 5 && first.pageEnd <= 6, `${q}: ${where(first)}`)
  }
})

test('each leg alone finds the page, and fusion reports every leg that did', async () => {
  for (const leg of ['keyword', 'trigram', 'vector'] as const) {
    const [first] = await search('фотосинтезийн явц', { legs: [leg] })
    assert.equal(first?.section.title, 'Фотосинтез', leg)
    assert.equal(first?.ranks[leg], 1)
    assert.deepEqual(Object.keys(first!.ranks), [leg])
  }
  const fused = await search('Омын хууль', { limit: 3 })
  assert.equal(fused[0]!.section.title, 'Омын хууль')
  assert.deepEqual(Object.keys(fused[0]!.ranks).sort(), ['keyword', 'trigram', 'vector'])
  assert.ok(fused[0]!.score > 0.9 && fused[0]!.score <= 1)
  assert.ok(fused[0]!.score >= fused[1]!.score && fused[1]!.score >= fused[2]!.score)
  assert.equal(fused.length, 3)
})

test('inflected and Latin-script questions reach the right page past look-alike pages', async () => {
  const cases: [string, string, number][] = [
    ['omiin huuli', 'physics-8', 11],
    ['Чингис хааны хууль', 'history-9', 31],
    ['масс хадгалагдах хууль', 'chemistry-8', 18],
    ['hovsgol nuur', 'geography-7', 8],
    ['нарны хавтан хэрхэн цахилгаан үйлдвэрлэдэг вэ', 'physics-8', 15],
    ['гэрлийн хугарал', 'physics-8', 16],
  ]
  for (const [q, book, page] of cases) {
    const [first] = await search(q)
    assert.equal(first?.textbook.id, ids.get(book), `${q}: ${first && where(first)}`)
    assert.ok(first!.pageStart <= page && page <= first!.pageEnd, `${q}: ${where(first!)}`)
  }
})

test('results carry textbook, section, pages, content and neighbouring chunks of the same section', async () => {
  const [p] = await search('Фотосинтезийн хурдад юу нөлөөлдөг вэ', { limit: 1 })
  assert.ok(p)
  assert.deepEqual(p.textbook, { id: ids.get('biology-7'), title: 'Биологи 7', subject: 'biology', grade: 7 })
  assert.deepEqual(p.section, { path: '2.1', title: 'Фотосинтез' })
  assert.equal(p.pageStart, 6)
  assert.equal(p.pdfPageStart, 5, 'printed page 6 is the fifth PDF page (the cover has no number)')
  assert.match(p.content, /Фотосинтезийн хурдад/)
  assert.match(p.context.previous ?? '', /Ногоон ургамал өөрөө өөртөө/, 'the previous chunk of section 2.1')
  assert.equal(p.context.next, null, 'section 2.2 is another section')
  assert.ok(p.snippet.some((s) => s.mark && /фотосинтез/i.test(s.text)))
})

test('queries with nothing to search for, or hostile text, return nothing or something — never throw', async () => {
  assert.deepEqual(await search(''), [])
  assert.deepEqual(await search('   ?!'), [])
  assert.deepEqual(await search('юу вэ'), [])
  for (const q of ["'; DROP TABLE chunks; --", "фото' | 'синтез", 'a:* & !b', '<script>alert(1)</script>', 'ы'.repeat(5000), '\u0000\u202e']) {
    await search(q)
  }
  assert.ok((await database.db.selectFrom('chunks').select('id').limit(1).execute()).length === 1)
  assert.equal((await search('фотосинтез', { limit: 500 })).length <= 50, true)
})

// --- filters -------------------------------------------------------------------------------------

test('a passage needs text evidence: nonsense finds nothing, though the vector leg alone always has neighbours', async () => {
  for (const q of ['qwzxv', 'ыыыыы', 'qwzx vbnm', 'футбол тоглох']) {
    assert.deepEqual(await search(q), [], q)
    assert.ok((await search(q, { legs: ['vector'] })).length > 0, `${q}: nearest neighbours exist`)
  }
  // What is returned was found by a text leg; the vector leg reorders it.
  for (const q of ['фотосинтезийн явц', 'omiin huuli', 'Ургамал хоол тэжээлээ хэрхэн өөрөө бэлтгэдэг вэ?']) {
    const found = await search(q, { limit: 20 })
    assert.ok(found.length > 0, q)
    assert.ok(found.every((p) => p.ranks.keyword !== undefined || p.ranks.trigram !== undefined), q)
    assert.ok(found.some((p) => p.ranks.vector !== undefined), q)
  }
})

test('one lookup and one search statement per call, and the search settings do not outlive it', async () => {
  const statements: string[] = []
  const stop = database.onStatement((text) => statements.push(text))
  try {
    await search('фотосинтезийн явц', { grade: 7 })
  } finally {
    stop()
  }
  assert.equal(statements.length, 2, statements.join('\n---\n'))
  const { rows } = await sql<{ ef: string; trgm: string }>`SELECT current_setting('hnsw.ef_search') AS ef, current_setting('pg_trgm.similarity_threshold') AS trgm`.execute(database.db)
  assert.deepEqual(rows[0], { ef: '40', trgm: '0.3' }, 'the defaults again after the statement')
})

test('the search statement is prepared: once Postgres keeps a generic plan, every filter returns what the first calls did', async () => {
  const biology = ids.get('biology-7')!
  const cases: [string, Omit<RetrieveOptions, 'query'>][] = [
    ['фотосинтезийн явц', {}],
    ['фотосинтезийн явц', { grade: 7 }],
    ['ургамлын эс', { subject: 'biology', limit: 10 }],
    ['fotosintez', { grade: 7, gradeMode: 'only' }],
    ['навчны нүх', { textbookId: biology }],
    ['амисгал', {}],
  ]
  const rounds: string[][] = []
  for (let round = 0; round < 8; round++) {
    const got: string[] = []
    for (const [query, options] of cases) {
      // The same statement shape every round (the similar words looked up each time).
      clearSimilarWordsCache()
      got.push(JSON.stringify((await search(query, options)).map((p) => [p.chunkId, p.score, p.ranks])))
    }
    rounds.push(got)
  }
  for (const got of rounds) assert.deepEqual(got, rounds[0])
  assert.ok(rounds[0]!.some((r) => r !== '[]'))
  const { rows } = await sql<{ generic: number }>`
    SELECT sum(generic_plans)::int AS generic FROM pg_prepared_statements WHERE statement LIKE '%settings AS MATERIALIZED%'`.execute(database.db)
  assert.ok(rows[0]!.generic > 0, 'a generic plan ran')
})

test('similar words are cached per vocabulary: the same results, still two statements, and a new book refreshes them', async () => {
  clearSimilarWordsCache()
  const statements: string[] = []
  const stop = database.onStatement((text) => statements.push(text))
  let first: Passage[]
  let again: Passage[]
  try {
    first = await search('фотосинтезийн явц', { limit: 10 })
    again = await search('фотосинтезийн явц', { limit: 10 })
  } finally {
    stop()
  }
  assert.equal(statements.length, 4, 'two statements per call, cached or not')
  assert.ok(statements[1]!.includes('search_words'), 'the first call looks its similar words up')
  assert.ok(!statements[3]!.includes('search_words'), 'the second takes them from the cache')
  assert.deepEqual(again, first)
  assert.ok(first.some((p) => p.ranks.trigram !== undefined))

  // A misspelled word the vocabulary does not know: nothing yet (and that is cached too).
  const query = 'щюфкэлдагчид'
  assert.deepEqual(await search(query), [])
  // A book with a look-alike becomes ready: the vocabulary changed, so the cache does not answer.
  const id = await makeBook({ subject: 'biology', grade: 5 }, ['Щюфкэлдэгчид өвлийн турш нүхэндээ ичээнд ордог.'])
  const found = await search(query)
  assert.equal(found[0]?.textbook.id, id)
  assert.ok(found[0]!.ranks.trigram !== undefined, 'found by its look-alike')
  await database.db.transaction().execute((trx) => deleteTextbook(trx, id))
  assert.deepEqual(await search(query), [], 'and gone with the book')
})

test("look-alikes of a word the vocabulary knows are searched among the words that start like it, of an unknown word in all words", () => {
  const expanded = [
    { token: { text: 'фотосинтезийн', latin: false, variants: ['фотосинтезийн'] }, resolved: 'фотосинтезийн', forms: [{ word: 'фотосинтез', chunks: 3 }] },
    { token: { text: 'амисгал', latin: false, variants: ['амисгал'] }, resolved: 'амисгал', forms: [] },
    { token: { text: 'хувийн', latin: false, variants: ['хувийн'] }, resolved: 'хувийн', forms: [{ word: 'хувь', chunks: 1 }] },
  ]
  assert.deepEqual(similarityLookups(expanded, similarityTerms(expanded)), [
    { term: 'фотосинтезийн', prefix: 'фото' },
    { term: 'амисгал', prefix: '' },
    { term: 'хувийн', prefix: 'хув' },
  ])
})

test('a query whose every word is common (past the index budget) still finds chunks that contain all of its words', async () => {
  // 1,100 chunks with both words (more index entries than stage 1 reads for rare words), 20 with
  // one of them; no embeddings (the text legs alone), inserted in one statement to stay quick.
  const contents = [
    ...Array.from({ length: 1100 }, (_, i) => `Гүргэмийн шимэгч бүр ${i + 1}-р ангиллынх.`),
    ...Array.from({ length: 20 }, (_, i) => `Гүргэмийн навч ${i + 1}.`),
  ]
  const { id } = await createTextbook(database.db, { title: 'Туршилт: нийтлэг үгс', subject: 'biology', grade: 11 })
  const chunks = contents.map((content, ord): ChunkInput => ({ ord, sectionPath: '1', sectionTitle: 'Гүргэм', pageStart: 1, pageEnd: 1, pdfPageStart: 1, pdfPageEnd: 1, content }))
  await database.db.transaction().execute(async (trx) => {
    await sql`
      INSERT INTO chunks (textbook_id, ord, section_path, section_title, page_start, page_end, pdf_page_start, pdf_page_end, content, content_norm)
      SELECT ${id}, ord - 1, '1', 'Гүргэм', 1, 1, 1, 1, content, norm
      FROM unnest(${contents}::text[], ${chunks.map((c) => normalizeText(chunkEmbeddingText(c)))}::text[]) WITH ORDINALITY AS c(content, norm, ord)`.execute(trx)
    await markReady(trx, id)
  })
  try {
    for (const legs of [['keyword'], ALL_LEGS] as const) {
      const found = await search('гүргэмийн шимэгч', { textbookId: id, limit: 50, legs })
      assert.equal(found.length, 50, legs.join())
      assert.ok(found.every((p) => p.textbook.id === id && /шимэгч/.test(p.content) && p.ranks.keyword !== undefined), `${legs.join()}: chunks with both words`)
    }
  } finally {
    await database.db.transaction().execute((trx) => deleteTextbook(trx, id))
  }
})

test('subject, textbook and section filters', async () => {
  const bySubject = await search('хүчилтөрөгч', { subject: 'chemistry', limit: 10 })
  assert.ok(bySubject.length > 0)
  assert.ok(bySubject.every((p) => p.textbook.subject === 'chemistry'))
  const byBook = await search('хүчилтөрөгч', { textbookId: ids.get('biology-7'), limit: 10 })
  assert.ok(byBook.length > 0)
  assert.ok(byBook.every((p) => p.textbook.id === ids.get('biology-7')))
  const bySection = await search('эрчим хүч', { textbookId: ids.get('biology-7'), sectionPath: '3', limit: 10 })
  assert.ok(bySection.length > 0)
  assert.ok(bySection.every((p) => p.section.path.startsWith('3.')), bySection.map((p) => p.section.path).join())
  assert.deepEqual(await search('фотосинтез', { subject: 'music' }), [])
  assert.deepEqual(await search('фотосинтез', { textbookId: 999999 }), [])
})

test("grade: 'only' keeps that grade's books; 'prefer' puts the student's own grade first", async () => {
  const only = await search('гэрэл', { grade: 8, gradeMode: 'only', limit: 10 })
  assert.ok(only.length > 0)
  assert.ok(only.every((p) => p.textbook.grade === 8))

  const text = 'Галт уулын дэлбэрэлт газрын гүнээс магма гарч ирснээр болдог. Галт уул ихэвчлэн хавтангийн заагт оршино.'
  const g6 = await makeBook({ subject: 'geography', grade: 6 }, [text + ' Зургаадугаар анги.'])
  const g10 = await makeBook({ subject: 'geography', grade: 10 }, [text + ' Аравдугаар анги.'])
  const as6 = await search('галт уулын дэлбэрэлт', { grade: 6, limit: 2 })
  const as10 = await search('галт уулын дэлбэрэлт', { grade: 10, limit: 2 })
  assert.deepEqual(
    as6.map((p) => p.textbook.id),
    [g6, g10],
  )
  assert.deepEqual(
    as10.map((p) => p.textbook.id),
    [g10, g6],
  )
})

test('only ready textbooks are searched; a re-import replaces the old version atomically', async () => {
  const marker = 'Зэгсэн шувууны үүр голын эрэгт байдаг'
  const processing = await makeBook({ subject: 'biology', grade: 6 }, [marker + ' (боловсруулж буй).'], false)
  const failed = await makeBook({ subject: 'biology', grade: 6 }, [marker + ' (алдаатай).'], false)
  await markFailed(database.db, failed, 'textbooks.errors.corrupt')
  const found = async () => (await search('зэгсэн шувууны үүр', { limit: 50 })).map((p) => p.textbook.id)
  assert.ok(!(await found()).some((id) => id === processing || id === failed))

  const v1 = await makeBook({ subject: 'biology', grade: 6 }, [marker + '. Хуучин хэвлэл.'])
  assert.equal((await found())[0], v1)

  // Version 2 is imported while version 1 stays searchable ...
  const { id: v2 } = await createTextbook(database.db, { subject: 'biology', grade: 6, title: 'Шинэ хэвлэл', replacesId: v1 })
  const chunk: ChunkInput = { ord: 0, sectionPath: '1', sectionTitle: 'Шувуу', pageStart: 1, pageEnd: 1, pdfPageStart: 1, pdfPageEnd: 1, content: marker + '. Шинэ хэвлэл.' }
  await insertChunks(database.db, v2, [chunk], await embedder.embed([chunkEmbeddingText(chunk)]), embedder.model)
  await insertPages(database.db, v2, [{ pdfPage: 1, label: '1', number: 1, text: chunk.content }])
  assert.equal((await found())[0], v1)
  assert.ok(!(await found()).includes(v2))
  // ... and takes its place in one transaction.
  await database.db.transaction().execute((trx) => markReady(trx, v2))
  assert.equal((await found())[0], v2)
  assert.ok(!(await found()).includes(v1))
  const old = await database.db.selectFrom('textbooks').select(['status', 'chunk_count']).where('id', '=', v1).executeTakeFirstOrThrow()
  assert.deepEqual(old, { status: 'replaced', chunk_count: 0 })
  const v2row = await database.db.selectFrom('textbooks').select(['status', 'version']).where('id', '=', v2).executeTakeFirstOrThrow()
  assert.deepEqual(v2row, { status: 'ready', version: 2 })
  assert.equal((await database.db.selectFrom('chunks').select('id').where('textbook_id', '=', v1).execute()).length, 0)

  // The vocabulary counts only ready books: "зэгсэн" is in one ready chunk (v2's).
  const word = await database.db.selectFrom('search_words').select('chunks').where('word', '=', 'зэгсэн').executeTakeFirstOrThrow()
  assert.equal(word.chunks, 1)
  await database.db.transaction().execute((trx) => deleteTextbook(trx, v2))
  assert.ok(!(await found()).includes(v2))
  assert.equal(await database.db.selectFrom('search_words').select('chunks').where('word', '=', 'зэгсэн').executeTakeFirst(), undefined)
})

test('createTextbook validates its metadata with field errors', async () => {
  await assert.rejects(createTextbook(database.db, { subject: 'alchemy', grade: 13, title: ' ', year: 'next', kind: 'maybe' }), (err: unknown) => {
    assert.ok(err instanceof FormError)
    assert.deepEqual(err.fields, {
      subject: 'textbooks.errors.subjectInvalid',
      grade: 'textbooks.errors.gradeInvalid',
      title: 'textbooks.errors.titleRequired',
      year: 'textbooks.errors.yearInvalid',
      kind: 'textbooks.errors.kindInvalid',
    })
    return true
  })
  await assert.rejects(createTextbook(database.db, { subject: 'math', grade: 5, title: 'x'.repeat(301) }), FormError)
})

// --- snippets ------------------------------------------------------------------------------------

test('snippets escape hostile chunk text and mark only the hits', async () => {
  const hostile = 'Эхлэл <script>alert("x")</script> & <b onload=1> Фотосинтезийн тухай "ишлэл" \'нэг\' төгсгөл.'
  const book = await makeBook({ subject: 'informatics', grade: 9 }, [hostile])
  const [p] = await search('фотосинтезийн', { textbookId: book })
  assert.ok(p)
  assert.equal(p.content, hostile, 'content is returned as stored; views escape it')
  assert.ok(!p.snippetHtml.includes('<script'), p.snippetHtml)
  assert.ok(!p.snippetHtml.includes('<b '), p.snippetHtml)
  assert.match(p.snippetHtml, /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; &amp; &lt;b onload=1&gt;/)
  assert.match(p.snippetHtml, /<mark>Фотосинтезийн<\/mark>/)
  assert.equal(p.snippetHtml.match(/<mark>/g)?.length, 1)
  assert.deepEqual(
    p.snippet.filter((s) => s.mark).map((s) => s.text),
    ['Фотосинтезийн'],
  )
})

test('a long chunk gets a window around its hits, with ellipses where it is cut', () => {
  const words = Array.from({ length: 200 }, (_, i) => `үг${i}`)
  words[120] = 'Фотосинтез'
  const segments = buildSnippet(words.join(' '), (w) => w === 'фотосинтез', 40)
  const html = snippetHtml(segments)
  assert.ok(html.startsWith('… '))
  assert.ok(html.endsWith(' …'))
  assert.match(html, /<mark>Фотосинтез<\/mark>/)
  assert.ok(html.split(' ').length <= 45)
})

// --- chunking and the sample format --------------------------------------------------------------

test('chunks never cross a section, carry printed pages, and cut at page turns', () => {
  const sentence = (n: number) => `Энэ бол ${n}-р өгүүлбэр бөгөөд арван үгтэй байх ёстой.`
  const para = (from: number) => Array.from({ length: 8 }, (_, i) => sentence(from + i)).join(' ')
  const blocks = [
    { pdfPage: 1, sectionPath: '1.1', sectionTitle: 'А', text: para(0) },
    { pdfPage: 2, sectionPath: '1.1', sectionTitle: 'А', text: para(10) },
    { pdfPage: 2, sectionPath: '1.2', sectionTitle: 'Б', text: para(20) },
    { pdfPage: 3, sectionPath: '1.2', sectionTitle: 'Б', text: sentence(99) },
  ]
  const chunks = chunkBlocks(blocks, [
    { pdfPage: 1, number: 7 },
    { pdfPage: 2, number: 8 },
    { pdfPage: 3, number: null },
  ], { targetWords: 100 })
  assert.deepEqual(
    chunks.map((c) => [c.sectionPath, c.pageStart, c.pageEnd, c.pdfPageStart, c.pdfPageEnd]),
    [
      ['1.1', 7, 7, 1, 1],
      ['1.1', 8, 8, 2, 2],
      ['1.2', 8, 8, 2, 3],
    ],
  )
  assert.ok(chunks.every((c, i) => c.ord === i))
  assert.match(chunks[2]!.content, /99-р өгүүлбэр/, 'a short tail joins the previous chunk of its section')
})

test('the sample format: pages, printed numbers, sections and table of contents; bad files are refused', () => {
  const book = parseSampleBook(
    ['---', 'subject: physics', 'grade: 8', 'title: Физик', '---', '<!-- page -->', '# Физик', '', '<!-- page 10 -->', '# 1 Гэрэл', '## 1.1 Тархалт', 'Гэрэл шулуун', 'тархана.', '', 'Сүүдэр үүснэ.'].join('\n'),
  )
  assert.deepEqual(book.meta, { subject: 'physics', grade: 8, title: 'Физик', year: null, kind: 'required' })
  assert.deepEqual(
    book.pages.map((p) => [p.pdfPage, p.label, p.number]),
    [
      [1, null, null],
      [2, '10', 10],
    ],
  )
  assert.deepEqual(book.toc, [
    { path: '1', title: 'Гэрэл', level: 1, page: 10, pdfPage: 2 },
    { path: '1.1', title: 'Тархалт', level: 2, page: 10, pdfPage: 2 },
  ])
  assert.deepEqual(
    book.blocks.map((b) => [b.pdfPage, b.sectionPath, b.text]),
    [
      [2, '1.1', 'Гэрэл шулуун тархана.'],
      [2, '1.1', 'Сүүдэр үүснэ.'],
    ],
  )
  assert.throws(() => parseSampleBook('no front matter'), SampleFormatError)
  assert.throws(() => parseSampleBook('---\nsubject: x\ngrade: 0\ntitle: t\n---\n<!-- page -->\n'), SampleFormatError)
  assert.throws(() => parseSampleBook('---\nsubject: x\ngrade: 3\ntitle: t\n---\ntext before a page\n'), /before the first/)
  const samples = loadSampleBooks()
  assert.ok(samples.length >= 6)
  assert.ok(samples.every((b) => b.pages.length >= 6 && b.toc.length >= 3))
})

test('the vocabulary matches the chunks of ready books', async () => {
  const { rows } = await sql<{ missing: number }>`
    SELECT count(*)::int AS missing FROM (
      SELECT lexeme, count(*)::int AS n FROM chunks c JOIN textbooks t ON t.id = c.textbook_id, unnest(c.tsv)
      WHERE t.status = 'ready' GROUP BY lexeme
    ) AS expected
    FULL JOIN search_words w ON w.word = expected.lexeme COLLATE "C"
    WHERE w.chunks IS DISTINCT FROM expected.n`.execute(database.db)
  assert.equal(rows[0]!.missing, 0)
})
