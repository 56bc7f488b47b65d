import { sql, type Kysely } from 'kysely'
import type { AnswerKind, Citation, DB } from '../../db/schema.ts'
import { BACKGROUND, PREPARE } from '../../db/prepared.ts'
import { CACHE_MIN_SEEN, CACHE_TTL_HOURS } from './cache.ts'
import { ANSWER_LEASE_SECONDS, TODAY } from './questions.ts'

/**
 * The answer side of a question: what a generator needs to know (an AnswerJob), storing the
 * finished answer in ONE statement (answer row, usage counters and cache entry together), and
 * the retry state of answers no provider could give (queued, run_after, attempts) that the
 * durable worker picks up — on any instance, claimed with FOR UPDATE SKIP LOCKED and a lease.
 */

export interface AnswerJob {
  answerId: number
  questionId: number
  conversationId: number
  userId: number
  schoolId: number
  grade: number
  subject: string
  textbookId: number | null
  sectionPath: string | null
  question: string
  cacheKey: string | null
  detail: boolean
  attempts: number
  /** Earlier turns when already read with the question (storeQuestion); else the broker reads them. */
  history?: { role: 'user' | 'assistant'; content: string }[]
  /** performance.now() when the student's question reached askTutor (fresh questions only: timing metrics). */
  askedAt?: number
}

/** Retries with backoff from 15 s up to 15 min; after this many the question is marked failed. */
export const MAX_ATTEMPTS = 24
export function retryDelaySeconds(attempts: number): number {
  return Math.min(15 * 60, 15 * 2 ** Math.max(0, attempts - 1))
}

interface JobRow {
  answer_id: string
  question_id: string
  conversation_id: number
  user_id: number
  school_id: number
  grade: number
  subject: string
  textbook_id: number | null
  section_path: string | null
  question: string
  cache_key: string | null
  detail: boolean
  attempts: number
}

function toJob(r: JobRow): AnswerJob {
  return {
    answerId: Number(r.answer_id),
    questionId: Number(r.question_id),
    conversationId: r.conversation_id,
    userId: r.user_id,
    schoolId: r.school_id,
    grade: r.grade,
    subject: r.subject,
    textbookId: r.textbook_id,
    sectionPath: r.section_path,
    question: r.question,
    cacheKey: r.cache_key,
    detail: r.detail,
    attempts: r.attempts,
  }
}

const JOB_COLUMNS = sql`a.id AS answer_id, q.id AS question_id, c.id AS conversation_id, c.user_id, c.school_id, c.grade,
  c.subject, c.textbook_id, c.section_path, q.content AS question, a.cache_key, a.detail, a.attempts`

export async function loadAnswerJobs(db: Kysely<DB>, answerIds: number[]): Promise<AnswerJob[]> {
  if (!answerIds.length) return []
  const { rows } = await sql<JobRow>`
    SELECT ${JOB_COLUMNS}
    FROM messages a JOIN messages q ON q.id = a.reply_to JOIN conversations c ON c.id = a.conversation_id
    WHERE a.id = ANY(${answerIds.map(String)}::bigint[]) AND a.role = 'assistant'
    ORDER BY a.id`.execute(db)
  return rows.map(toJob)
}

/** Earlier finished turns of the conversation, oldest first (the prompt trims them to a budget). */
export async function loadHistory(db: Kysely<DB>, conversationId: number, beforeId: number, limit = 12): Promise<{ role: 'user' | 'assistant'; content: string }[]> {
  const rows = await db
    .selectFrom('messages')
    .select(['role', 'content'])
    .where('conversation_id', '=', conversationId)
    .where('id', '<', String(beforeId))
    .where('status', '=', 'done')
    .where('content', '<>', '')
    .orderBy('id', 'desc')
    .limit(limit)
    .execute()
  return rows.reverse()
}

export interface FinishedAnswer {
  answerId: number
  schoolId: number
  content: string
  citations: Citation[]
  kind: AnswerKind
  provider: string | null
  model: string | null
  promptTokens: number | null
  completionTokens: number | null
  costUsd: number | null
  latencyMs: number
  firstTokenMs: number | null
  /** Set for a cacheable question answered by the LLM: the cache entry is counted/filled. */
  cacheKey: string | null
}

