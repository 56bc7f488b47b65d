import { parseArgs } from 'node:util'
import type { Role } from './db/schema.ts'
import type { Database } from './db/index.ts'
import type { Config } from './config.ts'
import { FormError } from './services/errors.ts'

/**
 * The `bagsh` command (bin/bagsh.js). Messages are for the maintainer, in English.
 * Exit codes: 0 done, 1 the command failed (database busy, code or username taken, …),
 * 2 the command line itself is wrong (unknown command or flag, missing or invalid value).
 * Database modules are imported lazily so `--help` and flag errors answer at once.
 */

export interface CliIO {
  out(text: string): void
  err(text: string): void
  env: NodeJS.ProcessEnv
}

const processIO: CliIO = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
}

/** `bagsh serve` keeps running; every other command returns its exit code. */
export type CliResult = number | 'serving'

/** The command line is wrong: exit 2. `form` carries field errors found before opening the database. */
class UsageError extends Error {
  form?: FormError
}
/** The command ran and failed: exit 1. */
class CommandError extends Error {}

const ROLE_NAMES: Record<string, Role> = {
  admin: 'platform_admin',
  'school-admin': 'school_admin',
  teacher: 'teacher',
  student: 'student',
}
const ROLE_LABELS: Record<Role, string> = {
  platform_admin: 'platform admin',
  school_admin: 'school admin',
  teacher: 'teacher',
  student: 'student',
}

const ENVIRONMENT = `Environment:
  DATABASE_URL   postgres://… of a Postgres server; unset = the embedded database in DATA_DIR
  DATA_DIR       where the embedded database lives (default ./data)`

const USAGE = `Usage: bagsh <command> [options]

Commands:
  migrate          Apply database migrations that have not run yet
  create-school    Create a school:  --name N --code C
  create-user      Create an account: --role R [--school C] --username U --password P
  serve            Start the web server (PORT, default 3000)
  import-pdf       Import a textbook PDF: FILE --subject S --grade G --title T
  import-chunks    Import a textbook as pre-computed passages and embeddings: FILE.jsonl
  reindex          Re-embed every textbook passage with the configured embedder
  search           Search the textbooks: "QUERY" [--grade G] [--subject S] [--limit K] [--json]
  help [command]   Show help for a command

Examples:
  npx bagsh create-school --name "1-р сургууль" --code 1001
  npx bagsh create-user --role teacher --school 1001 --username sarnai --password 'long-secret'
  npx bagsh create-user --role student --school 1001 --username bat --password 123456 --grade 7

${ENVIRONMENT}

The embedded database can be used by one process at a time: stop the server before running
migrate, create-school or create-user on the same DATA_DIR (or use DATABASE_URL).
`

interface Command {
  summary: string
  usage: string
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>
  /** The name of the one positional argument the command takes (FILE, QUERY); none when absent. */
  positional?: string
  run(values: Record<string, string | boolean | undefined>, io: CliIO, args: string[]): Promise<CliResult>
}

const HELP_OPTION = { help: { type: 'boolean' as const, short: 'h' } }

