/**
 * Byte-level reader of a `text/event-stream` body: returns the `data` payload of each event.
 * Bytes arrive in arbitrary network chunks, so a UTF-8 character (Cyrillic is two bytes) or a
 * CRLF pair may be split between two chunks: the streaming TextDecoder and `skipLf` handle that.
 * Comment lines (`: OPENROUTER PROCESSING`) and the `event`/`id`/`retry` fields are dropped.
 */
export class SseDecoder {
  private readonly decoder = new TextDecoder('utf-8')
  /** The start of a line whose end has not arrived yet. */
  private partial = ''
  /** The previous chunk ended in CR: a leading LF in the next one belongs to that line end. */
  private skipLf = false
  /** `data:` lines of the event being read. */
  private data: string[] = []

  /** Feeds raw bytes; returns the payloads of the events they complete. */
  push(bytes: Uint8Array): string[] {
    const out: string[] = []
    this.feed(this.decoder.decode(bytes, { stream: true }), out)
    return out
  }

  /** The body ended: the last event is delivered even without its closing blank line. */
  end(): string[] {
    const out: string[] = []
    this.feed(this.decoder.decode(), out)
    if (this.partial) this.line(this.partial, out)
    this.partial = ''
    this.line('', out)
    return out
  }

  private feed(text: string, out: string[]): void {
    let start = 0
    if (this.skipLf && text.charCodeAt(0) === 10) start = 1
    if (text.length > 0) this.skipLf = false
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      const line = this.partial + text.slice(start, i)
      this.partial = ''
      this.line(line, out)
      if (c === 13) {
        if (i + 1 === text.length) this.skipLf = true
        else if (text.charCodeAt(i + 1) === 10) i++
      }
      start = i + 1
    }
    this.partial += text.slice(start)
  }

  private line(line: string, out: string[]): void {
    if (line === '') {
      if (this.data.length > 0) out.push(this.data.join('\n'))
      this.data = []
      return
    }
    if (line.charCodeAt(0) === 58 /* ':' comment */) return
    const colon = line.indexOf(':')
    const field = colon < 0 ? line : line.slice(0, colon)
    if (field !== 'data') return
    let value = colon < 0 ? '' : line.slice(colon + 1)
    if (value.charCodeAt(0) === 32) value = value.slice(1)
    this.data.push(value)
  }
}
