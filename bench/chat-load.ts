// Many students asking the tutor at once, against the real server with a fake LLM.
//
//   npx node bench/chat-load.ts [--levels 50,200,500] [--seconds 30] [--tokens 300] [--tps 40] [--spread S] [--write]
//
// Three processes besides this one: the fake OpenRouter (test/fakes/openrouter.ts), the app
// (src/server.ts on an embedded database in a temporary DATA_DIR, sample textbooks loaded, one
// school of students), and a bare Fastify SSE proxy of the same fake stream (`--proxy`, the
// ceiling: no database, no retrieval, no broker). At each level, that many students each log in,
// then in a closed loop ask a question the htmx way (POST → fragment with the stream URL) and read
// the answer's SSE stream to its `done` event. Their first questions come at random over --spread
// seconds (default: one answer's length, tokens / tps; answers all take about as long, so students
// who started together would keep asking together), and the --seconds after that are measured. Each question is different, so none comes from the
// cache. Reports turns/s, time to first token (POST sent → first token event), what the app adds
// over the fake's own first token, errors, the app's peak RSS, and the CPU time the app and the proxy
// spend per turn (by thread for the app: the event loop, the database thread, the answer renderer;
// machine-independent where turns/s depend on what else runs). --write updates docs/benchmarks.md.

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'

const ROOT = fileURLToPath(new URL('../', import.meta.url))

// --- The bare proxy (child process) -----------------------------------------------------------

async function runProxy(port: number, fakeUrl: string): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const agent = new Agent({ connections: 2000, headersTimeout: 0, bodyTimeout: 0 })
  const app = Fastify({ logger: false })
  let seq = 0
  app.get('/stream', async (req, reply) => {
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', 'X-Accel-Buffering': 'no' })
    res.write(`retry: 5000\n:${' '.repeat(2048)}\n\n`)
    const upstream = await request(`${fakeUrl}/chat/completions`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', authorization: 'Bearer bench' },
      body: JSON.stringify({ model: 'google/gemini-2.5-flash', stream: true, max_tokens: 1024, messages: [{ role: 'user', content: `Асуулт ${++seq}` }] }),
    })
    let buffer = ''
    let id = 0
    for await (const chunk of upstream.body) {
      buffer += chunk.toString()
      let nl
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim()
        buffer = buffer.slice(nl + 1)
        if (!line.startsWith('data: ')) continue
        const data = line.slice(6)
        if (data === '[DONE]') continue
        const text = (JSON.parse(data) as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta?.content
        if (text) res.write(`id: ${++id}\nevent: token\ndata: <span>${text.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</span>\n\n`)
      }
    }
    res.end(`id: ${++id}\nevent: done\ndata: <div class="answer"></div>\n\n`)
  })
  await app.listen({ port, host: '127.0.0.1' })
  console.log('proxy listening')
}

// --- Orchestration ------------------------------------------------------------------------------

interface TurnResult {
  ok: boolean
  /** When the turn started (performance.now()); set by level(). */
  at?: number
  ttftMs: number
  totalMs: number
  error?: string
  /** App turns: the POST's response, and the stream's response headers (ms since the POST). */
  postMs?: number
  streamMs?: number
}

interface LevelResult {
  target: 'app' | 'proxy'
  students: number
  turns: number
  seconds: number
  errors: number
  errorSamples: string[]
  ttft: { p50: number; p95: number }
  /** App: when the POST answered and when the stream's headers came (ms since the POST), p50. */
  phases: { post: number; stream: number } | null
  peakRssMb: number | null
  /** CPU time of the server process (app or proxy) per turn: total, and per thread for the app. */
  cpu: { total: number; threads: string } | null
  /** App: where the time before the first token went, from the app's /metrics (see breakdown()). */
  breakdown: Breakdown | null
  /**
   * The machine in the measured window: share of all cores busy (/proc/stat), and this load
   * generator's own event-loop delay p99 (it timestamps the turns: its lag is in every TTFT).
   */
  machine: { busyPct: number | null; loadGenLagP99Ms: number }
}

/** Busy and total jiffies of all cores (/proc/stat); null where there is none. */
function cpuJiffies(): { busy: number; total: number } | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
    const total = fields.reduce((a, b) => a + b, 0)
    return { busy: total - idle, total }
  } catch {
    return null
  }
}

