/**
 * A connection (`WsConnection`) on an in-memory transport, with a real protocol core, driven the
 * way the engine drives it: client frames fed as transport reads, the transport's `end` and
 * `close`, and the port's calls (`startClose`, `terminate`, `destroy`, `checkDeadlines`,
 * `writeFrame`). Covers the reader turn's one flush, a defect in a reader turn, the received
 * count, who is reported as having initiated the close, the owed Close (sent once the consumer
 * has caught up, dropped with the transport), what happens after the transport closed, how the
 * `messages` Stream ends after a peer's protocol error, pausing a closed transport, `accepting`,
 * the idle deadline and data sent, deadlines while closing, the send-buffer limit of prebuilt
 * frames, and the errors of `ping` and `close`.
 * Each test pins down surviving mutants of a StrykerJS run over `src/internal/connection.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, FiberRef, HashSet, Metric, Runtime, Stream } from "effect"
import type { Scope } from "effect"
import { InvalidSendError, PolicyViolationError, ProtocolViolationError, WebSocketClosedError } from "../src/Errors.js"
import * as Metrics from "../src/Metrics.js"
import { WsConnection } from "../src/internal/connection.js"
import { Forker } from "../src/internal/fork.js"
import { CloseTimeouts } from "../src/internal/lifecycle.js"
import { resolve } from "../src/internal/options.js"
import type { Limits } from "../src/internal/options.js"
import type { Message, WebSocket } from "../src/WebSocket.js"
import { memoryConnection, MemoryTransport, releaseConnection } from "./memory.js"
import type { Frame } from "./memory.js"
import { waitUntil, within } from "./utils.js"

const TEXT = 0x1
const CLOSE = 0x8
const PING = 0x9

const closeOf = (f: Frame) => ({ code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString("utf8") })

/** A masked client frame (payload under 126 bytes). */
const clientFrame = (op: number, payload: Buffer | string = Buffer.alloc(0)): Buffer => {
  const p = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload
  const mask = [0x37, 0xfa, 0x21, 0x3d]
  const f = Buffer.alloc(6 + p.length)
  f[0] = 0x80 | op
  f[1] = 0x80 | p.length
  for (let i = 0; i < 4; i++) f[2 + i] = mask[i]!
  for (let i = 0; i < p.length; i++) f[6 + i] = p[i]! ^ mask[i & 3]!
  return f
}

const closeFrame = (code: number, reason: string): Buffer => {
  const p = Buffer.alloc(2 + Buffer.byteLength(reason))
  p.writeUInt16BE(code, 0)
  p.write(reason, 2)
  return clientFrame(CLOSE, p)
}

/** A frame with a reserved opcode: the peer's protocol error (1002). */
const invalidFrame = (): Buffer => clientFrame(0x3)

/** An unmasked server text frame of `size` bytes in all (size under 127). */
const serverText = (size: number): Uint8Array => {
  const f = Buffer.alloc(size, 0x61)
  f[0] = 0x81
  f[1] = size - 2
  return f
}

/** The default runtime with no loggers: a connection's failure is logged, and the test expects it. */
const quiet = Runtime.setFiberRef(Runtime.defaultRuntime, FiberRef.currentLoggers, HashSet.empty())

interface Conn {
  readonly ws: WsConnection<undefined>
  readonly transport: MemoryTransport
  /** Times the connection told its owner that its transport closed. */
  readonly gone: () => number
  /** One transport read. */
  readonly read: (...frames: Array<Buffer>) => void
}

/**
 * A started connection; when the test's Scope closes its transport is destroyed, its handler
 * interrupted if still running, and its release awaited.
 */
const open = (
  handler: (ws: WebSocket<undefined>) => Effect.Effect<unknown, unknown, Scope.Scope>,
  limits: Limits = {},
  closeTimeouts?: CloseTimeouts
): Effect.Effect<Conn, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const transport = new MemoryTransport()
      const options = resolve({ keepaliveInterval: 0, ...limits })
      let gone = 0
      const ws = memoryConnection(transport, options, {
        ...(closeTimeouts !== undefined ? { closeTimeouts } : {}),
        transportClosed: () => void gone++
      })
      ws.start(handler, false, Forker.of(quiet))
      return {
        ws,
        transport,
        gone: () => gone,
        read: (...frames: Array<Buffer>) => void transport.emit("data", Buffer.concat(frames))
      }
    }),
    releaseConnection
  )

/** Transport callbacks queued now (`process.nextTick`, an uncork) have run. */
const nextTurn = Effect.promise(() => new Promise<void>((r) => setImmediate(r)))

