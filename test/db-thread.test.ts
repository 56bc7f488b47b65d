import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import { BACKGROUND, openDatabase, PREPARE, type Database } from '../src/db/index.ts'
import { migrate } from '../src/db/migrate.ts'
import { MAX_PREPARED_PER_CONNECTION } from '../src/db/prepared.ts'

/**
 * The embedded database in a worker thread (src/db/pglite-thread.ts), as the server runs it:
 * the same SQL, errors and transactions as in-thread PGlite, several pool connections over one
 * Postgres session without a transaction ever seeing another connection's statements.
 */

const dir = mkdtempSync(join(tmpdir(), 'bagsh-db-thread-'))
let database: Database
before(async () => {
  database = await openDatabase({ databaseUrl: null, dataDir: dir, thread: true })
  await migrate(database.db)
  await sql`CREATE TABLE thread_probe (id serial PRIMARY KEY, who text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`.execute(database.db)
})
after(async () => {
  await database?.close()
  rmSync(dir, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

test('queries, parameters, types and many rows come back as from a socket', async () => {
  const { rows } = await sql<{ n: number; s: string; j: { a: number[] }; t: Date; big: string }>`
    SELECT ${41}::int + 1 AS n, ${'Сайн уу'}::text AS s, '{"a":[1,2]}'::jsonb AS j, now() AS t, 9007199254740993::bigint AS big`.execute(database.db)
  assert.deepEqual({ ...rows[0], t: rows[0]!.t instanceof Date }, { n: 42, s: 'Сайн уу', j: { a: [1, 2] }, t: true, big: '9007199254740993' })
  const many = await sql<{ g: number }>`SELECT g FROM generate_series(1, 20000) g`.execute(database.db)
  assert.equal(many.rows.length, 20000)
  assert.equal(many.rows.at(-1)!.g, 20000)
})

test('errors keep their Postgres code and the connection goes on working', async () => {
  await assert.rejects(sql`SELEC 1`.execute(database.db), (err: { code?: string }) => err.code === '42601')
  await database.db.insertInto('thread_probe' as never).values({ id: 1, who: 'first' } as never).execute()
  await assert.rejects(
    database.db.insertInto('thread_probe' as never).values({ id: 1, who: 'again' } as never).execute(),
    (err: { code?: string; constraint?: string }) => err.code === '23505' && err.constraint === 'thread_probe_pkey',
  )
  assert.equal((await sql<{ one: number }>`SELECT 1 AS one`.execute(database.db)).rows[0]!.one, 1)
})

test('a transaction has the session to itself: statements of other connections wait for its end', async () => {
  await sql`DELETE FROM thread_probe`.execute(database.db)
  let outsideDone = 0
  let committed = 0
  const inside = database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO thread_probe (who) VALUES ('trx-1')`.execute(trx)
    // Meanwhile another connection writes; it must not land inside this transaction.
    const outside = sql`INSERT INTO thread_probe (who) VALUES ('outside')`.execute(database.db).then(() => (outsideDone = performance.now()))
    await sleep(100)
    const seen = await sql<{ n: string }>`SELECT count(*) AS n FROM thread_probe`.execute(trx)
    await sql`INSERT INTO thread_probe (who) VALUES ('trx-2')`.execute(trx)
    committed = performance.now()
    return { seen: Number(seen.rows[0]!.n), outside }
  })
  const { seen, outside } = await inside
  await outside
  assert.equal(seen, 1, 'the outside insert was not part of the transaction')
  assert.ok(outsideDone >= committed, 'the outside insert ran after the commit')
  const order = await sql<{ who: string }>`SELECT who FROM thread_probe ORDER BY at, id`.execute(database.db)
  assert.deepEqual(order.rows.map((r) => r.who), ['trx-1', 'trx-2', 'outside'])
})

test('a failed transaction rolls back and the others go on; concurrent ones run one after the other', async () => {
  await sql`DELETE FROM thread_probe`.execute(database.db)
  await assert.rejects(
    database.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO thread_probe (who) VALUES ('doomed')`.execute(trx)
      await sql`SELECT 1/0`.execute(trx)
    }),
    (err: { code?: string }) => err.code === '22012',
  )
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      database.db.transaction().execute(async (trx) => {
        const before = await sql<{ n: string }>`SELECT count(*) AS n FROM thread_probe`.execute(trx)
        await sleep(5)
        await sql`INSERT INTO thread_probe (who) VALUES (${`t${i}`})`.execute(trx)
        const after = await sql<{ n: string }>`SELECT count(*) AS n FROM thread_probe`.execute(trx)
        return Number(after.rows[0]!.n) - Number(before.rows[0]!.n)
      }),
    ),
  )
  assert.deepEqual(results, Array(8).fill(1), 'each transaction saw only its own insert happen')
  const all = await sql<{ who: string }>`SELECT who FROM thread_probe`.execute(database.db)
  assert.deepEqual(all.rows.map((r) => r.who).sort(), ['t0', 't1', 't2', 't3', 't4', 't5', 't6', 't7'])
})

