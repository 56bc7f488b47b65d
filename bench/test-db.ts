// How fast does a test file get a fresh, migrated database?
// Compares booting + migrating PGlite from scratch with loading the cached migrated template.
//   npx node bench/test-db.ts [runs]
import { openDatabase } from '../src/db/index.ts'
import { migrate } from '../src/db/migrate.ts'
import { freshDatabase } from '../test/helpers/db.ts'

const runs = Number(process.argv[2] ?? 5)

async function time(label: string, fn: () => Promise<{ close(): Promise<void> }>) {
  const samples: number[] = []
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    const db = await fn()
    samples.push(performance.now() - started)
    await db.close()
  }
  samples.sort((a, b) => a - b)
  const median = samples[Math.floor(samples.length / 2)]
  console.log(`${label.padEnd(34)} median ${(median / 1000).toFixed(2)} s  (min ${(samples[0] / 1000).toFixed(2)}, max ${(samples.at(-1)! / 1000).toFixed(2)}, n=${runs})`)
}

await freshDatabase().then((d) => d.close()) // make sure the template exists
await time('boot + migrate from scratch', async () => {
  const d = await openDatabase({ databaseUrl: null, dataDir: '', inMemory: true })
  await migrate(d.db)
  return d
})
await time('load migrated template (tests)', freshDatabase)
