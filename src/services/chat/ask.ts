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
 * A student asks: the question is stored (one statement, limits and cache included) before
 * anything slow happens, then — unless the cache answered it — the broker starts answering it
 * in the background. The caller redirects or returns the fragment at once.
 */

export interface AskInput {
  user: SessionUser
  limits: ChatLimits
  /** An existing conversation of the student, or the first question of a new one. */
  conversation: Conversation | NewConversation
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
  const context = isNew
    ? { grade: conversation.grade, subject: conversation.subject, textbookId: conversation.textbookId, sectionPath: conversation.sectionPath }
    : { grade: conversation.grade, subject: conversation.subject, textbookId: conversation.textbook?.id ?? null, sectionPath: conversation.sectionPath }
  const cacheKey = cacheKeyFor({ question, ...context }, { firstQuestion: isNew, askerName: user.displayName })
  const result = await storeQuestion(db, {
    userId: user.id,
    schoolId: user.schoolId!,
    limits: input.limits,
    question,
    cacheKey,
    detail: input.detail ?? false,
    conversation: isNew ? { create: conversation } : { id: conversation.id },
  })
  switch (result.outcome) {
    case 'stored':
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
      })
      break
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
