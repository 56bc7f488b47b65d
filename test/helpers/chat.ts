import type { Kysely } from 'kysely'
import type { DB } from '../../src/db/schema.ts'
import { loadConfig, type LlmConfig } from '../../src/config.ts'
import { createLocalEmbedder } from '../../src/services/embeddings/local.ts'
import { importSampleBook, loadSampleBooks } from '../../src/services/textbooks/samples.ts'
import type { TestClient } from './client.ts'
import { makeClass, makeSchool, makeUser } from './factories.ts'

/** Chat test helpers (test/chat*.test.ts, test/browser/chat.test.ts). */

/** Loads sample textbooks (all, or the named files) as ready, searchable books. */
export async function importSamples(db: Kysely<DB>, files?: string[]): Promise<Map<string, number>> {
  const embedder = createLocalEmbedder()
  const ids = new Map<string, number>()
  for (const book of loadSampleBooks()) {
    if (files && !files.includes(book.file)) continue
    ids.set(book.file, await importSampleBook(db, embedder, book))
  }
  return ids
}

/** A school, a grade-7 class and `count` students in it. */
export async function makeStudents(db: Kysely<DB>, count = 1, grade = 7) {
  const school = await makeSchool(db)
  const teacher = await makeUser(db, 'teacher', school.id)
  const klass = await makeClass(db, school.id, teacher.id, grade)
  const students = []
  for (let i = 0; i < count; i++) students.push(await makeUser(db, 'student', school.id, { grade, classId: klass.id }))
  return { school, klass, teacher, students }
}

/** The LLM config of a deployment talking to a fake OpenRouter at `url`. */
export function llmConfigFor(url: string, env: Record<string, string> = {}): LlmConfig {
  return loadConfig(
    { NODE_ENV: 'test', OPENROUTER_API_KEY: 'test-key', OPENROUTER_BASE_URL: url, LLM_BREAKER_FAILURES: '1000', ...env },
    { sessionSecret: 'x'.repeat(32) },
  ).llm
}

/** The conversation id from a 303 to /chat/:id. */
export function conversationIdOf(location: unknown): number {
  const m = /^\/chat\/(\d+)/.exec(String(location))
  if (!m) throw new Error(`not a conversation URL: ${String(location)}`)
  return Number(m[1])
}

/**
 * The seconds of a page's `<noscript>` meta refresh (pending answers, without JavaScript), or
 * null. Pages never send a Refresh header: browsers with JavaScript would reload while streaming.
 */
export function noscriptRefresh(res: { body: string; headers: Record<string, unknown> }): string | null {
  if (res.headers.refresh !== undefined) throw new Error(`unexpected Refresh header: ${String(res.headers.refresh)}`)
  return /<noscript><meta http-equiv="refresh" content="(\d+)"><\/noscript>/.exec(res.body)?.[1] ?? null
}

/** GETs the conversation until no answer is pending (no <noscript> refresh), like a browser without JS. */
export async function waitForAnswers(client: TestClient, url: string, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs
  for (;;) {
    const res = await client.get(url)
    if (res.statusCode !== 200 || noscriptRefresh(res) === null) return res
    if (Date.now() > until) throw new Error(`answers at ${url} still pending after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A form POST as htmx sends it (HX-Request: true). */
export async function postHtmx(client: TestClient, url: string, form: Record<string, string | string[]>) {
  client.headers['hx-request'] = 'true'
  try {
    return await client.post(url, form)
  } finally {
    delete client.headers['hx-request']
  }
}
