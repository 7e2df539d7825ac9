// `ws` echo server. Run with WS_NO_BUFFER_UTIL=1 for the plain-JavaScript masking path; with
// BENCH_TLS_KEY/BENCH_TLS_CERT it serves wss:// on a node:https server.
//
// --effect (`ws-in-effect`): the same echo in a process that has loaded `effect` and
// `@effect/platform-node` and runs a fiber, as an Effect application around it would; the echo
// itself runs no Effect. What `ws`'s memory figures become in the process our server runs in.
import { createServer } from "node:https"
import { WebSocketServer } from "ws"
import { exitWithParent, host, port, tlsOptions } from "./common.mjs"

exitWithParent()
if (process.argv.includes("--effect")) {
  const { Effect } = await import("effect")
  const { NodeRuntime } = await import("@effect/platform-node")
  NodeRuntime.runMain(Effect.never)
}
const options = { perMessageDeflate: true, maxPayload: 64 * 1024 * 1024 }
const listening = () => console.log(`listening ${port} pid=${process.pid}${tlsOptions ? " tls" : ""}`)
const wss = tlsOptions === undefined
  ? new WebSocketServer({ host, port, ...options })
  : new WebSocketServer({ server: createServer(tlsOptions).listen(port, host, listening), ...options })
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }))
  ws.on("error", () => {})
})
if (tlsOptions === undefined) wss.on("listening", listening)
