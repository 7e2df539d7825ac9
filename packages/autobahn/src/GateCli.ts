/**
 * The `autobahn:gate` command over existing report directories.
 *
 * @since 0.1.0
 */
import { resolve } from "node:path"
import type { FileSystem, Path } from "@effect/platform"
import { Effect, Either } from "effect"
import * as Cases from "./Cases.js"
import * as Gate from "./Gate.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface GateCliOptions {
  readonly dirs: ReadonlyArray<string>
  readonly selection: Cases.Selection
  readonly transport: Gate.Transport | undefined
  readonly writeSummary: boolean
}

/**
 * @since 0.1.0
 * @category cli
 */
export const USAGE = `Usage: pnpm autobahn:gate [options] <reportDir>...

Gates Autobahn reports (the directory holding index.json, from kosoku or from wstest's fuzzingclient)
and writes <reportDir>/SUMMARY.md. Every agent in each index must pass.

Options:
  -i, --include <case|glob>   expect only these cases (repeatable; default: the whole suite)
  -x, --exclude <case|glob>   do not expect or judge these (repeatable)
      --transport ws|wss|client  which seed cases to name (default: from the directory name ws/, wss/ or client/)
      --no-summary-file       do not write SUMMARY.md
  -h, --help                  this text

Exclusions: none. Without -i/-x every case of ${Cases.suite.name} (${Cases.suite.cases.length}, 1.* to 13.*) is
expected and judged; with them, exactly the selected cases are.`

/**
 * Parses `autobahn:gate` arguments; `Left` carries a usage error (or "help").
 *
 * @since 0.1.0
 * @category cli
 */
export const parseArgs = (argv: ReadonlyArray<string>): Either.Either<GateCliOptions, string> => {
  const dirs: Array<string> = []
  const include: Array<string> = []
  const exclude: Array<string> = []
  let transport: Gate.Transport | undefined
  let writeSummary = true
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    switch (arg) {
      case "--":
        break
      case "-h":
      case "--help":
        return Either.left("help")
      case "-i":
      case "--include":
      case "-x":
      case "--exclude": {
        const v = argv[++i]
        if (v === undefined) return Either.left(`${arg} needs a case id or glob`)
        ;(arg === "-i" || arg === "--include" ? include : exclude).push(v)
        break
      }
      case "--transport": {
        const v = argv[++i]
        if (v !== "ws" && v !== "wss" && v !== "client") return Either.left("--transport takes ws, wss or client")
        transport = v
        break
      }
      case "--no-summary-file":
        writeSummary = false
        break
      default:
        if (arg.startsWith("-")) return Either.left(`unknown option ${arg}`)
        dirs.push(resolve(arg))
    }
  }
  if (dirs.length === 0) return Either.left("give at least one report directory")
  return Either.right({
    dirs,
    selection: { include, exclude },
    transport,
    writeSummary
  })
}

/**
 * Gates every directory, prints each summary and the overall verdict; succeeds
 * with whether all passed.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (options: GateCliOptions): Effect.Effect<boolean, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const reports: Array<Gate.GateReport> = []
    for (const dir of options.dirs) {
      const report = yield* Gate.gateDirectory(dir, {
        selection: options.selection,
        transport: options.transport,
        writeSummary: options.writeSummary
      })
      reports.push(report)
      console.log(Gate.renderMarkdown(report))
    }
    console.log(Gate.renderOverall(reports).trimEnd())
    return reports.every((r) => r.passed)
  })
