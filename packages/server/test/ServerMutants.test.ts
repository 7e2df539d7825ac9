/**
 * The Engine of `src/internal/server.ts` at its edges: the raw socket before the request head
 * is complete (limits, a peer that resets, TCP_NODELAY), refusals (the hook's, a failed hook, a
 * subprotocol not offered, a peer that never reads its refusal), the subprotocol the hook picks
 * over `protocols`, the deadline granularity, shutdown (its 1001 reason, an upgrade whose hook
 * finishes during it, a TLS handshake that completes after it). These tests pin down survivors
 * of a StrykerJS run over `src/internal/server.ts`; `mutation-equivalents.md` lists the mutants
 * no test can tell apart.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Logger, Schedule, Scope, Stream } from "effect"
import * as http from "node:http"
import * as net from "node:net"
import * as tls from "node:tls"
import { ServerError, UpgradeRejected } from "../src/Errors.js"
import * as HttpUpgrade from "../src/HttpUpgrade.js"
import { bind, Engine, listen } from "../src/internal/server.js"
import type { WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import {
  closeCodeIn,
  connect,
  headEnd,
  listenHttp,
  makeCertificate,
  parseServerFrames,
  rawConnect,
  rawExchange,
  rawSocket,
  recordSocket,
  upgradeRequest,
  uncaughtErrors,
  waitUntil,
  within
} from "./utils.js"

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

/** Sends `request` and returns what came back once a whole response head is there. */
const responseHead = (port: number, request: string) =>
  Effect.gen(function*() {
    const raw = yield* rawSocket(port)
    raw.socket.write(request)
    const complete = yield* raw.waitFor((r) => headEnd(r) >= 0).pipe(within("3 seconds", "a response head"))
    assert.isTrue(complete, `the server closed without a response: ${raw.received().toString("latin1")}`)
    return raw.received().toString("latin1")
  })

/** Every `net.Server` that starts listening while the scope is open. */
const capturedServers = Effect.acquireRelease(
  Effect.sync(() => {
    const servers: Array<net.Server> = []
    const original = net.Server.prototype.listen
    net.Server.prototype.listen = function(this: net.Server, ...args: Array<unknown>) {
      servers.push(this)
      return (original as (...a: Array<unknown>) => net.Server).apply(this, args)
    } as typeof original
    return { servers, original }
  }),
  ({ original }) => Effect.sync(() => void (net.Server.prototype.listen = original))
).pipe(Effect.map(({ servers }) => servers))

const connectionCount = (server: net.Server): Effect.Effect<number> =>
  Effect.async<number>((resume) => void server.getConnections((_e, n) => resume(Effect.succeed(n))))


describe("Engine: the socket before its request head", () => {
  it.scopedLive("accepted sockets get TCP_NODELAY (never turned off)", () =>
    Effect.gen(function*() {
      const calls: Array<unknown> = []
      const original = net.Socket.prototype.setNoDelay
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          net.Socket.prototype.setNoDelay = function(this: net.Socket, noDelay?: boolean) {
            // server-side sockets only (a socket accepted by a net.Server has `server` set)
            if ((this as { server?: unknown }).server !== undefined) calls.push(noDelay)
            return original.call(this, noDelay)
          }
        }),
        () => Effect.sync(() => void (net.Socket.prototype.setNoDelay = original))
      )
      const server = yield* WebSocketServer.make({ handler: echo })
      const head = yield* responseHead(server.address.port, upgradeRequest())
      assert.isTrue(head.startsWith("HTTP/1.1 101 "), head)
      assert.isAbove(calls.length, 0)
      assert.deepStrictEqual(calls.filter((c) => c !== true), [])
    }))

  it.scopedLive("maxHeaders reaches the request parser (431 beyond it)", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, maxHeaders: 6 })
      const head = yield* responseHead(server.address.port, upgradeRequest({ "X-A": "1", "X-B": "2", "X-C": "3" }))
      assert.isTrue(head.startsWith("HTTP/1.1 431 "), head)
    }))

  it.scopedLive("a peer that resets before its request head is complete: no uncaught error, the socket leaves pending", () =>
    Effect.gen(function*() {
      const errors = yield* uncaughtErrors
      const { engine, address } = yield* listen<unknown, unknown, never, never, never>({ handler: echo, handshakeTimeout: 60_000 })
      const raw = yield* rawSocket(address.port)
      raw.socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
      yield* waitUntil(() => engine.pending.size === 1, "the server took the socket", "3 seconds")
      raw.socket.resetAndDestroy()
      yield* waitUntil(() => engine.pending.size === 0, "the reset socket left the pending set", "3 seconds")
      assert.deepStrictEqual(errors, [])
    }))

  it.scopedLive("a peer that closes before its request head is complete leaves the pending set", () =>
    Effect.gen(function*() {
      const { engine, address } = yield* listen<unknown, unknown, never, never, never>({ handler: echo, handshakeTimeout: 60_000 })
      const raw = yield* rawSocket(address.port)
      raw.socket.write("GET / HTTP/1.1\r\n")
      yield* waitUntil(() => engine.pending.size === 1, "the server took the socket", "3 seconds")
      raw.socket.end()
      yield* waitUntil(() => engine.pending.size === 0, "the closed socket left the pending set", "3 seconds")
    }))

  it("an engine without a forker refuses raw sockets", () => {
    const engine = new Engine<undefined, never, never, never, never>({ handler: () => Effect.void }, undefined)
    assert.throws(
      () => engine.handle({} as net.Socket, { httpVersion: "1.1", headers: {} }, new Uint8Array(0)),
      /this engine does not accept raw sockets/
    )
  })
})

