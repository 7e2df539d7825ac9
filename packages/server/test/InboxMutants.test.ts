/**
 * The inbox on its own, driven the way the connection drives it (push, end, settle, start) with a
 * fake host that records what it is told: when reading pauses and resumes (bytes held, `run`
 * Effects still running), when the owed Close may go (`drained`), how the `messages` Stream hands
 * out batches and ends, and how `run` takes over queued messages, ignores what is not an Effect,
 * fails once and interrupts what still runs. Each test pins down surviving mutants of a StrykerJS
 * run over `src/internal/inbox.ts` (see `mutation-equivalents.md` for the ones no test can see).
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Logger, Option, Stream } from "effect"
import type { ProtocolError } from "../src/Errors.js"
import { InternalError, ProtocolViolationError } from "../src/Errors.js"
import { Inbox } from "../src/internal/inbox.js"
import type { InboxHost } from "../src/internal/inbox.js"
import type { Message } from "../src/WebSocket.js"
import { waitUntil, within } from "./utils.js"

/** What the inbox told its host, in order. */
interface FakeHost extends InboxHost {
  /** Every `setReading` call. */
  readonly reading: Array<boolean>
  caughtUp_: number
  readonly failures: Array<ProtocolError>
}

const makeHost = (
  inboxHighWaterMark = 1024 * 1024,
  failure: Option.Option<ProtocolError> = Option.none()
): FakeHost => {
  const host: FakeHost = {
    inboxHighWaterMark,
    reading: [],
    caughtUp_: 0,
    failures: [],
    setReading: (on) => void host.reading.push(on),
    caughtUp: () => void host.caughtUp_++,
    endFailure: () => failure,
    fail: (error) => void host.failures.push(error)
  }
  return host
}

/** The current fiber, as the connection passes it to `start` (the one that called `run`). */
const currentFiber = Effect.withFiberRuntime<Fiber.RuntimeFiber<unknown, unknown>>((fiber) =>
  Effect.succeed(fiber as Fiber.RuntimeFiber<unknown, unknown>)
)

/** A message of `n` UTF-16 units (what it counts for in the limits). */
const text = (n: number, c = "x"): string => c.repeat(n)

/** Pulls the Stream one batch at a time: a batch, or `undefined` once it ended. */
const puller = (inbox: Inbox) =>
  Effect.map(Stream.toPull(inbox.messages), (pull) =>
    pull.pipe(
      Effect.map((chunk): Array<Message> | undefined => Chunk.toArray(chunk)),
      Effect.catchAll((e) => (Option.isNone(e) ? Effect.succeed(undefined) : Effect.fail(e.value)))
    ))

describe("inbox flow control", () => {
  it.live("reading pauses only above the high-water mark, and resumes only once the Stream took the bytes", () =>
    Effect.gen(function*() {
      const host = makeHost(10)
      const inbox = new Inbox(host)
      inbox.push(text(10))
      inbox.settle()
      assert.deepStrictEqual(host.reading, [], "10 bytes against a mark of 10 is not above it")
      inbox.push(text(1))
      inbox.settle()
      assert.deepStrictEqual(host.reading, [false], "11 bytes are above the mark of 10")
      // another read with nothing taken yet: still above half the mark, reading stays paused
      inbox.settle()
      assert.deepStrictEqual(host.reading, [false], "resumed while 11 bytes were still held")
      const pull = yield* puller(inbox)
      assert.deepStrictEqual(yield* pull, [text(10), text(1)])
      assert.deepStrictEqual(host.reading, [false, true], "taking the batch resumes reading")
    }).pipe(Effect.scoped))

  it.live("with run, the bytes of the Effects still running count: pause above the mark, resume at exactly half", () =>
    Effect.gen(function*() {
      const host = makeHost(20)
      const inbox = new Inbox(host)
      const fibers = new Map<Message, Fiber.RuntimeFiber<unknown, unknown>>()
      inbox.start(
        (m) => Effect.withFiberRuntime((f) => (fibers.set(m, f), Effect.never)),
        yield* currentFiber
      )
      const a = text(10, "a")
      const b = text(1, "b")
      const c = text(10, "c")
      inbox.push(a)
      inbox.push(b)
      inbox.settle()
      assert.deepStrictEqual(host.reading, [], "11 bytes running against a mark of 20")
      inbox.push(c)
      inbox.settle()
      assert.deepStrictEqual(host.reading, [false], "21 bytes running are above the mark of 20")
      yield* waitUntil(() => fibers.size === 3, "the three Effects to start")
      // Fiber.interrupt returns once the fiber ended, after the inbox's own observer of it ran
      yield* Fiber.interrupt(fibers.get(a)!)
      assert.deepStrictEqual(host.reading, [false], "resumed with 11 bytes running, above half the mark (10)")
      yield* Fiber.interrupt(fibers.get(b)!)
      assert.deepStrictEqual(host.reading, [false, true], "10 bytes running is half the mark: reading resumes")
      assert.deepStrictEqual(host.failures, [], "an interrupted Effect does not fail the connection")
      yield* inbox.interruptAll()
    }))

  it.live("with run, more than 1024 Effects running pause reading; it resumes when 512 are left", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const inbox = new Inbox(host)
      const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
      inbox.start(
        () => Effect.withFiberRuntime((f) => (fibers.push(f), Effect.never)),
        yield* currentFiber
      )
      // empty messages: no bytes held, only the number of Effects running counts
      for (let i = 0; i < 1024; i++) inbox.push("")
      inbox.settle()
      assert.deepStrictEqual(host.reading, [], "1024 Effects running is not more than 1024")
      inbox.push("")
      inbox.settle()
      assert.deepStrictEqual(host.reading, [false], "1025 Effects running pause reading")
      yield* waitUntil(() => fibers.length === 1025, "the 1025 Effects to start")
      yield* Fiber.interrupt(fibers[0]!)
      assert.deepStrictEqual(host.reading, [false], "resumed with 1024 Effects running")
      for (let i = 1; i < 512; i++) yield* Fiber.interrupt(fibers[i]!)
      assert.deepStrictEqual(host.reading, [false], "resumed with 513 Effects running")
      yield* Fiber.interrupt(fibers[512]!)
      assert.deepStrictEqual(host.reading, [false, true], "512 Effects running: reading resumes")
      yield* inbox.interruptAll()
    }))
})

