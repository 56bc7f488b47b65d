import { createHash } from 'node:crypto'
import pg from 'pg'

/**
 * SQL whose text ends with this comment is prepared once per connection and then only bound and
 * executed: Postgres plans it a few times, then keeps a generic plan, instead of planning it at
 * every call. For the few large statements run on every question (storing one plans in ~6 ms
 * and runs in ~1 ms), where the planning costs more than the work. The text must be the same
 * at every call (values as parameters); a statement built in a few shapes makes a few.
 *
 *   await sql`WITH … SELECT … ${sql.raw(PREPARE)}`.execute(db)
 */
export const PREPARE = '/* prepare */'

/**
 * SQL containing this comment is background work nobody waits on to see a page or a first token
 * (storing a finished answer, learning events, queue polls). The embedded database thread runs
 * such statements after the waiting foreground ones (pglite-thread.ts); elsewhere it is only a
 * comment. It may come before PREPARE:
 *
 *   await sql`UPDATE … ${sql.raw(BACKGROUND)} ${sql.raw(PREPARE)}`.execute(db)
 */
export const BACKGROUND = '/* background */'

const names = new Map<string, string>()

function nameOf(text: string): string {
  let name = names.get(text)
  if (!name) {
    name = `bagsh_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`
    names.set(text, name)
  }
  return name
}

/**
 * Prepared statements a connection keeps; the least recently used beyond this are deallocated.
 * Each holds its plans in the session (~0.5 MB for retrieval's search, which comes in a few dozen
 * shapes), and the database thread's 16 connections share one session: without a bound, every
 * connection would in time hold every shape (docs/decisions/012).
 */
export const MAX_PREPARED_PER_CONNECTION = 24

/** pg's Client, preparing marked statements (every pool of the app uses it). */
export class PreparingClient extends pg.Client {}

/** Per client, its prepared statements' names, least recently used first. */
const preparedBy = new WeakMap<pg.Client, Set<string>>()

const query = pg.Client.prototype.query as (this: pg.Client, ...args: unknown[]) => unknown
// Kysely calls query(text, values); everything else passes through untouched.
;(PreparingClient.prototype as unknown as { query: typeof query }).query = function (this: pg.Client, ...args: unknown[]) {
  const [text, values] = args
  if (typeof text === 'string' && text.endsWith(PREPARE) && (values === undefined || Array.isArray(values))) {
    const connection = (this as unknown as { connection: { statementSuffix?: string; parsedStatements: Record<string, string> } }).connection
    // Connections that share one Postgres session (the database thread) name theirs apart.
    const name = nameOf(text) + (connection.statementSuffix ?? '')
    let names = preparedBy.get(this)
    if (!names) preparedBy.set(this, (names = new Set()))
    names.delete(name)
    names.add(name)
    if (names.size > MAX_PREPARED_PER_CONNECTION) {
      const oldest = names.values().next().value!
      names.delete(oldest)
      // Queued on this client before the statement, so it runs first; once it has, a later use
      // parses again. When it fails (inside an aborted transaction) the statement stays, and
      // stays known: it goes at a later eviction.
      ;(query.call(this, `DEALLOCATE "${oldest}"`) as Promise<unknown>).then(
        () => delete connection.parsedStatements[oldest],
        () => names.add(oldest),
      )
    }
    return query.call(this, { name, text, values })
  }
  return query.apply(this, args)
}
