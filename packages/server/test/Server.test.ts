import { assert, describe, it } from "@effect/vitest"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import {
  Cause,
  Chunk,
  Context,
  DefaultServices,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Metric,
  Option,
  Schedule,
  Schema,
  Scope,
  Stream,
  Tracer
} from "effect"
import * as net from "node:net"
import * as MessageSchema from "../src/MessageSchema.js"
import * as Metrics from "../src/Metrics.js"
import { UpgradeRejected } from "../src/Errors.js"
import type { ProtocolError } from "../src/Errors.js"
import type { CloseInfo, WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import {
  clientFrame,
  connect,
  makeCertificate,
  parseServerFrames,
  pollUntil,
  rawConnect,
  rawExchange,
  recorder,
  waitUntil,
  within
} from "./utils.js"

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

/** A counter's value now (this file's tests run one at a time in their own process). */
const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)

/** Waits (bounded) until `metric` reaches `target`. */
const untilCount = (metric: Metric.Metric.Counter<number>, target: number, what: string) =>
  counter(metric).pipe(
    Effect.repeat({ until: (n) => n >= target, schedule: Schedule.spaced("5 millis") }),
    within("5 seconds", what)
  )

/** Runs a server whose handler reports each connection's handle and `closed` outcome. */
const observed = (
  options: Partial<WebSocketServer.Options<undefined, never, never>> = {},
  handler: (ws: Ws<unknown>) => Effect.Effect<unknown, unknown> = echo
) =>
  Effect.gen(function*() {
    const handles = yield* Deferred.make<Ws<unknown>>()
    const outcome = yield* Deferred.make<Exit.Exit<CloseInfo, unknown>>()
    const server = yield* WebSocketServer.make({
      ...options,
      handler: (ws) =>
        Effect.gen(function*() {
          yield* Deferred.succeed(handles, ws)
          yield* Effect.forkDaemon(Effect.exit(ws.closed).pipe(Effect.flatMap((e) => Deferred.succeed(outcome, e))))
          yield* handler(ws)
        })
    })
    return { server, handle: Deferred.await(handles), outcome: Deferred.await(outcome) }
  })

