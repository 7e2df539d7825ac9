import { MessageSchema, SocketInterop, WebSocketClient } from "@effect-websocket/client"
import * as Socket from "@effect/platform/Socket"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Schema, Stream } from "effect"
import { ourServer, wsServer } from "./helpers.js"

const decoder = new TextDecoder()

describe("@effect/platform Socket.makeWebSocket on this client", () => {
  for (const [name, server] of [["this project's server", () => ourServer()], ["ws's server", () => wsServer()]] as const) {
    it.scopedLive(`writes and reads through Socket.makeWebSocket (${name})`, () =>
      Effect.gen(function*() {
        const url = yield* server()
        const socket = yield* Socket.makeWebSocket(url).pipe(
          Effect.provide(SocketInterop.layerWebSocketConstructor())
        )
        const write = yield* socket.writer
        const got: Array<string> = []
        const done = yield* Deferred.make<void>()
        const reader = yield* Effect.fork(socket.run((data) => {
          got.push(decoder.decode(data))
          if (got.length === 2) Deferred.unsafeDone(done, Effect.void)
        }))
        yield* write("text")
        yield* write(new TextEncoder().encode("bytes"))
        yield* Deferred.await(done)
        assert.deepStrictEqual(got, ["text", "bytes"])
        yield* write(new Socket.CloseEvent(1000, "bye"))
        yield* reader.await
      }))
  }

  it.scopedLive("an unreachable URL fails the socket's run", () =>
    Effect.gen(function*() {
      const socket = yield* Socket.makeWebSocket("ws://127.0.0.1:1/").pipe(
        Effect.provide(SocketInterop.layerWebSocketConstructor())
      )
      const error = yield* Effect.flip(socket.runRaw(() => {}))
      assert.instanceOf(error, Socket.SocketGenericError)
    }))

  it.scopedLive("toSocket views a client connection as a Socket", () =>
    Effect.gen(function*() {
      const ws = yield* WebSocketClient.connect(yield* ourServer())
      const socket = SocketInterop.toSocket(ws)
      const write = yield* socket.writer
      yield* write("via toSocket")
      const got: Array<string | Uint8Array> = []
      yield* socket.runRaw((m) => {
        got.push(m)
        return Effect.asVoid(ws.close())
      })
      assert.deepStrictEqual(got, ["via toSocket"])
    }))
})

describe("MessageSchema on the client", () => {
  const Msg = Schema.Struct({ n: Schema.Number })
  it.scopedLive("typed messages round trip; a message that does not decode is a MessageDecodeError", () =>
    Effect.gen(function*() {
      const ws = yield* WebSocketClient.connect(yield* ourServer())
      const typed = MessageSchema.make(ws, { incoming: Msg, outgoing: Msg })
      yield* typed.send({ n: 1 })
      const first = yield* Stream.runCollect(Stream.take(typed.messages, 1))
      assert.deepStrictEqual(Chunk.toReadonlyArray(first), [{ n: 1 }])
      yield* ws.send("{\"n\":\"x\"}")
      const error = yield* Effect.flip(Stream.runDrain(typed.messages))
      assert.instanceOf(error, MessageSchema.MessageDecodeError)
    }))
})
