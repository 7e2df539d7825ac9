// pnpm mutate [--package protocol|server] [--incremental] [--changed [base]] [--mutate <glob>]...
// Runs StrykerJS over each package in turn (protocol first: it is smaller), then prints the
// mutation score per package from the JSON reports under reports/mutation/<package>/.
import { spawnSync, execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"

const args = process.argv.slice(2)
const packages = []
const passThrough = []
let changedBase
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === "--package") packages.push(args[++i])
  else if (a === "--changed") changedBase = args[i + 1] && !args[i + 1].startsWith("--") ? args[++i] : "main"
  else passThrough.push(a)
}
if (packages.length === 0) packages.push("protocol", "server")

/** Source files of `pkg` this branch changed since it left `base` (committed or not). */
const changedFiles = (pkg, base) => {
  const since = execFileSync("git", ["merge-base", base, "HEAD"], { encoding: "utf8" }).trim()
  const out = execFileSync("git", ["diff", "--name-only", since, "--", `packages/${pkg}/src`], { encoding: "utf8" })
  return out.split("\n").filter((f) => f.endsWith(".ts") && existsSync(f))
}

/** Mutation score (killed + timeout) / (all valid mutants), and the counts behind it. */
export const score = (report) => {
  const counts = {}
  for (const file of Object.values(report.files)) {
    for (const m of file.mutants) counts[m.status] = (counts[m.status] ?? 0) + 1
  }
  const detected = (counts.Killed ?? 0) + (counts.Timeout ?? 0)
  const undetected = (counts.Survived ?? 0) + (counts.NoCoverage ?? 0)
  return { percent: detected + undetected === 0 ? 100 : (100 * detected) / (detected + undetected), counts }
}

const results = []
let failed = false
for (const pkg of packages) {
  const extra = [...passThrough]
  if (changedBase !== undefined) {
    const files = changedFiles(pkg, changedBase)
    if (files.length === 0) {
      console.log(`mutate: no source file of packages/${pkg} differs from ${changedBase}`)
      continue
    }
    extra.push("--mutate", files.join(","))
  }
  console.log(`mutate: packages/${pkg} ${extra.join(" ")}`)
  const run = spawnSync("pnpm", ["exec", "stryker", "run", "stryker.config.mjs", ...extra], {
    stdio: "inherit",
    // each mutant reruns its covering tests: properties run a tenth of their cases there, the
    // server's fuzz file 200 instead of 2,000, and its thousand-connection tests a tenth of them
    env: { PROPERTY_RUNS_SCALE: "0.1", FUZZ_RUNS: "200", LOAD_SCALE: "0.1", ...process.env, MUTATE_PACKAGE: pkg }
  })
  if (run.status !== 0) failed = true
  const file = `reports/mutation/${pkg}/mutation.json`
  if (existsSync(file)) results.push([pkg, score(JSON.parse(readFileSync(file, "utf8")))])
}

for (const [pkg, { counts, percent }] of results) {
  const detail = Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ")
  console.log(`mutation score packages/${pkg}: ${percent.toFixed(2)}% (${detail})`)
}
process.exit(failed ? 1 : 0)
