import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, loadConfig } from '../src/config.ts'
import { createEmbedder, EmbeddingError } from '../src/services/embeddings/index.ts'
import { createLocalEmbedder, LOCAL_DIMENSIONS, LOCAL_MODEL } from '../src/services/embeddings/local.ts'
import { createOpenAiCompatibleEmbedder } from '../src/services/embeddings/openai-compatible.ts'
import { startFakeEmbeddings, type FakeEmbeddings } from './fakes/embeddings.ts'

const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0))
const cosine = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0)
const KEY = 'sk-test-secret-key-123'

let fake: FakeEmbeddings
before(async () => {
  fake = await startFakeEmbeddings()
})
after(async () => {
  await fake.close()
})

function remote(extra: Partial<Parameters<typeof createOpenAiCompatibleEmbedder>[0]> = {}) {
  return createOpenAiCompatibleEmbedder({
    baseUrl: fake.url,
    apiKey: KEY,
    model: 'gemini-embedding-001',
    dimensions: 768,
    retryBaseMs: 5,
    ...extra,
  })
}

test('the local embedder is deterministic, 768-dimensional and unit length', async () => {
  const e = createLocalEmbedder()
  assert.equal(e.model, LOCAL_MODEL)
  assert.equal(e.dimensions, 768)
  const [a, b] = await e.embed(['Фотосинтез навчинд явагдана', 'Фотосинтез навчинд явагдана'])
  assert.equal(a!.length, LOCAL_DIMENSIONS)
  assert.deepEqual(a, b)
  assert.ok(Math.abs(norm(a!) - 1) < 1e-9)
  // Same text in another process gives the same vector: nothing random, nothing time-based.
  assert.deepEqual((await createLocalEmbedder().embed(['Фотосинтез навчинд явагдана']))[0], a)
})

test('the local embedder puts inflected forms close and unrelated text far', async () => {
  const [base, inflected, other, cased] = await createLocalEmbedder().embed([
    'фотосинтез',
    'фотосинтезийн явц',
    'бутархайг хураах',
    'ФОТОСИНТЕЗ!',
  ])
  assert.ok(cosine(base!, inflected!) > cosine(base!, other!) + 0.2, 'inflected form is much closer than an unrelated phrase')
  assert.ok(Math.abs(cosine(base!, cased!) - 1) < 1e-9, 'case and punctuation do not matter')
})

test('the local embedder returns a valid unit vector for empty or punctuation-only text', async () => {
  for (const text of ['', '   ', '?!…']) {
    const [v] = await createLocalEmbedder().embed([text])
    assert.equal(v!.length, 768)
    assert.ok(Math.abs(norm(v!) - 1) < 1e-9)
    assert.ok(v!.every(Number.isFinite))
  }
})

test('the remote embedder batches inputs, sends model, dimensions and the key, and normalizes vectors', async () => {
  const start = fake.requests.length
  const texts = Array.from({ length: 130 }, (_, i) => `текст ${i}`)
  const vectors = await remote({ batchSize: 64 }).embed(texts)
  const sent = fake.requests.slice(start)
  assert.deepEqual(
    sent.map((r) => (r.body.input as string[]).length),
    [64, 64, 2],
  )
  assert.equal(sent[0]!.body.model, 'gemini-embedding-001')
  assert.equal(sent[0]!.body.dimensions, 768)
  assert.equal(sent[0]!.headers.authorization, `Bearer ${KEY}`)
  assert.equal(vectors.length, 130)
  for (const v of vectors) {
    assert.equal(v.length, 768)
    assert.ok(Math.abs(norm(v) - 1) < 1e-9, 'Gemini-style non-unit vectors are L2-normalized')
  }
  // Order follows `index`, not the order of data items in the response.
  fake.script({ reversed: true })
  const [x, y] = await remote().embed(['нэг', 'хоёр'])
  const [x2, y2] = await remote().embed(['нэг', 'хоёр'])
  assert.deepEqual([x, y], [x2, y2])
})

test('429 with Retry-After is retried after the given wait', async () => {
  fake.script({ status: 429, retryAfter: '1', errorShape: 'gemini', errorMessage: 'Resource has been exhausted' })
  const start = fake.requests.length
  const t0 = Date.now()
  const [v] = await remote().embed(['ус'])
  assert.equal(v!.length, 768)
  assert.equal(fake.requests.length - start, 2)
  assert.ok(Date.now() - t0 >= 950, 'waited for Retry-After')
})