describe("echo over a real socket with the ws client", () => {
  it.scopedLive("text as text, binary as binary", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      client.send("héllo")
      client.send(Buffer.from([1, 2, 3]))
      yield* rec.waitMessages(2)
      assert.deepStrictEqual(rec.messages[0], { data: "héllo", isBinary: false })
      assert.deepStrictEqual(rec.messages[1], { data: Buffer.from([1, 2, 3]), isBinary: true })
    }))

  it.scopedLive("the run callback form echoes too, and keeps order", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: (ws) => ws.run((m) => void ws.unsafeSend(m)) })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      for (let i = 0; i < 500; i++) client.send("m" + i)
      yield* rec.waitMessages(500)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), Array.from({ length: 500 }, (_, i) => "m" + i))
    }))

  it.scopedLive("run first hands over what arrived before it was called, in order", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const server = yield* WebSocketServer.make({
        handler: (ws) => Effect.zipRight(Deferred.await(gate), ws.run((m) => void ws.unsafeSend(m)))
      })
      const before = yield* counter(Metrics.messagesReceived)
      const client = yield* connect(server.url)
      const rec = recorder(client)
      for (const m of ["a", "b", "c"]) client.send(m)
      // run is called only once the server has read all three
      yield* untilCount(Metrics.messagesReceived, before + 3, "the server reading a, b, c")
      assert.deepStrictEqual(rec.messages, [], "nothing answered before run")
      yield* Deferred.succeed(gate, undefined)
      yield* rec.waitMessages(3).pipe(within("5 seconds", "the three earlier messages handed to run"))
      client.send("d")
      yield* rec.waitMessages(4)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), ["a", "b", "c", "d"])
    }))

  it.scopedLive("run's Effects see the services around run; the first one that fails closes with 1011", () =>
    Effect.gen(function*() {
      class Greeting extends Context.Tag("Greeting")<Greeting, string>() {}
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          ws.run((m) =>
            m === "boom"
              ? Effect.fail("secret database password")
              : Effect.flatMap(Greeting, (g) => Effect.sync(() => ws.unsafeSend(g + m)))
          ).pipe(Effect.provideService(Greeting, "hi "))
      })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      client.send("ada")
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "hi ada")
      client.send("boom")
      const seen = yield* rec.waitClose
      assert.strictEqual(seen.code, 1011)
      assert.notInclude(seen.reason, "secret")
    }))

  it.scopedLive("reassembles a fragmented message (RFC 6455 §5.4)", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      client.send("frag", { fin: false })
      client.send("ment", { fin: false })
      client.send("ed", { fin: true })
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "fragmented")
    }))

  it.scopedLive("answers pings and measures its own (RFC 6455 §5.5.2)", () =>
    Effect.gen(function*() {
      const { handle, server } = yield* observed({ keepaliveInterval: 0 }, () => Effect.never)
      // a raw peer that answers our ping only when the test says so (the first connection: `handle`)
      const raw = yield* rawConnect(server.address.port)
      const ws = yield* handle
      const client = yield* connect(server.url)
      const pong = yield* Effect.async<Buffer>((resume) => {
        client.once("pong", (d: Buffer) => resume(Effect.succeed(d)))
        client.ping(Buffer.from("are you there"))
      }).pipe(within("5 seconds", "the server's pong"))
      assert.strictEqual(pong.toString(), "are you there")
      const rttsBefore = (yield* Metric.value(Metrics.pingRoundTrip)).count
      const started = Date.now()
      const ping = yield* Effect.fork(ws.ping(Buffer.from("x")))
      yield* waitUntil(() => parseServerFrames(raw.received()).length > 0, "our Ping reaching the peer")
      assert.deepStrictEqual(parseServerFrames(raw.received()).map((f) => [f.opcode, f.payload.toString()]), [[9, "x"]])
      // unanswered, the ping waits; answered 50 ms later, its round trip covers those 50 ms
      yield* Effect.sleep(50)
      assert.isTrue(Option.isNone(yield* Fiber.poll(ping)), "ping completed before its pong")
      raw.socket.write(clientFrame(10, "x"))
      const rtt = yield* Fiber.join(ping).pipe(within("5 seconds", "ping completing on the pong"))
      assert.isAtLeast(rtt, 45)
      assert.isAtMost(rtt, Date.now() - started)
      assert.strictEqual((yield* Metric.value(Metrics.pingRoundTrip)).count - rttsBefore, 1)
    }))

  /** A tracer that records spans (as an exporter would): Effect's built-in one, with a log of what it made. */
  const recordingTracer = () => {
    const native = Context.get(DefaultServices.liveServices, Tracer.Tracer)
    const made: Array<string> = []
    const tracer = Tracer.make({
      span: (...args) => {
        made.push(args[0])
        return native.span(...args)
      },
      context: native.context
    })
    return { made, tracer }
  }

  /**
   * The name of the span the handler runs in, or undefined (not an `Option`: chai's deep equality
   * finds `Option.some(x)` equal to `Option.none()`).
   */
  const handlerSpan = (options: { connectionSpan?: boolean | "auto" }) =>
    Effect.gen(function*() {
      const seen = yield* Deferred.make<string | undefined>()
      const server = yield* WebSocketServer.make({
        ...options,
        handler: (ws) =>
          Effect.zipRight(
            Effect.flatMap(Effect.option(Effect.currentSpan), (s) => Deferred.succeed(seen, Option.getOrUndefined(s)?.name)),
            ws.run(() => {})
          )
      })
      const client = yield* connect(server.url)
      const span = yield* Deferred.await(seen).pipe(within("5 seconds", "the handler to look at its span"))
      client.close()
      return span
    })

  it.scopedLive("with a tracer installed, the handler runs in a websocket.connection span that ends with the handler", () =>
    Effect.gen(function*() {
      const { made, tracer } = recordingTracer()
      const spans = yield* Deferred.make<{ span: Tracer.Span; child: Tracer.Span }>()
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            const span = yield* Effect.currentSpan
            const child = yield* Effect.currentSpan.pipe(Effect.withSpan("child"))
            yield* Deferred.succeed(spans, { span, child })
            yield* ws.run(() => {})
          })
      }).pipe(Effect.withTracer(tracer))
      const client = yield* connect(server.url + "/room?x=1")
      const { child, span } = yield* Deferred.await(spans).pipe(within("5 seconds", "the handler's spans"))
      assert.deepStrictEqual(made, ["websocket.connection", "child"], "both spans went to the installed tracer")
      assert.strictEqual(span.name, "websocket.connection")
      assert.strictEqual(span.attributes.get("url.path"), "/room?x=1")
      assert.strictEqual(typeof span.attributes.get("websocket.id"), "number")
      assert.deepStrictEqual(Option.map(child.parent, (p) => p.spanId), Option.some(span.spanId))
      assert.strictEqual(span.status._tag, "Started")
      client.close()
      const ended = yield* pollUntil(Effect.sync(() => span.status), (s) => s._tag === "Ended", 5_000)
      assert.ok(ended._tag === "Ended" && Exit.isSuccess(ended.exit))
      assert.ok(ended._tag === "Ended" && ended.endTime >= ended.startTime)
    }))

  it.scopedLive("by default, no span with Effect's built-in tracer (nothing records it) or with tracing off", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* handlerSpan({}), undefined)
      const { made, tracer } = recordingTracer()
      const off = yield* handlerSpan({}).pipe(Effect.withTracer(tracer), Effect.withTracerEnabled(false))
      assert.strictEqual(off, undefined)
      assert.deepStrictEqual(made, [])
    }))

  it.scopedLive("connectionSpan: true makes the span with the built-in tracer too", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* handlerSpan({ connectionSpan: true }), "websocket.connection")
    }))

  it.scopedLive("connectionSpan: false runs the handler without a span, even with a tracer installed", () =>
    Effect.gen(function*() {
      const { made, tracer } = recordingTracer()
      assert.strictEqual(yield* handlerSpan({ connectionSpan: false }).pipe(Effect.withTracer(tracer)), undefined)
      assert.deepStrictEqual(made, [])
    }))

  it.scopedLive("the request carries the URL, the headers and the peer's address", () =>
    Effect.gen(function*() {
      const seen = yield* Deferred.make<{ address: unknown; port: unknown; json: string; hook: unknown }>()
      const server = yield* WebSocketServer.make({
        onUpgrade: (info) => Effect.succeed({ data: `${info.remoteAddress}:${info.remotePort}` }),
        handler: (ws) =>
          Effect.zipRight(
            Deferred.succeed(seen, {
              address: ws.request.remoteAddress,
              port: ws.request.remotePort,
              json: JSON.stringify(ws.request),
              hook: ws.data
            }),
            ws.run(() => {})
          )
      })
      const client = yield* connect(server.url + "/r?q=1", { headers: { "X-Test": "yes" } })
      const local = (client as unknown as { _socket: { localPort: number } })._socket.localPort
      const got = yield* Deferred.await(seen)
      assert.deepStrictEqual([got.address, got.port, got.hook], ["127.0.0.1", local, `127.0.0.1:${local}`])
      const json = JSON.parse(got.json)
      assert.deepStrictEqual([json.url, json.headers["x-test"], json.remoteAddress, json.remotePort], [
        "/r?q=1",
        "yes",
        "127.0.0.1",
        local
      ])
    }))

  it.scopedLive("counts messages and bytes in Effect metrics", () =>
    Effect.gen(function*() {
      const metrics = [Metrics.messagesReceived, Metrics.messagesSent, Metrics.bytesReceived, Metrics.bytesSent]
      const before = yield* Effect.forEach(metrics, counter)
      const server = yield* WebSocketServer.make({ handler: echo })
      const raw = yield* rawConnect(server.address.port)
      // 2 + 4 (mask) + 3 bytes per frame from the client, 2 + 5 bytes per frame back
      raw.socket.write(Buffer.concat([clientFrame(1, "one"), clientFrame(2, Buffer.from("three"))]))
      yield* waitUntil(() => parseServerFrames(raw.received()).length === 2, "both echoes")
      const after = yield* Effect.forEach(metrics, counter)
      assert.deepStrictEqual(after.map((n, i) => n - before[i]!), [2, 2, 9 + 11, 5 + 7])
    }))
})

