import { Counter, Histogram, type Registry } from 'prom-client'
import type { AttemptRecord } from '../llm/types.ts'

/** The tutor's Prometheus metrics, registered on the app's registry (src/plugins/metrics.ts). */
export interface ChatMetrics {
  /** answered | offline | cached | queued | failed | rate_limited | daily_limit */
  turns: Counter<'outcome'>
  llmRequests: Counter<'provider' | 'model' | 'outcome'>
  firstToken: Histogram
  cacheHits: Counter
  rateLimited: Counter<'limit'>
  dbStatements: Counter<'kind'>
  /** Where a turn's time before its first token goes (see TURN_PHASES). */
  turnPhase: Histogram<'phase'>
}

/**
 * Phases of a turn up to its first token, as the server sees them: `store` (the question's
 * statement), `retrieve` (the passages), `prompt` (building the request), `model` (from asking the
 * LLM chain to its first token arriving here: the provider's own first token, plus the connection
 * and the wait for this event loop), and `first_token` (from the question reaching askTutor to
 * its first token arriving here: the sum of the others plus the waits between them).
 */
export const TURN_PHASES = ['store', 'retrieve', 'prompt', 'model', 'first_token'] as const

export function createChatMetrics(registry: Registry): ChatMetrics {
  const registers = [registry]
  return {
    turns: new Counter({ name: 'bagsh_chat_turns_total', help: 'Questions to the tutor by outcome', labelNames: ['outcome'], registers }),
    llmRequests: new Counter({
      name: 'bagsh_llm_requests_total',
      help: 'Requests to LLM models by provider, model and outcome',
      labelNames: ['provider', 'model', 'outcome'],
      registers,
    }),
    firstToken: new Histogram({
      name: 'bagsh_llm_first_token_seconds',
      help: 'Time from asking the LLM chain to the first token of the answer',
      buckets: [0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30],
      registers,
    }),
    cacheHits: new Counter({ name: 'bagsh_cache_hits_total', help: 'Questions answered from the answer cache', registers }),
    rateLimited: new Counter({ name: 'bagsh_rate_limited_total', help: 'Questions refused by the chat limits', labelNames: ['limit'], registers }),
    dbStatements: new Counter({ name: 'bagsh_db_statements_total', help: 'SQL statements sent to the database by kind', labelNames: ['kind'], registers }),
    turnPhase: new Histogram({
      name: 'bagsh_chat_turn_phase_seconds',
      help: "Where a turn's time before its first token goes: store, retrieve, prompt, model, first_token (all of it)",
      labelNames: ['phase'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
  }
}

export function countAttempts(metrics: ChatMetrics, attempts: readonly AttemptRecord[]): void {
  for (const a of attempts) metrics.llmRequests.inc({ provider: a.provider, model: a.model, outcome: a.outcome })
}

/**
 * What a statement does: 'read', 'write' (INSERT/UPDATE/DELETE, also inside a WITH), 'tx'
 * (BEGIN/COMMIT/ROLLBACK/SAVEPOINT) or 'other' (DDL, SET, …).
 */
export function statementKind(sql: string): 'read' | 'write' | 'tx' | 'other' {
  const head = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase() ?? ''
  if (head === 'select') return /\b(nextval|setval)\s*\(/i.test(sql) ? 'write' : 'read'
  if (head === 'insert' || head === 'update' || head === 'delete' || head === 'merge') return 'write'
  if (head === 'with') return /\b(insert\s+into|update\s+\w+(\s+as\s+\w+)?\s+set|delete\s+from)\b/i.test(sql) ? 'write' : 'read'
  if (['begin', 'commit', 'rollback', 'savepoint', 'release', 'start'].includes(head)) return 'tx'
  return 'other'
}