// --- The app's own view of a turn (its /metrics, scraped before and after a level) -------------

type Scrape = Map<string, number>

async function scrape(base: string, agent: Agent): Promise<Scrape> {
  const res = await request(`${base}/metrics`, { dispatcher: agent })
  const out: Scrape = new Map()
  for (const line of (await res.body.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue
    const sp = line.lastIndexOf(' ')
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)))
  }
  return out
}

/** Mean and (bucket-interpolated) p50/p95 of one histogram series between two scrapes, in ms. */
interface Stat { n: number; mean: number; p50: number; p95: number }

function histogramDelta(before: Scrape, after: Scrape, name: string, labels: string): Stat | null {
  const delta = (key: string) => (after.get(key) ?? 0) - (before.get(key) ?? 0)
  const n = delta(`${name}_count{${labels}}`)
  if (!n) return null
  const buckets: [number, number][] = []
  for (const key of after.keys()) {
    if (!key.startsWith(`${name}_bucket{`) || !key.includes(labels)) continue
    const le = /le="([^"]+)"/.exec(key)![1]!
    buckets.push([le === '+Inf' ? Infinity : Number(le), delta(key)])
  }
  buckets.sort((a, b) => a[0] - b[0])
  const q = (p: number) => {
    const rank = p * n
    let prevLe = 0
    let prevCount = 0
    for (const [le, count] of buckets) {
      if (count >= rank) return le === Infinity ? prevLe : prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount)
      prevLe = le
      prevCount = count
    }
    return prevLe
  }
  return { n, mean: (delta(`${name}_sum{${labels}}`) / n) * 1000, p50: q(0.5) * 1000, p95: q(0.95) * 1000 }
}

const PHASES = ['store', 'retrieve', 'prompt', 'model', 'first_token'] as const
type Breakdown = {
  phases: Partial<Record<(typeof PHASES)[number] | 'post', Stat>>
  loopLagP99Ms: number | null
  /** Database pool connections in use and queries waiting for one, halfway through the level. */
  pool: { busy: number; waiting: number } | null
}

function breakdown(before: Scrape, after: Scrape): Breakdown {
  const phases: Breakdown['phases'] = {}
  for (const phase of PHASES) {
    const stat = histogramDelta(before, after, 'bagsh_chat_turn_phase_seconds', `phase="${phase}"`)
    if (stat) phases[phase] = stat
  }
  const post = histogramDelta(before, after, 'bagsh_http_request_duration_seconds', 'method="POST",route="/chat/:id/messages"')
  if (post) phases.post = post
  const lag = after.get('bagsh_nodejs_eventloop_lag_p99_seconds')
  return { phases, loopLagP99Ms: lag === undefined ? null : lag * 1000, pool: null }
}

function poolOf(mid: Scrape): Breakdown['pool'] {
  const total = mid.get('bagsh_db_pool_connections{state="total"}')
  const idle = mid.get('bagsh_db_pool_connections{state="idle"}')
  const waiting = mid.get('bagsh_db_pool_connections{state="waiting"}')
  return total === undefined || idle === undefined || waiting === undefined ? null : { busy: total - idle, waiting }
}

function formatBreakdown(b: Breakdown): string {
  const f = (s: Stat | undefined) => (s ? `${s.mean.toFixed(0)} / ${s.p50.toFixed(0)} / ${s.p95.toFixed(0)}` : '—')
  return (
    `      in the app (mean / p50 / p95 ms): POST handled ${f(b.phases.post)}; question stored ${f(b.phases.store)}; ` +
    `retrieval ${f(b.phases.retrieve)}; prompt ${f(b.phases.prompt)}; LLM request → first token here ${f(b.phases.model)}; ` +
    `question → first token here ${f(b.phases.first_token)}; event-loop delay p99 ${b.loopLagP99Ms?.toFixed(0) ?? '—'} ms; ` +
    `database pool halfway: ${b.pool ? `${b.pool.busy} connections busy, ${b.pool.waiting} queries waiting` : '—'}`
  )
}