describe("closing (RFC 6455 §7)", () => {
  it.scopedLive("a clean close started by the client", () =>
    Effect.gen(function*() {
      const { outcome, server } = yield* observed()
      const client = yield* connect(server.url)
      const rec = recorder(client)
      client.close(1000, "done")
      const seen = yield* rec.waitClose
      assert.strictEqual(seen.code, 1000)
      const exit = yield* outcome
      assert.deepStrictEqual(exit, Exit.succeed({ code: 1000, reason: "done", wasClean: true, initiatedBy: "remote" }))
    }))

  it.scopedLive("a clean close started by the server, with a code and reason", () =>
    Effect.gen(function*() {
      const { outcome, server } = yield* observed({}, (ws) => ws.close(4001, "bye"))
      const client = yield* connect(server.url)
      const seen = yield* recorder(client).waitClose
      assert.deepStrictEqual(seen, { code: 4001, reason: "bye" })
      const exit = yield* outcome
      assert.deepStrictEqual(exit, Exit.succeed({ code: 4001, reason: "bye", wasClean: true, initiatedBy: "local" }))
    }))

  it.scopedLive("a handler that returns closes the connection with 1000", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: () => Effect.void })
      const client = yield* connect(server.url)
      const seen = yield* recorder(client).waitClose
      assert.strictEqual(seen.code, 1000)
    }))

  it.scopedLive("a handler that fails closes the connection with 1011, details kept off the wire", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: () => Effect.fail("secret database password") })
      const client = yield* connect(server.url)
      const seen = yield* recorder(client).waitClose
      assert.strictEqual(seen.code, 1011)
      assert.notInclude(seen.reason, "secret")
    }))

  it.scopedLive("a peer that never answers our Close is cut at the close timeout", () =>
    Effect.gen(function*() {
      const { outcome, server } = yield* observed({ closeTimeout: 200 }, (ws) => Effect.asVoid(ws.close(1000)))
      const raw = yield* rawConnect(server.address.port)
      yield* raw.ended
      const received = raw.received()
      assert.strictEqual(received.subarray(0, 4).toString("hex"), "880203e8")
      const exit = yield* outcome
      assert.isTrue(Exit.isSuccess(exit))
      if (Exit.isSuccess(exit)) {
        assert.isFalse(exit.value.wasClean)
        assert.strictEqual(exit.value.initiatedBy, "local")
      }
    }))

  it.scopedLive("a protocol error sends its close code, closes TCP, and fails `closed` with the typed error", () =>
    Effect.gen(function*() {
      const { outcome, server } = yield* observed()
      const raw = yield* rawConnect(server.address.port)
      // an unmasked client frame
      raw.socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]))
      yield* raw.ended
      const received = raw.received()
      assert.strictEqual(received[0], 0x88)
      assert.strictEqual(received.readUInt16BE(2), 1002)
      const exit = yield* outcome
      assert.isTrue(Exit.isFailure(exit))
      const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      assert.strictEqual((failure as any).value._tag, "ProtocolViolationError")
      assert.strictEqual((failure as any).value.closeCode, 1002)
    }))

  it.scopedLive("invalid UTF-8 fails with 1007, message too big with 1009", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, maxMessageSize: 1000 })
      const a = yield* rawConnect(server.address.port)
      a.socket.write(clientFrame(1, Buffer.from([0x61, 0xff])))
      yield* a.ended
      assert.strictEqual(a.received().readUInt16BE(2), 1007)
      const b = yield* rawConnect(server.address.port)
      b.socket.write(clientFrame(2, Buffer.alloc(2000)).subarray(0, 8))
      yield* b.ended
      assert.strictEqual(b.received().readUInt16BE(2), 1009)
    }))

  it.scopedLive("an abrupt TCP reset in the middle of a frame ends the connection as 1006, no crash", () =>
    Effect.gen(function*() {
      const { outcome, server } = yield* observed()
      const raw = yield* rawConnect(server.address.port)
      raw.socket.write(clientFrame(2, Buffer.alloc(10_000)).subarray(0, 5000))
      yield* Effect.sleep(20)
      raw.socket.resetAndDestroy()
      const exit = yield* outcome
      assert.deepStrictEqual(exit, Exit.succeed({ code: 1006, reason: "", wasClean: false, initiatedBy: "transport" }))
      // the connection's scope is released right after
      for (let i = 0; i < 50 && (yield* server.connections) > 0; i++) yield* Effect.sleep(10)
      assert.strictEqual(yield* server.connections, 0)
    }))

  it.scopedLive("messages before the peer's Close are answered before the Close reply (Autobahn 7.1.6)", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: (ws) => Stream.runForEach(ws.messages, (m) => Effect.zipRight(Effect.sleep(5), ws.send(m)))
      })
      const raw = yield* rawConnect(server.address.port)
      raw.socket.write(Buffer.concat([clientFrame(1, "a"), clientFrame(1, "b"), clientFrame(8, Buffer.from([3, 232]))]))
      yield* raw.ended
      assert.strictEqual(raw.received().toString("hex"), "81016181016288" + "0203e8")
    }))
})

