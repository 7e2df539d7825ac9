/**
 * A connection (`WsConnection`) on an in-memory transport with a real protocol core, started
 * with a Forker that records the reader fibers it forks, a test Logger and, for the span tests,
 * a recording Tracer. Covers the close a handler's end calls for (code and reason on the wire,
 * the "WebSocket handler failed" log), the connection's span (ended once, with timing off, no
 * stack trace), `interruptHandler` and `fork` before, during and after the handler, transport
 * events before the connection's fiber starts, the reader fiber (one forked for the upgrade's
 * bytes ends once it has handled them; a lingering one ends by itself when the transport closes),
 * a close begun before the start getting its deadline, the transport's error listener and the
 * connection ids. Each test pins down surviving mutants of a StrykerJS run over
 * `src/internal/connection.ts` (lines 1-499).
 */
import { assert, describe, it, vi } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Logger, Runtime, Stream, Tracer } from "effect"
import { InvalidPayloadError } from "../src/Errors.js"
import { closeCodeForHandlerFailure } from "../src/internal/connection.js"
import { Forker } from "../src/internal/fork.js"
import type { RunFork } from "../src/internal/fork.js"
import { resolve } from "../src/internal/options.js"
import { MessageDecodeError } from "../src/MessageSchema.js"
import type { Message, WebSocket } from "../src/WebSocket.js"
import { memoryConnection, MemoryTransport } from "./memory.js"
import { waitUntil, within } from "./utils.js"

const TEXT = 0x1
const CLOSE = 0x8

/** A client frame (FIN set, payload under 126 bytes), masked unless `masked` is false. */
const clientFrame = (op: number, payload: Buffer, masked = true): Buffer => {
  const mask = [0x37, 0xfa, 0x21, 0x3d]
  const head = Buffer.from([0x80 | op, (masked ? 0x80 : 0) | payload.length])
  if (!masked) return Buffer.concat([head, payload])
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]!))
  return Buffer.concat([head, Buffer.from(mask), body])
}
const textFrame = (s: string): Buffer => clientFrame(TEXT, Buffer.from(s))
const closeFrame = (code: number): Buffer => {
  const p = Buffer.alloc(2)
  p.writeUInt16BE(code)
  return clientFrame(CLOSE, p)
}

interface Log {
  readonly level: string
  readonly message: ReadonlyArray<unknown>
}

/** What a test sets up around its connections: logs, and the reader fibers forked. */
interface Env {
  readonly logs: Array<Log>
  readonly readers: Array<Fiber.RuntimeFiber<unknown, unknown>>
  readonly forker: Forker<never>
}

/**
 * A Forker for the test's runtime (with a Logger that records, and `around` applied), whose `run`
 * records the reader fibers (those forked on their own scheduler).
 */
const makeEnv = (
  around: (self: Effect.Effect<Runtime.Runtime<never>>) => Effect.Effect<Runtime.Runtime<never>> = (self) => self
): Effect.Effect<Env> =>
  Effect.gen(function*() {
    const logs: Array<Log> = []
    const logger = Logger.make(({ logLevel, message }) =>
      void logs.push({ level: logLevel.label, message: Array.isArray(message) ? message : [message] })
    )
    const runtime = yield* around(Effect.runtime<never>()).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logger))
    )
    const readers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
    const base = Runtime.runFork(runtime)
    const run: RunFork<never> = (effect, options) => {
      const fiber = base(effect, options)
      if (options?.scheduler !== undefined) readers.push(fiber as Fiber.RuntimeFiber<unknown, unknown>)
      return fiber
    }
    return { logs, readers, forker: new Forker(runtime, run, undefined) }
  })

const makeConnection = (
  o: { readonly transport?: MemoryTransport; readonly rest?: Buffer; readonly closeTimeout?: number } = {}
) => {
  const transport = o.transport ?? new MemoryTransport()
  const options = resolve({ keepaliveInterval: 0, closeTimeout: o.closeTimeout ?? 5_000 })
  const ws = memoryConnection(transport, options, {}, o.rest)
  const frames = () => transport.frames()
  const closes = () => frames().filter((f) => f.op === CLOSE)
  return { ws, transport, frames, closes }
}

type Conn = ReturnType<typeof makeConnection>

/** Waits for the server's Close frame, returns its code and reason. */
const awaitClose = (c: Conn) =>
  Effect.gen(function*() {
    yield* waitUntil(() => c.closes().length > 0, "the server's Close frame")
    const [close] = c.closes()
    return { code: close!.payload.readUInt16BE(0), reason: close!.payload.subarray(2).toString() }
  })

