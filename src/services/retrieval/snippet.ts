import { normalizeText } from './normalize.ts'

/**
 * A highlighted excerpt as structured segments, so a view prints it safely: `<%= seg.text %>`
 * inside `<mark>` when `mark` is true. snippetHtml() does the same for callers that want a
 * string; it escapes everything it did not add itself.
 */
export interface SnippetSegment {
  text: string
  mark: boolean
}

const WORD = /[\p{L}\p{M}\p{N}]+/gu

/**
 * The window of about `maxWords` words of `content` with the most words for which `isHit`
 * (given the word normalized) is true, with those words marked.
 */
export function buildSnippet(content: string, isHit: (normalizedWord: string) => boolean, maxWords = 40): SnippetSegment[] {
  const words: { start: number; end: number; hit: boolean }[] = []
  // Words repeat: each distinct one is normalized once.
  const seen = new Map<string, boolean>()
  for (const m of content.matchAll(WORD)) {
    let hit = seen.get(m[0])
    if (hit === undefined) seen.set(m[0], (hit = isHit(normalizeText(m[0]))))
    words.push({ start: m.index, end: m.index + m[0].length, hit })
  }
  if (!words.length) return content ? [{ text: content.slice(0, 300), mark: false }] : []
  // Slide a window over the words; keep the first one with the most hits.
  let best = 0
  let bestHits = -1
  let hits = 0
  for (let i = 0; i < words.length; i++) {
    if (words[i]!.hit) hits++
    if (i >= maxWords && words[i - maxWords]!.hit) hits--
    const start = Math.max(0, i - maxWords + 1)
    if (hits > bestHits) {
      bestHits = hits
      best = start
    }
  }
  // Start a few words before the first hit of the window, so the reader sees its context.
  const firstHit = words.findIndex((w, i) => i >= best && w.hit)
  const from = bestHits > 0 ? Math.max(0, Math.min(best, firstHit - 5)) : 0
  const to = Math.min(words.length, from + maxWords)
  const startChar = from === 0 ? 0 : words[from]!.start
  const endChar = to === words.length ? content.length : words[to - 1]!.end

  const segments: SnippetSegment[] = []
  const push = (text: string, mark: boolean) => {
    if (!text) return
    const last = segments.at(-1)
    if (last && last.mark === mark) last.text += text
    else segments.push({ text, mark })
  }
  if (startChar > 0) push('… ', false)
  let pos = startChar
  for (let i = from; i < to; i++) {
    const w = words[i]!
    push(content.slice(pos, w.start), false)
    push(content.slice(w.start, w.end), w.hit)
    pos = w.end
  }
  push(content.slice(pos, endChar), false)
  if (endChar < content.length) push(' …', false)
  for (const s of segments) if (!s.mark) s.text = s.text.replace(/\s+/g, ' ')
  return segments
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => ESCAPES[ch]!)
}

/** The snippet as HTML: every character of the content escaped, hits wrapped in <mark>. */
export function snippetHtml(segments: SnippetSegment[]): string {
  return segments.map((s) => (s.mark ? `<mark>${escapeHtml(s.text)}</mark>` : escapeHtml(s.text))).join('')
}
