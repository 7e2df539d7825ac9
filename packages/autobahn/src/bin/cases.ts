/**
 * Regenerates packages/autobahn/cases.json from kosoku's case index
 * (`pnpm --filter @effect-websocket/autobahn run cases:generate`), or with
 * `--check` exits 1 when the committed file differs from what the pinned
 * kosoku holds.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import * as Proc from "../internal/process.js"
import * as Kosoku from "../Kosoku.js"
import { repositoryRoot } from "../Runner.js"

const check = process.argv.includes("--check")
const packageDir = join(repositoryRoot, "packages/autobahn")
const target = join(packageDir, "cases.json")

const program = Effect.gen(function*() {
  const kosoku = yield* Kosoku.ensure(repositoryRoot, (line) => console.log(`[cases] ${line}`))
  const result = yield* Proc.run(kosoku.python, [join(packageDir, "scripts/generate-cases.py")], { env: kosoku.env })
  if (result.code !== 0) {
    console.error(result.stderr)
    return 1
  }
  const json = JSON.parse(result.stdout) as { readonly count: number; readonly informational: ReadonlyArray<string> }
  if (check) {
    const same = readFileSync(target, "utf8") === result.stdout
    console.log(same ? `cases.json matches kosoku ${kosoku.version}` : `cases.json differs from kosoku ${kosoku.version}`)
    return same ? 0 : 1
  }
  writeFileSync(target, result.stdout)
  console.log(`wrote ${target}: ${json.count} cases, informational: ${json.informational.join(", ")}`)
  return 0
})

Effect.runPromise(program).then(
  (code) => process.exit(code),
  (error) => {
    console.error(String(error))
    process.exit(2)
  }
)
