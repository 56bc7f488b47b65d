import { readFileSync } from 'node:fs'
import { renderKatex } from './math.ts'
import { LENGTH_PROPERTIES, vocabularyFor, lengthsOf, type Vocabulary } from './katex-styles.ts'

export const CORPUS_URL = new URL('../../../test/fixtures/school-math.tex', import.meta.url)

export interface CorpusEntry {
  tex: string
  display: boolean
}

/** The school-maths corpus: one expression a line, `D ` marks display math, `%` a comment. */
export function readCorpus(url: URL = CORPUS_URL): CorpusEntry[] {
  return readFileSync(url, 'utf8')
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('%'))
    .map((line) => (line.startsWith('D ') ? { tex: line.slice(2), display: true } : { tex: line, display: false }))
}

/** Renders the corpus with the same KaTeX options as answers and collects every inline length. */
export function buildVocabulary(corpus: CorpusEntry[] = readCorpus()): Vocabulary {
  const seen = new Map<string, Set<number>>()
  for (const { tex, display } of corpus) {
    for (const m of renderKatex(tex, display).matchAll(/ style="([^"]*)"/g)) {
      for (const [code, v] of lengthsOf(m[1])) {
        if (!seen.has(code)) seen.set(code, new Set())
        seen.get(code)!.add(v)
      }
    }
  }
  const vocab: Vocabulary = {}
  for (const prop of Object.values(LENGTH_PROPERTIES)) vocab[prop.code] = vocabularyFor(prop, seen.get(prop.code) ?? [])
  return vocab
}
