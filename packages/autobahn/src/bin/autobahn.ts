/**
 * `pnpm autobahn`: the scripted conformance run. Exit 0 when the gate passes,
 * 1 when it does not, 2 on a usage error or when the run could not happen. The
 * last line is `autobahn: N passed, M failed` in every case but a usage error.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Either } from "effect"
import * as Gate from "../Gate.js"
import * as Runner from "../Runner.js"

const parsed = Runner.parseArgs(process.argv.slice(2))
if (Either.isLeft(parsed)) {
  if (parsed.left === "help") {
    console.log(Runner.USAGE)
    process.exit(0)
  }
  console.error(`autobahn: ${parsed.left}\n\n${Runner.USAGE}`)
  process.exit(2)
}

Runner.run(parsed.right).pipe(
  Effect.flatMap((result) => Effect.sync(() => (process.exitCode = result.passed ? 0 : 1))),
  Effect.catchAll((error) =>
    Effect.sync(() => {
      console.error(`[autobahn] the run could not complete: ${error.message}`)
      console.log("Verdict: FAIL (the run could not complete)")
      console.log(Gate.tallyLine(Runner.abortedTally(parsed.right)))
      process.exitCode = 2
    })
  ),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: false })
)
