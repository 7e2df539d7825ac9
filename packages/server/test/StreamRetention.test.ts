/**
 * What a connection keeps of a message once its handler is done with it. Effect's channel
 * executor holds the last chunk it passed on until it passes the next one, so a Stream consumer
 * that waited after a large message would keep that message for as long as the connection
 * stays quiet: with many connections, each its last large message. The `messages` Stream lets
 * go of a large batch before it waits. Checked with V8's own collector: the message the handler
 * saw must be collectable while its connection is still open and idle.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Option, Stream } from "effect"
import type { Scope } from "effect"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import type { Message, WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { Inbox, RELEASE_BYTES } from "../src/internal/inbox.js"
import type { InboxHost } from "../src/internal/inbox.js"
import { connect, recorder } from "./utils.js"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

/**
 * Whether `ref`'s target is gone after collections every 10 ms for up to `rounds` rounds (a
 * WeakRef is cleared after the job that collected it).
 */
const collected = (ref: WeakRef<object>, rounds = 20): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    for (let round = 0; round < rounds; round++) {
      yield* Effect.sleep(10)
      gc()
      yield* Effect.sleep(0)
      if (ref.deref() === undefined) return true
    }
    return false
  })

/**
 * A server whose handler is `form`, one client that sends one message of `size` bytes and gets
 * its echo, then stays open and silent; whether the message the handler saw was collected.
 */
const releasedAfterEcho = (
  size: number,
  form: (ws: Ws<undefined>, seen: (m: Message) => void) => Effect.Effect<unknown, unknown>,
  rounds = 20
): Effect.Effect<boolean, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const refs: Array<WeakRef<object>> = []
    const server = yield* WebSocketServer.make({
      handler: (ws) => form(ws, (m) => void refs.push(new WeakRef(m as Buffer)))
    })
    const client = yield* connect(server.url)
    client.send(Buffer.alloc(size, 7))
    yield* recorder(client).waitMessages(1)
    assert.strictEqual(refs.length, 1)
    const gone = yield* collected(refs[0]!, rounds)
    // the connection is still open: what was let go was let go while it idles
    assert.strictEqual(client.readyState, client.OPEN)
    assert.strictEqual(yield* server.connections, 1)
    return gone
  })

describe("a quiet connection does not keep its last large message", () => {
  it.scopedLive("Stream.runForEach(ws.messages, ws.send)", () =>
    Effect.gen(function*() {
      const gone = yield* releasedAfterEcho(256 * 1024, (ws, seen) =>
        Stream.runForEach(ws.messages, (m) => {
          seen(m)
          return ws.send(m)
        }))
      assert.isTrue(gone, "the 256 KiB message is still reachable while the connection idles")
    }))

  it.scopedLive("messages.pipe(Stream.map(f), Stream.run(ws.sink))", () =>
    Effect.gen(function*() {
      const gone = yield* releasedAfterEcho(256 * 1024, (ws, seen) =>
        ws.messages.pipe(
          Stream.map((m) => {
            seen(m)
            return m
          }),
          Stream.run(ws.sink)
        ))
      assert.isTrue(gone, "the 256 KiB message is still reachable while the connection idles")
    }))

  it.scopedLive("ws.run (no Stream: nothing to let go of)", () =>
    Effect.gen(function*() {
      const gone = yield* releasedAfterEcho(256 * 1024, (ws, seen) =>
        ws.run((m) => {
          seen(m)
          ws.unsafeSend(m)
        }))
      assert.isTrue(gone, "the 256 KiB message is still reachable while the connection idles")
    }))

  it.scopedLive("a small message is let go by the deadline sweep (within a tick: 1 s here)", () =>
    Effect.gen(function*() {
      const gone = yield* releasedAfterEcho(1000, (ws, seen) =>
        Stream.runForEach(ws.messages, (m) => {
          seen(m)
          return ws.send(m)
        }), 300)
      assert.isTrue(gone, "the 1000-byte message is still reachable 3 s after the connection went quiet")
    }))
})

/** The inbox with a host that ignores what it is told. */
const quietHost = (): InboxHost => ({
  inboxHighWaterMark: 16 * 1024 * 1024,
  setReading: () => {},
  caughtUp: () => {},
  endFailure: () => Option.none(),
  fail: () => {}
})

/** A pull that has not completed after a few turns of the scheduler (it waits for the inbox). */
const stillWaiting = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
    return Option.isNone(yield* Fiber.poll(fiber))
  })

describe("the messages Stream lets go of its last batch", () => {
  it.live("at once, after a batch of exactly RELEASE_BYTES: an empty chunk before the wait", () =>
    Effect.gen(function*() {
      const inbox = new Inbox(quietHost())
      const pull = yield* Stream.toPull(inbox.messages)
      inbox.push("x".repeat(RELEASE_BYTES))
      inbox.settle()
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* pull).map((m) => m.length), [RELEASE_BYTES])
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* pull), [], "the empty chunk comes without a wait")
      const next = yield* Effect.fork(pull)
      assert.isTrue(yield* stillWaiting(next), "a second empty chunk instead of a wait")
      inbox.push("y")
      inbox.settle()
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Fiber.join(next)), ["y"])
    }).pipe(Effect.scoped))

  it.live("after a smaller batch, only when the sweep finds the consumer waiting, and once", () =>
    Effect.gen(function*() {
      const inbox = new Inbox(quietHost())
      const pull = yield* Stream.toPull(inbox.messages)
      // the sweep before anything was handed out, and while the consumer is busy: nothing
      inbox.releaseHeld()
      inbox.push("x".repeat(RELEASE_BYTES - 1))
      inbox.settle()
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* pull).map((m) => m.length), [RELEASE_BYTES - 1])
      inbox.releaseHeld()
      const waiting = yield* Effect.fork(pull)
      assert.isTrue(yield* stillWaiting(waiting), "a batch below RELEASE_BYTES was followed by an empty chunk at once")
      inbox.releaseHeld()
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Fiber.join(waiting)), [], "the sweep hands the waiting consumer an empty chunk")
      // nothing is held any more: the next sweep leaves the consumer waiting
      const again = yield* Effect.fork(pull)
      assert.isTrue(yield* stillWaiting(again), "a pull after the empty chunk did not wait")
      inbox.releaseHeld()
      assert.isTrue(yield* stillWaiting(again), "an empty chunk for a consumer that held nothing")
      inbox.push("z")
      inbox.settle()
      assert.deepStrictEqual(Chunk.toReadonlyArray(yield* Fiber.join(again)), ["z"])
    }).pipe(Effect.scoped))
})
