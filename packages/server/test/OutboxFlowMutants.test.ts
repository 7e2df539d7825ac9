/**
 * The outbox's send path after a message is queued, driven with a real protocol core, a fake
 * host that records what it is told (forks, touches, closing, terminate) and a fake transport
 * whose buffer and writes the test controls: backpressure and the writer fiber (when a sender
 * waits, when a writer is forked, when waiting senders wake, what an interrupted sender leaves
 * behind), batching of writes (one cork per tick for prebuilt frames, no cork for nothing, no
 * write after the transport ended, no reader-turn flush on the next tick), the touch that only
 * data messages cause, closing TCP once, and the send-buffer limit. Each test pins down
 * surviving mutants of a StrykerJS run over `src/internal/outbox.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Connection } from "@effect-websocket/protocol/Connection"
import { Cause, Effect, Exit, Fiber, FiberId } from "effect"
import type { Duplex } from "node:stream"
import type { ProtocolError } from "../src/Errors.js"
import { Outbox } from "../src/internal/outbox.js"
import type { OutboxHost } from "../src/internal/outbox.js"
import type { Resolved } from "../src/internal/options.js"
import { waitUntil, within } from "./utils.js"

/** A transport whose buffer the test sets: writes stay buffered unless `accept` is on. */
class FakeTransport {
  writableLength = 0
  writableCorked = 0
  writableEnded = false
  /** Writes leave at once (the buffer does not grow). */
  accept = false
  readonly writes: Array<Uint8Array> = []
  corks = 0
  uncorks = 0
  ends = 0
  write(chunk: Uint8Array): boolean {
    this.writes.push(chunk)
    if (!this.accept) this.writableLength += chunk.byteLength
    return true
  }
  cork(): void {
    this.corks++
    this.writableCorked++
  }
  uncork(): void {
    this.uncorks++
    if (this.writableCorked > 0) this.writableCorked--
  }
  end(): void {
    this.ends++
    this.writableEnded = true
  }
}

interface FakeHost extends OutboxHost {
  readonly transport: Duplex
  readonly fake: FakeTransport
  transportEnded: boolean
  readonly options: Resolved & { highWaterMark: number; maxBufferedBytes: number }
  closings: number
  touches: number
  readonly errors: Array<ProtocolError>
  /** Writer fibers forked (or, with `defer`, writer effects handed over and not run). */
  readonly forked: Array<Effect.Effect<void>>
  /** The writer fibers started (without `defer`). */
  readonly fibers: Array<Fiber.RuntimeFiber<void>>
  defer: boolean
}

const makeHost = (highWaterMark = 1024, maxBufferedBytes = 1 << 20): FakeHost => {
  const fake = new FakeTransport()
  const host: FakeHost = {
    transport: fake as unknown as Duplex,
    fake,
    core: new Connection({ role: "server", maxMessageSize: 1 << 20 }),
    options: { highWaterMark, maxBufferedBytes } as unknown as FakeHost["options"],
    transportEnded: false,
    closings: 0,
    touches: 0,
    errors: [],
    forked: [],
    fibers: [],
    defer: false,
    closing() {
      host.closings++
    },
    terminate(error) {
      host.errors.push(error)
    },
    touch() {
      host.touches++
    },
    fork(effect) {
      host.forked.push(effect)
      if (!host.defer) host.fibers.push(Effect.runFork(effect))
    }
  }
  return host
}

/** After every `process.nextTick` callback queued so far has run. */
const afterTicks = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** The senders waiting for the writer (private state; only for what nothing else shows). */

/** An outbox over a host with a high-water mark of 10 bytes, holding one 100-byte message. */
const overMark = () => {
  const host = makeHost(10)
  const outbox = new Outbox(host)
  assert.isTrue(outbox.send(payload(100)))
  return { host, outbox }
}
const waiters = (outbox: Outbox): number =>
  (outbox as unknown as { drainWaiters: Array<unknown> | undefined }).drainWaiters?.length ?? 0

/** The writer fiber waits for `drain` (private state). */
const writerWaits = (outbox: Outbox): boolean =>
  (outbox as unknown as { writerWaiting: unknown }).writerWaiting !== undefined

const payload = (n: number) => "x".repeat(n)

