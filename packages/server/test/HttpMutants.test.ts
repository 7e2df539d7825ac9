/**
 * The HTTP integrations (`src/internal/http.ts`) at their edges: `recordHead` applied twice or
 * alone on a server, `adopt` (a socket error while the upgrade hook runs, Nagle off), the
 * route's answers outside an upgrade (501 off NodeHttpServer, 426 for a request node:http did
 * not upgrade), the status the route ends with, how the route leaves at shutdown (1001 with its
 * reason, waiting until its connection is over), and `attach`'s path matching and 404.
 *
 * These tests pin down mutants that survived a StrykerJS run over `src/internal/http.ts`.
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Metric, Queue, Scope, Stream } from "effect"
import * as http from "node:http"
import type * as net from "node:net"
import * as HttpUpgrade from "../src/HttpUpgrade.js"
import { pathMatcher } from "../src/internal/http.js"
import * as Metrics from "../src/Metrics.js"
import type { WebSocket as Ws } from "../src/WebSocket.js"
import {
  connect,
  headEnd,
  listenHttp,
  parseServerFrames,
  rawExchange,
  rawSocket,
  recorder,
  upgradeRequest,
  within
} from "./utils.js"

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

/** Serves an app on NodeHttpServer (127.0.0.1, any port) in `scope`; its port. */
const serveIn = <E, R>(scope: Scope.Scope, app: HttpRouter.HttpRouter<E, R>, evaluate = () => http.createServer()) =>
  Effect.gen(function*() {
    const layer = HttpServer.serve(app).pipe(
      Layer.provideMerge(NodeHttpServer.layer(evaluate, { port: 0, host: "127.0.0.1" }))
    ) as Layer.Layer<HttpServer.HttpServer>
    const context = yield* Layer.buildWithScope(layer, scope)
    return (Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress).port
  })

describe("recordHead", () => {
  it.scopedLive("applied twice adds one listener; alone on a server, it closes the upgrade's socket", () =>
    Effect.gen(function*() {
      const server = http.createServer()
      assert.strictEqual(HttpUpgrade.recordHead(HttpUpgrade.recordHead(server)), server)
      assert.strictEqual(server.listenerCount("upgrade"), 1)
      const port = yield* listenHttp(server)
      const raw = yield* rawSocket(port)
      raw.socket.write(upgradeRequest({}, "GET /ws HTTP/1.1"))
      // nobody else serves the upgrade: the socket is not left open
      yield* within("5 seconds", "the server to close an upgrade nobody serves")(raw.closed)
      assert.strictEqual(raw.received().length, 0)
    }))
})

describe("adopt", () => {
  it.scopedLive("a socket error while the upgrade hook runs does not crash the process", () =>
    Effect.gen(function*() {
      const server = http.createServer()
      const sockets: Array<net.Socket> = []
      server.on("connection", (s: net.Socket) => sockets.push(s))
      const port = yield* listenHttp(server)
      const hookStarted = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      let first = true
      yield* HttpUpgrade.attach(server, {
        onUpgrade: () =>
          first
            ? Effect.zipRight(
              Effect.sync(() => {
                first = false
              }),
              Effect.zipRight(Deferred.succeed(hookStarted, undefined), Effect.as(Deferred.await(release), { data: undefined }))
            )
            : Effect.succeed({ data: undefined }),
        handler: echo
      })
      const raw = yield* rawSocket(port)
      raw.socket.write(upgradeRequest({}, "GET / HTTP/1.1"))
      yield* within("5 seconds", "the upgrade hook to start")(Deferred.await(hookStarted))
      assert.strictEqual(sockets.length, 1)
      // node:http removed its own 'error' listener from the upgraded socket
      sockets[0]!.destroy(new Error("simulated ECONNRESET"))
      // 'error' is emitted before the peer can see the socket close
      yield* within("5 seconds", "the client to see its socket closed")(raw.closed)
      yield* Deferred.succeed(release, undefined)
      // the server still serves
      const client = yield* connect(`ws://127.0.0.1:${port}/`)
      client.send("still alive")
      const rec = recorder(client)
      yield* within("5 seconds", "the echo")(rec.waitMessages(1))
      assert.strictEqual(rec.messages[0]!.data, "still alive")
    }))

  it.scopedLive("turns Nagle's algorithm off on the upgraded socket", () =>
    Effect.gen(function*() {
      const server = http.createServer()
      const noDelay: Array<boolean | undefined> = []
      server.on("connection", (s: net.Socket) => {
        const original = s.setNoDelay
        s.setNoDelay = function(this: net.Socket, enable?: boolean) {
          noDelay.push(enable)
          return original.call(this, enable)
        }
      })
      const port = yield* listenHttp(server)
      yield* HttpUpgrade.attach(server, { handler: echo })
      const client = yield* connect(`ws://127.0.0.1:${port}/`)
      client.send("ping")
      yield* within("5 seconds", "the echo")(recorder(client).waitMessages(1))
      assert.deepStrictEqual(noDelay, [true])
    }))
})

