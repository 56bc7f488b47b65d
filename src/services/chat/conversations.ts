import type { Kysely } from 'kysely'
import type { AnswerKind, Citation, DB, MessageStatus } from '../../db/schema.ts'
import type { SessionUser } from '../auth/sessions.ts'
import { FormError, NotFoundError } from '../errors.ts'

/**
 * A student's conversations with the tutor: what a new one needs (validated here), and reading
 * them back — always scoped to the student, so anyone else's id is a NotFoundError.
 */

export const MAX_QUESTION_LENGTH = 4000
export const CONVERSATIONS_PER_PAGE = 20
/** Messages shown on a conversation page (6 turns: long answers with math stay within the 14 KB page budget); older ones are a link away. */
export const MESSAGES_PER_PAGE = 12
const TITLE_LENGTH = 80
// Control characters other than tab and newlines never belong in a question.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/

export interface NewConversation {
  subject: string
  grade: number
  question: string
  textbookId: number | null
  sectionPath: string | null
}

export interface ConversationForm {
  subject?: string
  grade?: string
  question?: string
  textbook?: string
  section?: string
}

/** The question text, trimmed; FormError on the `question` field when empty or too long. */
export function validateQuestion(raw: string | undefined): string {
  const question = String(raw ?? '').replace(/\r\n?/g, '\n').trim()
  if (!question) throw new FormError({ question: 'chat.errors.questionRequired' })
  if (question.length > MAX_QUESTION_LENGTH) throw new FormError({ question: 'chat.errors.questionTooLong' }, { max: MAX_QUESTION_LENGTH, length: question.length })
  if (CONTROL.test(question)) throw new FormError({ question: 'chat.errors.questionInvalid' })
  return question
}

/**
 * Validates the form that starts a conversation. Subject must be a known code, grade 1–12; the
 * optional textbook must be a ready book (its subject and grade then win).
 */
export async function validateNewConversation(db: Kysely<DB>, form: ConversationForm, subjects: readonly { code: string }[]): Promise<NewConversation> {
  const fields: Record<string, string> = {}
  let params: Record<string, unknown> = { max: MAX_QUESTION_LENGTH }
  let question = ''
  try {
    question = validateQuestion(form.question)
  } catch (err) {
    if (!(err instanceof FormError)) throw err
    Object.assign(fields, err.fields)
    params = err.params
  }
  const context = await findTextbookContext(db, form.textbook, form.section)
  const subject = context?.subject ?? String(form.subject ?? '').trim()
  if (!subjects.some((s) => s.code === subject)) fields.subject = 'chat.errors.subjectRequired'
  const gradeText = String(form.grade ?? '').trim()
  const grade = context?.grade ?? (/^\d{1,2}$/.test(gradeText) ? Number(gradeText) : NaN)
  if (!(grade >= 1 && grade <= 12)) fields.grade = 'chat.errors.gradeRequired'
  if (Object.keys(fields).length) throw new FormError(fields, params)
  return { subject, grade, question, textbookId: context?.id ?? null, sectionPath: context?.sectionPath ?? null }
}

export interface TextbookContext {
  id: number
  title: string
  subject: string
  grade: number
  sectionPath: string | null
  sectionTitle: string | null
}

/** "Ask about this section": a ready textbook and one of its sections; null for anything else. */
export async function findTextbookContext(db: Kysely<DB>, textbook: string | undefined, section: string | undefined): Promise<TextbookContext | null> {
  if (!textbook || !/^\d{1,9}$/.test(textbook)) return null
  const row = await db
    .selectFrom('textbooks')
    .select(['id', 'title', 'subject', 'grade', 'toc'])
    .where('id', '=', Number(textbook))
    .where('status', '=', 'ready')
    .executeTakeFirst()
  if (!row) return null
  const entry = section ? (Array.isArray(row.toc) ? row.toc : []).find((e) => e.path === section) : undefined
  return { id: row.id, title: row.title, subject: row.subject, grade: row.grade, sectionPath: entry?.path ?? null, sectionTitle: entry?.title ?? null }
}

