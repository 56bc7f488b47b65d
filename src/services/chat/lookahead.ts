import type { QuestionContext } from './questions.ts'

/**
 * What a follow-up's passages can be looked up from before its question is stored: the
 * conversation's context (grade, subject, textbook, section — fixed when it is created), as
 * this process last saw it stored for that student, and a per-student budget so that asking
 * ahead never costs more retrievals than the per-minute limit allows questions. A student over
 * the limit, sending question after question, gets the cheap "wait" answer without a search
 * each time (the store statement is what enforces the limit; this only bounds the work done
 * before it has answered). Per process: another instance just does not look ahead.
 */

/** Conversations remembered (least recently used forgotten first). */
const MAX_CONVERSATIONS = 20_000
/** Students whose current minute is counted. */
const MAX_STUDENTS = 20_000
const MINUTE_MS = 60_000

export class Lookahead {
  private readonly contexts = new Map<number, { userId: number; context: QuestionContext }>()
  private readonly budgets = new Map<number, { since: number; used: number }>()

  /** The context of a conversation this student asked in, when this process stored it. */
  contextOf(conversationId: number, userId: number): QuestionContext | undefined {
    const entry = this.contexts.get(conversationId)
    if (!entry || entry.userId !== userId) return undefined
    // Most recently used last.
    this.contexts.delete(conversationId)
    this.contexts.set(conversationId, entry)
    return entry.context
  }

  remember(conversationId: number, userId: number, context: QuestionContext): void {
    this.contexts.delete(conversationId)
    if (this.contexts.size >= MAX_CONVERSATIONS) this.contexts.delete(this.contexts.keys().next().value!)
    this.contexts.set(conversationId, { userId, context: { ...context } })
  }

  /** Takes one look-ahead from the student's budget for this minute: false when it is spent. */
  take(userId: number, perMinute: number, now = Date.now()): boolean {
    let budget = this.budgets.get(userId)
    if (!budget || now - budget.since >= MINUTE_MS) {
      if (!budget && this.budgets.size >= MAX_STUDENTS) this.prune(now)
      budget = { since: now, used: 0 }
      this.budgets.set(userId, budget)
    }
    if (budget.used >= perMinute) return false
    budget.used++
    return true
  }

  private prune(now: number): void {
    for (const [userId, budget] of this.budgets) if (now - budget.since >= MINUTE_MS) this.budgets.delete(userId)
    // Everyone counted asked within the minute: forget the oldest rather than grow.
    if (this.budgets.size >= MAX_STUDENTS) this.budgets.delete(this.budgets.keys().next().value!)
  }
}

export function sameContext(a: QuestionContext, b: QuestionContext): boolean {
  return a.grade === b.grade && a.subject === b.subject && a.textbookId === b.textbookId && a.sectionPath === b.sectionPath
}