describe("HttpUpgrade.handler outside an upgrade", () => {
  it.live("answers 501 when the request is not node:http's (not on NodeHttpServer)", () =>
    Effect.gen(function*() {
      const web = HttpApp.toWebHandler(HttpUpgrade.handler({ handler: echo }))
      const res = yield* Effect.promise(async () => {
        const r = await web(new Request("http://127.0.0.1/ws"))
        return { status: r.status, body: await r.text() }
      })
      assert.strictEqual(res.status, 501)
      assert.strictEqual(res.body, "WebSocket upgrades need @effect/platform-node's NodeHttpServer")
    }))

  it.scopedLive("a valid upgrade request node:http did not upgrade gets 426 over HTTP, counted as rejected", () =>
    Effect.gen(function*() {
      const handle = yield* NodeHttpServer.makeHandler(HttpUpgrade.handler({ handler: echo }))
      // no 'upgrade' listener: node:http hands the request to 'request' with `upgrade` false
      const server = http.createServer(handle)
      const port = yield* listenHttp(server)
      const before = (yield* Metric.value(Metrics.handshakesRejected)).count
      const res = yield* within("5 seconds", "the HTTP answer")(
        rawExchange(port, upgradeRequest({ Connection: "Upgrade, close" }, "GET /ws HTTP/1.1"))
      )
      assert.match(res, /^HTTP\/1\.1 426 /)
      assert.match(res, /\r\nupgrade: websocket\r\n/i)
      assert.match(res, /\r\nsec-websocket-version: 13\r\n/i)
      assert.isTrue(res.endsWith("\r\n\r\nthis request cannot be upgraded"))
      const after = (yield* Metric.value(Metrics.handshakesRejected)).count
      assert.strictEqual(after - before, 1)
    }))
})

describe("HttpUpgrade.handler on NodeHttpServer", () => {
  it.scopedLive("the route ends with status 101 once its connection is over", () =>
    Effect.gen(function*() {
      const statuses = yield* Queue.unbounded<number>()
      const route = Effect.tap(HttpUpgrade.handler({ handler: echo }), (res) => Queue.offer(statuses, res.status))
      const port = yield* Effect.flatMap(Effect.scope, (scope) =>
        serveIn(scope, HttpRouter.empty.pipe(HttpRouter.get("/ws", route))))
      const client = yield* connect(`ws://127.0.0.1:${port}/ws`)
      client.send("x")
      yield* within("5 seconds", "the echo")(recorder(client).waitMessages(1))
      client.close(1000)
      const status = yield* within("5 seconds", "the route to end")(Queue.take(statuses))
      assert.strictEqual(status, 101)
    }))

  it.scopedLive(
    "at shutdown the route closes with 1001 'server shutting down' and waits until its connection is over",
    () =>
      Effect.gen(function*() {
        const closeTimeout = 1000
        const handlerInterrupted = yield* Deferred.make<void>()
        const scope = yield* Scope.make()
        const port = yield* serveIn(
          scope,
          HttpRouter.empty.pipe(HttpRouter.get(
            "/ws",
            HttpUpgrade.handler({
              closeTimeout,
              // a handler that never ends: the connection interrupts it after the close timeout
              handler: () => Effect.onInterrupt(Effect.never, () => Deferred.succeed(handlerInterrupted, undefined))
            })
          ))
        )
        // a peer that never answers the Close
        const raw = yield* rawSocket(port)
        raw.socket.write(upgradeRequest({}, "GET /ws HTTP/1.1"))
        const upgraded = yield* within("5 seconds", "the 101")(raw.waitFor((b) => headEnd(b) > 0))
        assert.isTrue(upgraded)
        assert.match(raw.received().toString("latin1"), /^HTTP\/1\.1 101 /)

        yield* within("15 seconds", "the server's Layer to be released")(Scope.close(scope, Exit.void))
        // the release waited until the connection was over: its handler was interrupted first
        // (by the connection, 2 close timeouts after the Close)
        assert.isTrue(yield* Deferred.isDone(handlerInterrupted))

        const received = raw.received()
        const close = parseServerFrames(received.subarray(headEnd(received))).find((f) => f.opcode === 0x8)
        assert.isDefined(close)
        assert.strictEqual(close!.payload.readUInt16BE(0), 1001)
        assert.strictEqual(close!.payload.subarray(2).toString(), "server shutting down")
      })
  )
})

describe("attach: paths", () => {
  it.scopedLive("a path without a query matches; another listener's path is left to it", () =>
    Effect.gen(function*() {
      const server = http.createServer()
      const port = yield* listenHttp(server)
      yield* HttpUpgrade.attach(server, { path: "/ws", handler: echo })
      // registered after ours: it runs second
      server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
        if (req.url === "/other") socket.end("HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      })
      const client = yield* connect(`ws://127.0.0.1:${port}/ws`)
      client.send("exact path")
      const rec = recorder(client)
      yield* within("5 seconds", "the echo")(rec.waitMessages(1))
      assert.strictEqual(rec.messages[0]!.data, "exact path")

      const other = yield* within("5 seconds", "the other listener's answer")(
        rawExchange(port, upgradeRequest({}, "GET /other HTTP/1.1"))
      )
      assert.match(other, /^HTTP\/1\.1 418 /)
    }))

  it.scopedLive("alone, it answers another path with 404 and its reason", () =>
    Effect.gen(function*() {
      const server = http.createServer()
      const port = yield* listenHttp(server)
      yield* HttpUpgrade.attach(server, { path: "/ws", handler: echo })
      const res = yield* within("5 seconds", "the 404")(rawExchange(port, upgradeRequest({}, "GET /elsewhere HTTP/1.1")))
      assert.match(res, /^HTTP\/1\.1 404 /)
      assert.isTrue(res.endsWith("\r\n\r\nno WebSocket endpoint here"))
    }))

  it("pathMatcher compares the target before '?' with the path, also when '?' comes first", () => {
    const root = pathMatcher("")
    assert.isTrue(root("?a=1"))
    assert.isFalse(root("/?a=1"))
    const ws = pathMatcher("/ws")
    assert.isTrue(ws("/ws"))
    assert.isTrue(ws("/ws?x=1"))
    assert.isFalse(ws("/w"))
    assert.isFalse(ws("/wss"))
  })
})