describe("inbox: when the owed Close may go (drained)", () => {
  it.live("with no consumer yet, what is queued does not hold the Close back", () =>
    Effect.sync(() => {
      const inbox = new Inbox(makeHost())
      inbox.push("a")
      inbox.push("b")
      inbox.end()
      assert.isFalse(inbox.consumer)
      assert.isTrue(inbox.drained, "messages nobody reads held back the Close")
    }))

  it.live("the Stream: not drained while a batch is out, drained once the consumer asked past it", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const inbox = new Inbox(host)
      inbox.push("a")
      inbox.push("b")
      inbox.end()
      const pull = yield* puller(inbox)
      assert.deepStrictEqual(yield* pull, ["a", "b"])
      assert.isFalse(inbox.drained, "drained while the consumer still handles its batch")
      assert.strictEqual(host.caughtUp_, 0)
      assert.isUndefined(yield* pull, "the Stream ends after the batch")
      assert.strictEqual(host.caughtUp_, 1, "the end told the host the consumer caught up")
      assert.isTrue(inbox.drained, "not drained after the consumer reached the end")
    }).pipe(Effect.scoped))

  it.live("the Stream: an end with nothing before it ends the Stream at the first pull, drained", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const inbox = new Inbox(host)
      inbox.end()
      const all = yield* within("5 seconds", "the Stream to end")(Stream.runCollect(inbox.messages))
      assert.strictEqual(Chunk.size(all), 0)
      assert.strictEqual(host.caughtUp_, 1)
      assert.isTrue(inbox.drained, "not drained after the consumer reached the end")
    }))

  it.live("end() twice marks one end: drained once the consumer reached it", () =>
    Effect.gen(function*() {
      const host = makeHost()
      const inbox = new Inbox(host)
      inbox.push("a")
      inbox.end()
      inbox.end() // the connection ends the inbox on every path a close can take
      const pull = yield* puller(inbox)
      assert.deepStrictEqual(yield* pull, ["a"])
      assert.isUndefined(yield* pull)
      assert.isTrue(inbox.drained, "a second end() kept the inbox from being drained")
    }).pipe(Effect.scoped))

  it.live("run makes the callback the consumer; handed everything at once, it never holds the peer's Close back", () =>
    Effect.gen(function*() {
      const inbox = new Inbox(makeHost())
      const got: Array<Message> = []
      inbox.start((m) => void got.push(m), yield* currentFiber)
      assert.isTrue(inbox.consumer, "run did not count as a consumer")
      inbox.push("a")
      inbox.end()
      assert.deepStrictEqual(got, ["a"])
      assert.isTrue(inbox.drained, "run held back the Close with nothing left to deliver")
    }))
})

