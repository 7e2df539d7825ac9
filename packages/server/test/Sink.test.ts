/**
 * The Sink form of a handler: `ws.messages.pipe(Stream.map(f), Stream.run(ws.sink))`. Each
 * chunk is queued whole and written with one flush; the Sink suspends above the high-water
 * mark like `send`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Option, Stream } from "effect"
import { WebSocketClosedError } from "../src/Errors.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connect, recorder } from "./utils.js"

const within = <A, E, R>(ms: number, what: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: ms, onTimeout: () => new Error(`timed out after ${ms} ms waiting for ${what}`) })

describe("ws.sink", () => {
  it.live("a pipeline into the Sink answers every message, in order", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          ws.messages.pipe(
            Stream.map((m) => (typeof m === "string" ? m.toUpperCase() : m)),
            Stream.run(ws.sink)
          )
      })
      const client = yield* connect(server.url)
      for (let i = 0; i < 500; i++) client.send(`message ${i}`)
      const seen = recorder(client)
      yield* within(10_000, "500 answers", seen.waitMessages(500))
      assert.deepStrictEqual(seen.messages.map((m) => m.data), Array.from({ length: 500 }, (_, i) => `MESSAGE ${i}`))
    }).pipe(Effect.scoped))

  it.live("the Sink fails with WebSocketClosedError once the connection has closed", () =>
    Effect.gen(function*() {
      const result = yield* Deferred.make<Exit.Exit<void, WebSocketClosedError>>()
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            yield* Effect.ignore(ws.closed)
            yield* Deferred.succeed(result, yield* Effect.exit(Stream.run(Stream.make("too late", "and later"), ws.sink)))
          })
      })
      const client = yield* connect(server.url)
      client.close(1000)
      const exit = yield* within(5_000, "the Sink's end", Deferred.await(result))
      assert.isTrue(Exit.isFailure(exit), "a Sink that could not send did not fail")
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        assert.isTrue(Option.isSome(failure) && failure.value instanceof WebSocketClosedError)
      }
    }).pipe(Effect.scoped))

  it.live("the Sink suspends above the high-water mark while the peer does not read", () =>
    Effect.gen(function*() {
      const highWaterMark = 64 * 1024
      const chunk = 16
      const size = 16 * 1024
      let worst = 0
      const server = yield* WebSocketServer.make({
        highWaterMark,
        handler: (ws) =>
          Stream.range(1, 600).pipe(
            Stream.map(() => Buffer.alloc(size)),
            Stream.rechunk(chunk),
            Stream.tap(() => Effect.map(ws.bufferedAmount, (n) => (worst = Math.max(worst, n)))),
            Stream.run(ws.sink)
          )
      })
      const client = yield* connect(server.url)
      client.pause() // the socket fills up, the Sink waits for 'drain'
      yield* Effect.sleep(300)
      const seen = recorder(client)
      assert.isBelow(seen.messages.length, 600, "nothing more than the buffers hold has been sent")
      client.resume()
      yield* within(10_000, "all 600 messages", seen.waitMessages(600))
      // at most one chunk beyond the mark is ever queued
      assert.isAtMost(worst, highWaterMark + chunk * (size + 4))
      assert.isTrue(seen.messages.every((m) => Buffer.isBuffer(m.data) && m.data.length === size))
    }).pipe(Effect.scoped))
})

