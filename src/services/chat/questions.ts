import { sql, type Kysely, type RawBuilder } from 'kysely'
import type { DB } from '../../db/schema.ts'
import { PREPARE } from '../../db/prepared.ts'
import { NotFoundError } from '../errors.ts'
import type { NewConversation } from './conversations.ts'
import { titleFrom } from './conversations.ts'
import { CACHE_MIN_SEEN } from './cache.ts'

/**
 * Storing a question is ONE statement (so one write round trip, atomic without an explicit
 * transaction): it checks the student's limits against the questions already stored, drops a
 * double submit, creates or touches the conversation, inserts the question and its answer row,
 * and — for a cacheable first question whose answer is cached — fills that answer in and counts
 * the hit. Limits therefore cost no extra writes and hold across app instances. It is prepared
 * (src/db/prepared.ts): planning it took longer than running it.
 */

export interface ChatLimits {
  perMinute: number
  perDay: number
}

/** How long a new answer's generator owns it before the worker may take it over. */
export const ANSWER_LEASE_SECONDS = 300
/** The same question sent again within this window is a double submit, not a new question. */
const DOUBLE_SUBMIT_SECONDS = 30

export interface StoreQuestionInput {
  userId: number
  schoolId: number
  limits: ChatLimits
  question: string
  cacheKey: string | null
  /** The "more detail" action. */
  detail?: boolean
  /**
   * An existing conversation (checked here: another user's id is a NotFoundError, as for a
   * vanished one), or a new one.
   */
  conversation: { id: number } | { create: NewConversation }
}

/** What retrieval and the prompt need of the conversation, as stored. */
export interface QuestionContext {
  grade: number
  subject: string
  textbookId: number | null
  sectionPath: string | null
}

/** Earlier finished turns, oldest first (the prompt trims them to its budget). */
export type History = { role: 'user' | 'assistant'; content: string }[]

/** Turns of history read with the question (the prompt keeps what fits HISTORY_TOKEN_BUDGET). */
export const HISTORY_TURNS = 12

export type StoreQuestionResult =
  | {
      outcome: 'stored'
      conversationId: number
      questionId: number
      answerId: number
      cached: boolean
      context: QuestionContext
      /** The conversation's earlier turns, read in the same statement (empty for a new one). */
      history: History
    }
  | { outcome: 'duplicate'; conversationId: number; answerId: number }
  /** Over the per-minute limit: the next question is allowed in `seconds`. */
  | { outcome: 'wait'; seconds: number }
  | { outcome: 'daily'; limit: number }

/** Midnight in Mongolia (UTC+8, no daylight saving), where the daily limit starts again. */
export const DAY_START = sql`(date_trunc('day', now() AT TIME ZONE 'Asia/Ulaanbaatar') AT TIME ZONE 'Asia/Ulaanbaatar')`
export const TODAY = sql`((now() AT TIME ZONE 'Asia/Ulaanbaatar')::date)`

interface Row {
  minute_count: string
  day_count: string
  per_minute: number
  per_day: number
  wait_seconds: number | null
  answer_id: string | null
  conversation_id: number | null
  question_id: string | null
  answer_status: string | null
  dup_answer_id: string | null
  dup_conversation_id: number | null
  grade: number | null
  subject: string | null
  textbook_id: number | null
  section_path: string | null
  history: [string, string][] | null
}