describe("limits", () => {
  it.scopedLive("a limit out of range is a RangeError when the server is made, not at its first connection", () =>
    Effect.gen(function*() {
      const cases = [
        [{ maxHeaderBytes: 0 }, "maxHeaderBytes must be an integer >= 16, got 0"],
        [{ maxHeaderBytes: 15 }, "maxHeaderBytes must be an integer >= 16, got 15"],
        [{ maxHeaders: 2.5 }, "maxHeaders must be an integer >= 0, got 2.5"],
        [{ maxMessageSize: Number.NaN }, "maxMessageSize must be an integer >= 0, got NaN"],
        [{ maxFrameSize: -1 }, "maxFrameSize must be an integer >= 0, got -1"],
        [{ maxFragments: 1.5 }, "maxFragments must be an integer >= 0, got 1.5"],
        [{ closeTimeout: Number.POSITIVE_INFINITY }, "closeTimeout must be a finite number >= 0 (ms), got Infinity"],
        [{ keepaliveInterval: -5 }, "keepaliveInterval must be a finite number >= 0 (ms), got -5"],
        [{ handshakeTimeout: Number.NaN }, "handshakeTimeout must be a finite number >= 0 (ms), got NaN"],
        [{ highWaterMark: Number.NaN }, "highWaterMark must be a number >= 0, got NaN"],
        [{ inboxHighWaterMark: -1 }, "inboxHighWaterMark must be a number >= 0, got -1"]
      ] as const
      for (const [limits, message] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(WebSocketServer.make({ handler: echo, ...limits })))
        assert.isTrue(Exit.isFailure(exit), message)
        const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
        assert.isTrue(Option.isSome(defect) && defect.value instanceof RangeError, message)
        assert.strictEqual(Option.isSome(defect) ? (defect.value as RangeError).message : "", `WebSocket server option ${message}`)
      }
      // the edges of each range are in it
      for (const limits of [{ maxHeaderBytes: 16, maxHeaders: 0, maxMessageSize: 0 }, { maxFragments: 0, closeTimeout: 0 }, {
        highWaterMark: 0,
        inboxHighWaterMark: 0
      }]) {
        const exit = yield* Effect.exit(Effect.scoped(WebSocketServer.make({ handler: echo, ...limits })))
        assert.isTrue(Exit.isSuccess(exit), JSON.stringify(limits))
      }
      // in range (no bound on the buffer marks), a server is made and echoes
      const server = yield* WebSocketServer.make({
        handler: echo,
        maxBufferedBytes: Number.POSITIVE_INFINITY,
        maxHeaderBytes: 4096,
        maxHeaders: 20
      })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      client.send("still here")
      yield* rec.waitMessages(1).pipe(within("5 seconds", "the echo"))
      assert.deepStrictEqual(rec.messages[0], { data: "still here", isBinary: false })
    }))
})