/** Destroys the transport and waits until the connection has handled its close. */
const closeTransport = (c: Conn) =>
  Effect.zipRight(Effect.sync(() => c.transport.destroy()), c.ws.transportClosed).pipe(
    within("2 seconds", "the transport's close handled")
  )

/**
 * A connection whose handler has taken the batch ["a"] from `messages` and has not asked for the
 * next one; then the peer's Close arrives: the reply is owed (not sent yet). The handler goes
 * on with `then` once `go` is done.
 */
const owedClose = <A>(
  then: (
    ws: WebSocket<undefined>,
    pull: Effect.Effect<Chunk.Chunk<Message>, unknown>,
    conn: () => Conn
  ) => Effect.Effect<A, unknown, Scope.Scope>,
  limits: Limits = {}
) =>
  Effect.gen(function*() {
    const got = yield* Deferred.make<Array<Message>>()
    const go = yield* Deferred.make<void>()
    const result = yield* Deferred.make<A>()
    let conn: Conn | undefined
    const c = yield* open((ws) =>
      Effect.gen(function*() {
        const pull = yield* Stream.toPull(ws.messages)
        yield* Deferred.succeed(got, Chunk.toArray(yield* pull))
        yield* Deferred.await(go)
        yield* Deferred.succeed(result, yield* then(ws, pull, () => conn!))
      }), limits)
    conn = c
    c.read(clientFrame(TEXT, "a"))
    assert.deepStrictEqual(yield* Deferred.await(got).pipe(within("2 seconds", "the handler's first batch")), ["a"])
    c.read(closeFrame(1000, "bye"))
    assert.deepStrictEqual(c.transport.frames(), [], "the reply to the peer's Close waits for the consumer")
    return { c, go, result }
  })

describe("WsConnection reader turn", () => {
  it.live("a reader turn writes once at its end and leaves no flush scheduled behind it", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const c = yield* open((ws) => Effect.zipRight(Deferred.succeed(started, undefined), ws.run((m) => void ws.unsafeSend(m))))
      yield* Deferred.await(started)
      yield* nextTurn // the handler is inside `run` now
      const seen = yield* Effect.sync(() => {
        c.read(clientFrame(TEXT, "a"))
        assert.strictEqual(c.transport.frames().length, 1, "the echo goes out with the reader turn's own flush")
        let seen = -1
        process.nextTick(() => {
          seen = c.transport.frames().length
        })
        // a send outside the reader schedules its own flush, after the callback queued above
        c.ws.unsafeSend("x")
        return () => seen
      })
      yield* nextTurn
      assert.strictEqual(seen(), 1, "a flush scheduled by the reader turn wrote the later send early")
      assert.deepStrictEqual(c.transport.frames().map((f) => f.payload.toString()), ["a", "x"])
    }).pipe(Effect.scoped))

  it.live("a defect in a reader turn fails the connection with 1011 \"internal error\"", () =>
    Effect.gen(function*() {
      // the close deadline's first arming throws: a defect inside the reader turn
      class Flaky extends CloseTimeouts {
        thrown = false
        override arm(...args: Parameters<CloseTimeouts["arm"]>) {
          if (!this.thrown) {
            this.thrown = true
            throw new Error("boom")
          }
          return super.arm(...args)
        }
      }
      const timeouts = new Flaky(5_000)
      const c = yield* open(() => Effect.never, {}, timeouts)
      c.read(closeFrame(1000, "bye"))
      assert.isTrue(timeouts.thrown)
      yield* closeTransport(c)
      const info = yield* c.ws.closed
      assert.strictEqual(info.code, 1011)
      assert.strictEqual(info.reason, "internal error")
    }).pipe(Effect.scoped))

  it.live("messages received count once each, read after read", () =>
    Effect.gen(function*() {
      const two = yield* Deferred.make<void>()
      let n = 0
      const before = (yield* Metric.value(Metrics.messagesReceived)).count
      const c = yield* open((ws) =>
        ws.run(() => {
          if (++n === 2) Deferred.unsafeDone(two, Exit.void)
        })
      )
      c.read(clientFrame(TEXT, "a"))
      c.read(clientFrame(TEXT, "b"))
      yield* Deferred.await(two).pipe(within("2 seconds", "both messages delivered"))
      const after = (yield* Metric.value(Metrics.messagesReceived)).count
      assert.strictEqual(after - before, 2)
    }).pipe(Effect.scoped))
})

