import type { Kysely } from 'kysely'
import type { DB } from '../../db/schema.ts'
import type { SessionUser } from '../auth/sessions.ts'
import type { AnswerBroker } from './broker.ts'
import { cacheKeyFor } from './cache.ts'
import type { Conversation, NewConversation } from './conversations.ts'
import type { ChatMetrics } from './metrics.ts'
import type { LearningEventBatcher } from '../learning/events.ts'
import { storeQuestion, type ChatLimits, type StoreQuestionResult } from './questions.ts'

/**
 * A student asks: the question is stored (one statement, limits and cache included, and for a
 * follow-up the ownership check and the history the prompt needs) before anything slow
 * happens, then — unless the cache answered it — the broker starts answering it in the
 * background. The caller redirects or returns the fragment at once.
 */

export interface AskInput {
  user: SessionUser
  limits: ChatLimits
  /**
   * The first question of a new conversation, or a follow-up in one of the student's own
   * (an id alone is enough: someone else's is a NotFoundError and nothing is written).
   */
  conversation: Conversation | { id: number } | NewConversation
  question: string
  /** The "more detail" action on the latest answer. */
  detail?: boolean
}

export interface AskDeps {
  broker: AnswerBroker
  metrics: ChatMetrics
  events: LearningEventBatcher
}

export async function askTutor(db: Kysely<DB>, deps: AskDeps, input: AskInput): Promise<StoreQuestionResult> {
  const { user, conversation, question } = input
  const isNew = !('id' in conversation)
  // Only a first question can come from the cache (a follow-up depends on its conversation).
  const cacheKey = isNew
    ? cacheKeyFor({ question, grade: conversation.grade, subject: conversation.subject, textbookId: conversation.textbookId, sectionPath: conversation.sectionPath }, { firstQuestion: true, askerName: user.displayName })
    : null
  const askedAt = performance.now()
  const result = await storeQuestion(db, {
    userId: user.id,
    schoolId: user.schoolId!,
    limits: input.limits,
    question,
    cacheKey,
    detail: input.detail ?? false,
    conversation: isNew ? { create: conversation } : { id: conversation.id },
  })
  deps.metrics.turnPhase.observe({ phase: 'store' }, (performance.now() - askedAt) / 1000)
  switch (result.outcome) {
    case 'stored': {
      const context = result.context
      if (result.cached) {
        deps.metrics.turns.inc({ outcome: 'cached' })
        deps.metrics.cacheHits.inc()
        deps.events.record({ userId: user.id, schoolId: user.schoolId, kind: 'question', ...context, data: { answerId: result.answerId, cached: true } })
        break
      }
      deps.broker.start({
        answerId: result.answerId,
        questionId: result.questionId,
        conversationId: result.conversationId,
        userId: user.id,
        schoolId: user.schoolId!,
        ...context,
        question,
        cacheKey,
        detail: input.detail ?? false,
        attempts: 0,
        history: result.history,
        askedAt,
      })
      break
    }
    case 'wait':
      deps.metrics.turns.inc({ outcome: 'rate_limited' })
      deps.metrics.rateLimited.inc({ limit: 'minute' })
      break
    case 'daily':
      deps.metrics.turns.inc({ outcome: 'daily_limit' })
      deps.metrics.rateLimited.inc({ limit: 'day' })
      break
  }
  return result
}
