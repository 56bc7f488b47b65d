import type { Citation } from '../../db/schema.ts'
import type { Passage } from '../retrieval/retrieve.ts'
import type { ChatMessage as LlmMessage, ChatRequest } from '../llm/types.ts'

/**
 * What the tutor is told. A Mongolian system prompt (patient, grade-appropriate, Socratic by
 * default, answering from the student's textbook passages and citing them as [1], [2]), the
 * passages themselves, as much of the conversation as fits a token budget, and the question.
 */

export const MAX_TOKENS = 1024
/** The "more detail" action asks again with room for a longer explanation. */
export const DETAIL_MAX_TOKENS = 2048
/** Prompt tokens spent on earlier turns of the conversation, newest kept first. */
export const HISTORY_TOKEN_BUDGET = 1500
/** Prompt tokens spent on textbook passages. */
export const PASSAGE_TOKEN_BUDGET = 2200
/** Characters of one passage given to the model. */
const PASSAGE_MAX_CHARS = 2400

/**
 * A rough token count without a tokenizer: Cyrillic text runs about 3 characters per token in
 * the models we use (Latin text about 4). Only used for budgets, so erring high is fine.
 */
export function estimateTokens(text: string): number {
  let cyrillic = 0
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code >= 0x400 && code <= 0x4ff) cyrillic++
  }
  return Math.ceil(cyrillic / 3 + (text.length - cyrillic) / 4)
}

export interface PromptInput {
  question: string
  grade: number
  /** The subject's Mongolian name, "Биологи". */
  subjectName: string
  passages: Passage[]
  /** Earlier turns, oldest first (questions and finished answers only). */
  history: { role: 'user' | 'assistant'; content: string }[]
  detail?: boolean
}

export function systemPrompt(grade: number, subjectName: string, detail: boolean): string {
  const lines = [
    `Чи бол Монголын ерөнхий боловсролын сургуулийн ${grade}-р ангийн сурагчид «${subjectName}» хичээлээр тусалдаг тэвчээртэй, эелдэг багш.`,
    'Дүрэм:',
    `- ${grade}-р ангийн сурагчийн ойлгох энгийн, тодорхой монгол хэлээр, товч хариул.`,
    '- Анхдагчаар Сократын аргаар заа: бэлэн хариу шууд бүү өг. Жижиг зөвлөгөө өгч, чиглүүлэх асуулт тавьж, сурагчийг өөрөө бодоход нь тусал. Сурагч тайлбар эсвэл бүрэн бодолт тодорхой хүсвэл алхам алхмаар тайлбарла.',
    '- Доорх «Сурах бичгийн хэсгүүд»-ээс хариул. Ашигласан хэсгээ өгүүлбэрийн төгсгөлд [1], [2] гэж иш тат. Хэсгүүдэд байхгүй зүйл зохиож бүү бич.',
    '- Хэсгүүд асуултад хамаарахгүй бол үүнийгээ шууд хэл («Сурах бичгийн олдсон хэсгүүдэд энэ талаар алга.»), дараа нь ерөнхий мэдлэгээрээ болгоомжтой, товч тайлбарла.',
    '- Томьёо, тэгшитгэлийг $...$ (мөрөн дотор) эсвэл $$...$$ (тусдаа мөрөнд) LaTeX-ээр бич.',
    '- Насанд тохиромжгүй, аюултай сэдвээс эелдгээр татгалзаж, багш эсвэл эцэг эхтэйгээ ярихыг зөвлө. Сурагчийн хувийн мэдээллийг бүү асуу.',
  ]
  if (detail) lines.push('- Сурагч илүү дэлгэрэнгүй тайлбар хүссэн: өмнөх асуултыг алхам алхмаар, жишээтэй, бүрэн тайлбарла.')
  return lines.join('\n')
}

function clip(text: string, max: number): string {
  if (text.length <= max) return text
  const cut = text.slice(0, max)
  const sentence = cut.lastIndexOf('. ')
  return (sentence > max * 0.6 ? cut.slice(0, sentence + 1) : cut.trimEnd()) + ' …'
}

/** The passages the model sees, numbered as it must cite them, within the passage budget. */
export function passagesForPrompt(passages: Passage[]): { text: string; used: Passage[] } {
  const blocks: string[] = []
  const used: Passage[] = []
  let tokens = 0
  for (const p of passages) {
    const pages = p.pageStart === p.pageEnd ? `х. ${p.pageStart}` : `х. ${p.pageStart}–${p.pageEnd}`
    const section = [p.section.path, p.section.title].filter(Boolean).join(' ')
    const block = `[${used.length + 1}] ${p.textbook.title}${section ? `, ${section}` : ''}, ${pages}:\n${clip(p.content, PASSAGE_MAX_CHARS)}`
    const cost = estimateTokens(block)
    if (used.length && tokens + cost > PASSAGE_TOKEN_BUDGET) break
    blocks.push(block)
    used.push(p)
    tokens += cost
  }
  return { text: blocks.join('\n\n'), used }
}

/** The newest turns that fit the budget, oldest first; a turn is never cut in half. */
export function trimHistory<T extends { content: string }>(history: T[], budget = HISTORY_TOKEN_BUDGET): T[] {
  const kept: T[] = []
  let tokens = 0
  for (let i = history.length - 1; i >= 0; i--) {
    const cost = estimateTokens(history[i]!.content) + 4
    if (tokens + cost > budget) break
    kept.unshift(history[i]!)
    tokens += cost
  }
  // Start with a question, never with an answer whose question was dropped.
  while (kept[0] && (kept[0] as { role?: string }).role === 'assistant') kept.shift()
  return kept
}

export function citationsOf(passages: Passage[]): Citation[] {
  return passages.map((p, i) => ({
    n: i + 1,
    textbookId: p.textbook.id,
    title: p.textbook.title,
    section: p.section.path,
    sectionTitle: p.section.title,
    pageStart: p.pageStart,
    pageEnd: p.pageEnd,
  }))
}

/** The request for the LLM chain, and the citations its [n] markers refer to. */
export function buildChatRequest(input: PromptInput): { request: ChatRequest; citations: Citation[] } {
  const { text, used } = passagesForPrompt(input.passages)
  const system = [
    systemPrompt(input.grade, input.subjectName, input.detail ?? false),
    '',
    'Сурах бичгийн хэсгүүд:',
    text || '(Энэ асуултад тохирох хэсэг олдсонгүй.)',
  ].join('\n')
  const messages: LlmMessage[] = [
    { role: 'system', content: system },
    ...trimHistory(input.history).map((m) => ({ role: m.role, content: m.content })),
    { role: 'user', content: input.question },
  ]
  return { request: { messages, maxTokens: input.detail ? DETAIL_MAX_TOKENS : MAX_TOKENS }, citations: citationsOf(used) }
}
