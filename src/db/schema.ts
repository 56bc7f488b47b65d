import type { ColumnType, Generated } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>

export type Role = 'platform_admin' | 'school_admin' | 'teacher' | 'student'
export const ROLES: readonly Role[] = ['platform_admin', 'school_admin', 'teacher', 'student']

export interface SchoolTable {
  id: Generated<number>
  code: number
  name: string
  disabled_at: Timestamp | null
  created_at: Timestamp
  /** Chat limits for this school's students; null: the defaults from config (issue 4). */
  chat_per_minute: number | null
  chat_per_day: number | null
}

export interface UserTable {
  id: Generated<number>
  /** null only for platform admins. */
  school_id: number | null
  role: Role
  username: string
  display_name: string
  password_hash: string
  grade: number | null
  /** Students belong to one class. */
  class_id: number | null
  disabled_at: Timestamp | null
  created_at: Timestamp
}

export interface ClassTable {
  id: Generated<number>
  school_id: number
  teacher_id: number | null
  name: string
  grade: number
  created_at: Timestamp
}

export interface SessionTable {
  /** SHA-256 of the token, hex. The token itself is never stored. */
  id: string
  user_id: number
  expires_at: Timestamp
  /** Students on shared lab PCs: browser-session cookie and a short idle timeout. */
  idle_timeout: boolean
  created_at: Timestamp
}

export interface LoginFailureTable {
  id: Generated<number>
  key: string
  at: Timestamp
}

export interface DB {
  schools: SchoolTable
  users: UserTable
  classes: ClassTable
  sessions: SessionTable
  login_failures: LoginFailureTable
  subjects: SubjectTable
  textbooks: TextbookTable
  textbook_pages: TextbookPageTable
  chunks: ChunkTable
  search_words: SearchWordTable
  conversations: ConversationTable
  messages: MessageTable
  answer_cache: AnswerCacheTable
  chat_usage_daily: ChatUsageDailyTable
  learning_events: LearningEventTable
  jobs: JobTable
}

// --- Textbooks and retrieval (issue 3; migrations/20261128_0002_textbooks.sql) ---

export type TextbookStatus = 'pending' | 'processing' | 'ready' | 'failed' | 'replaced'
export type TextbookKind = 'required' | 'optional'

export interface SubjectTable {
  code: string
  name_mn: string
  name_en: string
  sort: number
}

/** One entry of a textbook's table of contents. */
export interface TocEntry {
  /** Dotted section number, "2.1". */
  path: string
  title: string
  level: number
  /** Printed page number (the PDF page when none is printed). */
  page: number
  pdfPage: number
}

export interface TextbookTable {
  id: Generated<number>
  subject: string
  grade: number
  title: string
  year: number | null
  kind: ColumnType<TextbookKind, TextbookKind | undefined, TextbookKind>
  status: ColumnType<TextbookStatus, TextbookStatus | undefined, TextbookStatus>
  error: string | null
  toc: ColumnType<TocEntry[], string | undefined, string>
  page_count: ColumnType<number, number | undefined, number>
  source_path: string | null
  source_sha256: string | null
  version: ColumnType<number, number | undefined, number>
  replaces_id: number | null
  embedding_model: string | null
  chunk_count: ColumnType<number, number | undefined, number>
  created_at: Timestamp
  ready_at: Timestamp | null
}

export interface TextbookPageTable {
  textbook_id: number
  pdf_page: number
  label: string | null
  number: number | null
  text: string
}

export interface ChunkTable {
  id: Generated<number>
  textbook_id: number
  ord: number
  section_path: string
  section_title: string
  page_start: number
  page_end: number
  pdf_page_start: number
  pdf_page_end: number
  content: string
  content_norm: string
  /** Generated from content_norm; never written. */
  tsv: ColumnType<string, never, never>
  /** pgvector text form "[0.1,…]" (see src/db/vector.ts). */
  embedding: string | null
  embedding_1536: string | null
  embedding_model: string | null
}

/** The vocabulary of ready textbooks: a word and how many chunks contain it. */
export interface SearchWordTable {
  word: string
  chunks: number
}