describe("WsConnection close bookkeeping", () => {
  it.live("after the peer's Close, our close, a terminate and later reads leave the close initiated by the peer", () =>
    Effect.gen(function*() {
      const { c } = yield* owedClose(() => Effect.void)
      // our close while the reply is owed: it sends the owed reply
      assert.isUndefined(c.ws.startClose(4000, "ours"))
      assert.deepStrictEqual(c.transport.frames().map((f) => f.op === CLOSE && closeOf(f)), [{ code: 1000, reason: "bye" }])
      c.ws.terminate(new PolicyViolationError({ reason: "limit" }))
      c.read(clientFrame(TEXT, "late"))
      yield* closeTransport(c)
      const info = yield* c.ws.closed
      assert.strictEqual(info.initiatedBy, "remote")
    }).pipe(Effect.scoped))

  it.live("a terminate after the peer's end of input makes the close ours", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never)
      c.transport.emit("end")
      c.ws.terminate(new PolicyViolationError({ reason: "limit" }))
      yield* closeTransport(c)
      assert.deepStrictEqual(yield* c.ws.closed, { code: 1008, reason: "limit", wasClean: false, initiatedBy: "local" })
    }).pipe(Effect.scoped))

  it.live("our close after the peer's end of input is a no-op: the transport ended it", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never)
      c.transport.emit("end")
      assert.isUndefined(c.ws.startClose(1000, ""))
      yield* closeTransport(c)
      assert.deepStrictEqual(yield* c.ws.closed, { code: 1006, reason: "", wasClean: false, initiatedBy: "transport" })
    }).pipe(Effect.scoped))

  it.live("accepting: while open only, not once closing, not once the transport closed", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never)
      assert.isTrue(c.ws.accepting)
      c.transport.emit("end")
      assert.isFalse(c.ws.accepting, "closing (the peer's end of input), transport still there")
      yield* closeTransport(c)
      assert.isFalse(c.ws.accepting)
    }).pipe(Effect.scoped))

  it.live("the owner hears of the transport's close once, however often the transport reports it", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never)
      yield* closeTransport(c)
      assert.strictEqual(c.gone(), 1)
      c.transport.emit("close")
      assert.strictEqual(c.gone(), 1)
    }).pipe(Effect.scoped))

  it.live("destroy after the transport reported its close leaves the transport alone", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never)
      c.transport.emit("close")
      yield* c.ws.transportClosed
      c.ws.destroy()
      assert.isFalse(c.transport.destroyed)
    }).pipe(Effect.scoped))
})

describe("WsConnection owed Close", () => {
  it.live("the consumer catching up with messages sends the owed Close, before the handler ends", () =>
    Effect.gen(function*() {
      const { go, result } = yield* owedClose((_ws, pull, conn) =>
        Effect.zipRight(
          Effect.ignore(pull),
          Effect.sync(() => conn().transport.frames().filter((f) => f.op === CLOSE).map(closeOf))
        )
      )
      yield* Deferred.succeed(go, undefined)
      const closes = yield* Deferred.await(result).pipe(within("2 seconds", "the handler's report"))
      assert.deepStrictEqual(closes, [{ code: 1000, reason: "bye" }])
    }).pipe(Effect.scoped))

  it.live("run taking over from a consumer behind the peer's Close sends the owed Close", () =>
    Effect.gen(function*() {
      const { c, go } = yield* owedClose((ws) => ws.run(() => {}), { closeTimeout: 60_000 })
      yield* Deferred.succeed(go, undefined)
      yield* c.transport.writtenUntil((fs) => fs.some((f) => f.op === CLOSE), "the owed Close, once run took over")
    }).pipe(Effect.scoped))

  it.live("the transport's close drops the owed Close: nothing is left buffered when the consumer catches up", () =>
    Effect.gen(function*() {
      const { c, go, result } = yield* owedClose((ws, pull) => Effect.zipRight(Effect.ignore(pull), ws.bufferedAmount))
      yield* closeTransport(c)
      yield* Deferred.succeed(go, undefined)
      assert.strictEqual(yield* Deferred.await(result).pipe(within("2 seconds", "the handler's report")), 0)
    }).pipe(Effect.scoped))

  it.live("deadlines are not checked while a close is under way", () =>
    Effect.gen(function*() {
      const { c } = yield* owedClose(() => Effect.void, { keepaliveInterval: 1_000, idleTimeout: 1_000 })
      c.ws.checkDeadlines(Date.now() + 1_000_000)
      assert.deepStrictEqual(c.transport.frames(), [], "no keepalive ping, no idle close")
    }).pipe(Effect.scoped))
})