/** The peer goes away: the transport closes; waits for the connection's Scope to close. */
const finish = (c: Conn) =>
  Effect.gen(function*() {
    c.transport.destroy()
    yield* c.ws.released.pipe(within("5 seconds", "the connection's Scope to close"))
  })

/** A connection whose handler drains `messages`, once that handler has started. */
const draining = Effect.gen(function*() {
  const env = yield* makeEnv()
  const c = makeConnection()
  const started = yield* Deferred.make<void>()
  c.ws.start(
    (ws) => Effect.zipRight(Deferred.succeed(started, undefined), Stream.runDrain(ws.messages)),
    false,
    env.forker
  )
  yield* Deferred.await(started).pipe(within("5 seconds", "the handler to start"))
  return { c, env }
})

/**
 * Runs `f` (synchronous: transport events, `checkDeadlines`) with `Date.now` answering `times` in
 * turn, then the last of them: pins the milliseconds the connection reads around `READER_LINGER`.
 */
const withNow = (times: ReadonlyArray<number>, f: () => void): void => {
  const queue = [...times]
  const spy = vi.spyOn(Date, "now").mockImplementation(() => queue.length > 1 ? queue.shift()! : queue[0]!)
  try {
    f()
  } finally {
    spy.mockRestore()
  }
}

const handlerFailedLogs = (env: Env) =>
  env.logs.filter((l) => l.message.some((m) => typeof m === "string" && m.includes("WebSocket handler failed")))

describe("the close a handler's end calls for", () => {
  it.live("success: Close 1000 with no reason, nothing logged", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      c.ws.start(() => Effect.void, false, env.forker)
      assert.deepStrictEqual(yield* awaitClose(c), { code: 1000, reason: "" })
      yield* finish(c)
      assert.deepStrictEqual(env.logs, [], "a handler that succeeded logs nothing")
    }))

  it.live("interrupted (interruptHandler): Close 1001 with no reason; interruptHandler is true only while it runs", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      assert.isFalse(c.ws.interruptHandler(), "before the connection's fiber started")
      const started = yield* Deferred.make<void>()
      c.ws.start(() => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never), false, env.forker)
      yield* Deferred.await(started).pipe(within("5 seconds", "the handler to start"))
      assert.isTrue(c.ws.interruptHandler(), "the handler is running")
      assert.deepStrictEqual(yield* awaitClose(c), { code: 1001, reason: "" })
      yield* finish(c)
      assert.isFalse(c.ws.interruptHandler(), "the handler has ended")
      assert.deepStrictEqual(env.logs, [])
    }))

  it.live("a failure: Close 1011 \"internal error\", logged once as \"WebSocket handler failed\"", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      c.ws.start(() => Effect.fail("boom"), false, env.forker)
      assert.deepStrictEqual(yield* awaitClose(c), { code: 1011, reason: "internal error" })
      yield* finish(c)
      const logged = handlerFailedLogs(env)
      assert.strictEqual(logged.length, 1)
      assert.strictEqual(logged[0]!.level, "ERROR")
      assert.deepStrictEqual(logged[0]!.message, ["WebSocket handler failed"])
    }))

  it.live("a protocol error of the handler's own (the core has none) is a failure: Close 1011, logged", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      c.ws.start(() => Effect.fail(new InvalidPayloadError({ reason: "mine" })), false, env.forker)
      assert.deepStrictEqual(yield* awaitClose(c), { code: 1011, reason: "internal error" })
      yield* finish(c)
      assert.strictEqual(handlerFailedLogs(env).length, 1)
    }))

  it.live("a schema failure: Close 1007 \"message does not match the schema\", not logged", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      c.ws.start(() => Effect.fail(new MessageDecodeError({ issue: "x", raw: "y" })), false, env.forker)
      assert.deepStrictEqual(yield* awaitClose(c), { code: 1007, reason: "message does not match the schema" })
      yield* finish(c)
      assert.deepStrictEqual(handlerFailedLogs(env), [])
    }))

  it.live("after the peer's protocol error, a handler failing with an error of its own is logged", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      const failed = yield* Deferred.make<void>()
      c.ws.start(
        (ws) =>
          Stream.runDrain(ws.messages).pipe(
            Effect.catchAll(() => Effect.zipRight(Deferred.succeed(failed, undefined), Effect.fail("app error")))
          ),
        false,
        env.forker
      )
      // an unmasked client frame: the core fails with a protocol error (1002)
      c.transport.emit("data", clientFrame(TEXT, Buffer.from("x"), false))
      assert.strictEqual((yield* awaitClose(c)).code, 1002)
      yield* Deferred.await(failed).pipe(within("5 seconds", "the handler's Stream to fail"))
      yield* finish(c)
      const logged = handlerFailedLogs(env)
      assert.strictEqual(logged.length, 1, "the handler's own failure is not the protocol error")
    }))

  it("closeCodeForHandlerFailure: 1011 \"internal error\" for any failure but a schema one", () => {
    assert.deepStrictEqual(closeCodeForHandlerFailure(Cause.fail("boom")), { code: 1011, reason: "internal error" })
    assert.deepStrictEqual(closeCodeForHandlerFailure(Cause.die(new Error("bug"))), {
      code: 1011,
      reason: "internal error"
    })
    assert.deepStrictEqual(closeCodeForHandlerFailure(Cause.fail(new MessageDecodeError({ issue: "x", raw: "y" }))), {
      code: 1007,
      reason: "message does not match the schema"
    })
  })
})