/**
 * Stores a finished answer in ONE statement: the answer row (content, citations, usage), the
 * school's daily usage counters, and the cache entry (its answer kept once seen twice). Prepared
 * (src/db/prepared.ts: planning it took ~0.5 ms per answer), and background work: the embedded
 * database runs the questions waiting for their passages first.
 * Returns false when the answer was already stored (another instance finished it first).
 */
export async function storeAnswer(db: Kysely<DB>, a: FinishedAnswer): Promise<boolean> {
  const cacheKey = a.kind === 'llm' ? a.cacheKey : null
  const citations = JSON.stringify(a.citations)
  const { rows } = await sql<{ stored: string }>`
    WITH m AS (
      UPDATE messages SET status = 'done', content = ${a.content}, citations = ${citations}::jsonb, kind = ${a.kind},
        provider = ${a.provider}, model = ${a.model}, prompt_tokens = ${a.promptTokens}, completion_tokens = ${a.completionTokens},
        cost_usd = ${a.costUsd}, latency_ms = ${a.latencyMs}, first_token_ms = ${a.firstTokenMs},
        lease_until = NULL, run_after = NULL, error = NULL, answered_at = now()
      WHERE id = ${String(a.answerId)} AND role = 'assistant' AND status IN ('answering', 'queued')
      RETURNING id
    ),
    usage AS (
      INSERT INTO chat_usage_daily AS u (school_id, day, answers, prompt_tokens, completion_tokens, cost_usd)
      SELECT ${a.schoolId}, ${TODAY}, 1, ${a.promptTokens ?? 0}, ${a.completionTokens ?? 0}, ${a.costUsd ?? 0} FROM m
      ON CONFLICT (school_id, day) DO UPDATE SET answers = u.answers + 1,
        prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = u.completion_tokens + excluded.completion_tokens,
        cost_usd = u.cost_usd + excluded.cost_usd
      RETURNING 1
    ),
    cache AS (
      INSERT INTO answer_cache AS c (key, answer, citations, provider, model, seen_count, expires_at)
      SELECT ${cacheKey}, NULL, ${citations}::jsonb, ${a.provider}, ${a.model}, 1, now() + make_interval(hours => ${CACHE_TTL_HOURS})
      FROM m WHERE ${cacheKey}::text IS NOT NULL
      ON CONFLICT (key) DO UPDATE SET
        seen_count = CASE WHEN c.expires_at <= now() THEN 1 ELSE c.seen_count + 1 END,
        hit_count = CASE WHEN c.expires_at <= now() THEN 0 ELSE c.hit_count END,
        expires_at = CASE WHEN c.expires_at <= now() THEN excluded.expires_at ELSE c.expires_at END,
        answer = CASE WHEN c.expires_at > now() AND c.seen_count + 1 >= ${CACHE_MIN_SEEN} THEN ${a.content} ELSE NULL END,
        citations = excluded.citations, provider = excluded.provider, model = excluded.model
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM m) AS stored, (SELECT count(*) FROM usage) AS usage_rows, (SELECT count(*) FROM cache) AS cache_rows
    ${sql.raw(BACKGROUND)} ${sql.raw(PREPARE)}`.execute(db)
  return Number(rows[0]?.stored ?? 0) > 0
}

/**
 * No provider answered: queue the answer for the worker, after a backoff. `attempts` at or past
 * MAX_ATTEMPTS (a request no model accepts passes a huge number) marks it failed for good.
 */
export async function requeueAnswer(db: Kysely<DB>, answerId: number, attempts: number, error: string, retryAfterMs: number | null = null): Promise<'queued' | 'failed'> {
  const failed = attempts >= MAX_ATTEMPTS
  const delay = Math.max(retryDelaySeconds(attempts), Math.ceil((retryAfterMs ?? 0) / 1000))
  await db
    .updateTable('messages')
    .set({
      status: failed ? 'failed' : 'queued',
      // The column is an int: a "give up" count beyond it would make the whole update fail.
      attempts: Math.min(attempts, MAX_ATTEMPTS),
      run_after: failed ? null : sql<Date>`now() + make_interval(secs => ${delay})`,
      lease_until: null,
      error: error.slice(0, 500),
    })
    .where('id', '=', String(answerId))
    .where('status', 'in', ['answering', 'queued'])
    .execute()
  return failed ? 'failed' : 'queued'
}

