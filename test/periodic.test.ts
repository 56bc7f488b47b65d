import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PeriodicRounds } from '../src/services/periodic.ts'

test('one round at a time; stop waits for the round in progress; the timer runs rounds', async () => {
  let finish = () => {}
  let rounds = 0
  const periodic = new PeriodicRounds({ intervalMs: 20, jitterMs: 1 }, () => periodic.run(async () => ++rounds, -1))
  const gate = new Promise<void>((resolve) => (finish = resolve))
  const first = periodic.run(async () => {
    await gate
    return 'done'
  }, 'busy')
  assert.equal(await periodic.run(async () => 'second', 'busy'), 'busy', 'a second round while one runs')
  let stopped = false
  const stopping = periodic.stop().then(() => (stopped = true))
  await new Promise((resolve) => setTimeout(resolve, 10))
  assert.equal(stopped, false, 'stop waits for the running round')
  finish()
  assert.equal(await first, 'done')
  await stopping
  assert.equal(await periodic.run(async () => 'again', 'busy'), 'again', 'free again after the round')

  periodic.start()
  await new Promise((resolve) => setTimeout(resolve, 120))
  await periodic.stop()
  const seen = rounds
  assert.ok(seen >= 2, `the timer ran rounds (${seen})`)
  await new Promise((resolve) => setTimeout(resolve, 60))
  assert.equal(rounds, seen, 'no rounds after stop')
})
