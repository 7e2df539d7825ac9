/**
 * `client-testee --url ws://127.0.0.1:9001 [--agent effect-websocket-client] [--parallelism 1]`:
 * runs every case of a fuzzing server with the client (`--parallelism` at a time), then asks
 * it for its reports. Exit 0 when the
 * run went through (the verdicts are the gate's), 1 when it could not.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { parseArgs } from "node:util"
import * as ClientTestee from "../ClientTestee.js"

const { values } = parseArgs({
  options: {
    url: { type: "string", default: "ws://127.0.0.1:9001" },
    agent: { type: "string", default: "effect-websocket-client" },
    parallelism: { type: "string", default: "1" }
  }
})

const main = ClientTestee.runAll(values.url!.replace(/\/$/, ""), values.agent!, (n, of) => {
  if (n === 1 || n % 25 === 0 || n === of) console.log(`case ${n}/${of}`)
}, Number(values.parallelism)).pipe(
  Effect.tap((count) => Console.log(`done: ${count} cases`)),
  Effect.tapError((e) => Console.error(`client testee: ${e.message}`))
)

NodeRuntime.runMain(main)
