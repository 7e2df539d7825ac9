// Not a WebSocket server: an Effect program with @effect/platform-node loaded and running, and no
// server, the baseline `pnpm bench:footprint` subtracts (what an application pays before it adds
// a WebSocket server). It does what the echo servers do around their server: NodeRuntime.runMain.
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { exitWithParent, port } from "./common.mjs"

exitWithParent()
NodeRuntime.runMain(Effect.zipRight(Console.log(`listening ${port} pid=${process.pid} (no server)`), Effect.never))