describe("timeouts", () => {
  it.scopedLive("handshake timeout closes a connection that sends nothing (slowloris)", () =>
    Effect.gen(function*() {
      // 150 ms, far under both the default (10 s) and this test's bound (3 s)
      const server = yield* WebSocketServer.make({ handler: echo, handshakeTimeout: 150 })
      const silent = yield* rawExchange(server.address.port, "").pipe(
        within("3 seconds", "the server closing a socket that sent nothing")
      )
      assert.strictEqual(silent, "")
      const partial = yield* rawExchange(server.address.port, "GET / HTTP/1.1\r\nHost: x\r\n").pipe(
        within("3 seconds", "the server closing a socket that sent half a request head")
      )
      assert.strictEqual(partial, "")
    }))

  it.scopedLive("keepalive drops a peer that stops answering pings, keeps one that answers", () =>
    Effect.gen(function*() {
      const { outcome, server } = yield* observed({ keepaliveInterval: 100, keepaliveTimeout: 100 }, () => Effect.never)
      const live = yield* connect(server.url)
      let pings = 0
      live.on("ping", () => pings++)
      const raw = yield* rawConnect(server.address.port)
      yield* raw.ended.pipe(within("5 seconds", "the silent peer dropped by keepalive"))
      assert.strictEqual(raw.received()[0], 0x89) // it was pinged first
      const exit = yield* outcome.pipe(within("5 seconds", "the dropped connection's `closed`"))
      assert.deepStrictEqual(exit, Exit.succeed({ code: 1006, reason: "", wasClean: false, initiatedBy: "transport" }))
      // the live peer answers: three more pings, each past the keepalive timeout, and it stays
      const seen = pings
      yield* waitUntil(() => pings >= seen + 3, "three more pings answered by the live peer")
      assert.strictEqual(live.readyState, live.OPEN)
      assert.strictEqual(yield* server.connections, 1)
    }))

  it.scopedLive("the close timeout does not keep a finished handler's fiber alive", () =>
    Effect.gen(function*() {
      // V8's gc(), to see what the server still holds once the connections are gone
      setFlagsFromString("--expose-gc")
      const gc = runInNewContext("gc") as () => void
      const fibers: Array<WeakRef<object>> = []
      let ended = 0
      const server = yield* WebSocketServer.make({
        closeTimeout: 60_000,
        handler: (ws) =>
          Effect.withFiberRuntime<void, ProtocolError>((fiber) => {
            fibers.push(new WeakRef(fiber))
            return ws.run(() => undefined).pipe(Effect.ensuring(Effect.sync(() => ended++)))
          })
      })
      for (let i = 0; i < 10; i++) {
        const client = yield* connect(server.url)
        client.close()
        yield* recorder(client).waitClose
      }
      yield* pollUntil(Effect.sync(() => ended), (n) => n === 10, 5_000)
      let alive = fibers.length
      for (let round = 0; round < 20 && alive > 0; round++) {
        // a WeakRef is cleared after the job that ran the collection
        yield* Effect.sleep(20)
        gc()
        alive = fibers.filter((f) => f.deref() !== undefined).length
      }
      assert.strictEqual(fibers.length, 10)
      assert.strictEqual(alive, 0)
    }))

  it.scopedLive("idle timeout closes a silent connection with 1001", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: () => Effect.never, idleTimeout: 150, keepaliveInterval: 0 })
      const client = yield* connect(server.url)
      const seen = yield* recorder(client).waitClose
      assert.strictEqual(seen.code, 1001)
    }))
})