/** Shutdown: answers this process was generating go back to the queue, due at once. */
export async function releaseAnswers(db: Kysely<DB>, answerIds: number[]): Promise<void> {
  if (!answerIds.length) return
  await db
    .updateTable('messages')
    .set({ status: 'queued', run_after: sql<Date>`now()`, lease_until: null })
    .where('id', 'in', answerIds.map(String))
    .where('status', '=', 'answering')
    .execute()
}

/**
 * Takes up to `limit` answers that are due — queued ones whose run_after has come, and
 * 'answering' ones whose lease ran out because their process died — and leases them to the
 * caller. FOR UPDATE SKIP LOCKED keeps two instances from taking the same one.
 */
export async function claimDueAnswers(db: Kysely<DB>, limit: number, leaseSeconds = ANSWER_LEASE_SECONDS): Promise<AnswerJob[]> {
  const { rows } = await sql<JobRow>`
    WITH due AS (
      SELECT m.id, (u.disabled_at IS NOT NULL OR s.disabled_at IS NOT NULL) AS closed
      FROM messages m
      JOIN conversations c ON c.id = m.conversation_id
      JOIN users u ON u.id = c.user_id
      JOIN schools s ON s.id = c.school_id
      WHERE m.role = 'assistant' AND (
        (m.status = 'queued' AND m.run_after <= now()) OR (m.status = 'answering' AND m.lease_until < now()))
      ORDER BY m.run_after NULLS FIRST, m.id
      LIMIT ${limit}
      FOR UPDATE OF m SKIP LOCKED
    ),
    -- A student or school disabled meanwhile: no more model calls (or costs) for them.
    closed AS (
      UPDATE messages SET status = 'failed', lease_until = NULL, run_after = NULL, error = 'account disabled'
      FROM due WHERE messages.id = due.id AND due.closed
      RETURNING messages.id
    ),
    a AS (
      UPDATE messages SET status = 'answering', lease_until = now() + make_interval(secs => ${leaseSeconds})
      FROM due WHERE messages.id = due.id AND NOT due.closed
      RETURNING messages.*
    )
    SELECT ${JOB_COLUMNS}
    FROM a JOIN messages q ON q.id = a.reply_to JOIN conversations c ON c.id = a.conversation_id
    ORDER BY a.id ${sql.raw(BACKGROUND)}`.execute(db)
  return rows.map(toJob)
}

/** Whether any answer is due (a cheap read the worker makes before claiming). */
export async function hasDueAnswers(db: Kysely<DB>): Promise<boolean> {
  const { rows } = await sql<{ one: number }>`
    SELECT 1 AS one FROM messages
    WHERE status IN ('queued', 'answering') AND role = 'assistant'
      AND ((status = 'queued' AND run_after <= now()) OR (status = 'answering' AND lease_until < now()))
    LIMIT 1 ${sql.raw(BACKGROUND)}`.execute(db)
  return rows.length > 0
}

/** Deletes cache entries that expired (the worker does it now and then). Returns how many. */
export async function pruneAnswerCache(db: Kysely<DB>, limit = 5000): Promise<number> {
  const { rows } = await sql<{ n: string }>`
    WITH gone AS (
      DELETE FROM answer_cache WHERE key IN (SELECT key FROM answer_cache WHERE expires_at < now() LIMIT ${limit})
      RETURNING 1
    )
    SELECT count(*) AS n FROM gone ${sql.raw(BACKGROUND)}`.execute(db)
  return Number(rows[0]?.n ?? 0)
}

/** An answer's status, content and citations, for watchers on other instances. */
export async function answerState(db: Kysely<DB>, answerId: number) {
  return db
    .selectFrom('messages')
    .select(['status', 'attempts', 'content', 'citations', 'kind', 'cached'])
    .where('id', '=', String(answerId))
    .executeTakeFirst()
}