function percentile(values: number[], p: number): number {
  if (!values.length) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

function child(args: string[], env: Record<string, string>, ready: RegExp | null): Promise<ChildProcess> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  if (!ready) return Promise.resolve(proc)
  return new Promise((resolve, reject) => {
    let out = ''
    const onData = (d: Buffer) => {
      out += d.toString()
      if (ready.test(out)) resolve(proc)
    }
    proc.stdout!.on('data', onData)
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()))
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}:\n${out.slice(-3000)}`)))
  })
}

async function waitForHealth(base: string): Promise<void> {
  for (let i = 0; i < 240; i++) {
    try {
      const res = await fetch(`${base}/health`)
      if (res.ok) return
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error('the app did not become healthy')
}

/** CPU ms used so far by each thread of a process (utime + stime, 10 ms ticks), by "tid:name". */
function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>()
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
        const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        out.set(`${tid}:${name}`, (Number(f[11]) + Number(f[12])) * 10)
      } catch {
        /* the thread ended */
      }
    }
  } catch {
    /* the process ended */
  }
  return out
}

function rssMb(pid: number): number | null {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return kb ? Math.round(Number(kb) / 1024) : null
  } catch {
    return null
  }
}

/** Reads an SSE body until `done`; returns when the first token came (ms since `start`). */
async function readAnswer(body: AsyncIterable<Buffer>, start: number): Promise<{ ttftMs: number; done: boolean }> {
  let ttftMs = NaN
  let tail = ''
  for await (const chunk of body) {
    const text = tail + chunk.toString()
    // The first text the student sees: a token, or the whole answer when it finished before the stream connected.
    if (Number.isNaN(ttftMs) && (text.includes('event: token') || text.includes('event: done'))) ttftMs = performance.now() - start
    if (text.includes('event: done')) {
      // Let the server end the stream; we have what we need.
      return { ttftMs, done: true }
    }
    tail = text.slice(-32)
  }
  return { ttftMs, done: false }
}

interface Student {
  cookie: string
  csrf: string
  conversationId: number
}

async function setupApp(dataDir: string, count: number): Promise<{ schoolCode: number; usernames: string[]; password: string }> {
  const { openDatabase } = await import('../src/db/index.ts')
  const { migrate } = await import('../src/db/migrate.ts')
  const { createSchool } = await import('../src/services/accounts/schools.ts')
  const { hashPassword } = await import('../src/services/auth/passwords.ts')
  const { createLocalEmbedder } = await import('../src/services/embeddings/local.ts')
  const { importSampleBook, loadSampleBooks } = await import('../src/services/textbooks/samples.ts')
  const database = await openDatabase({ databaseUrl: null, dataDir })
  try {
    await migrate(database.db)
    const embedder = createLocalEmbedder()
    for (const book of loadSampleBooks()) await importSampleBook(database.db, embedder, book)
    const school = await createSchool(database.db, { name: 'Ачааллын сургууль', code: 4242 })
    const klass = await database.db.insertInto('classes').values({ school_id: school.id, teacher_id: null, name: '7А', grade: 7 }).returning('id').executeTakeFirstOrThrow()
    const password = '123456'
    const hash = await hashPassword(password)
    const usernames = Array.from({ length: count }, (_, i) => `bench${i + 1}`)
    for (let i = 0; i < usernames.length; i += 500) {
      const rows = usernames.slice(i, i + 500).map((u) => ({ school_id: school.id, role: 'student' as const, username: u, display_name: `Сурагч ${u}`, password_hash: hash, grade: 7, class_id: klass.id }))
      const users = await database.db.insertInto('users').values(rows).returning(['id', 'username']).execute()
      await database.db
        .insertInto('conversations')
        .values(users.map((u) => ({ user_id: u.id, school_id: school.id, subject: 'biology', grade: 7, title: 'Ачааллын яриа' })))
        .execute()
    }
    return { schoolCode: school.code, usernames, password }
  } finally {
    await database.close()
  }
}

function cookiesOf(headers: Record<string, string | string[] | undefined>, jar: Map<string, string>): void {
  const set = headers['set-cookie']
  for (const c of Array.isArray(set) ? set : set ? [set] : []) {
    const [pair] = c.split(';')
    const eq = pair!.indexOf('=')
    jar.set(pair!.slice(0, eq), pair!.slice(eq + 1))
  }
}

async function login(base: string, agent: Agent, schoolCode: number, username: string, password: string): Promise<Student> {
  const jar = new Map<string, string>()
  const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
  const page = await request(`${base}/login`, { dispatcher: agent })
  cookiesOf(page.headers, jar)
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.body.text())![1]!
  const form = new URLSearchParams({ _csrf: csrf, school: String(schoolCode), username, password }).toString()
  const res = await request(`${base}/login`, { method: 'POST', dispatcher: agent, body: form, headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookie() } })
  await res.body.dump()
  if (res.statusCode !== 303) throw new Error(`login ${username}: ${res.statusCode}`)
  cookiesOf(res.headers, jar)
  const list = await request(`${base}/chat`, { dispatcher: agent, headers: { cookie: cookie() } })
  const html = await list.body.text()
  const conversationId = Number(/href="\/chat\/(\d+)"/.exec(html)?.[1])
  const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1] ?? csrf
  return { cookie: cookie(), csrf: token, conversationId }
}

async function appTurn(base: string, agent: Agent, s: Student, n: number): Promise<TurnResult> {
  const start = performance.now()
  try {
    const form = new URLSearchParams({ question: `Фотосинтезийн ${n}-р асуулт: ургамал гэрлийн энергийг яаж ашигладаг вэ?` }).toString()
    const post = await request(`${base}/chat/${s.conversationId}/messages`, {
      method: 'POST',
      dispatcher: agent,
      body: form,
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: s.cookie, 'hx-request': 'true', 'x-csrf-token': s.csrf },
    })
    const fragment = await post.body.text()
    const postMs = performance.now() - start
    if (post.statusCode !== 200) return { ok: false, ttftMs: NaN, totalMs: performance.now() - start, error: `POST ${post.statusCode}` }
    const url = /data-sse-connect="([^"]+)"/.exec(fragment)?.[1]
    if (!url) return { ok: false, ttftMs: NaN, totalMs: performance.now() - start, error: 'no stream in the fragment' }
    const stream = await request(`${base}${url.replace(/&amp;/g, '&')}`, { dispatcher: agent, headers: { cookie: s.cookie, accept: 'text/event-stream' } })
    const streamMs = performance.now() - start
    if (stream.statusCode !== 200) {
      await stream.body.dump()
      return { ok: false, ttftMs: NaN, totalMs: performance.now() - start, error: `stream ${stream.statusCode}` }
    }
    const { ttftMs, done } = await readAnswer(stream.body, start)
    stream.body.destroy()
    return done ? { ok: true, ttftMs, totalMs: performance.now() - start, postMs, streamMs } : { ok: false, ttftMs, totalMs: performance.now() - start, error: 'stream ended without done' }
  } catch (err) {
    return { ok: false, ttftMs: NaN, totalMs: performance.now() - start, error: (err as Error).message }
  }
}

async function proxyTurn(base: string, agent: Agent): Promise<TurnResult> {
  const start = performance.now()
  try {
    const stream = await request(`${base}/stream`, { dispatcher: agent })
    const { ttftMs, done } = await readAnswer(stream.body, start)
    stream.body.destroy()
    return done ? { ok: true, ttftMs, totalMs: performance.now() - start } : { ok: false, ttftMs, totalMs: performance.now() - start, error: 'no done' }
  } catch (err) {
    return { ok: false, ttftMs: NaN, totalMs: performance.now() - start, error: (err as Error).message }
  }
}

/** `workers` closed loops for `seconds`; turns started before the deadline are finished and counted. */
async function level(
  target: 'app' | 'proxy',
  workers: number,
  seconds: number,
  /** Students' first questions are spread over this many ms; only turns started after it count. */
  spreadMs: number,
  turn: (worker: number, n: number) => Promise<TurnResult>,
  pid: number | null,
  cpuPid: number | null = pid,
  metricsOf: (() => Promise<Scrape>) | null = null,
): Promise<LevelResult> {
  const all: TurnResult[] = []
  const started = performance.now()
  // The measured window starts when every student is asking: the app's metrics and CPU time from then on.
  const steadyFrom = started + spreadMs
  const deadline = steadyFrom + seconds * 1000
  let scrapeBefore: Promise<Scrape | null> = Promise.resolve(null)
  let cpuBefore: Map<string, number> | null = null
  let jiffiesBefore: { busy: number; total: number } | null = null
  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  const steadyTimer = setTimeout(() => {
    if (metricsOf) scrapeBefore = metricsOf().catch(() => null)
    if (cpuPid) cpuBefore = threadCpuMs(cpuPid)
    jiffiesBefore = cpuJiffies()
    loopDelay.enable()
  }, spreadMs)
  let scrapeMid: Promise<Scrape | null> = Promise.resolve(null)
  const midTimer = metricsOf ? setTimeout(() => (scrapeMid = metricsOf().catch(() => null)), spreadMs + (seconds * 1000) / 2) : null
  let peak: number | null = pid ? rssMb(pid) : null
  const sampler = pid ? setInterval(() => (peak = Math.max(peak ?? 0, rssMb(pid) ?? 0)), 250) : null
  let n = 0
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      // Students do not all click at once: the first questions come at random over spreadMs.
      await new Promise((r) => setTimeout(r, Math.random() * spreadMs))
      while (performance.now() < deadline) {
        const at = performance.now()
        all.push({ ...(await turn(w, ++n)), at })
      }
    }),
  )
  clearTimeout(steadyTimer)
  loopDelay.disable()
  const jiffiesAfter = cpuJiffies()
  const from = jiffiesBefore as { busy: number; total: number } | null
  const busyPct = from && jiffiesAfter && jiffiesAfter.total > from.total ? (100 * (jiffiesAfter.busy - from.busy)) / (jiffiesAfter.total - from.total) : null
  if (sampler) clearInterval(sampler)
  // Turns started in the window; each was finished, so started per second = finished per second.
  const results = all.filter((r) => r.at! >= steadyFrom)
  const elapsed = (deadline - steadyFrom) / 1000
  const ok = results.filter((r) => r.ok)
  let cpu: LevelResult['cpu'] = null
  const cpuFrom = cpuBefore as Map<string, number> | null
  if (cpuPid && cpuFrom && ok.length) {
    const used = [...threadCpuMs(cpuPid)].map(([k, v]) => [k.split(':')[1]!, (v - (cpuFrom.get(k) ?? 0)) / ok.length] as const)
    const sum = (f: (name: string) => boolean) => used.filter(([name]) => f(name)).reduce((a, [, v]) => a + v, 0)
    const workersMs = used.filter(([name]) => name === 'WorkerThread').map(([, v]) => v).sort((a, b) => b - a)
    cpu = {
      total: sum(() => true),
      threads: `main ${sum((n) => n === 'MainThread' || n === 'node').toFixed(0)}${workersMs.length ? `, worker threads ${workersMs.map((v) => v.toFixed(0)).join(' + ')}` : ''}, other ${sum((n) => n !== 'MainThread' && n !== 'node' && n !== 'WorkerThread').toFixed(0)}`,
    }
  }
  // Errors count in the whole level, ramp included.
  const errors = all.filter((r) => !r.ok)
  const scrapeAfter = metricsOf ? await metricsOf() : null
  const before = await scrapeBefore
  if (midTimer) clearTimeout(midTimer)
  const mid = await scrapeMid
  return {
    target,
    students: workers,
    turns: ok.length,
    seconds: elapsed,
    errors: errors.length,
    errorSamples: [...new Set(errors.map((e) => e.error ?? '?'))].slice(0, 5),
    ttft: { p50: percentile(ok.map((r) => r.ttftMs), 50), p95: percentile(ok.map((r) => r.ttftMs), 95) },
    phases: target === 'app' ? { post: percentile(ok.map((r) => r.postMs ?? NaN), 50), stream: percentile(ok.map((r) => r.streamMs ?? NaN), 50) } : null,
    peakRssMb: peak,
    cpu,
    breakdown: before && scrapeAfter ? { ...breakdown(before, scrapeAfter), pool: mid ? poolOf(mid) : null } : null,
    machine: { busyPct, loadGenLagP99Ms: loopDelay.percentile(99) / 1e6 },
  }
}

async function fakeFirstToken(fakeUrl: string, agent: Agent): Promise<number> {
  const samples: number[] = []
  for (let i = 0; i < 5; i++) {
    const start = performance.now()
    const res = await request(`${fakeUrl}/chat/completions`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'google/gemini-2.5-flash', stream: true, messages: [{ role: 'user', content: 'x' }] }),
    })
    for await (const chunk of res.body) {
      if (chunk.toString().includes('"content":"')) break
    }
    samples.push(performance.now() - start)
    res.body.destroy()
  }
  return percentile(samples, 50)
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      levels: { type: 'string', default: '50,200,500' },
      seconds: { type: 'string', default: '30' },
      tokens: { type: 'string', default: '300' },
      tps: { type: 'string', default: '40' },
      spread: { type: 'string' },
      write: { type: 'boolean', default: false },
      proxy: { type: 'boolean', default: false },
      profile: { type: 'string' },
      port: { type: 'string' },
      fake: { type: 'string' },
    },
  })
  if (values.proxy) return runProxy(Number(values.port), values.fake!)

  const levels = values.levels.split(',').map(Number)
  const seconds = Number(values.seconds)
  // Default: over one answer's length, so that students are out of step as in a class (and stay so).
  const spreadMs = 1000 * Number(values.spread ?? Number(values.tokens) / Number(values.tps))
  const maxStudents = Math.max(...levels)
  const dataDir = mkdtempSync(join(tmpdir(), 'bagsh-chat-load-'))
  const procs: ChildProcess[] = []
  const agent = new Agent({ connections: maxStudents * 2 + 50, headersTimeout: 120_000, bodyTimeout: 120_000, pipelining: 0 })
  try {
    const fakePort = 4700 + Math.floor(Math.random() * 200)
    const fake = await child(['test/fakes/openrouter.ts', '--port', String(fakePort), '--tps', values.tps, '--tokens', values.tokens], {}, /listening/)
    procs.push(fake)
    const fakeUrl = `http://127.0.0.1:${fakePort}/api/v1`
    const proxyPort = fakePort + 1
    const proxyProc = await child(['bench/chat-load.ts', '--proxy', '--port', String(proxyPort), '--fake', fakeUrl], {}, /proxy listening/)
    procs.push(proxyProc)

    process.stdout.write(`setting up ${maxStudents} students and the sample textbooks in ${dataDir} … `)
    const { schoolCode, usernames, password } = await setupApp(dataDir, maxStudents)
    const appPort = proxyPort + 1
    const app = await child(['src/server.ts'], {
      PORT: String(appPort),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      BAGSH_DEMO: '0',
      // As deployed: templates compiled once and cached (development recompiles them at every render).
      NODE_ENV: 'production',
      SESSION_SECRET: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '1000000',
      CHAT_PER_MINUTE: '10000',
      CHAT_PER_DAY: '100000',
      OPENROUTER_API_KEY: 'bench',
      OPENROUTER_BASE_URL: fakeUrl,
      ...(values.profile ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${values.profile}` } : {}),
    }, null)
    procs.push(app)
    let appLog = ''
    app.stdout!.on('data', (d: Buffer) => (appLog = (appLog + d.toString()).slice(-20_000)))
    app.stderr!.on('data', (d: Buffer) => (appLog = (appLog + d.toString()).slice(-20_000)))
    // BENCH_APP_LOG=file: the app's whole output goes there too (with BAGSH_DB_STATS=1, the database thread's statement stats).
    if (process.env.BENCH_APP_LOG) {
      const file = process.env.BENCH_APP_LOG
      const append = (d: Buffer) => appendFileSync(file, d)
      app.stdout!.on('data', append)
      app.stderr!.on('data', append)
    }
    const appBase = `http://127.0.0.1:${appPort}`
    try {
      await waitForHealth(appBase)
    } catch (err) {
      console.log(`app log:\n${appLog}`)
      throw err
    }
    console.log('ready')

    process.stdout.write(`logging in ${maxStudents} students … `)
    const students: Student[] = []
    for (let i = 0; i < usernames.length; i += 20) {
      students.push(...(await Promise.all(usernames.slice(i, i + 20).map((u) => login(appBase, agent, schoolCode, u, password)))))
    }
    console.log('done')
    const fakeTtft = await fakeFirstToken(fakeUrl, agent)
    console.log(`fake LLM: ${values.tokens} tokens at ${values.tps}/s, first token after ${fakeTtft.toFixed(1)} ms (median of 5, unloaded)`)

    const results: LevelResult[] = []
    for (const students_ of levels) {
      const proxy = await level('proxy', students_, seconds, spreadMs, () => proxyTurn(`http://127.0.0.1:${proxyPort}`, agent), null, proxyProc.pid ?? null)
      results.push(proxy)
      print(proxy, fakeTtft)
      const appResult = await level('app', students_, seconds, spreadMs, (w, n) => appTurn(appBase, agent, students[w]!, n), app.pid ?? null, app.pid ?? null, () => scrape(appBase, agent))
      results.push(appResult)
      print(appResult, fakeTtft)
    }
    const table = render(results, fakeTtft, {
      levels: values.levels,
      seconds: values.seconds,
      tokens: values.tokens,
      tps: values.tps,
      spread: (spreadMs / 1000).toFixed(1),
      spreadNote: values.spread === undefined ? 'one answer\'s length, so students stay out of step' : 'set by --spread',
    })
    console.log('\n' + table)
    if (values.write) writeSection(table)
    if (results.some((r) => r.errors) || process.env.BENCH_LOG) console.log(`app log tail:\n${appLog.slice(-6000)}`)
  } finally {
    for (const p of procs.reverse()) p.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 1500))
    await agent.close().catch(() => {})
    rmSync(dataDir, { recursive: true, force: true })
  }
}