/** The first question, on one line and short enough for a list. */
export function titleFrom(question: string): string {
  const line = question.replace(/\s+/g, ' ').trim()
  return line.length <= TITLE_LENGTH ? line : line.slice(0, TITLE_LENGTH - 1).trimEnd() + '…'
}

export interface ConversationSummary {
  id: number
  title: string
  subject: string
  grade: number
  updatedAt: Date
}

/** The student's conversations, most recently active first; `page` is 1-based. */
export async function listConversations(
  db: Kysely<DB>,
  userId: number,
  page: number,
  perPage = CONVERSATIONS_PER_PAGE,
): Promise<{ items: ConversationSummary[]; hasNext: boolean }> {
  const rows = await db
    .selectFrom('conversations')
    .select(['id', 'title', 'subject', 'grade', 'updated_at'])
    .where('user_id', '=', userId)
    .orderBy('updated_at', 'desc')
    .orderBy('id', 'desc')
    .limit(perPage + 1)
    .offset((page - 1) * perPage)
    .execute()
  return {
    items: rows.slice(0, perPage).map((r) => ({ id: r.id, title: r.title, subject: r.subject, grade: r.grade, updatedAt: r.updated_at })),
    hasNext: rows.length > perPage,
  }
}

export interface Conversation {
  id: number
  userId: number
  schoolId: number
  title: string
  subject: string
  grade: number
  textbook: { id: number; title: string } | null
  sectionPath: string | null
  createdAt: Date
}

/** The viewer's own conversation, or NotFoundError — for other students, classes and schools alike. */
export async function findConversationForStudent(db: Kysely<DB>, viewer: SessionUser, id: number): Promise<Conversation> {
  if (viewer.role !== 'student') throw new NotFoundError()
  const row = await db
    .selectFrom('conversations as c')
    .leftJoin('textbooks as t', 't.id', 'c.textbook_id')
    .select(['c.id', 'c.user_id', 'c.school_id', 'c.title', 'c.subject', 'c.grade', 'c.textbook_id', 'c.section_path', 'c.created_at', 't.title as textbook_title'])
    .where('c.id', '=', id)
    .where('c.user_id', '=', viewer.id)
    .executeTakeFirst()
  if (!row) throw new NotFoundError()
  return {
    id: row.id,
    userId: row.user_id,
    schoolId: row.school_id,
    title: row.title,
    subject: row.subject,
    grade: row.grade,
    textbook: row.textbook_id !== null && row.textbook_title !== null ? { id: row.textbook_id, title: row.textbook_title } : null,
    sectionPath: row.section_path,
    createdAt: row.created_at,
  }
}

export interface ChatMessage {
  id: number
  role: 'user' | 'assistant'
  content: string
  status: MessageStatus
  kind: AnswerKind | null
  cached: boolean
  detail: boolean
  attempts: number
  citations: Citation[]
  replyTo: number | null
  createdAt: Date
}

type MessageRow = {
  id: string
  role: 'user' | 'assistant'
  content: string
  status: MessageStatus
  kind: AnswerKind | null
  cached: boolean
  detail: boolean
  attempts: number
  citations: Citation[]
  reply_to: string | null
  created_at: Date
}

const MESSAGE_COLUMNS = ['id', 'role', 'content', 'status', 'kind', 'cached', 'detail', 'attempts', 'citations', 'reply_to', 'created_at'] as const

function toMessage(r: MessageRow): ChatMessage {
  return {
    id: Number(r.id),
    role: r.role,
    content: r.content,
    status: r.status,
    kind: r.kind,
    cached: r.cached,
    detail: r.detail,
    attempts: r.attempts,
    citations: Array.isArray(r.citations) ? r.citations : [],
    replyTo: r.reply_to === null ? null : Number(r.reply_to),
    createdAt: r.created_at,
  }
}