describe("wss:// through node:tls", () => {
  it.scopedLive("echoes over TLS with a certificate made at test time", () =>
    Effect.gen(function*() {
      const { key, cert } = makeCertificate()
      const server = yield* WebSocketServer.make({ handler: echo, tls: { key, cert } })
      assert.isTrue(server.url.startsWith("wss://"))
      const client = yield* connect(server.url, { ca: cert })
      const rec = recorder(client)
      client.send("secure")
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "secure")
      client.close(1000)
      assert.strictEqual((yield* rec.waitClose).code, 1000)
    }))
})

describe("upgrade hook and handshake rejections (RFC 6455 §4.2.2)", () => {
  const authServer = WebSocketServer.make({
    protocols: ["chat.v2", "chat.v1"],
    onUpgrade: (req) => {
      const token = new URL(req.url, "http://x").searchParams.get("token")
      return token === "sesame"
        ? Effect.succeed({ data: { user: "ali" } })
        : Effect.fail(new UpgradeRejected({ status: 401, body: "missing token" }))
    },
    handler: (ws) => ws.send(`${ws.data.user} ${ws.protocol}`)
  })

  it.scopedLive("accepts with typed data and the server's preferred subprotocol", () =>
    Effect.gen(function*() {
      const server = yield* authServer
      const client = yield* connect(server.url + "/?token=sesame", { protocols: ["chat.v1", "chat.v2"] })
      const rec = recorder(client)
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "ali chat.v2")
      assert.strictEqual(client.protocol, "chat.v2")
    }))

  it.scopedLive("rejects with the hook's status and body, then closes", () =>
    Effect.gen(function*() {
      const server = yield* authServer
      const response = yield* rawExchange(
        server.address.port,
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
      )
      assert.match(response, /^HTTP\/1\.1 401 /)
      assert.match(response, /Connection: close/i)
      assert.match(response, /missing token$/)
    }))

  it.scopedLive("426 with the supported version; 400 for a bad key; nothing pipelined is processed", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo })
      const v8 = yield* rawExchange(
        server.address.port,
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
      )
      assert.match(v8, /^HTTP\/1\.1 426 /)
      assert.match(v8, /Sec-WebSocket-Version: 13/i)
      const badKey = yield* rawExchange(
        server.address.port,
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n" +
          "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
      )
      assert.match(badKey, /^HTTP\/1\.1 400 /)
      assert.strictEqual(badKey.match(/HTTP\/1\.1/g)!.length, 1)
    }))
})

