/**
 * Server-sent events as FRONTEND.md wants them: a `retry: 5000` line and ~2 KB of comment
 * padding first (buffering proxies and antivirus then pass the stream through), `: hb`
 * heartbeats, named events with ids so a reconnect resumes with Last-Event-ID.
 */

export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  'X-Content-Type-Options': 'nosniff',
  Connection: 'keep-alive',
} as const

export const HEARTBEAT_MS = 15_000
export const PADDING_BYTES = 2048

export const SSE_PREAMBLE = `retry: 5000\n:${' '.repeat(PADDING_BYTES)}\n\n`
export const SSE_HEARTBEAT = ': hb\n\n'

/** One event; multi-line data becomes several `data:` lines (EventSource joins them with \n). */
export function sseEvent(event: string, data: string, id?: number): string {
  const lines = data.replace(/\r\n?/g, '\n').split('\n')
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\n${lines.map((l) => `data: ${l}`).join('\n')}\n\n`
}

/** Last-Event-ID (or a page's `?after=`): a non-negative integer, else null. */
export function parseEventId(value: unknown): number | null {
  if (typeof value !== 'string' || !/^\d{1,12}$/.test(value.trim())) return null
  return Number(value.trim())
}