describe("the connection's span", () => {
  it.live("with tracer timing off it ends at time 0, and is made without a stack trace", () =>
    Effect.gen(function*() {
      const native = yield* Effect.tracer
      const options: Array<Tracer.SpanOptions | undefined> = []
      const tracer = Tracer.make({
        span: (name, parent, context, links, startTime, kind, opts) => {
          options.push(opts)
          return native.span(name, parent, context, links, startTime, kind, opts)
        },
        context: native.context
      })
      const env = yield* makeEnv((self) => self.pipe(Effect.withTracer(tracer), Effect.withTracerTiming(false)))
      const c = makeConnection()
      const span = yield* Deferred.make<Tracer.Span>()
      c.ws.start(() => Effect.flatMap(Effect.orDie(Effect.currentSpan), (s) => Deferred.succeed(span, s)), true, env.forker)
      const s = yield* Deferred.await(span).pipe(within("5 seconds", "the handler to run in its span"))
      yield* finish(c)
      assert.strictEqual(s.name, "websocket.connection")
      assert.strictEqual(options.length, 1)
      assert.strictEqual(options[0]?.captureStackTrace, false, "no stack trace is captured for the span")
      assert.strictEqual(s.status._tag, "Ended")
      if (s.status._tag === "Ended") {
        assert.strictEqual(s.status.startTime, BigInt(0))
        assert.strictEqual(s.status.endTime, BigInt(0), "timing is off: the span ends at 0 too")
      }
    }))

  it.live("a span the handler ended itself is not ended again", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      const span = yield* Deferred.make<Tracer.Span>()
      c.ws.start(
        () =>
          Effect.flatMap(Effect.orDie(Effect.currentSpan), (s) =>
            Effect.zipRight(Effect.sync(() => s.end(BigInt(5), Exit.void)), Deferred.succeed(span, s))),
        true,
        env.forker
      )
      const s = yield* Deferred.await(span).pipe(within("5 seconds", "the handler to run in its span"))
      yield* finish(c)
      assert.strictEqual(s.status._tag, "Ended")
      if (s.status._tag === "Ended") assert.strictEqual(s.status.endTime, BigInt(5))
    }))
})

describe("fork", () => {
  it.live("forks only between the start and the Scope's close", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      assert.isUndefined(c.ws.fork(Effect.void), "before the connection's fiber started")
      const started = yield* Deferred.make<void>()
      const done = yield* Deferred.make<void>()
      c.ws.start(() => Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(done)), false, env.forker)
      yield* Deferred.await(started).pipe(within("5 seconds", "the handler to start"))
      const fiber = c.ws.fork(Effect.void)
      assert.isDefined(fiber, "while the handler runs")
      yield* Fiber.await(fiber!).pipe(within("5 seconds", "the forked fiber to end"))
      yield* Deferred.succeed(done, undefined)
      yield* finish(c)
      assert.isUndefined(c.ws.fork(Effect.void), "after the Scope closed")
    }))
})