const COMMANDS: Record<string, Command> = {
  migrate: {
    summary: 'Apply database migrations that have not run yet.',
    usage: `Usage: bagsh migrate

Applies the dated SQL files in migrations/ that the database has not seen, in order.
Safe to run again: it prints what it applied, or that nothing was pending.

${ENVIRONMENT}
`,
    options: { ...HELP_OPTION },
    run: async (_values, io) =>
      withDatabase(io, async (database) => {
        const { migrate, listMigrations } = await import('./db/migrate.ts')
        const applied = await migrate(database.db)
        if (applied.length === 0) io.out(`Nothing to apply: all ${listMigrations().length} migrations have run.\n`)
        else io.out(`Applied ${applied.length} migration${applied.length === 1 ? '' : 's'}:\n${applied.map((n) => `  ${n}\n`).join('')}`)
        return 0
      }),
  },

  'create-school': {
    summary: 'Create a school.',
    usage: `Usage: bagsh create-school --name NAME --code CODE

Options:
  --name NAME   The school's name (1–200 characters)
  --code CODE   Its numeric code (1–999999999); people type it when they log in

Applies pending migrations first.

${ENVIRONMENT}
`,
    options: { ...HELP_OPTION, name: { type: 'string' }, code: { type: 'string' } },
    async run(values, io) {
      const name = required(values, 'name').trim()
      const code = required(values, 'code').trim()
      if (!name) throw new UsageError('--name must not be empty')
      if (name.length > 200) throw new UsageError('--name is too long (at most 200 characters)')
      const codeNumber = parseSchoolCode(code, '--code')
      return withDatabase(io, async (database) => {
        await migrateQuietly(database, io)
        const { createSchool } = await import('./services/accounts/schools.ts')
        const school = await createSchool(database.db, { name, code: codeNumber })
        io.out(`Created school ${school.code} "${school.name}" (id ${school.id}).\n`)
        return 0
      })
    },
  },

  'create-user': {
    summary: 'Create an account.',
    usage: `Usage: bagsh create-user --role ROLE [--school CODE] --username USERNAME --password PASSWORD
                         [--grade GRADE] [--name "DISPLAY NAME"]

Options:
  --role ROLE          admin (platform admin), school-admin, teacher or student
  --school CODE        The school's code; required for every role except admin, refused for admin
  --username USERNAME  1–32 characters: a-z, 0-9, '.', '_', '-' (stored in lower case)
  --password PASSWORD  At least 8 characters; for a student, a 6-digit PIN
  --grade GRADE        Students only: grade 1–12
  --name NAME          Name shown in the app (defaults to the username)

The password is hashed (argon2id) and never printed. Applies pending migrations first.

${ENVIRONMENT}
`,
    options: {
      ...HELP_OPTION,
      role: { type: 'string' },
      school: { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      grade: { type: 'string' },
      name: { type: 'string' },
    },
    async run(values, io) {
      const roleName = required(values, 'role').trim()
      const role = ROLE_NAMES[roleName]
      if (!role) throw new UsageError(`unknown --role "${roleName}": use one of ${Object.keys(ROLE_NAMES).join(', ')}`)
      const schoolText = typeof values.school === 'string' ? values.school.trim() : undefined
      if (role === 'platform_admin' && schoolText !== undefined) {
        throw new UsageError('--school is not allowed with --role admin: platform admins belong to no school')
      }
      if (role !== 'platform_admin' && schoolText === undefined) throw new UsageError(`missing --school (the school code) for --role ${roleName}`)
      const schoolCode = schoolText === undefined ? null : parseSchoolCode(schoolText, '--school')
      const username = required(values, 'username')
      const password = required(values, 'password')
      let grade: number | null = null
      if (typeof values.grade === 'string') {
        if (role !== 'student') throw new UsageError('--grade is only for students')
        if (!/^\d{1,2}$/.test(values.grade.trim())) throw new UsageError(`invalid --grade "${values.grade}": use a whole number from 1 to 12`)
        grade = Number(values.grade.trim())
      }
      const displayName = typeof values.name === 'string' ? values.name.trim() : undefined
      const input = { role, username, password, displayName, grade }
      const { validateNewUser, createUser } = await import('./services/accounts/users.ts')
      // Everything that needs no database is checked before opening it: a usage error never touches the data.
      try {
        validateNewUser({ ...input, schoolId: schoolCode === null ? null : 0 })
      } catch (err) {
        throw asUsageError(err)
      }
      return withDatabase(io, async (database) => {
        await migrateQuietly(database, io)
        let school: { id: number; code: number; name: string } | null = null
        if (schoolCode !== null) {
          const { findSchoolByCode } = await import('./services/accounts/schools.ts')
          school = (await findSchoolByCode(database.db, schoolCode)) ?? null
          if (!school) throw new CommandError(`no school with code ${schoolCode} (create it first: bagsh create-school --name N --code ${schoolCode})`)
        }
        const user = await createUser(database.db, { ...input, schoolId: school?.id ?? null })
        const where = school ? ` in school ${school.code} "${school.name}"` : ''
        const login = school ? `school code ${school.code}, username ${user.username}` : `an empty school code, username ${user.username}`
        io.out(`Created ${ROLE_LABELS[role]} ${user.username}${where} (id ${user.id}). Log in with ${login} and the password given.\n`)
        return 0
      })
    },
  },

  serve: {
    summary: 'Start the web server.',
    usage: `Usage: bagsh serve

Opens the database, applies pending migrations, seeds the demo school on an empty embedded
database (printing its logins once), and serves on PORT (default 3000). Stops on SIGINT/SIGTERM.

${ENVIRONMENT}
  PORT           port to listen on (default 3000)
  HOST           address to bind (default 0.0.0.0)
  LOG_LEVEL      fatal, error, warn, info (default), debug, trace or silent
`,
    options: { ...HELP_OPTION },
    async run(_values, io) {
      const config = await configFrom(io)
      const { startServer } = await import('./server.ts')
      await startServer(config)
      return 'serving'
    },
  },

  'import-pdf': {
    summary: 'Import a textbook PDF.',
    positional: 'FILE',
    usage: `Usage: bagsh import-pdf FILE --subject SUBJECT --grade GRADE --title TITLE
                        [--year YEAR] [--kind required|optional] [--replace ID]

Imports a PDF (at most 200 MB) through the same pipeline as the admin form: the file is copied
to DATA_DIR/uploads, its text read page by page (running headers, footers and page numbers
removed, printed page numbers kept), split into sections and passages, embedded, and made
searchable at once. Progress goes to stderr. Exit code 0 only when the book is searchable.

Options:
  --subject SUBJECT  A subject code: math, physics, chemistry, biology, geography, history,
                     mongolian, english, informatics, social, … (see the subjects table)
  --grade GRADE      1–12
  --title TITLE      The book's title
  --year YEAR        Year of the edition (optional)
  --kind KIND        required (default) or optional
  --replace ID       Replace textbook ID: the old version stays searchable until this one is ready

${ENVIRONMENT}
`,
    options: {
      ...HELP_OPTION,
      subject: { type: 'string' },
      grade: { type: 'string' },
      title: { type: 'string' },
      year: { type: 'string' },
      kind: { type: 'string' },
      replace: { type: 'string' },
    },
    async run(values, io, [file]) {
      const meta = {
        subject: required(values, 'subject').trim(),
        grade: required(values, 'grade').trim(),
        title: required(values, 'title'),
        year: typeof values.year === 'string' ? values.year.trim() : null,
        kind: typeof values.kind === 'string' ? values.kind.trim() : 'required',
        replacesId: typeof values.replace === 'string' ? parseId(values.replace, '--replace') : null,
      }
      const { existsSync, statSync, createReadStream } = await import('node:fs')
      if (!existsSync(file!) || !statSync(file!).isFile()) throw new UsageError(`no such file: ${file}`)
      const config = await configFrom(io)
      return withDatabase(io, async (database) => {
        await migrateQuietly(database, io, 'err')
        const { saveUploadedPdf } = await import('./services/textbooks/uploads.ts')
        const { enqueuePdfImport } = await import('./services/textbooks/ingest.ts')
        const upload = await saveUploadedPdf(config.dataDir, createReadStream(file!)).catch(async (err) => {
          throw await jobErrorAsCommandError(err)
        })
        const { textbookId, jobId } = await enqueuePdfImport(database.db, meta, upload)
        io.err(`Importing ${file} as textbook ${textbookId} (job ${jobId})\n`)
        const job = await runJobWithProgress(database, config, jobId, io)
        if (job.status !== 'done') throw await jobErrorAsCommandError({ key: job.error, params: job.error_params })
        const book = await database.db.selectFrom('textbooks').select(['status', 'title', 'page_count', 'chunk_count']).where('id', '=', textbookId).executeTakeFirstOrThrow()
        if (book.status !== 'ready') throw new CommandError(`textbook ${textbookId} is ${book.status}, not searchable`)
        const result = (job.result ?? {}) as { sections?: number; tocSource?: string; textlessPages?: number[] }
        io.out(
          `Textbook ${textbookId} "${book.title}" is searchable: ${book.page_count} pages, ${book.chunk_count} passages, ` +
            `${result.sections ?? 0} sections (table of contents from ${result.tocSource === 'outline' ? 'the PDF outline' : result.tocSource === 'headings' ? 'numbered headings' : 'nothing: none found'}).\n`,
        )
        if (result.textlessPages?.length) io.err(`Warning: pages without text (pictures or scans): ${result.textlessPages.join(', ')}\n`)
        return 0
      })
    },
  },

  'import-chunks': {
    summary: 'Import a textbook as pre-computed passages and embeddings.',
    positional: 'FILE',
    usage: `Usage: bagsh import-chunks FILE

Imports a textbook from a JSONL file of passages that already carry their embeddings
(format: docs/import-format.md): a header line with the book's subject, grade, title and the
embedding model, then one line per passage. Nothing is re-embedded, so the file's model and
dimensions must be the ones this deployment searches with (EMBEDDINGS_MODEL and
EMBEDDINGS_DIMENSIONS, or the built-in embedder); a mismatch is reported with their names.

Every line is checked, and it is all or nothing: the book becomes searchable only after the last
line has passed; one bad line and nothing is imported, and each error is printed as
"line N: message" (up to 20). A header with "replaces" swaps out that
textbook when the new one is ready. Progress goes to stderr. Exit code 0 only when the book is
searchable.

${ENVIRONMENT}
`,
    options: { ...HELP_OPTION },
    async run(_values, io, [file]) {
      const { existsSync, statSync } = await import('node:fs')
      if (!existsSync(file!) || !statSync(file!).isFile()) throw new UsageError(`no such file: ${file}`)
      const config = await configFrom(io)
      return withDatabase(io, async (database) => {
        await migrateQuietly(database, io, 'err')
        const { importChunksFile, ChunkImportError } = await import('./services/textbooks/import-chunks.ts')
        const { createEmbedder } = await import('./services/embeddings/index.ts')
        const { createI18n } = await import('./services/i18n.ts')
        const t = (key: string, params: Record<string, unknown> = {}) => createI18n().t(key, { lng: 'en', ...params })
        io.err(`Importing ${file}\n`)
        let lastAt = Date.now()
        try {
          const { textbookId, chunks } = await importChunksFile(database.db, file!, {
            active: createEmbedder(config.embeddings),
            onProgress({ chunks: done }) {
              if (Date.now() - lastAt < 2000) return
              lastAt = Date.now()
              io.err(`  checked and stored ${done} passages\n`)
            },
          })
          const book = await database.db.selectFrom('textbooks').select(['status', 'title', 'page_count', 'toc', 'embedding_model']).where('id', '=', textbookId).executeTakeFirstOrThrow()
          if (book.status !== 'ready') throw new CommandError(`textbook ${textbookId} is ${book.status}, not searchable`)
          io.out(
            `Textbook ${textbookId} "${book.title}" is searchable: ${book.page_count} pages, ${chunks} passages, ` +
              `${book.toc.length} sections (embeddings of ${book.embedding_model}).\n`,
          )
          return 0
        } catch (err) {
          if (!(err instanceof ChunkImportError)) throw err
          for (const e of err.errors) io.err(`bagsh import-chunks: line ${e.line}: ${t(e.key, e.params)}\n`)
          if (err.truncated) io.err(`bagsh import-chunks: ${t('importChunks.errors.truncated', { count: err.errors.length })}\n`)
          io.err(`bagsh import-chunks: ${t('importChunks.errors.rejected', { count: err.errors.length })}\n`)
          return 1
        }
      })
    },
  },

  reindex: {
    summary: 'Re-embed every textbook passage with the configured embedder.',
    usage: `Usage: bagsh reindex

Re-embeds every passage of every textbook with the embedder configured now (EMBEDDINGS_*), as a
background job visible to admins; what changing the embedding model takes. Runs it here, with
progress on stderr; if interrupted, the server (or the next run) continues where it stopped.

${ENVIRONMENT}
`,
    options: { ...HELP_OPTION },
    async run(_values, io) {
      const config = await configFrom(io)
      return withDatabase(io, async (database) => {
        await migrateQuietly(database, io, 'err')
        const { enqueueReindex } = await import('./services/textbooks/reindex.ts')
        const jobId = await enqueueReindex(database.db)
        io.err(`Re-indexing (job ${jobId})\n`)
        const job = await runJobWithProgress(database, config, jobId, io)
        if (job.status !== 'done') throw await jobErrorAsCommandError({ key: job.error, params: job.error_params })
        const result = (job.result ?? {}) as { chunks?: number; model?: string }
        io.out(`Re-embedded ${result.chunks ?? 0} passages with ${result.model}.\n`)
        return 0
      })
    },
  },

  search: {
    summary: 'Search the textbooks.',
    positional: 'QUERY',
    usage: `Usage: bagsh search "QUERY" [--grade GRADE] [--subject SUBJECT] [--limit K] [--json]

Finds the textbook passages that answer QUERY (Mongolian, or Mongolian typed in Latin letters),
the way the tutor does.

Options:
  --grade GRADE      Only books of this grade (1–12)
  --subject SUBJECT  Only books of this subject (a code: biology, physics, …)
  --limit K          How many passages (1–50, default 5)
  --json             Print a JSON array of
                     { "textbook": {"id","title","subject","grade"}, "section", "page_start",
                       "page_end", "score", "content" }; pages are the book's printed numbers

${ENVIRONMENT}
`,
    options: { ...HELP_OPTION, grade: { type: 'string' }, subject: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
    async run(values, io, [query]) {
      const grade = typeof values.grade === 'string' ? parseBounded(values.grade, '--grade', 1, 12) : null
      const limit = typeof values.limit === 'string' ? parseBounded(values.limit, '--limit', 1, 50) : 5
      const subject = typeof values.subject === 'string' ? values.subject.trim() : null
      if (!query!.trim()) throw new UsageError('QUERY must not be empty')
      const config = await configFrom(io)
      return withDatabase(io, async (database) => {
        await migrateQuietly(database, io, 'err')
        if (subject !== null) {
          const { listSubjects } = await import('./services/textbooks/store.ts')
          const codes = (await listSubjects(database.db)).map((s) => s.code)
          if (!codes.includes(subject)) throw new UsageError(`unknown --subject "${subject}": use one of ${codes.join(', ')}`)
        }
        const { createEmbedder } = await import('./services/embeddings/index.ts')
        const { retrievePassages } = await import('./services/retrieval/retrieve.ts')
        const passages = await retrievePassages(database.db, { query: query!, grade, gradeMode: 'only', subject, limit }, createEmbedder(config.embeddings))
        const rows = passages.map((p) => ({
          textbook: p.textbook,
          section: [p.section.path, p.section.title].filter(Boolean).join(' '),
          page_start: p.pageStart,
          page_end: p.pageEnd,
          score: Number(p.score.toFixed(4)),
          content: p.content,
        }))
        if (values.json) {
          io.out(JSON.stringify(rows, null, 2) + '\n')
          return 0
        }
        if (!rows.length) io.out('Nothing found.\n')
        rows.forEach((r, i) => {
          const pages = r.page_start === r.page_end ? `p. ${r.page_start}` : `pp. ${r.page_start}–${r.page_end}`
          const text = r.content.replace(/\s+/g, ' ')
          io.out(`${i + 1}. ${r.textbook.title} (grade ${r.textbook.grade}), ${r.section || '—'}, ${pages}  [score ${r.score.toFixed(2)}]\n`)
          io.out(`   ${text.length > 300 ? text.slice(0, 300) + '…' : text}\n`)
        })
        return 0
      })
    },
  },
}

function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const value = values[name]
  if (typeof value !== 'string') throw new UsageError(`missing --${name}`)
  return value
}

function parseSchoolCode(text: string, flag: string): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1) throw new UsageError(`invalid ${flag} "${text}": a school code is a number from 1 to 999999999`)
  return Number(text)
}