describe("Outbox flow", () => {
  it.effect("a prebuilt frame held behind an offloaded message counts in bufferedBytes", () =>
    Effect.sync(() => {
      const host = makeHost()
      const core = host.core as Connection & {
        offloads: Connection["offloads"]
        compressLater: Connection["compressLater"]
      }
      core.offloads = () => true
      core.compressLater = (data) => typeof data === "string" ? Buffer.from(data) : data
      const outbox = new Outbox(host)
      assert.isTrue(outbox.send(payload(10)))
      assert.strictEqual(outbox.bufferedBytes(), 10)
      outbox.writePrebuilt(new Uint8Array(7))
      assert.strictEqual(outbox.bufferedBytes(), 17)
      assert.strictEqual(host.fake.writes.length, 0)
    }))

  it.live("writePrebuiltLater corks once per tick, and not at all once the transport ended", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const outbox = new Outbox(host)
      outbox.writePrebuiltLater(new Uint8Array(3))
      outbox.writePrebuiltLater(new Uint8Array(4))
      assert.strictEqual(host.fake.corks, 1)
      assert.strictEqual(host.fake.writes.length, 2)
      yield* afterTicks
      assert.strictEqual(host.fake.uncorks, 1)
      assert.strictEqual(host.fake.writableCorked, 0)

      host.transportEnded = true
      outbox.writePrebuiltLater(new Uint8Array(5))
      assert.strictEqual(host.fake.corks, 1)
      assert.strictEqual(host.fake.writes.length, 2)
    }))

  it.live("backpressure at exactly the mark completes without flushing", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const outbox = new Outbox(host)
      assert.isTrue(outbox.send(payload(50)))
      host.options.highWaterMark = outbox.bufferedBytes()
      yield* outbox.backpressure()
      assert.strictEqual(host.fake.writes.length, 0, "left to the next-tick flush")
      assert.strictEqual(host.forked.length, 0)
      yield* afterTicks
      assert.strictEqual(host.fake.writes.length, 1)
    }))

  it.effect("backpressure forks no writer when the flush leaves the transport at or below the mark", () =>
    Effect.gen(function*() {
      const host = makeHost(10)
      const outbox = new Outbox(host)
      host.fake.accept = true
      assert.isTrue(outbox.send(payload(100)))
      yield* outbox.backpressure()
      assert.strictEqual(host.fake.writes.length, 1, "flushed")
      assert.strictEqual(host.forked.length, 0)

      // the transport holds exactly the mark after the flush
      host.fake.writableLength = 10
      assert.isTrue(outbox.send(payload(100)))
      yield* outbox.backpressure()
      assert.strictEqual(host.fake.writes.length, 2)
      assert.strictEqual(host.forked.length, 0)
    }))

  it.effect("backpressure forks no writer once the transport ended", () =>
    Effect.gen(function*() {
      const { host, outbox } = overMark()
      outbox.flush()
      assert.isAbove(host.fake.writableLength, 10)
      host.transportEnded = true
      yield* outbox.backpressure()
      assert.strictEqual(host.forked.length, 0)
    }))

  it.live("one writer for all waiting senders; they resume when the buffer is at the mark", () =>
    Effect.gen(function*() {
      const { host, outbox } = overMark()
      const a = yield* Effect.fork(outbox.backpressure())
      const b = yield* Effect.fork(outbox.backpressure())
      assert.strictEqual(host.forked.length, 1)
      yield* waitUntil(() => waiters(outbox) === 2, "both senders wait")
      host.fake.writableLength = 10
      outbox.release()
      yield* Fiber.join(Fiber.zip(a, b)).pipe(within("5 seconds", "the senders resume at the mark"))
      assert.strictEqual(host.forked.length, 1)
    }))

  it.live("a sender that waits after its writer ended is woken by the next release", () =>
    Effect.gen(function*() {
      const { host, outbox } = overMark()
      host.defer = true // set before the first fork: the writer runs when the test says
      const wait = outbox.backpressure()
      assert.strictEqual(host.forked.length, 1)
      host.fake.writableLength = 0
      yield* host.forked[0]! // the writer flushes, is below the mark and ends
      let done = false
      yield* Effect.fork(Effect.tap(wait, () => Effect.sync(() => (done = true))))
      yield* waitUntil(() => {
        outbox.release()
        return done
      }, "release wakes the sender")
    }))

  it.live("an interrupted writer leaves nothing that stops release from waking a later sender", () =>
    Effect.gen(function*() {
      const { host, outbox } = overMark()
      const s = yield* Effect.fork(outbox.backpressure())
      yield* waitUntil(() => writerWaits(outbox) && waiters(outbox) === 1, "the writer waits for drain")
      yield* Fiber.interrupt(host.fibers[0]!) // its scope closed: the sender wakes
      yield* Fiber.join(s).pipe(within("5 seconds", "the sender wakes"))

      host.defer = true
      assert.isTrue(outbox.send(payload(100)))
      const wait = outbox.backpressure()
      assert.strictEqual(host.forked.length, 2)
      host.fake.writableLength = 0
      yield* host.forked[1]! // this writer ends before the sender waits
      const t = yield* Effect.fork(wait)
      yield* waitUntil(() => waiters(outbox) === 1, "the sender waits")
      outbox.release()
      assert.strictEqual(waiters(outbox), 0, "one release wakes it")
      yield* Fiber.join(t).pipe(within("5 seconds", "the sender resumes"))
    }))

  it.live("one next-tick flush per batch: a message sent from a later tick waits for its own flush", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const outbox = new Outbox(host)
      assert.isTrue(outbox.send(payload(5))) // schedules the flush
      process.nextTick(() => outbox.send(payload(6))) // runs after that flush: schedules another
      assert.isTrue(outbox.send(payload(7))) // goes with the first
      let seen = -1
      process.nextTick(() => (seen = host.fake.writes.length))
      yield* afterTicks
      const total = host.fake.writes.length
      assert.isAbove(total, 1)
      assert.strictEqual(seen, total - 1, "the third message is not written yet")
      assert.strictEqual(host.fake.writes[total - 1]!.byteLength, 8)
    }))

  it.live("release leaves the senders to a writer that has not run yet", () =>
    Effect.gen(function*() {
      const { host, outbox } = overMark()
      host.defer = true // set before the first fork: the writer runs when the test says
      const s = yield* Effect.fork(outbox.backpressure())
      yield* waitUntil(() => waiters(outbox) === 1, "the sender waits")
      host.fake.writableLength = 0
      outbox.release()
      assert.strictEqual(waiters(outbox), 1, "still the writer's to wake")
      yield* host.forked[0]!
      assert.strictEqual(waiters(outbox), 0)
      yield* Fiber.join(s).pipe(within("5 seconds", "the writer wakes the sender"))
    }))

  it.live("a sender interrupted while it waits leaves no waiter behind", () =>
    Effect.gen(function*() {
      const { outbox } = overMark()
      const a = yield* Effect.fork(outbox.backpressure())
      const b = yield* Effect.fork(outbox.backpressure())
      yield* waitUntil(() => waiters(outbox) === 2, "both senders wait")
      yield* Fiber.interrupt(a)
      assert.strictEqual(waiters(outbox), 1)
      yield* Fiber.interrupt(b)
      assert.strictEqual(waiters(outbox), 0)
    }))

  it.live("a sender interrupted just as it is woken is interrupted, not failed", () =>
    Effect.gen(function*() {
      const { host, outbox } = overMark()
      host.defer = true // set before the first fork: the writer runs when the test says
      const wait = outbox.backpressure()
      host.fake.writableLength = 0
      yield* host.forked[0]! // the writer ends before the sender waits
      const a = Effect.runFork(wait)
      yield* waitUntil(() => waiters(outbox) === 1, "the sender waits")
      // interrupted, then woken before it saw the interruption
      a.unsafeInterruptAsFork(FiberId.none)
      outbox.release()
      const exit = yield* Fiber.await(a)
      if (Exit.isFailure(exit)) {
        assert.deepStrictEqual(Cause.defects(exit.cause).pipe((d) => [...d]), [])
      }
    }))

  it.effect("flush writes nothing once the transport ended, and corks nothing for nothing", () =>
    Effect.sync(() => {
      const host = makeHost()
      const outbox = new Outbox(host)
      outbox.flush()
      assert.strictEqual(host.fake.corks, 0)
      assert.strictEqual(host.fake.writes.length, 0)
      assert.isTrue(outbox.send(payload(5)))
      host.transportEnded = true
      outbox.flush()
      assert.strictEqual(host.fake.writes.length, 0)
    }))

  it.live("inside a reader turn nothing is flushed on the next tick", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const outbox = new Outbox(host)
      outbox.inReader = true
      assert.isTrue(outbox.send(payload(5)))
      yield* afterTicks
      assert.strictEqual(host.fake.writes.length, 0)
      outbox.inReader = false
      outbox.flush()
      assert.strictEqual(host.fake.writes.length, 1)
    }))

  it.effect("only data messages touch the connection", () =>
    Effect.sync(() => {
      const host = makeHost()
      const outbox = new Outbox(host)
      assert.isUndefined(host.core.sendPing())
      outbox.flush()
      assert.strictEqual(host.fake.writes.length, 1)
      assert.strictEqual(host.touches, 0)
      assert.isTrue(outbox.send(payload(5)))
      outbox.flush()
      assert.strictEqual(host.touches, 1)
    }))

  it.effect("TCP is ended once", () =>
    Effect.sync(() => {
      const host = makeHost()
      const outbox = new Outbox(host)
      host.core.receiveEof()
      assert.isTrue(host.core.closeTransport)
      outbox.flush()
      outbox.flush()
      assert.strictEqual(host.fake.ends, 1)
      assert.strictEqual(host.closings, 2)
    }))

  it.effect("the send buffer may hold exactly maxBufferedBytes; more terminates", () =>
    Effect.sync(() => {
      const host = makeHost()
      const outbox = new Outbox(host)
      assert.isTrue(outbox.send(payload(100)))
      host.options.maxBufferedBytes = outbox.bufferedBytes()
      outbox.flush()
      assert.deepStrictEqual(host.errors, [])
      assert.isTrue(outbox.send(payload(1)))
      outbox.flush()
      assert.strictEqual(host.errors.length, 1)
      assert.strictEqual(host.errors[0]!._tag, "PolicyViolationError")
      assert.strictEqual((host.errors[0] as unknown as { reason: string }).reason, "send buffer over limit")
    }))
})
