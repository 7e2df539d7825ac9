// Checks that a test file kills given mutants of a Stryker run, one at a time: splices each
// mutant's replacement into the source, runs the test file with vitest, restores the source.
//
//   node scripts/mutant-check.mjs <source> <mutation.json> <test file> <id>[,<id>...]
//
// e.g. node scripts/mutant-check.mjs packages/server/src/internal/h2.ts \
//        reports/mutation/server/mutation.json packages/server/test/Http2Mutants.test.ts 351,352
//
// Prints `killed` or `SURVIVES` per id and the ids that survived; a run that takes more than 180 s
// counts as killed, as Stryker counts a timeout. The source must be the one the
// report was made from (the report's line and column positions); it is restored even on failure.
// Run it in a checkout of its own: the source is modified while the tests run.
import { spawnSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"

const [source, reportPath, testFile, idsArg] = process.argv.slice(2)
if (idsArg === undefined) {
  console.error("usage: node scripts/mutant-check.mjs <source> <mutation.json> <test file> <id>[,<id>...]")
  process.exit(2)
}
const report = JSON.parse(readFileSync(reportPath, "utf8"))
const mutants = new Map()
for (const file of Object.values(report.files)) for (const m of file.mutants) mutants.set(String(m.id), m)

const original = readFileSync(source, "utf8")
const lines = original.split("\n")
/** Offset in the file of a 1-based line and column. */
const offset = (line, column) => {
  let o = 0
  for (let i = 0; i < line - 1; i++) o += lines[i].length + 1
  return o + column - 1
}

const survivors = []
try {
  for (const id of idsArg.split(",")) {
    const m = mutants.get(id)
    if (m === undefined) {
      console.log(`${id}\tunknown id`)
      survivors.push(id)
      continue
    }
    const start = offset(m.location.start.line, m.location.start.column)
    const end = offset(m.location.end.line, m.location.end.column)
    writeFileSync(source, original.slice(0, start) + m.replacement + original.slice(end))
    const run = spawnSync("pnpm", ["exec", "vitest", "run", testFile], { encoding: "utf8", timeout: 180_000 })
    writeFileSync(source, original)
    const killed = run.status !== 0
    if (!killed) survivors.push(id)
    const what = `L${m.location.start.line} ${m.mutatorName} ${JSON.stringify(m.replacement).slice(0, 60)}`
    console.log(`${id}\t${killed ? "killed" : "SURVIVES (the tests passed)"}\t${what}`)
  }
} finally {
  writeFileSync(source, original)
}
console.log("survivors:", survivors.join(",") || "none")