function print(r: LevelResult, fakeTtft: number): void {
  console.log(
    `${r.target.padEnd(5)} ${String(r.students).padStart(4)} students: ${(r.turns / r.seconds).toFixed(1)} turns/s, ` +
      `TTFT p50 ${r.ttft.p50.toFixed(0)} ms p95 ${r.ttft.p95.toFixed(0)} ms (added p50 ${(r.ttft.p50 - fakeTtft).toFixed(0)}, p95 ${(r.ttft.p95 - fakeTtft).toFixed(0)}), ` +
      `${r.phases ? `POST done p50 ${r.phases.post.toFixed(0)} ms, stream headers p50 ${r.phases.stream.toFixed(0)} ms, ` : ''}errors ${r.errors}${r.errorSamples.length ? ` (${r.errorSamples.join('; ')})` : ''}${r.peakRssMb ? `, peak RSS ${r.peakRssMb} MB` : ''}` +
      `${r.cpu ? `, CPU per turn ${r.cpu.total.toFixed(0)} ms (${r.cpu.threads})` : ''}, load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}, ` +
      `machine ${r.machine.busyPct === null ? '—' : `${r.machine.busyPct.toFixed(0)}%`} busy, load generator's event-loop delay p99 ${r.machine.loadGenLagP99Ms.toFixed(0)} ms`,
  )
  if (r.breakdown) console.log(formatBreakdown(r.breakdown))
}