// --- Conversations with the tutor (issue 4; migrations/20261128_0004_chat.sql) ---

export type MessageRole = 'user' | 'assistant'
export type MessageStatus = 'queued' | 'answering' | 'done' | 'failed'
export type AnswerKind = 'offline' | 'llm' | 'cache'

/** One cited textbook passage, numbered as the answer cites it ([1], [2]). */
export interface Citation {
  n: number
  textbookId: number
  title: string
  section: string
  sectionTitle: string
  pageStart: number
  pageEnd: number
}

export interface ConversationTable {
  id: Generated<number>
  user_id: number
  school_id: number
  subject: string
  grade: number
  textbook_id: number | null
  section_path: string | null
  title: string
  created_at: Timestamp
  updated_at: Timestamp
}

export interface MessageTable {
  /** bigint: node-postgres returns it as a string. */
  id: ColumnType<string, never, never>
  conversation_id: number
  user_id: number
  role: MessageRole
  content: ColumnType<string, string | undefined, string>
  status: ColumnType<MessageStatus, MessageStatus | undefined, MessageStatus>
  reply_to: ColumnType<string | null, number | string | null | undefined, number | string | null>
  kind: AnswerKind | null
  detail: ColumnType<boolean, boolean | undefined, boolean>
  attempts: ColumnType<number, number | undefined, number>
  run_after: Timestamp | null
  lease_until: Timestamp | null
  cache_key: string | null
  provider: string | null
  model: string | null
  prompt_tokens: number | null
  completion_tokens: number | null
  /** numeric: node-postgres returns it as a string. */
  cost_usd: ColumnType<string | null, number | string | null | undefined, number | string | null>
  latency_ms: number | null
  first_token_ms: number | null
  cached: ColumnType<boolean, boolean | undefined, boolean>
  citations: ColumnType<Citation[], string | undefined, string>
  error: string | null
  created_at: Timestamp
  answered_at: Timestamp | null
}

export interface AnswerCacheTable {
  key: string
  answer: string | null
  citations: ColumnType<Citation[], string | undefined, string>
  provider: string | null
  model: string | null
  seen_count: ColumnType<number, number | undefined, number>
  hit_count: ColumnType<number, number | undefined, number>
  created_at: Timestamp
  expires_at: Timestamp
}

export interface ChatUsageDailyTable {
  school_id: number
  day: ColumnType<string, string, string>
  answers: ColumnType<number, number | undefined, number>
  cached: ColumnType<number, number | undefined, number>
  prompt_tokens: ColumnType<string, number | undefined, number>
  completion_tokens: ColumnType<string, number | undefined, number>
  cost_usd: ColumnType<string, number | string | undefined, number | string>
}

export interface LearningEventTable {
  id: ColumnType<string, never, never>
  user_id: number
  school_id: number | null
  kind: string
  subject: string | null
  grade: number | null
  topic: string | null
  data: ColumnType<Record<string, unknown>, string | undefined, string>
  at: Timestamp
}

// --- Durable background jobs (issue 3; migrations/20261128_0003_jobs.sql) ---

export type JobStatus = 'queued' | 'running' | 'done' | 'failed'

/** What a job reports while it runs: the stage and how far it got. */
export interface JobProgress {
  stage?: string
  done?: number
  total?: number
}

export interface JobTable {
  id: Generated<number>
  kind: string
  payload: ColumnType<Record<string, unknown>, string | undefined, string>
  status: ColumnType<JobStatus, JobStatus | undefined, JobStatus>
  progress: ColumnType<JobProgress, string | undefined, string>
  checkpoint: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>
  result: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>
  attempts: ColumnType<number, number | undefined, number>
  max_attempts: ColumnType<number, number | undefined, number>
  run_after: Timestamp
  locked_by: string | null
  locked_until: Timestamp | null
  error: string | null
  error_params: ColumnType<Record<string, string | number> | null, string | null | undefined, string | null>
  created_at: Timestamp
  updated_at: Timestamp
  finished_at: Timestamp | null
}