describe("typed messages with Schema", () => {
  const In = Schema.Union(
    Schema.Struct({ type: Schema.Literal("add"), a: Schema.Number, b: Schema.Number }),
    Schema.Struct({ type: Schema.Literal("hello"), name: Schema.String })
  )
  const Out = Schema.Struct({ result: Schema.Number })

  it.scopedLive("decodes, encodes, lets the handler recover from a bad message", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: (ws) => {
          const typed = MessageSchema.make(ws, { incoming: In, outgoing: Out })
          return typed.messages.pipe(
            Stream.catchTag("MessageDecodeError", () => Stream.make({ type: "add" as const, a: -1, b: 0 })),
            Stream.runForEach((m) => typed.send({ result: m.type === "add" ? m.a + m.b : m.name.length }))
          )
        }
      })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      client.send(JSON.stringify({ type: "add", a: 2, b: 3 }))
      yield* rec.waitMessages(1)
      assert.deepStrictEqual(JSON.parse(rec.messages[0]!.data as string), { result: 5 })
      client.send("{not json")
      yield* rec.waitMessages(2)
      assert.deepStrictEqual(JSON.parse(rec.messages[1]!.data as string), { result: -1 })
    }))

  it.scopedLive("a decode error left unhandled closes the connection with 1007", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Stream.runDrain(MessageSchema.make(ws, { incoming: In, outgoing: Out }).messages)
      })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      client.send(JSON.stringify({ type: "multiply" }))
      assert.strictEqual((yield* rec.waitClose).code, 1007)
    }))
})

describe("backpressure", () => {
  it.scopedLive("send suspends for a reader that stops reading; buffered bytes stay bounded", () =>
    Effect.gen(function*() {
      const sent = { count: 0 }
      const chunk = Buffer.alloc(64 * 1024, 7)
      let sender: Fiber.RuntimeFiber<unknown, unknown> | undefined
      const { handle, server } = yield* observed({ highWaterMark: 256 * 1024 }, (ws) =>
        Effect.withFiberRuntime((fiber) => {
          sender = fiber
          return Effect.gen(function*() {
            // bounded: 2,000 x 64 KiB = 128 MiB if nothing pushed back
            for (let i = 0; i < 2000; i++) {
              yield* ws.send(chunk)
              sent.count++
            }
          })
        }))
      const raw = yield* rawConnect(server.address.port)
      raw.socket.pause()
      const ws = yield* handle
      // the event: the handler's fiber suspends (in send: it does nothing else) before it is done
      const suspended = () =>
        sender!.status.pipe(Effect.map((s) => s._tag !== "Running"))
      yield* suspended().pipe(
        Effect.repeat({ until: (s) => s, schedule: Schedule.spaced("5 millis") }),
        within("5 seconds", "the sender suspending")
      )
      const stalledAt = sent.count
      assert.isTrue(Option.isNone(yield* Fiber.poll(sender!)), "the sender is suspended, not done")
      assert.isBelow(stalledAt, 2000)
      assert.isAtMost(yield* ws.bufferedAmount, 256 * 1024 + 2 * chunk.length)
      raw.socket.resume()
      yield* waitUntil(() => sent.count > stalledAt, "the sender resuming once the reader reads")
    }))

  it.scopedLive("a connection flooded past the hard limit is closed with 1008", () =>
    Effect.gen(function*() {
      const chunk = Buffer.alloc(64 * 1024, 7)
      const { outcome, server } = yield* observed({ maxBufferedBytes: 1024 * 1024, closeTimeout: 200 }, (ws) =>
        Effect.sync(() => {
          for (let i = 0; i < 200 && ws.unsafeSend(chunk); i++);
        }).pipe(Effect.zipRight(Effect.never)))
      const raw = yield* rawConnect(server.address.port)
      raw.socket.pause()
      const exit = yield* outcome
      assert.isTrue(Exit.isSuccess(exit))
      if (Exit.isSuccess(exit)) assert.strictEqual(exit.value.code, 1008)
    }))

  it.scopedLive("a flood faster than the handler pauses the socket (the client's buffer grows instead)", () =>
    Effect.gen(function*() {
      const got = { count: 0 }
      const server = yield* WebSocketServer.make({
        inboxHighWaterMark: 64 * 1024,
        closeTimeout: 200,
        handler: (ws) => Stream.runForEach(ws.messages, () => Effect.zipRight(Effect.sleep(20), Effect.sync(() => got.count++)))
      })
      const read = yield* counter(Metrics.bytesReceived)
      const paused = yield* counter(Metrics.backpressureEvents)
      const client = yield* connect(server.url)
      const msg = Buffer.alloc(16 * 1024, 1)
      for (let i = 0; i < 2000; i++) client.send(msg)
      yield* untilCount(Metrics.backpressureEvents, paused + 1, "the server pausing the socket")
      // while the handler works through 20 messages (400 ms), unpaused reading would take in all
      // 32 MiB; paused, the server reads about what the handler takes
      yield* waitUntil(() => got.count >= 20, "the handler handling 20 messages")
      const taken = (yield* counter(Metrics.bytesReceived)) - read
      assert.isBelow(taken, 4 * 1024 * 1024, `the server read ${taken} bytes`)
      assert.isAbove(client.bufferedAmount, 16 * 1024 * 1024, "the rest waits in the client")
    }))
})