function render(results: LevelResult[], fakeTtft: number, opts: Record<string, string>): string {
  const loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  const lines = [
    `${opts.tokens} tokens at ${opts.tps} tokens/s from the fake LLM (first token ${fakeTtft.toFixed(1)} ms unloaded), closed loop: the students' first questions come at random over ${opts.spread} s (${opts.spreadNote}), then ${opts.seconds} s are measured (turns started in them), every question different (no cache hits). Load average at the end: ${loadavg}.`,
    '',
    '| students | bare proxy turns/s | app turns/s | app / proxy | added TTFT p50 (proxy / app) | added TTFT p95 (proxy / app) | errors (proxy / app) | app peak RSS |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for (const students of [...new Set(results.map((r) => r.students))]) {
    const p = results.find((r) => r.students === students && r.target === 'proxy')!
    const a = results.find((r) => r.students === students && r.target === 'app')!
    const pr = p.turns / p.seconds
    const ar = a.turns / a.seconds
    const ms = (v: number) => (Number.isFinite(v) ? `${Math.max(0, v - fakeTtft).toFixed(0)} ms` : '—')
    lines.push(
      `| ${students} | ${pr.toFixed(1)} | ${ar.toFixed(1)} | ${((ar / pr) * 100).toFixed(0)}% | ${ms(p.ttft.p50)} / ${ms(a.ttft.p50)} | ${ms(p.ttft.p95)} / ${ms(a.ttft.p95)} | ${p.errors} / ${a.errors} | ${a.peakRssMb ?? '—'} MB |`,
    )
  }
  const apps = results.filter((r) => r.target === 'app' && r.breakdown)
  if (apps.length) {
    lines.push(
      '',
      "Where the app's time before the first token went, from its own metrics (`bagsh_chat_turn_phase_seconds`, `bagsh_http_request_duration_seconds`): mean / p95 in ms (p95 interpolated in histogram buckets). The POST includes storing the question; retrieval and the LLM request run after the POST has answered, while the browser opens the stream. Machine: all cores' busy share in the measured window (/proc/stat), and the load generator's own event-loop delay p99 (it timestamps every turn).",
      '',
      '| students | POST handled | question stored | retrieval | LLM request → first token here | question → first token here | event-loop delay p99 | database pool halfway (busy / waiting) | machine busy · load generator delay p99 |',
      '|---|---|---|---|---|---|---|---|---|',
    )
    for (const a of apps) {
      const f = (phase: keyof Breakdown['phases']) => {
        const st = a.breakdown!.phases[phase]
        return st ? `${st.mean.toFixed(0)} / ${st.p95.toFixed(0)}` : '—'
      }
      const lag = a.breakdown!.loopLagP99Ms
      const pool = a.breakdown!.pool
      lines.push(`| ${a.students} | ${f('post')} | ${f('store')} | ${f('retrieve')} | ${f('model')} | ${f('first_token')} | ${lag === null ? '—' : `${lag.toFixed(0)} ms`} | ${pool ? `${pool.busy} / ${pool.waiting}` : '—'} | ${a.machine.busyPct === null ? '—' : `${a.machine.busyPct.toFixed(0)}%`} · ${a.machine.loadGenLagP99Ms.toFixed(0)} ms |`)
    }
  }
  return lines.join('\n')
}