const FIELD_FLAGS: Record<string, string> = {
  name: '--name',
  displayName: '--name',
  code: '--code',
  username: '--username',
  password: '--password',
  school: '--school',
  grade: '--grade',
  subject: '--subject',
  title: '--title',
  year: '--year',
  kind: '--kind',
  replaces: '--replace',
}

/** A FormError's field → i18n key map as readable lines from locales/en.json, e.g. "--code: A school with this code already exists." */
async function formErrorLines(error: FormError): Promise<string[]> {
  const { createI18n } = await import('./services/i18n.ts')
  const i18n = createI18n()
  return Object.entries(error.fields).map(([field, key]) => `${FIELD_FLAGS[field] ?? field}: ${i18n.t(key, { lng: 'en', ...error.params })}`)
}

function asUsageError(err: unknown): unknown {
  if (!(err instanceof FormError)) return err
  const usage = new UsageError('invalid values')
  usage.form = err
  return usage
}

async function configFrom(io: CliIO): Promise<Config> {
  const { loadConfig, ConfigError } = await import('./config.ts')
  try {
    return loadConfig(io.env)
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`configuration: ${err.message}`)
    throw err
  }
}

/** Opens the configured database, runs `fn`, and always closes it, so the process can exit at once. */
async function withDatabase(io: CliIO, fn: (database: Database) => Promise<CliResult>): Promise<CliResult> {
  const config = await configFrom(io)
  const { openDatabase } = await import('./db/index.ts')
  const { DataDirBusyError } = await import('./db/lock.ts')
  let database: Database
  try {
    database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolMax: 2 })
  } catch (err) {
    if (err instanceof DataDirBusyError) throw new CommandError(err.message)
    throw err
  }
  try {
    return await fn(database)
  } finally {
    await database.close()
  }
}

