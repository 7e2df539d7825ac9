/**
 * The long fuzzing campaign: runs every property of `properties.ts` in batches with fresh
 * random seeds until the time is up, prints runs/s per property and every counterexample
 * with the seed and path that replay it. Exits 1 if any property failed.
 *
 *   pnpm fuzz                                   # 5 minutes
 *   pnpm fuzz --minutes 30 --batch 1000
 *   pnpm fuzz --only frames                     # properties whose name contains "frames"
 *   pnpm fuzz --property "frames: 64 KiB inputs" --seed 123 --path "4:1:0"   # replay
 */
import { FastCheck as fc } from "effect"
import { parseArgs } from "node:util"
import { properties } from "./properties.js"
import type { PropertyName } from "./properties.js"

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "5" },
    batch: { type: "string", default: "500" },
    only: { type: "string" },
    property: { type: "string" },
    seed: { type: "string" },
    path: { type: "string" }
  }
})

const names = Object.keys(properties) as Array<PropertyName>

const runOnce = (name: PropertyName, seed: number, numRuns: number, path?: string): fc.RunDetails<unknown> =>
  fc.check(properties[name] as fc.IProperty<unknown>, {
    seed,
    numRuns,
    ...(path !== undefined ? { path, endOnFailure: true } : {})
  })

const report = (name: PropertyName, details: fc.RunDetails<unknown>) => {
  console.log(`\nFAILED: ${name}`)
  console.log(`  seed: ${details.seed}  path: ${JSON.stringify(details.counterexamplePath)}`)
  console.log(`  counterexample: ${fc.stringify(details.counterexample)}`)
  console.log(`  error: ${String(details.errorInstance ?? details.error).split("\n").slice(0, 3).join("\n         ")}`)
  console.log(
    `  replay: pnpm fuzz --property ${JSON.stringify(name)} --seed ${details.seed} --path ${JSON.stringify(details.counterexamplePath)}`
  )
}

if (values.property !== undefined) {
  // replay one counterexample
  const name = values.property as PropertyName
  if (!names.includes(name)) {
    console.error(`unknown property ${JSON.stringify(name)}; one of:\n  ${names.join("\n  ")}`)
    process.exit(2)
  }
  const seed = Number(values.seed ?? Date.now())
  const details = runOnce(name, seed, Number(values.batch), values.path)
  if (details.failed) {
    report(name, details)
    process.exit(1)
  }
  console.log(`${name}: ${details.numRuns} runs, no failure (seed ${seed})`)
  process.exit(0)
}

const minutes = Number(values.minutes)
const batch = Math.max(1, Number(values.batch))
if (!(minutes > 0)) {
  console.error("--minutes must be a positive number")
  process.exit(2)
}
const selected = names.filter((n) => values.only === undefined || n.includes(values.only))
if (selected.length === 0) {
  console.error(`no property matches ${JSON.stringify(values.only)}`)
  process.exit(2)
}

const stats = new Map(selected.map((n) => [n, { runs: 0, ms: 0, failed: false }]))
const start = Date.now()
const end = start + minutes * 60_000
let lastProgress = start
console.log(`fuzzing ${selected.length} properties for ${minutes} min, ${batch} runs per seed`)

while (Date.now() < end) {
  const active = selected.filter((n) => !stats.get(n)!.failed)
  if (active.length === 0) break
  for (const name of active) {
    if (Date.now() >= end) break
    const s = stats.get(name)!
    // a 64 KiB input costs about 100 small ones
    const numRuns = name.includes("64 KiB") ? Math.max(1, Math.ceil(batch / 10)) : batch
    const seed = (Math.random() * 2 ** 31) | 0
    const t0 = performance.now()
    const details = runOnce(name, seed, numRuns)
    s.ms += performance.now() - t0
    s.runs += details.numRuns
    if (details.failed) {
      s.failed = true
      report(name, details)
    }
  }
  if (Date.now() - lastProgress >= 30_000) {
    lastProgress = Date.now()
    const total = [...stats.values()].reduce((a, s) => a + s.runs, 0)
    console.log(`  ${Math.round((Date.now() - start) / 1000)} s: ${total} runs`)
  }
}

console.log(`\n${"property".padEnd(48)} ${"runs".padStart(10)} ${"runs/s".padStart(8)}  result`)
for (const [name, s] of stats) {
  const rate = s.ms > 0 ? Math.round(s.runs / (s.ms / 1000)) : 0
  console.log(`${name.padEnd(48)} ${String(s.runs).padStart(10)} ${String(rate).padStart(8)}  ${s.failed ? "FAILED" : "ok"}`)
}
const failed = [...stats.values()].filter((s) => s.failed).length
console.log(`\n${failed === 0 ? "no counterexample" : `${failed} propert${failed === 1 ? "y" : "ies"} failed`} in ${Math.round((Date.now() - start) / 1000)} s`)
process.exit(failed === 0 ? 0 : 1)