test('5xx is retried with backoff, and fails cleanly with the status when retries run out', async () => {
  fake.script({ status: 500 }, { status: 503 })
  const [v] = await remote({ maxRetries: 3 }).embed(['гэрэл'])
  assert.equal(v!.length, 768)

  fake.script({ status: 503, errorMessage: 'overloaded' }, { status: 503 }, { status: 502 })
  const start = fake.requests.length
  await assert.rejects(
    remote({ maxRetries: 2 }).embed(['гэрэл']),
    (err: unknown) => err instanceof EmbeddingError && err.status === 502 && /HTTP 502 after 3 attempts/.test(err.message),
  )
  assert.equal(fake.requests.length - start, 3)
})

test('a client error is not retried; OpenAI, Gemini-array and text error bodies give a readable message without the key', async () => {
  for (const [shape, expected] of [
    ['openai', /HTTP 400: 400 bad model/],
    ['gemini', /HTTP 400: INVALID_ARGUMENT bad model/],
    ['text', /HTTP 400: bad model/],
  ] as const) {
    fake.script({ status: 400, errorShape: shape, errorMessage: 'bad model' })
    const start = fake.requests.length
    await assert.rejects(remote().embed(['а']), (err: unknown) => {
      assert.ok(err instanceof EmbeddingError)
      assert.match(err.message, expected)
      assert.ok(!err.message.includes(KEY), 'the API key never appears in errors')
      return true
    })
    assert.equal(fake.requests.length - start, 1)
  }
})

test('a response with the wrong dimension, a wrong count or garbage is a clear error', async () => {
  fake.script({ dimensions: 3072 })
  await assert.rejects(remote().embed(['а']), /returned 3072-dimensional vectors, expected 768/)
  fake.script({ rawBody: '{"data":[]}' })
  await assert.rejects(remote().embed(['а']), /returned 0 vectors for 1 inputs/)
  fake.script({ rawBody: '<html>proxy error</html>' })
  await assert.rejects(remote().embed(['а']), /not JSON/)
  fake.script({ rawBody: '{"data":[{"index":0,"embedding":["x"]}]}' })
  await assert.rejects(remote({ dimensions: 1 as number }).embed(['а']), /non-numeric/)
})

test('an unreachable endpoint fails after retries with EmbeddingError', async () => {
  const e = createOpenAiCompatibleEmbedder({ baseUrl: 'http://127.0.0.1:9/v1', apiKey: KEY, model: 'm', dimensions: 768, maxRetries: 1, retryBaseMs: 1 })
  await assert.rejects(e.embed(['а']), (err: unknown) => err instanceof EmbeddingError && /unreachable after 2 attempts/.test(err.message) && !err.message.includes(KEY))
})

test('config picks the provider: local by default, openai-compatible with a base URL; bad values are refused', () => {
  const base = { NODE_ENV: 'test' }
  const local = loadConfig(base, { sessionSecret: 'x'.repeat(40) }).embeddings
  assert.equal(local.provider, 'local')
  assert.equal(createEmbedder(local).model, LOCAL_MODEL)

  const remoteConfig = loadConfig(
    { ...base, EMBEDDINGS_BASE_URL: fake.url, EMBEDDINGS_API_KEY: KEY, EMBEDDINGS_MODEL: 'openai/text-embedding-3-small', EMBEDDINGS_DIMENSIONS: '1536' },
    { sessionSecret: 'x'.repeat(40) },
  ).embeddings
  assert.deepEqual(remoteConfig, { provider: 'openai-compatible', baseUrl: fake.url, apiKey: KEY, model: 'openai/text-embedding-3-small', dimensions: 1536 })
  const embedder = createEmbedder(remoteConfig)
  assert.equal(embedder.model, 'openai/text-embedding-3-small')
  assert.equal(embedder.dimensions, 1536)

  const bad: Record<string, string>[] = [
    { EMBEDDINGS_BASE_URL: 'ftp://x', EMBEDDINGS_MODEL: 'm' },
    { EMBEDDINGS_BASE_URL: 'https://x' },
    { EMBEDDINGS_BASE_URL: 'https://x', EMBEDDINGS_MODEL: 'm', EMBEDDINGS_DIMENSIONS: '3072' },
    { EMBEDDINGS_DIMENSIONS: '1536' },
    { EMBEDDINGS_DIMENSIONS: 'abc' },
  ]
  for (const env of bad) assert.throws(() => loadConfig({ ...base, ...env }, { sessionSecret: 'x'.repeat(40) }), ConfigError)
})