async function migrateQuietly(database: Database, io: CliIO, stream: 'out' | 'err' = 'out'): Promise<void> {
  const { migrate } = await import('./db/migrate.ts')
  const applied = await migrate(database.db)
  if (applied.length) io[stream](`Applied pending migrations first: ${applied.join(', ')}\n`)
}

function parseBounded(text: string, flag: string, min: number, max: number): number {
  const t = text.trim()
  if (!/^\d{1,6}$/.test(t) || Number(t) < min || Number(t) > max) throw new UsageError(`invalid ${flag} "${text}": use a whole number from ${min} to ${max}`)
  return Number(t)
}

function parseId(text: string, flag: string): number {
  const t = text.trim()
  if (!/^\d{1,9}$/.test(t) || Number(t) < 1) throw new UsageError(`invalid ${flag} "${text}": use a textbook id`)
  return Number(t)
}

/** An import's error (an i18n key with params, or a plain message) as one English line. */
async function jobErrorAsCommandError(err: unknown): Promise<unknown> {
  const { key, params } = (err ?? {}) as { key?: unknown; params?: unknown }
  if (typeof key !== 'string') return err
  const { createI18n } = await import('./services/i18n.ts')
  const text = createI18n().t(key, { lng: 'en', ...(params && typeof params === 'object' ? params : {}) })
  return new CommandError(text)
}

