/**
 * Server side of the network-fault test (test/Netns.test.ts), run inside a network
 * namespace with `ip netns exec`: an echo WebSocketServer on `--host`, with a small
 * keepalive. Reports on stdout, one JSON object per line:
 *   {"event":"ready","port":N}
 *   {"event":"closed","id":N,"at":ms,"code":N,"wasClean":bool}   (one per connection)
 *   {"event":"stats","connections":N,"opened":N}                  (answer to "stats" on stdin)
 * Exits on "stop" or when stdin closes.
 */
import { Effect, Exit, Scope, Stream } from "effect"
import { createInterface } from "node:readline"
import { parseArgs } from "node:util"
import * as WebSocketServer from "../src/WebSocketServer.js"

const { values } = parseArgs({
  options: {
    host: { type: "string" },
    keepaliveInterval: { type: "string", default: "1000" },
    keepaliveTimeout: { type: "string", default: "500" }
  }
})

const say = (o: object) => process.stdout.write(JSON.stringify(o) + "\n")
let opened = 0

const main = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const server = yield* WebSocketServer.make({
    host: values.host,
    keepaliveInterval: Number(values.keepaliveInterval),
    keepaliveTimeout: Number(values.keepaliveTimeout),
    closeTimeout: 500,
    handler: (ws) =>
      Effect.gen(function*() {
        opened++
        yield* Effect.forkDaemon(
          Effect.exit(ws.closed).pipe(
            Effect.flatMap((exit) =>
              Effect.sync(() =>
                say({
                  event: "closed",
                  id: ws.id,
                  at: Date.now(),
                  code: Exit.isSuccess(exit) ? exit.value.code : -1,
                  wasClean: Exit.isSuccess(exit) && exit.value.wasClean
                })
              )
            )
          )
        )
        yield* Stream.runForEach(ws.messages, (m) => ws.send(m))
      })
  }).pipe(Scope.extend(scope))
  say({ event: "ready", port: server.address.port })
  yield* Effect.async<void>((resume) => {
    const lines = createInterface({ input: process.stdin })
    lines.on("line", (line) => {
      if (line === "stats") {
        Effect.runPromise(server.connections).then((connections) => say({ event: "stats", connections, opened }))
      } else if (line === "stop") resume(Effect.void)
    })
    lines.on("close", () => resume(Effect.void))
  })
  yield* Scope.close(scope, Exit.void).pipe(Effect.timeout(2_000), Effect.ignore)
})

Effect.runPromise(main).then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
