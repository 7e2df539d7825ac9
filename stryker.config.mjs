// StrykerJS over one package at a time; `pnpm mutate` (scripts/mutate.mjs) sets MUTATE_PACKAGE.
// Reports and the incremental file go under reports/mutation/<package>/ (gitignored).
import { fileURLToPath } from "node:url"

// pnpm keeps Stryker's own node_modules apart from the root's: name the plugins by their paths.
const plugin = (name) => fileURLToPath(import.meta.resolve(name))
const pkg = process.env.MUTATE_PACKAGE ?? "protocol"
const out = `reports/mutation/${pkg}`

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  packageManager: "pnpm",
  plugins: [plugin("@stryker-mutator/vitest-runner"), plugin("@stryker-mutator/typescript-checker")],
  testRunner: "vitest",
  // the workspace's config: packages resolve to their sources through the "source" condition
  vitest: { configFile: "vitest.mutate.config.ts", related: false },
  checkers: ["typescript"],
  tsconfigFile: "stryker.tsconfig.json",
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  coverageAnalysis: "perTest",
  // A static mutant (a module-level value, computed once at import) needs every test rerun in a
  // fresh process; on two shared cores that is half of a run's time for a few percent of the
  // mutants. They are reported as Ignored, outside the score (MUTATE_STATIC=1 includes them).
  ignoreStatic: process.env.MUTATE_STATIC !== "1",
  mutate: [`packages/${pkg}/src/**/*.ts`],
  // two shared cores
  concurrency: Number(process.env.MUTATE_CONCURRENCY ?? 1),
  timeoutMS: 20_000,
  timeoutFactor: 2,
  // the initial run of every covering test: the server package's took more than Stryker's
  // default 5 minutes on two loaded cores, and the whole run then stopped with "timed out"
  dryRunTimeoutMinutes: 30,
  reporters: ["html", "json", "progress", "clear-text"],
  htmlReporter: { fileName: `${out}/index.html` },
  jsonReporter: { fileName: `${out}/mutation.json` },
  incrementalFile: `${out}/incremental.json`,
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
  // .venv: the conformance run's Python venv (its lib64 link would break the sandbox copy)
  ignorePatterns: ["reports", "bench/results", "test-output", "**/dist", "packages/autobahn/wstest", ".venv"],
  thresholds: { high: 90, low: 80, break: null }
}