export async function storeQuestion(db: Kysely<DB>, input: StoreQuestionInput): Promise<StoreQuestionResult> {
  const { userId, schoolId, question } = input
  const detail = input.detail ?? false
  const existing = 'id' in input.conversation ? input.conversation.id : null
  const dupScope = existing === null ? sql`` : sql`AND q.conversation_id = ${existing}`

  let conv: RawBuilder<unknown>
  if ('create' in input.conversation) {
    const c = input.conversation.create
    conv = sql`INSERT INTO conversations (user_id, school_id, subject, grade, textbook_id, section_path, title)
      SELECT ${userId}, ${schoolId}, ${c.subject}, ${c.grade}, ${c.textbookId}, ${c.sectionPath}, ${titleFrom(c.question)}
      FROM ok RETURNING id, grade, subject, textbook_id, section_path`
  } else {
    conv = sql`UPDATE conversations SET updated_at = now()
      WHERE id = ${existing} AND user_id = ${userId} AND EXISTS (SELECT 1 FROM ok)
      RETURNING id, grade, subject, textbook_id, section_path`
  }
  // A follow-up's history comes with it (the statement's snapshot: the turns before this one).
  const history =
    existing === null
      ? sql`NULL::json`
      : sql`(SELECT json_agg(json_build_array(h.role, h.content) ORDER BY h.id) FROM (
          SELECT id, role, content FROM messages
          WHERE conversation_id = ${existing} AND status = 'done' AND content <> '' AND EXISTS (SELECT 1 FROM conv)
          ORDER BY id DESC LIMIT ${HISTORY_TURNS}) h)`

  const { rows } = await sql<Row>`
    WITH lim AS (
      SELECT COALESCE(s.chat_per_minute, ${input.limits.perMinute}::int) AS per_minute,
             COALESCE(s.chat_per_day, ${input.limits.perDay}::int) AS per_day
      FROM schools s WHERE s.id = ${schoolId}
    ),
    recent AS (
      SELECT count(*) FILTER (WHERE created_at > now() - interval '1 minute') AS minute_count, count(*) AS day_count
      FROM messages WHERE user_id = ${userId} AND role = 'user' AND created_at >= ${DAY_START}
    ),
    dup AS (
      SELECT a.id AS answer_id, q.conversation_id
      FROM messages q
      -- The answer is found through its conversation's index (there is none on reply_to).
      JOIN LATERAL (
        SELECT id FROM messages a
        WHERE a.conversation_id = q.conversation_id AND a.id > q.id AND a.reply_to = q.id AND a.detail = ${detail}
        LIMIT 1
      ) a ON true
      WHERE q.user_id = ${userId} AND q.role = 'user' AND q.content = ${question} ${dupScope}
        AND q.created_at > now() - make_interval(secs => ${DOUBLE_SUBMIT_SECONDS})
      ORDER BY q.id DESC LIMIT 1
    ),
    ok AS (
      SELECT 1 FROM lim, recent
      WHERE recent.minute_count < lim.per_minute AND recent.day_count < lim.per_day AND NOT EXISTS (SELECT 1 FROM dup)
    ),
    conv AS (${conv}),
    hit AS (
      UPDATE answer_cache SET hit_count = hit_count + 1
      WHERE key = ${input.cacheKey} AND answer IS NOT NULL AND seen_count >= ${CACHE_MIN_SEEN}
        AND expires_at > now() AND EXISTS (SELECT 1 FROM conv)
      RETURNING answer, citations, provider, model
    ),
    q AS (
      INSERT INTO messages (conversation_id, user_id, role, content, status)
      SELECT id, ${userId}, 'user', ${question}, 'done' FROM conv
      RETURNING id, conversation_id
    ),
    a AS (
      INSERT INTO messages (conversation_id, user_id, role, status, reply_to, detail, cache_key, lease_until,
                            kind, content, cached, citations, provider, model, answered_at, latency_ms)
      SELECT q.conversation_id, ${userId}, 'assistant',
             CASE WHEN hit.answer IS NULL THEN 'answering' ELSE 'done' END,
             q.id, ${detail}, ${input.cacheKey},
             CASE WHEN hit.answer IS NULL THEN now() + make_interval(secs => ${ANSWER_LEASE_SECONDS}) END,
             CASE WHEN hit.answer IS NULL THEN NULL ELSE 'cache' END,
             COALESCE(hit.answer, ''), hit.answer IS NOT NULL, COALESCE(hit.citations, '[]'::jsonb),
             hit.provider, hit.model,
             CASE WHEN hit.answer IS NULL THEN NULL ELSE now() END,
             CASE WHEN hit.answer IS NULL THEN NULL ELSE 0 END
      FROM q LEFT JOIN hit ON true
      RETURNING id, conversation_id, reply_to, status
    ),
    usage AS (
      INSERT INTO chat_usage_daily AS u (school_id, day, answers, cached)
      SELECT ${schoolId}, ${TODAY}, 1, 1 FROM hit
      ON CONFLICT (school_id, day) DO UPDATE SET answers = u.answers + 1, cached = u.cached + 1
      RETURNING 1
    )
    SELECT recent.minute_count, recent.day_count, lim.per_minute, lim.per_day,
      (SELECT ceil(extract(epoch FROM (created_at + interval '1 minute' - now())))::int FROM (
         SELECT created_at, row_number() OVER (ORDER BY created_at DESC) AS n
         FROM messages WHERE user_id = ${userId} AND role = 'user' AND created_at > now() - interval '1 minute'
       ) AS last_minute WHERE n = lim.per_minute) AS wait_seconds,
      (SELECT id FROM a) AS answer_id, (SELECT conversation_id FROM a) AS conversation_id,
      (SELECT reply_to FROM a) AS question_id, (SELECT status FROM a) AS answer_status,
      (SELECT answer_id FROM dup) AS dup_answer_id, (SELECT conversation_id FROM dup) AS dup_conversation_id,
      (SELECT count(*) FROM usage) AS usage_rows,
      conv.grade, conv.subject, conv.textbook_id, conv.section_path, ${history} AS history
    FROM lim CROSS JOIN recent LEFT JOIN conv ON true ${sql.raw(PREPARE)}`.execute(db)

  const row = rows[0]
  if (!row) throw new Error(`school ${schoolId} not found`)
  if (row.answer_id !== null && row.conversation_id !== null && row.question_id !== null) {
    return {
      outcome: 'stored',
      conversationId: row.conversation_id,
      questionId: Number(row.question_id),
      answerId: Number(row.answer_id),
      cached: row.answer_status === 'done',
      context: { grade: row.grade!, subject: row.subject!, textbookId: row.textbook_id, sectionPath: row.section_path },
      history: (row.history ?? []).map(([role, content]) => ({ role: role as 'user' | 'assistant', content })),
    }
  }
  if (row.dup_answer_id !== null && row.dup_conversation_id !== null) {
    return { outcome: 'duplicate', conversationId: row.dup_conversation_id, answerId: Number(row.dup_answer_id) }
  }
  if (Number(row.day_count) >= row.per_day) return { outcome: 'daily', limit: row.per_day }
  if (Number(row.minute_count) >= row.per_minute) return { outcome: 'wait', seconds: Math.min(60, Math.max(1, row.wait_seconds ?? 60)) }
  // Not this student's conversation (or it vanished): nothing was written.
  throw new NotFoundError()
}
