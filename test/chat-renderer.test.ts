import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { AnswerRenderer } from '../src/services/chat/renderer.ts'
import { presentAnswer } from '../src/services/chat/present.ts'
import { createI18n } from '../src/services/i18n.ts'
import { MAX_INPUT_CHARS } from '../src/services/render/answer.ts'
import type { Citation } from '../src/db/schema.ts'

/** The answer renderer's thread gives exactly what rendering in the request's thread gives. */

const renderer = new AnswerRenderer()
after(() => renderer.close())

const citations: Citation[] = [
  { n: 1, textbookId: 3, title: 'Биологи 7', section: '2.1', sectionTitle: 'Фотосинтез', pageStart: 14, pageEnd: 15 },
  { n: 2, textbookId: 3, title: 'Биологи 7', section: '2.2', sectionTitle: 'Амьсгал', pageStart: 18, pageEnd: 18 },
]
const i18n = createI18n()

test('markdown, math, citations and hostile HTML come out the same as in this thread', async () => {
  const answer = '## Фотосинтез\n\n**Ургамал** гэрлийг ашигладаг [1], [2].\n\n$$6CO_2 + 6H_2O \\to C_6H_{12}O_6 + 6O_2$$\n\n<script>alert(1)</script> [x](javascript:alert(1))'
  const here = presentAnswer(answer, citations, i18n.getFixedT('mn'))
  const there = await renderer.present(answer, citations, 'mn')
  assert.deepEqual(there, here)
  assert.ok(there.mathCss, 'the answer has math')
  assert.ok(!/<script|javascript:/i.test(there.html))
})

test('notes come in the reader\'s language; many answers at once come back each to its own asker', async () => {
  const long = 'ургамал '.repeat(Math.ceil(MAX_INPUT_CHARS / 8) + 10)
  const en = await renderer.present(long, [], 'en')
  assert.equal(en.html, presentAnswer(long, [], i18n.getFixedT('en')).html)
  assert.notEqual(en.html, (await renderer.present(long, [], 'mn')).html)
  const texts = Array.from({ length: 20 }, (_, i) => `Хариулт ${i} [1]`)
  const all = await Promise.all(texts.map((text) => renderer.present(text, citations, 'mn')))
  all.forEach((r, i) => assert.match(r.html, new RegExp(`Хариулт ${i}\\b`)))
})

test('a closed renderer refuses, so the caller renders in its own thread', async () => {
  const r = new AnswerRenderer()
  assert.match((await r.present('Сайн', [], 'mn')).html, /Сайн/)
  await r.close()
  await assert.rejects(r.present('Сайн', [], 'mn'))
})
