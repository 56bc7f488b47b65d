import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'
import { buildApp } from '../src/app.ts'
import { run } from '../src/cli.ts'
import { loadConfig } from '../src/config.ts'
import { openDatabase, PGLITE_EXTENSIONS } from '../src/db/index.ts'
import { MIN_PASSWORD_LENGTH, verifyPassword } from '../src/services/auth/passwords.ts'
import { createI18n } from '../src/services/i18n.ts'
import { TestClient } from './helpers/client.ts'

// The `bagsh` command, run as a real process (bin/bagsh.js) on temporary data dirs. Every
// command that opens the embedded database boots PGlite (~4 s), so those are few and the
// independent ones run side by side on different data dirs.

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'bin', 'bagsh.js')
const TIMEOUT = 90_000

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'bagsh-cli-'))
}

/** The environment of a maintainer's shell: the embedded database in dataDir, nothing inherited that changes it. */
function envFor(dataDir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'info', NODE_ENV: 'development', ...extra }
  for (const name of ['SESSION_SECRET', 'BAGSH_DEMO', 'NODE_TEST_CONTEXT', 'PORT', 'HOST', 'DATABASE_URL']) if (!(name in extra)) delete env[name]
  return env
}

function collect(child: ChildProcess, label: string, timeout = TIMEOUT): Promise<Result> {
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${label} did not finish in ${timeout} ms\n${stdout}\n${stderr}`))
    }, timeout)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** `bagsh …` with the Node running this test (Node 24), as `npx bagsh …` would run it. */
function bagsh(args: string[], dataDir: string, env: NodeJS.ProcessEnv = {}): Promise<Result> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: envFor(dataDir, env), stdio: ['ignore', 'pipe', 'pipe'] })
  return collect(child, `bagsh ${args.join(' ')}`)
}

/** Starts `bagsh serve` on a free port and resolves once it listens, with the demo logins it printed. */
async function serve(dataDir: string) {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    cwd: ROOT,
    env: envFor(dataDir, { PORT: '0', HOST: '127.0.0.1' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const done = collect(child, 'bagsh serve', 5 * TIMEOUT)
  let stdout = ''
  child.stdout!.on('data', (d: string) => (stdout += d))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not listen in time:\n${stdout}`)), TIMEOUT)
    const check = () => {
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)
      if (m) {
        clearTimeout(timer)
        resolve(m[1])
      }
    }
    child.stdout!.on('data', check)
    void done.then((r) => reject(new Error(`server exited with ${r.code}:\n${r.stdout}\n${r.stderr}`)), reject)
  })
  const demo = (role: string) => {
    const m = new RegExp(`^\\s*${role}\\s+school (\\S+)\\s+username (\\S+)\\s+password (\\S+)`, 'm').exec(stdout)
    assert.ok(m, `the server prints the demo ${role} login`)
    return { school: m[1] === '(empty)' ? null : Number(m[1]), username: m[2], password: m[3] }
  }
  return {
    url,
    demo,
    async stop(): Promise<Result> {
      child.kill('SIGTERM')
      return done
    },
    /** Cleanup after a failed test: a stray server must not outlive it. */
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
  }
}

