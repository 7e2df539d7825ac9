// What Effect users have today: @effect/platform-node's NodeSocketServer.layerWebSocket (ws underneath),
// with the idiomatic echo handler over the platform Socket.
import { SocketServer } from "@effect/platform"
import { NodeRuntime, NodeSocketServer } from "@effect/platform-node"
import { Effect } from "effect"
import { exitWithParent, host, port } from "./common.mjs"

exitWithParent()

const program = Effect.gen(function* () {
  const server = yield* SocketServer.SocketServer
  yield* Effect.sync(() => console.log(`listening ${port} pid=${process.pid}`))
  yield* server.run((socket) =>
    Effect.gen(function* () {
      const write = yield* socket.writer
      // runRaw keeps text as text (run would turn it into bytes and echo Binary frames).
      yield* socket.runRaw((data) => write(data))
    }).pipe(Effect.scoped, Effect.catchAll(() => Effect.void))
  )
})

program.pipe(
  Effect.provide(NodeSocketServer.layerWebSocket({ host, port, perMessageDeflate: true, maxPayload: 64 * 1024 * 1024 })),
  NodeRuntime.runMain
)
