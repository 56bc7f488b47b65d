import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createI18n, fixedTranslators } from '../src/services/i18n.ts'

/** The app's translate functions: one per language, key-only lookups remembered, options always applied. */

test('fixed translators give what i18next gives, with and without options, in each language', () => {
  const i18n = createI18n()
  const t = fixedTranslators(i18n)
  for (const lang of ['mn', 'en'] as const) {
    const plain = i18n.getFixedT(lang)
    for (let i = 0; i < 2; i++) {
      assert.equal(t[lang]('chat.title'), plain('chat.title'))
      assert.equal(t[lang]('teacher.gradeValue', { grade: 7 + i }), plain('teacher.gradeValue', { grade: 7 + i }))
    }
  }
  assert.equal(t.en('chat.title'), 'Ask the tutor')
  assert.notEqual(t.mn('chat.title'), t.en('chat.title'))
  assert.equal(t.en('teacher.gradeValue', { grade: 9 }), 'Grade 9')
  assert.equal(t.en('no.such.key'), 'no.such.key')
})
