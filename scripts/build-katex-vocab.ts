/**
 * Rebuilds src/services/render/katex-vocab.json: the lengths KaTeX writes as inline styles for a
 * corpus of school maths (test/fixtures/school-math.tex), rounded to 0.01em, gap-filled.
 * Run after upgrading KaTeX or extending the corpus:  npx node scripts/build-katex-vocab.ts
 * (test/render.test.ts fails while the committed file is stale).
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { buildVocabulary } from '../src/services/render/vocab-build.ts'

const out = fileURLToPath(new URL('../src/services/render/katex-vocab.json', import.meta.url))
const vocab = buildVocabulary()
writeFileSync(out, JSON.stringify(vocab) + '\n')
const total = Object.values(vocab).reduce((n, v) => n + v.length, 0)
console.log(`wrote ${out}: ${total} lengths in ${Object.keys(vocab).length} properties`)