/** A pid that surely belongs to no process: one that just exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise((resolve) => child.on('close', resolve))
  return child.pid!
}

const en = createI18n()
/** The English text of an i18n key, as the CLI prints it for a field (exact, regex-escaped). */
function message(key: string, params: Record<string, unknown> = {}): string {
  assert.ok(en.exists(key, { lng: 'en', fallbackLng: false }), `locales/en.json has ${key}`)
  return en.t(key, { lng: 'en', ...params })
}
function fieldError(flag: string, key: string): RegExp {
  return new RegExp(`: ${flag}: ${message(key, { min: MIN_PASSWORD_LENGTH }).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm')
}

/** The CLI in this process, for command lines that never reach the database. */
async function runHere(args: string[], dataDir: string): Promise<Result> {
  let stdout = ''
  let stderr = ''
  const result = await run(args, { out: (t) => void (stdout += t), err: (t) => void (stderr += t), env: envFor(dataDir) })
  assert.notEqual(result, 'serving')
  return { code: result as number, stdout, stderr }
}

test('help, unknown commands and bad flags answer at once, with exit code 2, without touching the data', async () => {
  const dir = tempDataDir()
  try {
    // As processes: the exit code reaches the shell.
    const [help, unknown, badCode] = await Promise.all([
      bagsh(['--help'], dir),
      bagsh(['frobnicate'], dir),
      bagsh(['create-school', '--name', 'X', '--code', 'abc'], dir),
    ])
    assert.equal(help.code, 0, help.stderr)
    assert.equal(help.stderr, '')
    for (const command of ['migrate', 'create-school', 'create-user', 'serve']) assert.match(help.stdout, new RegExp(`\\b${command}\\b`))
    assert.equal(unknown.code, 2)
    assert.equal(unknown.stderr, 'bagsh: unknown command "frobnicate" (commands: migrate, create-school, create-user, serve, import-pdf, import-chunks, reindex, search; see bagsh --help)\n')
    assert.equal(badCode.code, 2)
    assert.match(badCode.stderr, /^bagsh create-school: invalid --code "abc": a school code is a number from 1 to 999999999/)

    const helpUser = await runHere(['help', 'create-user'], dir)
    const helpSchool = await runHere(['create-school', '--help'], dir)
    for (const r of [helpUser, helpSchool]) {
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stderr, '')
    }
    assert.match(helpUser.stdout, /--role ROLE\s+admin \(platform admin\), school-admin, teacher or student/)
    assert.match(helpSchool.stdout, /Usage: bagsh create-school --name NAME --code CODE/)

    const cases: [string[], RegExp][] = [
      [[], /Usage: bagsh <command>/],
      [['create-school', '--name', 'X', '--code', '5', '--colour', 'red'], /unknown option --colour/],
      [['create-school', '--name'], /missing value for --name/],
      [['create-school', '--name', '--code', '5'], /missing value for --name/],
      [['create-school', '--name', 'X'], /missing --code/],
      [['create-school', '--name', '   ', '--code', '5'], /--name must not be empty/],
      [['create-school', '--name', 'X', '--code', '0'], /invalid --code "0"/],
      [['create-school', '--name', 'X', '--code', '5', '--code', '6'], /--code is given more than once/],
      [['create-user', '--role', 'boss', '--school', '5', '--username', 'u', '--password', 'long-enough'], /unknown --role "boss": use one of admin, school-admin, teacher, student/],
      [['create-user', '--role', 'student', '--school', '5', '--username', 'bat', '--password', '123456', '--grade', '13'], fieldError('--grade', 'users.errors.gradeInvalid')],
      [['create-user', '--role', 'student', '--school', '5', '--username', 'bat', '--password', '123456', '--grade', 'seven'], /invalid --grade "seven"/],
      [['create-user', '--role', 'teacher', '--school', '5', '--username', 'sara', '--password', 'long-enough', '--grade', '7'], /--grade is only for students/],
      [['create-user', '--role', 'student', '--school', '5', '--username', 'bat', '--password', 'not-a-pin'], fieldError('--password', 'users.errors.pinInvalid')],
      [['create-user', '--role', 'teacher', '--school', '5', '--username', 'sara', '--password', 'pw-xyz'], fieldError('--password', 'users.errors.passwordLength')],
      [['create-user', '--role', 'teacher', '--school', '5', '--username', '<script>', '--password', 'long-enough'], fieldError('--username', 'users.errors.usernameInvalid')],
      [['create-user', '--role', 'admin', '--school', '5', '--username', 'root', '--password', 'long-enough'], /--school is not allowed with --role admin/],
      [['create-user', '--role', 'teacher', '--username', 'sara', '--password', 'long-enough'], /missing --school/],
      [['create-user', '--role', 'teacher', '--school', 'abc', '--username', 'sara', '--password', 'long-enough'], /invalid --school "abc"/],
      [['migrate', 'now'], /unexpected argument "now"/],
      [['help', 'nothing'], /no help for "nothing"/],
    ]
    for (const [args, message] of cases) {
      const r = await runHere(args, dir)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
      assert.equal(r.stdout, '')
      if (args.length) assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`)
      // Passwords are never printed back, not even in errors.
      assert.ok(!/not-a-pin|long-enough|pw-xyz/.test(r.stderr), r.stderr)
    }
    // A wrong command line never opens (or creates) the database.
    assert.ok(!existsSync(join(dir, 'pgdata')), 'no database was created')
    assert.ok(!existsSync(join(dir, 'bagsh.lock')))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('npx bagsh --help works from the repository root', async () => {
  const child = spawn('npx', ['--no-install', 'bagsh', '--help'], { cwd: ROOT, env: { ...process.env, npm_config_update_notifier: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const r = await collect(child, 'npx bagsh --help')
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /Usage: bagsh <command>/)
})

test('with DATABASE_URL: migrate, create-school and create-user for every role; duplicates fail with exit code 1', async () => {
  // A Postgres server for the children: PGlite behind its wire-protocol socket, in this process.
  const pglite = await PGlite.create({ extensions: PGLITE_EXTENSIONS })
  const server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: 0 })
  await server.start()
  const dir = tempDataDir()
  const env = { DATABASE_URL: `postgres://postgres@${server.getServerConn()}/postgres` }
  const cli = (args: string[]) => bagsh(args, dir, env)
  try {
    const migrated = await cli(['migrate'])
    assert.equal(migrated.code, 0, migrated.stderr)
    assert.match(migrated.stdout, /^Applied \d+ migrations?:\n\s+\d{8}_\d{4}_foundation\.sql\n/)
    const again = await cli(['migrate'])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /^Nothing to apply/)

    const school = await cli(['create-school', '--name', 'Сүхбаатарын 3-р сургууль', '--code', '4004'])
    assert.equal(school.code, 0, school.stderr)
    assert.match(school.stdout, /^Created school 4004 "Сүхбаатарын 3-р сургууль" \(id \d+\)\.\n$/)
    const duplicate = await cli(['create-school', '--name', 'Өөр', '--code', '4004'])
    assert.equal(duplicate.code, 1)
    assert.equal(duplicate.stderr, `bagsh create-school: --code: ${message('schools.errors.codeTaken')}\n`)
    const noSchool = await cli(['create-user', '--role', 'teacher', '--school', '5005', '--username', 'sara', '--password', 'sara-secret-1'])
    assert.equal(noSchool.code, 1)
    assert.match(noSchool.stderr, /^bagsh create-user: no school with code 5005/)

    const users: [string[], RegExp, string][] = [
      [['--role', 'school-admin', '--school', '4004', '--username', 'Zahiral', '--name', 'Захирал Дорж'], /^Created school admin zahiral in school 4004 /, 'zahiral-secret-1'],
      [['--role', 'teacher', '--school', '4004', '--username', 'sarnai'], /^Created teacher sarnai in school 4004 /, 'sarnai-secret-1'],
      [['--role', 'student', '--school', '4004', '--username', 'bat', '--grade', '7'], /^Created student bat in school 4004 /, '024680'],
      [['--role', 'admin', '--username', 'root'], /^Created platform admin root \(id \d+\)/, 'root-secret-1'],
    ]
    for (const [args, created, password] of users) {
      const r = await cli(['create-user', ...args, '--password', password])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, created)
      assert.ok(!r.stdout.includes(password) && !r.stderr.includes(password), 'the password is not echoed')
    }
    const taken = await cli(['create-user', '--role', 'teacher', '--school', '4004', '--username', 'SARNAI', '--password', 'other-secret-1'])
    assert.equal(taken.code, 1)
    assert.equal(taken.stderr, `bagsh create-user: --username: ${message('users.errors.usernameTaken')}\n`)

    // The rows are what was asked for, passwords hashed with argon2id.
    const { rows } = await pglite.query<{ role: string; username: string; display_name: string; grade: number | null; code: number | null; password_hash: string }>(
      'SELECT u.role, u.username, u.display_name, u.grade, s.code, u.password_hash FROM users u LEFT JOIN schools s ON s.id = u.school_id ORDER BY u.id',
    )
    assert.deepEqual(
      rows.map((u) => [u.role, u.username, u.display_name, u.grade, u.code]),
      [
        ['school_admin', 'zahiral', 'Захирал Дорж', null, 4004],
        ['teacher', 'sarnai', 'sarnai', null, 4004],
        ['student', 'bat', 'bat', 7, 4004],
        ['platform_admin', 'root', 'root', null, null],
      ],
    )
    assert.ok(rows.every((u) => u.password_hash.startsWith('$argon2id$')))
    assert.equal(await verifyPassword(rows[2].password_hash, '024680'), true)
    assert.ok(!existsSync(join(dir, 'pgdata')), 'with DATABASE_URL the embedded database is not used')
  } finally {
    await server.stop()
    await pglite.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('while the server holds DATA_DIR the CLI stops with a clear message; afterwards it works and nothing was lost', async () => {
  const dir = tempDataDir()
  let server: Awaited<ReturnType<typeof serve>> | undefined
  try {
    server = await serve(dir)
    const demoTeacher = server.demo('teacher')
    const health = await fetch(`${server.url}/health`)
    assert.equal(health.status, 200)

    const busy = await bagsh(['create-school', '--name', 'Шинэ сургууль', '--code', '2002'], dir)
    assert.equal(busy.code, 1)
    assert.match(busy.stderr, /^bagsh create-school: The embedded database in .* is in use by another Bagsh process \(pid \d+\)\. Stop that process first/)
    assert.equal(busy.stderr.trim().split('\n').length, 1)
    assert.equal(busy.stdout, '')
    // The server is unharmed and still holds its lock.
    assert.equal((await fetch(`${server.url}/health`)).status, 200)
    assert.ok(existsSync(join(dir, 'bagsh.lock')))

    const stopped = await server.stop()
    assert.equal(stopped.code, 0, stopped.stderr)
    assert.ok(!existsSync(join(dir, 'bagsh.lock')), 'the server releases its lock on SIGTERM')

    // A lock left by a process that died (kill -9, power cut) is taken over.
    writeFileSync(join(dir, 'bagsh.lock'), String(await deadPid()))
    const created = await bagsh(['create-school', '--name', 'Шинэ сургууль', '--code', '2002'], dir)
    assert.equal(created.code, 0, created.stderr)
    assert.match(created.stdout, /Created school 2002/)

    const teacher = await bagsh(['create-user', '--role', 'teacher', '--school', '2002', '--username', 'Sarnai', '--password', 'sarnai-secret-1'], dir)
    assert.equal(teacher.code, 0, teacher.stderr)

    // The demo accounts from before are intact, and the CLI's teacher logs in through the app.
    const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: 'silent' }, { seedDemo: false })
    const database = await openDatabase({ databaseUrl: null, dataDir: config.dataDir })
    const app = await buildApp({ config, database, logger: false })
    try {
      const demo = new TestClient(app)
      assert.equal((await demo.login(demoTeacher.school, demoTeacher.username, demoTeacher.password)).headers.location, '/teacher/classes')
      const cli = new TestClient(app)
      assert.equal((await cli.login(2002, 'sarnai', 'sarnai-secret-1')).headers.location, '/teacher/classes')
      const schools = await database.db.selectFrom('schools').select('code').orderBy('code').execute()
      assert.deepEqual(schools.map((s) => s.code), [1001, 2002])
    } finally {
      await app.close()
      await database.close()
    }
  } finally {
    server?.kill()
    rmSync(dir, { recursive: true, force: true })
  }
})