describe("graceful shutdown", () => {
  it.scopedLive("releasing the server sends 1001 to every connection and leaves no handles", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* WebSocketServer.make({ handler: echo }).pipe(Scope.extend(scope))
      // the clients live in the test's scope, the server in its own
      const clients = yield* Effect.forEach(Array.from({ length: 20 }), () => connect(server.url))
      const recs = clients.map(recorder)
      // under load: every client keeps sending while the server shuts down
      const load = setInterval(() => {
        for (const c of clients) if (c.readyState === c.OPEN) c.send("tick")
      }, 1)
      yield* Effect.sleep(50)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      const codes = yield* Effect.forEach(recs, (r) => r.waitClose).pipe(within("10 seconds", "20 clients closed"))
      clearInterval(load)
      yield* Fiber.join(closing).pipe(within("10 seconds", "the server's scope closed"))
      assert.deepStrictEqual(codes.map((c) => c.code), Array(20).fill(1001))
      // this test's own handles: the server ended every TCP connection (the clients saw its FIN,
      // their sockets are closed), counts none, and no longer listens
      const sockets = clients.map((c) => (c as unknown as { _socket: net.Socket })._socket)
      assert.deepStrictEqual(sockets.map((s) => [s.readableEnded, s.destroyed]), Array(20).fill([true, true]))
      assert.strictEqual(yield* server.connections, 0)
      const refused = yield* Effect.async<string>((resume) => {
        const probe = net.connect(server.address.port, "127.0.0.1")
        probe.once("connect", () => {
          probe.destroy()
          resume(Effect.succeed("connected"))
        })
        probe.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code ?? "error")))
      }).pipe(within("5 seconds", "a connection attempt to the released port"))
      assert.strictEqual(refused, "ECONNREFUSED")
    }))
})

describe("send is an Effect", () => {
  it.scopedLive("made, it sends nothing; each run sends once, in the order the runs happen", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            const later = ws.send("later")
            yield* ws.send("first")
            yield* later
            yield* later
            yield* ws.close()
          })
      })
      const client = yield* connect(`ws://127.0.0.1:${server.address.port}`)
      const rec = recorder(client)
      yield* rec.waitClose.pipe(within("5 seconds", "the handler's close"))
      assert.deepStrictEqual(rec.messages.map((m) => m.data), ["first", "later", "later"])
    }))
})

describe("chunked hand-off", () => {
  it.scopedLive("many messages in one read reach the stream as one chunk", () =>
    Effect.gen(function*() {
      const sizes = yield* Deferred.make<number>()
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          ws.messages.pipe(Stream.chunks, Stream.take(1), Stream.runForEach((c) => Deferred.succeed(sizes, Chunk.size(c))))
      })
      const raw = yield* rawConnect(server.address.port)
      raw.socket.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => clientFrame(1, "m" + i))))
      assert.strictEqual(yield* Deferred.await(sizes), 50)
    }))
  it.scopedLive("a pull interrupted while it waits loses nothing: the next pull gets every later message, in order", () =>
    Effect.gen(function*() {
      const timedOut = yield* Deferred.make<Option.Option<unknown>>()
      const got = yield* Deferred.make<ReadonlyArray<unknown>>()
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            // the first pull waits (nothing was sent yet) and is interrupted by its timeout
            yield* Deferred.succeed(timedOut, yield* Stream.runHead(ws.messages).pipe(Effect.timeoutOption("50 millis")))
            // the three messages reach the inbox while nobody pulls (the interrupted pull's
            // resume is the only one left), then the next pull starts
            const before = yield* counter(Metrics.messagesReceived)
            yield* ws.send("ready")
            yield* untilCount(Metrics.messagesReceived, before + 3, "the three messages, received before the next pull")
            yield* Deferred.succeed(got, Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.take(ws.messages, 3))))
          })
      })
      const client = yield* connect(`ws://127.0.0.1:${server.address.port}`)
      const rec = recorder(client)
      assert.isTrue(Option.isNone(yield* Deferred.await(timedOut).pipe(within("5 seconds", "the first pull's timeout"))))
      yield* rec.waitMessages(1).pipe(within("5 seconds", "the handler's ready"))
      for (const m of ["a", "b", "c"]) client.send(m)
      assert.deepStrictEqual(yield* Deferred.await(got).pipe(within("5 seconds", "the second pull's three messages")), [
        "a",
        "b",
        "c"
      ])
    }))
})