/** Runs a queued job in this process with the app's handlers, printing its progress on stderr. */
async function runJobWithProgress(database: Database, config: Config, jobId: number, io: CliIO) {
  const { JobRunner } = await import('./services/jobs/queue.ts')
  const { createJobHandlers } = await import('./services/jobs/handlers.ts')
  const { createEmbedder } = await import('./services/embeddings/index.ts')
  let last = { stage: '', percent: -1, at: 0 }
  const runner = new JobRunner(database.db, createJobHandlers({ dataDir: config.dataDir, embedder: createEmbedder(config.embeddings) }), {
    pollMs: 500,
    onProgress(_job, p) {
      const stage = p.stage ?? ''
      const percent = p.total ? Math.floor(((p.done ?? 0) / p.total) * 10) * 10 : -1
      if (stage === last.stage && percent === last.percent && Date.now() - last.at < 5000) return
      last = { stage, percent, at: Date.now() }
      const unit = stage === 'extracting' ? ' pages' : stage === 'embedding' ? ' passages' : ''
      io.err(`  ${stage}${p.total ? ` ${p.done ?? 0}/${p.total}${unit}` : ''}\n`)
    },
  })
  const job = await runner.runJob(jobId)
  if (job.status === 'queued') throw new CommandError(`job ${jobId} is waiting to be retried: ${job.error ?? ''}`)
  return job
}