describe("transport events and the reader fiber", () => {
  it.live("events before the start are handled where they come, and reach the handler", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      c.transport.emit("data", textFrame("a"))
      c.transport.emit("data", textFrame("b"))
      const got = yield* Deferred.make<ReadonlyArray<Message>>()
      c.ws.start(
        (ws) => Effect.flatMap(Stream.runCollect(Stream.take(ws.messages, 2)), (ms) => Deferred.succeed(got, [...ms])),
        false,
        env.forker
      )
      assert.deepStrictEqual(yield* Deferred.await(got).pipe(within("5 seconds", "the two messages")), ["a", "b"])
      yield* finish(c)
    }))

  it.live("the reader forked for the upgrade's bytes ends once it has handled them", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection({ rest: textFrame("hello") })
      const got = yield* Deferred.make<Message>()
      const done = yield* Deferred.make<void>()
      c.ws.start(
        (ws: WebSocket<undefined>) =>
          Stream.runHead(ws.messages).pipe(
            Effect.flatMap((m) => Deferred.succeed(got, m._tag === "Some" ? m.value : "none")),
            Effect.zipRight(Deferred.await(done))
          ),
        false,
        env.forker
      )
      assert.strictEqual(yield* Deferred.await(got).pipe(within("5 seconds", "the upgrade's message")), "hello")
      assert.strictEqual(env.readers.length, 1)
      const exit = yield* Fiber.await(env.readers[0]!).pipe(within("5 seconds", "the reader fiber to end"))
      assert.isTrue(Exit.isSuccess(exit))
      yield* Deferred.succeed(done, undefined)
      yield* finish(c)
    }))

  it.live("a lingering reader ends by itself when the transport closes (it is not interrupted)", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection()
      const got: Array<Message> = []
      c.ws.start((ws) => Stream.runForEach(ws.messages, (m) => Effect.sync(() => got.push(m))), false, env.forker)
      // the first read is handled in the transport's callback; the next, right after, forks a reader that lingers
      c.transport.emit("data", textFrame("a"))
      c.transport.emit("data", textFrame("b"))
      assert.strictEqual(env.readers.length, 1, "the second read forked a reader")
      yield* waitUntil(() => got.length === 2, "the two messages")
      yield* finish(c)
      const exit = yield* Fiber.await(env.readers[0]!).pipe(within("5 seconds", "the reader fiber to end"))
      assert.isTrue(Exit.isSuccess(exit), `the reader ended with ${String(exit)}`)
    }))

  it.live("READER_LINGER boundaries: a read exactly that long after the last is handled in place; a reader retires exactly that long after its last read", () =>
    Effect.gen(function*() {
      const { c, env } = yield* draining
      const t = Date.now()
      withNow([t], () => c.transport.emit("data", textFrame("a")))
      withNow([t + 1000], () => c.transport.emit("data", textFrame("b")))
      assert.strictEqual(env.readers.length, 0, "a read READER_LINGER after the previous one forks no reader")
      withNow([t + 1999], () => c.transport.emit("data", textFrame("c")))
      assert.strictEqual(env.readers.length, 1, "a read within READER_LINGER forks a reader")
      const reader = env.readers[0]!
      withNow([t + 2998], () => c.ws.checkDeadlines(t + 2998))
      assert.isNull(reader.unsafePoll(), "the reader stays while its last read is under READER_LINGER old")
      withNow([t + 2999], () => c.ws.checkDeadlines(t + 2999))
      const exit = yield* Fiber.await(reader).pipe(within("5 seconds", "the retired reader to end"))
      assert.isTrue(Exit.isSuccess(exit))
      yield* finish(c)
    }))

  it.live("a reader forked exactly READER_LINGER after the last wake-up does not linger", () =>
    Effect.gen(function*() {
      const { c, env } = yield* draining
      const t = Date.now()
      withNow([t], () => c.transport.emit("data", textFrame("a")))
      // the read comes 999 ms after the last wake-up; by the time the reader is forked it is 1000
      withNow([t + 999, t + 1000], () => c.transport.emit("data", textFrame("b")))
      assert.strictEqual(env.readers.length, 1)
      const exit = yield* Fiber.await(env.readers[0]!).pipe(within("5 seconds", "the reader to end after its read"))
      assert.isTrue(Exit.isSuccess(exit))
      yield* finish(c)
    }))

  it.live("a Close that came before the start gets its close deadline at the start", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const c = makeConnection({ closeTimeout: 50 })
      c.transport.emit("data", closeFrame(1000))
      c.ws.start(() => Effect.never, false, env.forker)
      // the peer never closes the transport: the close deadline cuts it, then interrupts the handler
      yield* c.ws.released.pipe(within("5 seconds", "the close deadline to end the connection"))
      assert.isTrue(c.transport.destroyed)
    }))

  it.effect("the connection listens for the transport's errors only when nobody else does", () =>
    Effect.sync(() => {
      const bare = new MemoryTransport()
      makeConnection({ transport: bare })
      assert.strictEqual(bare.listenerCount("error"), 1)
      assert.doesNotThrow(() => bare.emit("error", new Error("ECONNRESET")))
      const owned = new MemoryTransport()
      const mine = () => {}
      owned.on("error", mine)
      makeConnection({ transport: owned })
      assert.deepStrictEqual(owned.listeners("error"), [mine], "no listener added beside the owner's")
    }))

  it.effect("connection ids count up by one", () =>
    Effect.sync(() => {
      const a = makeConnection()
      const b = makeConnection()
      assert.strictEqual(b.ws.id, a.ws.id + 1)
    }))
})