describe("Engine: refusals", () => {
  it.scopedLive("a refused peer that never reads is cut after the close timeout", () =>
    Effect.gen(function*() {
      const servers = yield* capturedServers
      const { address } = yield* listen<unknown, unknown, never, never, never>({ handler: echo, closeTimeout: 200 })
      const server = servers[0]!
      // allowHalfOpen: the client never ends its side, so only the server's timer closes the socket
      const socket = net.connect({ port: address.port, host: "127.0.0.1", allowHalfOpen: true })
      yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
      const raw = recordSocket(socket)
      socket.write(upgradeRequest({ "Sec-WebSocket-Version": "12" }))
      yield* raw.waitFor((r) => headEnd(r) >= 0).pipe(within("3 seconds", "the refusal"))
      assert.isTrue(raw.received().toString("latin1").startsWith("HTTP/1.1 426 "))
      yield* Effect.repeat(connectionCount(server), { until: (n) => n === 0, schedule: Schedule.spaced("5 millis") }).pipe(
        within("3 seconds", "the server destroyed the refused socket")
      )
    }))

  it.scopedLive("UpgradeRejected without a body: an empty body", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: echo,
        onUpgrade: () => Effect.fail(new UpgradeRejected({ status: 403 }))
      })
      const response = yield* rawExchange(server.address.port, upgradeRequest()).pipe(within("3 seconds", "the refusal"))
      assert.isTrue(response.startsWith("HTTP/1.1 403 "), response)
      assert.include(response, "Content-Length: 0\r\n")
      assert.isTrue(response.endsWith("\r\n\r\n"), response)
    }))

  it.scopedLive("a failing hook: 500 'upgrade hook failed' and a warning", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const server = yield* WebSocketServer.make({
        handler: echo,
        onUpgrade: () => Effect.fail("boom")
      }).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void logs.push(JSON.stringify(message)))))
      )
      const response = yield* rawExchange(server.address.port, upgradeRequest()).pipe(within("3 seconds", "the refusal"))
      assert.isTrue(response.startsWith("HTTP/1.1 500 "), response)
      assert.isTrue(response.endsWith("\r\n\r\nupgrade hook failed"), response)
      yield* waitUntil(() => logs.length > 0, "the warning", "3 seconds")
      assert.include(logs.join("\n"), "WebSocket upgrade hook failed")
    }))

  it.scopedLive("a hook that selects a subprotocol the client did not offer: 500", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: echo,
        onUpgrade: () => Effect.succeed({ data: undefined, protocol: "chat" })
      })
      const response = yield* rawExchange(server.address.port, upgradeRequest({ "Sec-WebSocket-Protocol": "other" }))
        .pipe(within("3 seconds", "the refusal"))
      assert.isTrue(response.startsWith("HTTP/1.1 500 "), response)
      assert.isTrue(
        response.endsWith("\r\n\r\nthe upgrade hook selected a subprotocol the client did not offer"),
        response
      )
    }))
})

