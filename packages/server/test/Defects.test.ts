/**
 * The connection's lifecycle under load and after its peer left, over real sockets with the
 * `ws` client: a burst far past the inbox high-water mark pauses the socket and must resume
 * it (Stream form and `run` form), and a handler that ignores a closed connection is
 * interrupted at the close timeout.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Metric, Schedule, Stream } from "effect"
import * as Metrics from "../src/Metrics.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connect, recorder, within } from "./utils.js"

const inboxHighWaterMark = 64 * 1024
const count = 200
const size = 16 * 1024

/** Message i: its index in the first 4 bytes, then filler; 200 x 16 KiB = 50 x the high-water mark. */
const message = (i: number): Buffer => {
  const b = Buffer.alloc(size, i & 0xff)
  b.writeUInt32BE(i, 0)
  return b
}
const indexOf = (m: string | Uint8Array): number =>
  typeof m === "string" ? -1 : Buffer.from(m.buffer, m.byteOffset, m.byteLength).readUInt32BE(0)

const backpressureEvents = Effect.map(Metric.value(Metrics.backpressureEvents), (s) => s.count)

/** Sends the burst from a `ws` client and waits (bounded) until the handler saw all of it. */
const burst = (url: string, done: Deferred.Deferred<ReadonlyArray<number>>, form: string) =>
  Effect.gen(function*() {
    const before = yield* backpressureEvents
    const client = yield* connect(url)
    for (let i = 0; i < count; i++) client.send(message(i))
    const seen = yield* Deferred.await(done).pipe(
      within("10 seconds", `all ${count} messages of the burst reaching the ${form} (the paused socket never resumed?)`)
    )
    assert.deepStrictEqual(seen, Array.from({ length: count }, (_, i) => i), "every message, in order")
    // the burst did pause the socket, so the resume path was the one exercised
    assert.isAbove((yield* backpressureEvents) - before, 0, "the inbox paused the socket")
    // and the connection still works both ways after the burst
    const rec = recorder(client)
    client.send("ping?")
    yield* rec.waitMessages(1).pipe(within("5 seconds", "the answer to a message sent after the burst"))
    assert.strictEqual(rec.messages[0]!.data, "pong")
  })

describe("inbox backpressure: a burst of 50 x the inbox high-water mark", () => {
  it.scopedLive("Stream handler with a slow consumer: every message arrives in order, then the connection goes on", () =>
    Effect.gen(function*() {
      const done = yield* Deferred.make<ReadonlyArray<number>>()
      const seen: Array<number> = []
      const server = yield* WebSocketServer.make({
        inboxHighWaterMark,
        handler: (ws) =>
          Stream.runForEach(ws.messages, (m) =>
            typeof m === "string"
              ? ws.send("pong")
              : Effect.zipRight(
                Effect.sleep(1),
                Effect.suspend(() => {
                  seen.push(indexOf(m))
                  return seen.length === count ? Deferred.succeed(done, seen) : Effect.void
                })
              ))
      })
      yield* burst(server.url, done, "Stream handler")
    }))

  it.scopedLive("run with callbacks returning slow Effects: every message arrives in order, then the connection goes on", () =>
    Effect.gen(function*() {
      const done = yield* Deferred.make<ReadonlyArray<number>>()
      const order: Array<number> = []
      let finished = 0
      const server = yield* WebSocketServer.make({
        inboxHighWaterMark,
        handler: (ws) =>
          ws.run((m) => {
            if (typeof m === "string") return void ws.unsafeSend("pong")
            // the callback is called in arrival order; its Effect holds the message for a while
            order.push(indexOf(m))
            return Effect.zipRight(
              Effect.sleep(20),
              Effect.suspend(() => ++finished === count ? Deferred.succeed(done, order) : Effect.void)
            )
          })
      })
      yield* burst(server.url, done, "run callback's Effects")
    }))
})

describe("a handler that ignores its closed connection", () => {
  it.scopedLive("is interrupted within the close timeout after the peer's TCP closed", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const server = yield* WebSocketServer.make({
        closeTimeout: 300,
        keepaliveInterval: 0,
        handler: () =>
          Deferred.succeed(started, undefined).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
          )
      })
      const client = yield* connect(server.url)
      yield* Deferred.await(started).pipe(within("5 seconds", "the handler starting"))
      // the peer leaves without a closing handshake
      client.terminate()
      yield* server.connections.pipe(
        Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("10 millis") }),
        within("5 seconds", "the server seeing the TCP close")
      )
      yield* Deferred.await(interrupted).pipe(
        within("3 seconds", "the handler's interruption after the 300 ms close timeout")
      )
    }))
})