function writeSection(table: string): void {
  const file = join(ROOT, 'docs/benchmarks.md')
  const start = '<!-- chat-load:start -->'
  const end = '<!-- chat-load:end -->'
  const section = `${start}\n## Chat under load\n\nSimulated students against the real server (\`src/server.ts\` with \`NODE_ENV=production\`: the embedded database on disk in its own thread, the 7 sample textbooks, the fake LLM over loopback HTTP), and a bare Fastify SSE proxy of the same fake stream as the ceiling (no database, no retrieval, no broker). A turn: POST a follow-up question as htmx does, read the fragment's SSE stream to \`done\`. TTFT: from sending the POST to the first token event; "added" subtracts the fake's own first-token time. Load generator, fake, proxy and app share the machine's 2 cores with whatever else runs. The console also prints the CPU time per turn of the app (by thread) and of the proxy, and the breakdown below; \`BAGSH_DB_STATS=1 BENCH_APP_LOG=file\` also writes the database thread's per-statement waits and run times to the file.\n\n\`\`\`\nnpx node bench/chat-load.ts [--levels 50,200,500] [--seconds 30] [--spread S] [--write] [--profile DIR]\n\`\`\`\n\n${table}\n${end}`
  let doc = readFileSync(file, 'utf8')
  const a = doc.indexOf(start)
  const b = doc.indexOf(end)
  // Hand-written notes on a run (after `<!-- chat-load:notes -->`) stay; they say which run they are about.
  const notesAt = a >= 0 && b > a ? doc.indexOf('<!-- chat-load:notes -->', a) : -1
  const notes = notesAt >= 0 && notesAt < b ? '\n\n' + doc.slice(notesAt, b) : '\n'
  const full = section.slice(0, -end.length - 1) + notes + end
  doc = a >= 0 && b > a ? doc.slice(0, a) + full + doc.slice(b + end.length) : doc.trimEnd() + '\n\n' + full + '\n'
  writeFileSync(file, doc)
}

await main()
