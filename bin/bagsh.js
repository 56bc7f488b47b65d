#!/usr/bin/env node
// The `bagsh` command: runs src/cli.ts as is. Node 24 strips TypeScript types natively, which
// works here because this repository is not under node_modules. Through npx or npm scripts the
// `node` devDependency (Node 24) comes first on PATH.
const major = Number(process.versions.node.split('.')[0])
if (major < 24) {
  process.stderr.write(`bagsh needs Node 24 or newer, this is ${process.version}. Run it through npx: npx bagsh --help\n`)
  process.exit(1)
}
const { main } = await import('../src/cli.ts')
await main(process.argv.slice(2))
