import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A fake OpenAI-compatible embeddings endpoint on loopback (`POST {url}/embeddings`, wire format
 * of ../shared/reference/external-apis.md §B.5 and §C.2) over real HTTP. By default it answers
 * every request with one vector per input, of the requested `dimensions`, deterministic per text
 * and deliberately not unit length (like Gemini below 3072 dimensions). Scripted responses are
 * used first, one per request:
 *
 *   const fake = await startFakeEmbeddings()
 *   fake.script({ status: 429, retryAfter: '1' }, { status: 200 })
 *   ... createOpenAiCompatibleEmbedder({ baseUrl: fake.url, … }) ...
 *   fake.requests[0].body.input
 */
export interface EmbeddingsScript {
  status?: number
  retryAfter?: string
  /** 'openai': {"error":{"message"}}; 'gemini': [{"error":{"code","message","status"}}]; 'text': plain text. */
  errorShape?: 'openai' | 'gemini' | 'text'
  errorMessage?: string
  /** Answer with vectors of this length instead of the requested one. */
  dimensions?: number
  /** Return data items in reverse order (clients must use `index`). */
  reversed?: boolean
  /** A 200 with this raw body. */
  rawBody?: string
}

export interface FakeEmbeddingsRequest {
  headers: IncomingHttpHeaders
  body: { model?: string; input?: string | string[]; dimensions?: number }
}

export interface FakeEmbeddings {
  /** Base URL without the /embeddings path. */
  url: string
  requests: FakeEmbeddingsRequest[]
  script(...responses: EmbeddingsScript[]): void
  close(): Promise<void>
}

/** The fake's vector for a text: deterministic, length `dimensions`, norm about 3. */
export function fakeVector(text: string, dimensions: number): number[] {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  const v: number[] = []
  for (let i = 0; i < dimensions; i++) {
    h = Math.imul(h ^ (h >>> 15), 2246822519) >>> 0
    v.push(((h % 2000) - 1000) / 10000)
  }
  return v
}

export async function startFakeEmbeddings(options: { defaultDimensions?: number } = {}): Promise<FakeEmbeddings> {
  const requests: FakeEmbeddingsRequest[] = []
  const queue: EmbeddingsScript[] = []
  const server = createServer((req, res) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (raw += chunk))
    req.on('end', () => {
      let body: FakeEmbeddingsRequest['body'] = {}
      try {
        body = JSON.parse(raw) as FakeEmbeddingsRequest['body']
      } catch {
        // recorded as empty; answered below
      }
      requests.push({ headers: req.headers, body })
      if (req.method !== 'POST' || req.url !== '/v1/embeddings') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}')
        return
      }
      const script = queue.shift() ?? {}
      const status = script.status ?? 200
      if (status !== 200) {
        const headers: Record<string, string> = { 'content-type': script.errorShape === 'text' ? 'text/plain' : 'application/json' }
        if (script.retryAfter !== undefined) headers['retry-after'] = script.retryAfter
        const message = script.errorMessage ?? `fake error ${status}`
        const payload =
          script.errorShape === 'gemini'
            ? JSON.stringify([{ error: { code: status, message, status: status === 429 ? 'RESOURCE_EXHAUSTED' : 'INVALID_ARGUMENT' } }])
            : script.errorShape === 'text'
              ? message
              : JSON.stringify({ error: { message, code: status } })
        res.writeHead(status, headers).end(payload)
        return
      }
      if (script.rawBody !== undefined) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(script.rawBody)
        return
      }
      const inputs = Array.isArray(body.input) ? body.input : [String(body.input ?? '')]
      const dims = script.dimensions ?? body.dimensions ?? options.defaultDimensions ?? 3072
      const data = inputs.map((text, index) => ({ object: 'embedding', index, embedding: fakeVector(text, dims) }))
      if (script.reversed) data.reverse()
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ object: 'list', model: body.model, data, usage: { prompt_tokens: inputs.length, total_tokens: inputs.length } }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    script: (...responses) => queue.push(...responses),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
