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
  run(values: Record<string, string | boolean | undefined>, io: CliIO): Promise<CliResult>
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

async function migrateQuietly(database: Database, io: CliIO): Promise<void> {
  const { migrate } = await import('./db/migrate.ts')
  const applied = await migrate(database.db)
  if (applied.length) io.out(`Applied pending migrations first: ${applied.join(', ')}\n`)
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
      parsed = parseArgs({ args: rest, options: command.options, strict: true, allowPositionals: false, tokens: true })
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
    return await command.run(parsed.values as Record<string, string | boolean | undefined>, io)
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