describe("inbox: run takes over what is queued", () => {
  it.live("messages queued before run go to the callback, in order, and the end is not one of them", () =>
    Effect.gen(function*() {
      const inbox = new Inbox(makeHost())
      inbox.push("a")
      inbox.push("b")
      inbox.end()
      const got: Array<unknown> = []
      inbox.start((m) => void got.push(m), yield* currentFiber)
      assert.deepStrictEqual(got, ["a", "b"])
    }))

  it.live("a batch the Stream already handed out is not delivered again to run", () =>
    Effect.gen(function*() {
      const inbox = new Inbox(makeHost())
      inbox.push("a")
      inbox.push("b")
      inbox.end()
      const pull = yield* puller(inbox)
      assert.deepStrictEqual(yield* pull, ["a", "b"])
      const got: Array<unknown> = []
      inbox.start((m) => void got.push(m), yield* currentFiber)
      assert.deepStrictEqual(got, [], "run got the messages the Stream had handed out")
    }).pipe(Effect.scoped))

  it.live("run after the Stream handed out a batch: that batch no longer holds the peer's Close back", () =>
    Effect.gen(function*() {
      const inbox = new Inbox(makeHost())
      inbox.push("a")
      const pull = yield* puller(inbox)
      assert.deepStrictEqual(yield* pull, ["a"])
      assert.isFalse(inbox.drained, "the batch is out and the consumer has not asked past it")
      const got: Array<unknown> = []
      inbox.start((m) => void got.push(m), yield* currentFiber)
      inbox.push("b")
      inbox.end()
      assert.deepStrictEqual(got, ["b"])
      assert.isTrue(inbox.drained, "the Stream's last batch held the Close back after run took over")
    }).pipe(Effect.scoped))

  it.live("an end queued before run stays queued: a later pull of messages ends, with the peer's failure", () =>
    Effect.gen(function*() {
      const failure = new ProtocolViolationError({ reason: "bad frame" })
      const host = makeHost(1024, Option.some(failure))
      const inbox = new Inbox(host)
      inbox.push("a")
      inbox.end()
      const got: Array<unknown> = []
      inbox.start((m) => void got.push(m), yield* currentFiber)
      assert.deepStrictEqual(got, ["a"])
      const exit = yield* within("5 seconds", "the Stream to end after run")(
        Effect.exit(Stream.runCollect(inbox.messages))
      )
      assert.deepStrictEqual(exit, Exit.fail(failure))
      assert.strictEqual(host.caughtUp_, 1)
    }))
})

describe("inbox: what run does with what the callback returns", () => {
  it.live("a value that is not an Effect is ignored: nothing is forked, counted or failed", () =>
    Effect.gen(function*() {
      const host = makeHost(4)
      const inbox = new Inbox(host)
      const returned: Array<unknown> = [true, 42, "text", {}, Promise.resolve("a promise")]
      let i = 0
      inbox.start(() => returned[i++], yield* currentFiber)
      for (let k = 0; k < returned.length; k++) inbox.push(text(100))
      inbox.settle()
      assert.strictEqual(i, returned.length)
      assert.deepStrictEqual(host.reading, [], "what the callback returned was counted as running")
      yield* inbox.interruptAll()
      assert.deepStrictEqual(host.failures, [])
    }))

  it.live("two failing Effects fail the connection once, as an InternalError 'handler failed', logged around run", () => {
    const logged: Array<string> = []
    return Effect.gen(function*() {
      const host = makeHost()
      const inbox = new Inbox(host)
      const gate = yield* Deferred.make<void>()
      const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
      inbox.start(
        (m) =>
          Effect.withFiberRuntime<never, string>((f) => {
            fibers.push(f)
            return Effect.zipRight(Deferred.await(gate), Effect.fail(`failed on ${String(m)}`))
          }),
        yield* currentFiber
      )
      inbox.push("a")
      inbox.push("b")
      inbox.settle()
      assert.strictEqual(fibers.length, 2, "both Effects run until they wait for the gate")
      yield* Deferred.succeed(gate, void 0)
      // Fiber.await returns after the inbox's own observer of the fiber ran
      for (const f of fibers) yield* Fiber.await(f)
      assert.strictEqual(host.failures.length, 1, "the connection was failed more than once")
      const error = host.failures[0]!
      assert.instanceOf(error, InternalError)
      assert.strictEqual(error.reason, "handler failed")
      yield* waitUntil(() => logged.length > 0, "the failure to be logged")
      assert.strictEqual(logged[0], "WebSocket run callback failed")
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logged.push(String(message))))))
  })

  it.live("interruptAll interrupts the Effects still running, waits for them, and yields nothing", () =>
    Effect.gen(function*() {
      const inbox = new Inbox(makeHost())
      let started = 0
      let interrupted = 0
      inbox.start(
        () => Effect.onInterrupt(Effect.zipRight(Effect.sync(() => started++), Effect.never), () => Effect.sync(() => interrupted++)),
        yield* currentFiber
      )
      inbox.push("a")
      inbox.push("b")
      yield* waitUntil(() => started === 2, "the two Effects to start")
      const result: unknown = yield* inbox.interruptAll()
      assert.strictEqual(interrupted, 2, "interruptAll returned before the Effects were interrupted")
      assert.isUndefined(result)
    }))
})