describe("WsConnection after the peer's protocol error", () => {
  it.live("the messages Stream fails with the peer's error, even after a terminate once the transport closed", () =>
    Effect.gen(function*() {
      const go = yield* Deferred.make<void>()
      const result = yield* Deferred.make<Exit.Exit<void, unknown>>()
      const c = yield* open((ws) =>
        Effect.zipRight(
          Deferred.await(go),
          Effect.flatMap(Effect.exit(Stream.runDrain(ws.messages)), (exit) => Deferred.succeed(result, exit))
        )
      )
      c.read(invalidFrame())
      yield* closeTransport(c)
      const error = yield* Effect.flip(c.ws.closed)
      assert.instanceOf(error, ProtocolViolationError)
      c.ws.terminate(new PolicyViolationError({ reason: "late" }))
      yield* Deferred.succeed(go, undefined)
      const exit = yield* Deferred.await(result).pipe(within("2 seconds", "the handler's Stream ended"))
      assert.isTrue(Exit.isFailure(exit), "the Stream ended without the peer's error")
      assert.deepStrictEqual(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error, error)
    }).pipe(Effect.scoped))

  it.live("close() after the peer's protocol error reports an unclean close by the peer", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never)
      c.read(invalidFrame())
      yield* closeTransport(c)
      const info = yield* c.ws.close()
      assert.deepStrictEqual({ code: info.code, wasClean: info.wasClean, initiatedBy: info.initiatedBy }, {
        code: 1002,
        wasClean: false,
        initiatedBy: "remote"
      })
    }).pipe(Effect.scoped))

  it.live("a consumer that caught up after the transport closed leaves reading paused", () =>
    Effect.gen(function*() {
      const go = yield* Deferred.make<void>()
      const done = yield* Deferred.make<void>()
      const c = yield* open(
        (ws) =>
          Effect.gen(function*() {
            yield* Deferred.await(go)
            const pull = yield* Stream.toPull(ws.messages)
            yield* Effect.ignore(pull)
            yield* Deferred.succeed(done, undefined)
          }),
        { inboxHighWaterMark: 4 }
      )
      c.read(clientFrame(TEXT, "0123456789"))
      assert.isTrue(c.transport.isPaused(), "10 bytes over a mark of 4 pause reading")
      yield* closeTransport(c)
      yield* Deferred.succeed(go, undefined)
      yield* Deferred.await(done).pipe(within("2 seconds", "the handler took the batch"))
      assert.isTrue(c.transport.isPaused(), "a closed transport was resumed")
    }).pipe(Effect.scoped))
})

describe("WsConnection deadlines and limits", () => {
  it.live("data sent counts as activity for the idle timeout, which closes with 1001 \"idle timeout\"", () =>
    Effect.gen(function*() {
      const idle = 60_000
      const c = yield* open(() => Effect.never, { idleTimeout: idle })
      const opened = Date.now()
      yield* waitUntil(() => Date.now() >= opened + 2, "the clock to move on 2 ms")
      c.ws.unsafeSend("x")
      yield* c.transport.writtenUntil((fs) => fs.length === 1, "the message sent")
      const sent = Date.now()
      c.ws.checkDeadlines(opened + idle)
      assert.strictEqual(c.transport.frames().length, 1, "idle closed although data went out since")
      c.ws.checkDeadlines(sent + idle)
      const last = c.transport.frames().at(-1)!
      assert.strictEqual(last.op, CLOSE)
      assert.deepStrictEqual(closeOf(last), { code: 1001, reason: "idle timeout" })
    }).pipe(Effect.scoped))

  it.live("a prebuilt frame fails the connection (1008) only when the send buffer goes over the limit", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never, { maxBufferedBytes: 64 })
      c.ws.writeFrame(serverText(64))
      assert.isTrue(c.ws.accepting, "exactly at the limit is not over it")
      yield* nextTurn
      c.ws.writeFrame(serverText(65))
      assert.isFalse(c.ws.accepting, "over the limit")
      yield* nextTurn
      const frames = c.transport.frames()
      assert.deepStrictEqual(frames.map((f) => f.op), [TEXT, TEXT, CLOSE])
      assert.deepStrictEqual(closeOf(frames[2]!), { code: 1008, reason: "send buffer over limit" })
    }).pipe(Effect.scoped))

  it.live("ping: an oversized payload is refused as such; once closing, the connection is closed", () =>
    Effect.gen(function*() {
      const c = yield* open(() => Effect.never)
      const big = yield* Effect.flip(c.ws.ping(new Uint8Array(126)))
      assert.instanceOf(big, InvalidSendError)
      assert.strictEqual((big as InvalidSendError).kind, "ControlPayload")
      assert.isUndefined(c.ws.startClose(1000, ""))
      const closed = yield* Effect.flip(c.ws.ping())
      assert.instanceOf(closed, WebSocketClosedError)
      assert.isFalse(c.transport.frames().some((f) => f.op === PING))
    }).pipe(Effect.scoped))
})
