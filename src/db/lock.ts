import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { resolve } from 'node:path'

/**
 * PGlite keeps Postgres inside one process: two processes opening the same data dir would
 * corrupt it. The first process writes its pid to DATA_DIR/bagsh.lock; a second one stops with
 * a clear message. A lock left by a process that died is taken over — including one with this
 * process's own pid that this process did not take (a container restarts with the same pid), while
 * a second open of a data dir this process already holds is refused like any other.
 */
export class DataDirBusyError extends Error {
  readonly pid: number
  constructor(dataDir: string, pid: number) {
    super(
      pid === process.pid
        ? `The embedded database in ${dataDir} is already open in this process (pid ${pid}); close it before opening it again.`
        : `The embedded database in ${dataDir} is in use by another Bagsh process (pid ${pid}). ` +
            'Stop that process first (for example the running server), or set DATABASE_URL to use a Postgres server.',
    )
    this.pid = pid
  }
}

export interface DataDirLock {
  release(): void
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Lock files this process holds (resolved paths). */
const held = new Set<string>()

export function acquireDataDirLock(dataDir: string): DataDirLock {
  const file = resolve(dataDir, 'bagsh.lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600)
      writeSync(fd, String(process.pid))
      closeSync(fd)
      held.add(file)
      let released = false
      return {
        release() {
          if (released) return
          released = true
          held.delete(file)
          try {
            unlinkSync(file)
          } catch {
            /* already gone */
          }
        },
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(file, 'utf8').trim())
      const ours = pid === process.pid
      if (ours ? held.has(file) : Number.isInteger(pid) && pid > 0 && processAlive(pid)) {
        throw new DataDirBusyError(dataDir, pid)
      }
      // Stale lock from a process that is gone: remove it and try once more.
      unlinkSync(file)
    }
  }
  throw new Error(`could not lock ${dataDir}`)
}