describe("Engine: agreement", () => {
  it.scopedLive("the hook's subprotocol wins over `protocols`", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: echo,
        protocols: ["a", "b"],
        onUpgrade: () => Effect.succeed({ data: undefined, protocol: "b" })
      })
      const head = yield* responseHead(server.address.port, upgradeRequest({ "Sec-WebSocket-Protocol": "a, b" }))
      assert.isTrue(head.startsWith("HTTP/1.1 101 "), head)
      assert.include(head, "Sec-WebSocket-Protocol: b\r\n")
    }))

  it("the deadline granularity: a quarter of the shortest timeout, between 10 ms and 1 s", () => {
    const tick = (o: {
      keepaliveInterval?: number
      keepaliveTimeout?: number
      idleTimeout?: number
    }) => (new Engine<undefined, never, never, never, never>({ handler: () => Effect.void, ...o }, undefined) as unknown as {
      readonly tick: number
    }).tick
    // defaults: keepalive 30 s, no idle timeout
    assert.strictEqual(tick({}), 1000)
    // nothing on
    assert.strictEqual(tick({ keepaliveInterval: 0, idleTimeout: 0 }), 1000)
    // the idle timeout alone
    assert.strictEqual(tick({ keepaliveInterval: 0, idleTimeout: 400 }), 100)
    assert.strictEqual(tick({ keepaliveInterval: 0, idleTimeout: 20 }), 10)
    // keepalive: the shorter of its interval and its timeout
    assert.strictEqual(tick({ keepaliveInterval: 200, keepaliveTimeout: 1000 }), 50)
    assert.strictEqual(tick({ keepaliveInterval: 1000, keepaliveTimeout: 200 }), 50)
    // both: the shortest
    assert.strictEqual(tick({ keepaliveInterval: 400, keepaliveTimeout: 400, idleTimeout: 200 }), 50)
  })
})

describe("Engine: shutdown", () => {
  it.scopedLive("an upgrade whose hook finishes during shutdown is not accepted; open connections get 1001 'server shutting down'", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const entered = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const server = yield* WebSocketServer.make({
        handler: echo,
        closeTimeout: 5_000,
        onUpgrade: (info) =>
          info.url === "/hold"
            ? Effect.zipRight(Deferred.succeed(entered, undefined), Effect.as(Deferred.await(release), { data: undefined }))
            : Effect.succeed({ data: undefined })
      }).pipe(Scope.extend(scope))
      const port = server.address.port
      const open = yield* rawConnect(port)
      const held = yield* rawSocket(port)
      held.socket.write(upgradeRequest({}, "GET /hold HTTP/1.1"))
      yield* Deferred.await(entered).pipe(within("3 seconds", "the hook started"))
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* waitUntil(() => closeCodeIn(open.received()) === 1001, "the 1001 to the open connection", "3 seconds")
      const close = parseServerFrames(open.received()).find((f) => f.opcode === 8)!
      assert.strictEqual(close.payload.subarray(2).toString(), "server shutting down")
      yield* Deferred.succeed(release, undefined)
      const answered = yield* held.waitFor((r) => r.length > 0).pipe(within("3 seconds", "the held socket closed"))
      assert.isFalse(answered, held.received().toString("latin1"))
      // the open connection never answers its Close: cut it so that shutdown ends now
      open.socket.destroy()
      yield* Fiber.join(closing).pipe(within("5 seconds", "the shutdown"))
    }))

  it.scopedLive("a handler that outlives its connection's closing handshake is interrupted by shutdown, not by its close timeout", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const started = yield* Deferred.make<void>()
      const finalized = yield* Deferred.make<void>()
      const server = yield* WebSocketServer.make({
        // ignores its messages and the close: only an interruption ends it
        handler: () =>
          Effect.zipRight(Deferred.succeed(started, undefined), Effect.never).pipe(
            Effect.onInterrupt(() => Deferred.succeed(finalized, undefined))
          ),
        closeTimeout: 60_000
      }).pipe(Scope.extend(scope))
      const client = yield* connect(`ws://127.0.0.1:${server.address.port}/`)
      yield* Deferred.await(started).pipe(within("3 seconds", "the handler started"))
      // the client answers the 1001 at once, so the transport closes; the handler still runs
      // (the close runs uninterruptibly: a daemon, so that a failure here does not wait it out)
      const closing = yield* Effect.forkDaemon(Scope.close(scope, Exit.void))
      yield* Fiber.join(closing).pipe(within("10 seconds", "the shutdown (the close timeout is 60 s)"))
      assert.isTrue(yield* Deferred.isDone(finalized))
      assert.strictEqual(client.readyState, client.CLOSED)
    }))

  it.scopedLive("a TLS handshake that completes after shutdown: the socket is destroyed unanswered", () =>
    Effect.gen(function*() {
      const servers = yield* capturedServers
      const scope = yield* Scope.make()
      const server = yield* WebSocketServer.make({ handler: echo, tls: makeCertificate() }).pipe(Scope.extend(scope))
      const tcp = net.connect(server.address.port, "127.0.0.1")
      tcp.on("error", () => {})
      yield* Effect.repeat(connectionCount(servers[0]!), { until: (n) => n === 1, schedule: Schedule.spaced("5 millis") })
        .pipe(within("3 seconds", "the server accepted the TCP connection"))
      yield* Scope.close(scope, Exit.void).pipe(within("5 seconds", "the shutdown"))
      const secure = tls.connect({ socket: tcp, rejectUnauthorized: false })
      const raw = recordSocket(secure)
      secure.on("error", () => {})
      secure.once("secureConnect", () => secure.write(upgradeRequest()))
      yield* raw.closed.pipe(within("5 seconds", "the server destroyed the socket"))
      tcp.destroy()
      assert.strictEqual(raw.received().toString("latin1"), "")
    }))
})