test('a connection keeps at most MAX_PREPARED_PER_CONNECTION prepared statements, the least recently used go', async () => {
  await database.db.connection().execute(async (conn) => {
    const run = (i: number) => sql<{ n: number }>`SELECT ${i}::int + ${sql.lit(i)} AS n ${sql.raw(PREPARE)}`.execute(conn)
    const mine = async () => {
      const { rows } = await sql<{ name: string; statement: string }>`SELECT name, statement FROM pg_prepared_statements`.execute(conn)
      return rows.filter((r) => r.statement.includes('::int + ')).length
    }
    const total = MAX_PREPARED_PER_CONNECTION + 6
    for (let i = 0; i < total; i++) assert.equal((await run(i)).rows[0]!.n, 2 * i)
    assert.equal(await mine(), MAX_PREPARED_PER_CONNECTION)
    // Statement 0 was deallocated: used again, it is prepared again (and another goes).
    assert.equal((await run(0)).rows[0]!.n, 0)
    // Statement 10 is still there: used again, nothing changes.
    assert.equal((await run(10)).rows[0]!.n, 20)
    assert.equal(await mine(), MAX_PREPARED_PER_CONNECTION)

    // An eviction inside an aborted transaction cannot deallocate: the statement stays usable.
    await sql`BEGIN`.execute(conn)
    await assert.rejects(sql`SELECT 1/0`.execute(conn))
    await assert.rejects(run(total + 1))
    await sql`ROLLBACK`.execute(conn)
    for (let i = 0; i <= total + 1; i++) assert.equal((await run(i)).rows[0]!.n, 2 * i, `statement ${i} after the aborted transaction`)
  })
})

test('statements marked PREPARE are prepared once per connection, also when the connections share the session', async () => {
  const run = (i: number) => sql<{ n: number }>`SELECT ${i}::int * 2 AS n ${sql.raw(PREPARE)}`.execute(database.db)
  for (let round = 0; round < 3; round++) {
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => run(i)))
    assert.deepEqual(results.map((r) => r.rows[0]!.n), Array.from({ length: 24 }, (_, i) => i * 2))
  }
  const { rows } = await sql<{ name: string }>`SELECT name FROM pg_prepared_statements WHERE statement LIKE '%::int * 2 AS n%'`.execute(database.db)
  const names = rows.map((r) => r.name)
  assert.ok(names.length >= 2, `prepared on several connections: ${names.join(', ')}`)
  assert.ok(names.every((n) => /^bagsh_[0-9a-f]{20}_c\d+$/.test(n)), names.join(', '))
  assert.equal(new Set(names.map((n) => n.split('_c')[0])).size, 1, 'one statement')
  // A failing marked statement is an ordinary error, and the connection goes on.
  await assert.rejects(sql`SELECT 1/${0}::int ${sql.raw(PREPARE)}`.execute(database.db), (err: { code?: string }) => err.code === '22012')
  assert.equal((await run(21)).rows[0]!.n, 42)
})

test('background statements wait for the foreground ones, but not for ever; a transaction still keeps the session', async () => {
  await sql`DELETE FROM thread_probe`.execute(database.db)
  const insert = (who: string, background: boolean, prepared: boolean) =>
    sql`INSERT INTO thread_probe (who) VALUES (${who}) ${sql.raw(background ? BACKGROUND : '')} ${sql.raw(prepared ? PREPARE : '')}`.execute(database.db)
  // Keeps the thread busy for `ms` while the others arrive.
  const busy = (ms: number) => sql`SELECT pg_sleep(${ms / 1000})`.execute(database.db)
  const order = async () => (await sql<{ who: string }>`SELECT who FROM thread_probe ORDER BY at, id`.execute(database.db)).rows.map((r) => r.who)

  // While the thread is busy for `blockMs`, a background insert arrives, then a foreground one.
  const race = async (blockMs: number, prepared: boolean) => {
    await sql`DELETE FROM thread_probe`.execute(database.db)
    const blocker = busy(blockMs)
    await sleep(30)
    const bg = insert('bg', true, prepared)
    await sleep(20)
    const fg = insert('fg', false, prepared)
    await Promise.all([blocker, bg, fg])
    return order()
  }
  for (const prepared of [false, true, true]) {
    // The second and third rounds only bind the prepared statements: still background.
    assert.deepEqual(await race(150, prepared), ['fg', 'bg'], `prepared: ${prepared}`)
  }
  // A background statement that has waited long enough goes before newer foreground ones.
  assert.deepEqual(await race(700, false), ['bg', 'fg'])

  // Inside a transaction a background statement of another connection still waits for the commit.
  await sql`DELETE FROM thread_probe`.execute(database.db)
  let outside: Promise<unknown> = Promise.resolve()
  await database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO thread_probe (who) VALUES ('trx-1')`.execute(trx)
    outside = insert('bg', true, false)
    await sleep(50)
    await sql`INSERT INTO thread_probe (who) VALUES ('trx-2') ${sql.raw(BACKGROUND)}`.execute(trx)
  })
  await outside
  assert.deepEqual(await order(), ['trx-1', 'trx-2', 'bg'])
})

test('a dump of the data dir, and the data is there after a reopen', async () => {
  await sql`INSERT INTO thread_probe (who) VALUES ('kept')`.execute(database.db)
  const dump = await database.dumpDataDir()
  assert.ok(dump.size > 1000)
  await database.close()
  database = await openDatabase({ databaseUrl: null, dataDir: dir, thread: true })
  const kept = await sql<{ n: string }>`SELECT count(*) AS n FROM thread_probe WHERE who = 'kept'`.execute(database.db)
  assert.equal(Number(kept.rows[0]!.n), 1)
})
