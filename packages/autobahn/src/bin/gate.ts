/**
 * `pnpm autobahn:gate [options] <reportDir>...`: gates existing Autobahn
 * reports (kosoku's or wstest's index.json). Exit 0 when every report passes,
 * 1 when one does not, 2 on a usage error.
 */
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Either } from "effect"
import * as GateCli from "../GateCli.js"

const parsed = GateCli.parseArgs(process.argv.slice(2))
if (Either.isLeft(parsed)) {
  if (parsed.left === "help") {
    console.log(GateCli.USAGE)
    process.exit(0)
  }
  console.error(`autobahn:gate: ${parsed.left}\n\n${GateCli.USAGE}`)
  process.exit(2)
}

GateCli.run(parsed.right).pipe(
  Effect.flatMap((passed) => Effect.sync(() => (process.exitCode = passed ? 0 : 1))),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain
)