/**
 * The latest messages of a conversation in order (or those before `beforeId`), and whether
 * older ones exist.
 */
export async function listMessages(db: Kysely<DB>, conversationId: number, beforeId: number | null = null): Promise<{ messages: ChatMessage[]; olderBefore: number | null }> {
  let query = db.selectFrom('messages').select(MESSAGE_COLUMNS).where('conversation_id', '=', conversationId)
  if (beforeId !== null) query = query.where('id', '<', String(beforeId))
  const rows = await query.orderBy('id', 'desc').limit(MESSAGES_PER_PAGE + 1).execute()
  let page = rows.slice(0, MESSAGES_PER_PAGE)
  // Never start a page with an answer whose question is on the previous page.
  if (rows.length > MESSAGES_PER_PAGE && page.at(-1)?.role === 'assistant') page = page.slice(0, -1)
  const messages = page.reverse().map(toMessage)
  return { messages, olderBefore: rows.length > page.length && messages.length ? messages[0]!.id : null }
}

/** One answer (assistant message) of the viewer's conversation, or NotFoundError. */
export async function findAnswer(db: Kysely<DB>, conversationId: number, messageId: number): Promise<ChatMessage> {
  const row = await db
    .selectFrom('messages')
    .select(MESSAGE_COLUMNS)
    .where('id', '=', String(messageId))
    .where('conversation_id', '=', conversationId)
    .where('role', '=', 'assistant')
    .executeTakeFirst()
  if (!row) throw new NotFoundError()
  return toMessage(row)
}

/** One answer of the viewer's own conversation, in one query (the SSE route); else NotFoundError. */
export async function findAnswerForStudent(db: Kysely<DB>, viewer: SessionUser, conversationId: number, messageId: number): Promise<ChatMessage> {
  if (viewer.role !== 'student') throw new NotFoundError()
  const row = await db
    .selectFrom('messages as m')
    .innerJoin('conversations as c', 'c.id', 'm.conversation_id')
    .select(MESSAGE_COLUMNS.map((col) => `m.${col}` as const))
    .where('m.id', '=', String(messageId))
    .where('m.conversation_id', '=', conversationId)
    .where('m.role', '=', 'assistant')
    .where('c.user_id', '=', viewer.id)
    .executeTakeFirst()
  if (!row) throw new NotFoundError()
  return toMessage(row)
}

/**
 * Whether anything was asked after this answer: then it is not the latest one, and its "more
 * detail" action (which explains the latest question) is not shown.
 */
export async function hasLaterMessages(db: Kysely<DB>, conversationId: number, answerId: number): Promise<boolean> {
  const row = await db
    .selectFrom('messages')
    .select('id')
    .where('conversation_id', '=', conversationId)
    .where('id', '>', String(answerId))
    .limit(1)
    .executeTakeFirst()
  return row !== undefined
}

/** The question an answer replies to, plus that answer, for the pair partial. */
export async function findQuestionAndAnswer(db: Kysely<DB>, conversationId: number, answerId: number): Promise<{ question: ChatMessage; answer: ChatMessage }> {
  const answer = await findAnswer(db, conversationId, answerId)
  const row = await db
    .selectFrom('messages')
    .select(MESSAGE_COLUMNS)
    .where('id', '=', String(answer.replyTo ?? 0))
    .where('conversation_id', '=', conversationId)
    .executeTakeFirst()
  if (!row) throw new NotFoundError()
  return { question: toMessage(row), answer }
}

const MAX_INT = 2 ** 31 - 1

/**
 * Numeric route ids, else NotFoundError (garbage never reaches SQL): conversation ids are Postgres
 * integers (≤ 2³¹−1), message ids bigints (12 digits are plenty).
 */
export function parseId(value: string | undefined, kind: 'conversation' | 'message' = 'conversation'): number {
  if (!value || !/^\d{1,12}$/.test(value)) throw new NotFoundError()
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1 || (kind === 'conversation' && n > MAX_INT)) throw new NotFoundError()
  return n
}
