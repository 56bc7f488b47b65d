import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { acquireDataDirLock, DataDirBusyError } from '../src/db/lock.ts'

const fresh = () => mkdtempSync(join(tmpdir(), 'bagsh-lock-'))

test('a data dir this process holds cannot be opened twice; released, it can', () => {
  const dir = fresh()
  try {
    const lock = acquireDataDirLock(dir)
    assert.equal(readFileSync(join(dir, 'bagsh.lock'), 'utf8'), String(process.pid))
    assert.throws(() => acquireDataDirLock(dir), (err) => err instanceof DataDirBusyError && err.pid === process.pid && /already open in this process/.test(err.message))
    // The same dir spelled differently is the same lock.
    assert.throws(() => acquireDataDirLock(join(dir, '.', '')), DataDirBusyError)
    assert.ok(existsSync(join(dir, 'bagsh.lock')), 'the refused second open left the lock in place')
    lock.release()
    assert.ok(!existsSync(join(dir, 'bagsh.lock')))
    acquireDataDirLock(dir).release()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a lock with our pid that we did not take (a restarted container) is taken over', () => {
  const dir = fresh()
  try {
    writeFileSync(join(dir, 'bagsh.lock'), String(process.pid))
    const lock = acquireDataDirLock(dir)
    assert.throws(() => acquireDataDirLock(dir), DataDirBusyError)
    lock.release()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a live other process keeps its lock; a dead one loses it', () => {
  const dir = fresh()
  try {
    writeFileSync(join(dir, 'bagsh.lock'), String(process.ppid))
    assert.throws(() => acquireDataDirLock(dir), (err) => err instanceof DataDirBusyError && err.pid === process.ppid && /pid \d+/.test(err.message))
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    writeFileSync(join(dir, 'bagsh.lock'), dead.stdout)
    const lock = acquireDataDirLock(dir)
    assert.equal(readFileSync(join(dir, 'bagsh.lock'), 'utf8'), String(process.pid))
    lock.release()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