function parseError(err: unknown, command: string): UsageError | null {
  const code = (err as { code?: string }).code
  const message = err instanceof Error ? err.message : String(err)
  const quoted = /'([^']+)'/.exec(message)?.[1]
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown option ${quoted ?? message} for ${command}`)
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${quoted ? `"${quoted}"` : message} for ${command}`)
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = /'(-[^' <]+)/.exec(message)?.[1]
      return new UsageError(flag ? `missing value for ${flag} (to pass a value starting with "-", write ${flag}=VALUE)` : message)
    }
    default:
      return null
  }
}

/** Runs one command line (without `node bagsh`). Prints to io; never calls process.exit. */
export async function run(argv: string[], io: CliIO = processIO): Promise<CliResult> {
  const [first, ...rest] = argv
  if (first === undefined) {
    io.err(USAGE)
    return 2
  }
  if (first === '--help' || first === '-h') {
    io.out(USAGE)
    return 0
  }
  if (first === 'help') {
    if (rest.length === 0) io.out(USAGE)
    else if (rest.length === 1 && Object.hasOwn(COMMANDS, rest[0])) io.out(COMMANDS[rest[0]].usage)
    else {
      io.err(`bagsh: no help for "${rest.join(' ')}": commands are ${Object.keys(COMMANDS).join(', ')}\n`)
      return 2
    }
    return 0
  }
  if (first === '--version' || first === '-v') {
    const { readFileSync } = await import('node:fs')
    io.out(`${(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version}\n`)
    return 0
  }
  if (!Object.hasOwn(COMMANDS, first)) {
    io.err(`bagsh: unknown command "${first}" (commands: ${Object.keys(COMMANDS).join(', ')}; see bagsh --help)\n`)
    return 2
  }
  const command = COMMANDS[first]
  const prefix = `bagsh ${first}`
  try {
    let parsed
    try {
      parsed = parseArgs({ args: rest, options: command.options, strict: true, allowPositionals: Boolean(command.positional), tokens: true })
    } catch (err) {
      throw parseError(err, first) ?? err
    }
    if (parsed.values.help) {
      io.out(command.usage)
      return 0
    }
    const seen = new Set<string>()
    for (const token of parsed.tokens) {
      if (token.kind !== 'option') continue
      if (seen.has(token.name)) throw new UsageError(`--${token.name} is given more than once`)
      seen.add(token.name)
    }
    if (command.positional && !parsed.values.help) {
      if (parsed.positionals.length === 0) throw new UsageError(`missing ${command.positional}`)
      if (parsed.positionals.length > 1) throw new UsageError(`unexpected argument "${parsed.positionals[1]}" (quote a ${command.positional} that has spaces)`)
    }
    return await command.run(parsed.values as Record<string, string | boolean | undefined>, io, parsed.positionals)
  } catch (err) {
    if (err instanceof UsageError) {
      const lines = err.form ? await formErrorLines(err.form) : [`${err.message} (see bagsh ${first} --help)`]
      for (const line of lines) io.err(`${prefix}: ${line}\n`)
      return 2
    }
    if (err instanceof FormError) {
      for (const line of await formErrorLines(err)) io.err(`${prefix}: ${line}\n`)
      return 1
    }
    // Database busy, unreachable, and anything unexpected: one line, no stack trace.
    io.err(`${prefix}: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  }
}

/** Entry point of bin/bagsh.js: runs the command and exits with its code (the server keeps running). */
export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  const result = await run(argv)
  if (result !== 'serving') process.exit(result)
}

if (import.meta.main) void main()
