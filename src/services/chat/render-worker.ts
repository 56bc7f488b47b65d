import { parentPort } from 'node:worker_threads'
import type { Citation } from '../../db/schema.ts'
import { createI18n, isLanguage, DEFAULT_LANGUAGE } from '../i18n.ts'
import { presentAnswer } from './present.ts'

/** The answer renderer's thread (renderer.ts): presentAnswer, one request at a time. */

const i18n = createI18n()
const port = parentPort!

port.on('message', ({ id, markdown, citations, lang }: { id: number; markdown: string; citations: Citation[]; lang: string }) => {
  try {
    const value = presentAnswer(markdown, citations, i18n.getFixedT(isLanguage(lang) ? lang : DEFAULT_LANGUAGE))
    port.postMessage({ id, ok: true, value })
  } catch (err) {
    port.postMessage({ id, ok: false, message: err instanceof Error ? err.message : String(err) })
  }
})