describe("Engine: a refusal to a peer that resets", () => {
  // node:http takes its own 'error' listener off a socket it hands to 'upgrade': when `attach`
  // answers a path it does not serve, the refusal's listener is the only one left
  it.scopedLive("attach's 404 written to a peer that reset: the write error is absorbed, the server goes on", () =>
    Effect.gen(function*() {
      const errors = yield* uncaughtErrors
      const server = http.createServer()
      const sockets: Array<net.Socket> = []
      server.on("connection", (socket: net.Socket) => void sockets.push(socket))
      const port = yield* listenHttp(server)
      yield* HttpUpgrade.attach(server, { path: "/ws", handler: echo })
      for (let i = 0; i < 3; i++) {
        const raw = yield* rawSocket(port)
        // the request, and a reset right behind it: the server reads both, and its 404 is
        // written to a connection that is gone (write ECONNRESET)
        raw.socket.write(upgradeRequest({}, "GET /elsewhere HTTP/1.1"))
        raw.socket.resetAndDestroy()
        yield* waitUntil(() => sockets.length === i + 1, `connection ${i + 1} reached the server`, "3 seconds")
        const socket = sockets[i]!
        yield* waitUntil(() => socket.destroyed, `the refused socket ${i + 1} destroyed by its write error`, "3 seconds")
      }
      assert.deepStrictEqual(errors, [])
      const res = yield* within("5 seconds", "a 404 after the resets")(
        rawExchange(port, upgradeRequest({}, "GET /elsewhere HTTP/1.1"))
      )
      assert.match(res, /^HTTP\/1\.1 404 /)
    }))
})

describe("bind", () => {
  /** A real server whose `listen` options are recorded. */
  const recordedServer = () => {
    const server = net.createServer()
    const seen: Array<net.ListenOptions> = []
    const original = server.listen.bind(server) as (...args: Array<unknown>) => net.Server
    server.listen = ((...args: Array<unknown>) => {
      seen.push(args[0] as net.ListenOptions)
      return original(...args)
    }) as typeof server.listen
    return { server, seen }
  }
  const closeServer = (server: net.Server) =>
    Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  const freePort = Effect.gen(function*() {
    const probe = net.createServer()
    yield* bind(probe, {})
    const port = (probe.address() as net.AddressInfo).port
    yield* closeServer(probe)
    return port
  })

  it.scopedLive("defaults: 127.0.0.1, a free port, a backlog of 511; given ones are passed on", () =>
    Effect.gen(function*() {
      const a = recordedServer()
      yield* Effect.acquireRelease(bind(a.server, {}), () => closeServer(a.server))
      assert.deepStrictEqual(a.seen, [{ port: 0, host: "127.0.0.1", backlog: 511 }])
      const address = a.server.address() as net.AddressInfo
      assert.strictEqual(address.address, "127.0.0.1")
      assert.isAbove(address.port, 0)

      const port = yield* freePort
      const b = recordedServer()
      yield* Effect.acquireRelease(bind(b.server, { port, backlog: 7 }), () => closeServer(b.server))
      assert.deepStrictEqual(b.seen, [{ port, host: "127.0.0.1", backlog: 7 }])
      assert.strictEqual((b.server.address() as net.AddressInfo).port, port)
    }))

  it.scopedLive("a port in use: a ServerError with reason Listen, nothing uncaught", () =>
    Effect.gen(function*() {
      const errors = yield* uncaughtErrors
      const taken = net.createServer()
      yield* Effect.acquireRelease(bind(taken, {}), () => closeServer(taken))
      const port = (taken.address() as net.AddressInfo).port
      const result = yield* bind(net.createServer(), { port }).pipe(
        Effect.flip,
        within("3 seconds", "bind to fail on a port in use")
      )
      assert.instanceOf(result, ServerError)
      assert.strictEqual(result.reason, "Listen")
      assert.strictEqual((result.cause as NodeJS.ErrnoException).code, "EADDRINUSE")
      assert.deepStrictEqual(errors, [])
    }))

  it.scopedLive("once listening, a later 'error' of the listener is absorbed (no throw, no crash)", () =>
    Effect.gen(function*() {
      const server = net.createServer()
      yield* Effect.acquireRelease(bind(server, {}), () => closeServer(server))
      assert.strictEqual(server.listenerCount("error"), 1)
      assert.doesNotThrow(() => server.emit("error", Object.assign(new Error("accept failed"), { code: "EMFILE" })))
    }))
})
