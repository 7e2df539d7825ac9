import { WebSocketClient } from "@effect-websocket/client"
import { BufferFullError, WebSocketClosedError } from "@effect-websocket/client/Errors"
import { WebSocketServer } from "@effect-websocket/server"
import type { Message } from "@effect-websocket/server/WebSocket"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Schedule, Scope, Stream } from "effect"
import * as Net from "node:net"

const freePort = Effect.async<number>((resume) => {
  const s = Net.createServer().listen(0, "127.0.0.1", () => {
    const p = (s.address() as Net.AddressInfo).port
    s.close(() => resume(Effect.succeed(p)))
  })
})

/** This project's server on a fixed port, recording what it receives, until `scope` closes. */
const startServer = (port: number, received: Array<Message>, scope: Scope.Scope) =>
  Scope.extend(
    WebSocketServer.make({
      host: "127.0.0.1",
      port,
      closeTimeout: 200,
      handler: (ws) => Stream.runForEach(ws.messages, (m) => Effect.zipRight(Effect.sync(() => received.push(m)), ws.send(m)))
    }),
    scope
  ).pipe(Effect.orDie)

/** Polls a condition, bounded (2 s). */
const until = (pred: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200 && !pred(); i++) yield* Effect.sleep(10)
  })

const waitFor = <S extends { readonly _tag: string }>(states: Stream.Stream<S>, tag: S["_tag"]) =>
  Stream.runDrain(Stream.takeUntil(states, (s) => s._tag === tag))

describe("WebSocketClient.reconnecting", () => {
  it.scopedLive("reconnects after the server restarts: onConnect re-runs, sends made meanwhile go out within the bound", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const received: Array<Message> = []
      let first = yield* Scope.make()
      yield* startServer(port, received, first)
      let connects = 0
      const client = yield* WebSocketClient.reconnecting(`ws://127.0.0.1:${port}`, {
        schedule: Schedule.spaced("30 millis"),
        bufferSize: 3,
        onConnect: (ws) => Effect.zipRight(Effect.sync(() => connects++), Effect.orDie(ws.send(`hello ${connects}`)))
      })
      yield* waitFor(client.states, "Open")
      yield* client.send("a")
      const echoes = yield* Effect.fork(Stream.runCollect(Stream.take(client.messages, 7)))

      // the server goes away
      yield* until(() => received.length >= 2)
      yield* Scope.close(first, Exit.void)
      yield* waitFor(client.states, "Disconnected")
      yield* client.send("b")
      yield* client.send("c")
      yield* client.send("d")
      const full = yield* Effect.flip(client.send("e"))
      assert.instanceOf(full, BufferFullError)
      assert.strictEqual(full.limit, 3)

      // it comes back on the same port
      first = yield* Scope.make()
      yield* startServer(port, received, first)
      yield* waitFor(client.states, "Open")
      assert.strictEqual(connects, 2)
      yield* client.send("f")
      yield* until(() => received.length >= 7)
      assert.deepStrictEqual(received, ["hello 0", "a", "hello 1", "b", "c", "d", "f"])
      // the echoes of both connections arrive on the one stream
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Effect.fromFiber(echoes)), received)

      yield* client.close()
      assert.strictEqual((yield* client.state)._tag, "Closed")
      assert.instanceOf(yield* Effect.flip(client.send("late")), WebSocketClosedError)
      yield* Scope.close(first, Exit.void)
    }))

  it.scopedLive("the state is Closed when the schedule gives up", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const client = yield* WebSocketClient.reconnecting(`ws://127.0.0.1:${port}`, {
        schedule: Schedule.recurs(2).pipe(Schedule.addDelay(() => "10 millis"))
      })
      const tags = yield* Stream.runCollect(
        Stream.takeUntil(client.states, (s) => s._tag === "Closed").pipe(Stream.map((s) => s._tag))
      )
      assert.deepStrictEqual(Chunk.toReadonlyArray(tags).filter((t) => t !== "Connecting").slice(-1), ["Closed"])
      assert.isTrue(Chunk.toReadonlyArray(tags).filter((t) => t === "Disconnected").length >= 1)
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Stream.runCollect(client.messages)), [])
    }))
})
