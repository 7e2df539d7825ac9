/**
 * WebSockets over HTTP/2 (RFC 8441), the edges: refusal responses (content type, the hook's
 * headers, headers HTTP/2 forbids, a stream the client already reset), streams that arrive while
 * the server shuts down, the idle-session timer of the standalone server, the handlers of
 * `attachHttp2` next to an application's own listeners and after detaching, and the standalone
 * server's HTTP/1.1 refusals and finalizer. It pins down survivors of a StrykerJS run over
 * `src/internal/h2.ts`; every check goes through real `node:http2` sessions on 127.0.0.1.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Logger, LogLevel, Metric, Scope, Stream } from "effect"
import * as http2 from "node:http2"
import * as https from "node:https"
import * as net from "node:net"
import * as tls from "node:tls"
import { UpgradeRejected } from "../src/Errors.js"
import * as HttpUpgrade from "../src/HttpUpgrade.js"
import * as Metrics from "../src/Metrics.js"
import type { WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connectHeaders, h2Open, h2Session } from "./h2client.js"
import type { H2WebSocket } from "./h2client.js"
import { makeCertificate, uncaughtErrors, waitUntil, within } from "./utils.js"

const { cert, key } = makeCertificate()
const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

const TEXT = 1
const CLOSE = 8
const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants

const rejected = Metric.value(Metrics.handshakesRejected).pipe(Effect.map((s) => s.count))

/** Sends a text message and waits for its echo (its payload). */
const roundTrip = (ws: H2WebSocket, text: string) =>
  Effect.gen(function*() {
    const before = ws.frames().filter((f) => f.opcode === TEXT).length
    ws.send(TEXT, text)
    const frames = yield* ws.until((fs) => fs.filter((f) => f.opcode === TEXT).length > before).pipe(
      within("5 seconds", `the echo of ${text}`)
    )
    return frames.filter((f) => f.opcode === TEXT).at(-1)?.payload.toString()
  })

/** Completes with the session's GOAWAY code. */
const goawayOf = (session: http2.ClientHttp2Session) =>
  Effect.async<number>((resume) => {
    session.once("goaway", (code: number) => resume(Effect.succeed(code)))
  })

/** A flag set once the session receives a GOAWAY. */
const watchGoaway = (session: http2.ClientHttp2Session) => {
  const seen = { goaway: false }
  session.once("goaway", () => {
    seen.goaway = true
  })
  return seen
}

/** An application's own node:http2 server on port 0, closed with the scope. */
const appServer = (setup: (server: http2.Http2SecureServer) => void) =>
  Effect.acquireRelease(
    Effect.async<http2.Http2SecureServer>((resume) => {
      const server = http2.createSecureServer({ key, cert, allowHTTP1: true, settings: { enableConnectProtocol: true } })
      setup(server)
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => server.close())
  )

/**
 * A stream that sends its headers with END_STREAM, nothing left open on the client's side; its
 * response status and body once the server closed it. (With Node 20.20, a stream the client left
 * open, then closed by the server with END_STREAM and RST_STREAM(NO_ERROR), made the client's
 * `session.destroy()` spin in native `SendPendingData`: a test failing right after such a stream
 * hung in its cleanup instead of reporting the failure.)
 */
const answerOf = (session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders) =>
  Effect.async<{ status: number | undefined; body: string }>((resume) => {
    const stream = session.request(headers, { endStream: true })
    const chunks: Array<Buffer> = []
    let status: number | undefined
    stream.on("error", () => {})
    stream.once("response", (h) => {
      status = Number(h[":status"])
    })
    stream.on("data", (c: Buffer) => chunks.push(c))
    stream.once("close", () => resume(Effect.succeed({ status, body: Buffer.concat(chunks).toString() })))
  })

/** An upgrade hook that holds `/slow` (after `started`) until `release`; other paths pass. */
const holdSlow = (started: Deferred.Deferred<void>, release: Deferred.Deferred<void>) => (info: { readonly url: string }) =>
  info.url === "/slow"
    ? Deferred.succeed(started, undefined).pipe(Effect.zipRight(Deferred.await(release)), Effect.as({ data: undefined }))
    : Effect.succeed({ data: undefined })

/** Serves every path of `server`; `/big` is refused with 403 and a 1 MiB body. */
const attachBigRefusal = (server: http2.Http2SecureServer) =>
  HttpUpgrade.attachHttp2(server, {
    path: (url) => url.startsWith("/"),
    handler: echo,
    onUpgrade: (info) =>
      info.url === "/big"
        ? Effect.fail(new UpgradeRejected({ status: 403, body: "x".repeat(1024 * 1024) }))
        : Effect.succeed({ data: undefined })
  })

describe("refusals over HTTP/2", () => {
  it.scopedLive("text/plain by default, the hook's headers lowercased over it; a header HTTP/2 forbids leaves the status", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: echo,
        tls: { key, cert },
        http2: true,
        onUpgrade: (info) =>
          info.url === "/json"
            ? Effect.fail(new UpgradeRejected({ status: 403, body: "{}", headers: { "Content-Type": "application/json", "X-Why": "because" } }))
            : info.url === "/conn"
            ? Effect.fail(new UpgradeRejected({ status: 403, body: "nope", headers: { Connection: "close" } }))
            : info.url === "/plain"
            ? Effect.fail(new UpgradeRejected({ status: 403, body: "plain" }))
            : Effect.succeed({ data: undefined })
      })
      const port = server.address.port
      const session = yield* h2Session(port, cert)
      const plain = yield* h2Open(session, connectHeaders(port, { ":path": "/plain" }))
      assert.strictEqual(plain.status, 403)
      assert.strictEqual(plain.headers["content-type"], "text/plain; charset=utf-8")
      const json = yield* h2Open(session, connectHeaders(port, { ":path": "/json" }))
      assert.strictEqual(json.status, 403)
      assert.strictEqual(json.headers["content-type"], "application/json")
      assert.strictEqual(json.headers["x-why"], "because")
      const conn = yield* h2Open(session, connectHeaders(port, { ":path": "/conn" }))
      assert.strictEqual(conn.status, 403)
      assert.isUndefined(conn.headers["connection"])
      yield* conn.closed
      assert.strictEqual(conn.received().toString(), "nope")
    }))

  it.scopedLive("a refusal with a body the client stops reading, then resets with INTERNAL_ERROR: no unhandled 'error'", () =>
    Effect.gen(function*() {
      const errors = yield* uncaughtErrors
      const server = yield* appServer(() => {})
      yield* attachBigRefusal(server)
      const port = (server.address() as net.AddressInfo).port
      const session = yield* h2Session(port, cert)
      const big = yield* h2Open(session, connectHeaders(port, { ":path": "/big" }))
      big.stream.pause()
      assert.strictEqual(big.status, 403)
      big.stream.close(NGHTTP2_INTERNAL_ERROR)
      yield* big.closed
      // a round trip on the same session: the server has handled the reset before it answers
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(yield* roundTrip(ws, "after the reset"), "after the reset")
      assert.deepStrictEqual(errors, [])
    }))
})

describe("a refusal for a stream the client already reset", () => {
  it.scopedLive("is counted and nothing is written: no fiber ends with a defect", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const capture = Logger.make(({ message }) => void logs.push(String(message)))
      const hookStarted = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const server = yield* WebSocketServer.make({
        handler: echo,
        tls: { key, cert },
        http2: true,
        onUpgrade: (info) =>
          info.url === "/late"
            ? Deferred.succeed(hookStarted, undefined).pipe(
              Effect.zipRight(Deferred.await(release)),
              Effect.zipRight(Effect.fail(new UpgradeRejected({ status: 403, body: "too late" })))
            )
            : Effect.succeed({ data: undefined })
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)), Logger.withMinimumLogLevel(LogLevel.All))
      const port = server.address.port
      const session = yield* h2Session(port, cert)
      const late = session.request(connectHeaders(port, { ":path": "/late" }), { endStream: false })
      late.on("error", () => {})
      yield* Deferred.await(hookStarted).pipe(within("5 seconds", "the hook to start"))
      late.close(http2.constants.NGHTTP2_CANCEL)
      // a round trip on the same session: the server has handled the reset before it answers
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(yield* roundTrip(ws, "after the reset"), "after the reset")
      const before = yield* rejected
      yield* Deferred.succeed(release, undefined)
      yield* waitUntil(() => Effect.runSync(rejected) > before, "the refusal to be counted")
      assert.deepStrictEqual(logs.filter((m) => m.includes("unhandled")), [])
    }))
})

describe("streams during shutdown", () => {
  it.scopedLive("a new stream is 503, a hook that answers late gets REFUSED_STREAM, then GOAWAY; the port is closed", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const hookStarted = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const server = yield* WebSocketServer.make({
        handler: echo,
        tls: { key, cert },
        http2: true,
        handshakeTimeout: 60_000,
        closeTimeout: 60_000,
        onUpgrade: holdSlow(hookStarted, release)
      }).pipe(Scope.extend(scope))
      const port = server.address.port
      const session = yield* h2Session(port, cert)
      // on a failure, the client session goes first: the shutdown waiting on its streams ends
      yield* Effect.addFinalizer((exit) => Effect.sync(() => Exit.isFailure(exit) && session.destroy()))
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(yield* roundTrip(ws, "before"), "before")
      const slow = yield* Effect.fork(Effect.either(h2Open(session, connectHeaders(port, { ":path": "/slow" }))))
      yield* Deferred.await(hookStarted).pipe(within("5 seconds", "the slow hook to start"))
      const goaway = yield* Effect.fork(goawayOf(session))
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // the server's Close 1001: shutdown has begun and waits for our answer
      const frames = yield* ws.until((fs) => fs.some((f) => f.opcode === CLOSE)).pipe(
        within("5 seconds", "the server's Close")
      )
      const close = frames.find((f) => f.opcode === CLOSE)!
      assert.strictEqual(close.payload.readUInt16BE(0), 1001)
      const late = yield* answerOf(session, connectHeaders(port)).pipe(within("5 seconds", "an answer to a new stream"))
      assert.deepStrictEqual(late, { status: 503, body: "server is shutting down" })
      // the hook answers after shutdown began: the stream is refused, not answered
      yield* Deferred.succeed(release, undefined)
      const answer = yield* Fiber.join(slow).pipe(within("5 seconds", "the slow stream to end"))
      assert.isTrue(Either.isLeft(answer))
      if (Either.isLeft(answer)) assert.include(answer.left.message, `(${NGHTTP2_REFUSED_STREAM})`)
      ws.send(CLOSE, close.payload.subarray(0, 2))
      yield* Fiber.join(closing).pipe(within("5 seconds", "the shutdown"))
      assert.strictEqual(yield* Fiber.join(goaway).pipe(within("5 seconds", "the GOAWAY after shutdown")), NGHTTP2_NO_ERROR)
      // the listening socket is closed
      const refused = yield* Effect.async<string>((resume) => {
        const socket = net.connect(port, "127.0.0.1")
        socket.once("connect", () => {
          socket.destroy()
          resume(Effect.succeed("connected"))
        })
        socket.once("error", (e: NodeJS.ErrnoException) => resume(Effect.succeed(e.code ?? "error")))
      }).pipe(within("5 seconds", "a connection attempt"))
      assert.strictEqual(refused, "ECONNREFUSED")
    }))
})

describe("the standalone server's idle sessions (handshakeTimeout)", () => {
  /**
   * A busy session (`use` opens its WebSockets and gives back one left open), then an idle one:
   * the idle session gets its GOAWAY after `handshakeTimeout`, the busy one none, and its open
   * WebSocket still echoes. The idle session is opened last, so its timer fires after any the
   * busy one armed.
   */
  const busyKept = (use: (busy: http2.ClientHttp2Session, port: number) => Effect.Effect<H2WebSocket, unknown, Scope.Scope>) =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, tls: { key, cert }, http2: true, handshakeTimeout: 300 })
      const port = server.address.port
      const busy = yield* h2Session(port, cert)
      const busyGoaway = watchGoaway(busy)
      const open = yield* use(busy, port)
      const idle = yield* h2Session(port, cert)
      yield* goawayOf(idle).pipe(within("5 seconds", "the idle session's GOAWAY"))
      assert.isFalse(busyGoaway.goaway, "the busy session got a GOAWAY")
      assert.strictEqual(yield* roundTrip(open, "after"), "after")
    })

  it.scopedLive("a session with a WebSocket open is not closed, even after another of its WebSockets closed", () =>
    busyKept((busy, port) =>
      Effect.gen(function*() {
        const a = yield* h2Open(busy, connectHeaders(port))
        const b = yield* h2Open(busy, connectHeaders(port))
        assert.strictEqual(yield* roundTrip(a, "a"), "a")
        // a's closing handshake: the server ends its stream
        a.send(CLOSE, Buffer.from([0x03, 0xe8]))
        yield* a.closed.pipe(within("5 seconds", "a's stream to close"))
        return b
      })
    ))

  it.scopedLive("a session whose only WebSocket is open is not closed", () =>
    busyKept((busy, port) =>
      Effect.gen(function*() {
        const ws = yield* h2Open(busy, connectHeaders(port))
        assert.strictEqual(yield* roundTrip(ws, "one"), "one")
        return ws
      })
    ))

  it.scopedLive("a session whose last WebSocket closed is closed after handshakeTimeout", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, tls: { key, cert }, http2: true, handshakeTimeout: 300 })
      const port = server.address.port
      const session = yield* h2Session(port, cert)
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(yield* roundTrip(ws, "once"), "once")
      const goaway = yield* Effect.fork(goawayOf(session))
      ws.send(CLOSE, Buffer.from([0x03, 0xe8]))
      yield* ws.closed.pipe(within("5 seconds", "the stream to close"))
      assert.strictEqual(yield* Fiber.join(goaway).pipe(within("5 seconds", "the GOAWAY of the idle session")), NGHTTP2_NO_ERROR)
    }))
})

describe("attachHttp2 next to an application's own listeners", () => {
  it.scopedLive("requests and CONNECTs the app answers are left to it; /ws is ours, then the app's after detaching", () =>
    Effect.gen(function*() {
      let attached = true
      const server = yield* appServer((s) =>
        s.on("stream", (stream, headers) => {
          if (attached && String(headers[":path"]).startsWith("/ws")) return
          stream.respond({ ":status": 200 })
          stream.end("app")
        })
      )
      const scope = yield* Scope.make()
      const ours = yield* HttpUpgrade.attachHttp2(server, { path: "/ws", handler: echo }).pipe(Scope.extend(scope))
      const port = (server.address() as net.AddressInfo).port
      const session = yield* h2Session(port, cert)
      const before = yield* rejected
      const page = yield* h2Open(session, { ":path": "/" })
      assert.strictEqual(page.status, 200)
      yield* page.closed
      assert.strictEqual(page.received().toString(), "app")
      const other = yield* h2Open(session, connectHeaders(port, { ":path": "/other" }))
      assert.strictEqual(other.status, 200)
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(ws.status, 200)
      assert.strictEqual(yield* roundTrip(ws, "ours"), "ours")
      assert.strictEqual(yield* ours.connections, 1)
      assert.strictEqual((yield* rejected) - before, 0, "a handshake was refused")
      // detached: the server's streams are the app's alone
      const wsClosed = ws.closed
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      const frames = yield* ws.until((fs) => fs.some((f) => f.opcode === CLOSE))
      ws.send(CLOSE, frames.find((f) => f.opcode === CLOSE)!.payload.subarray(0, 2))
      yield* wsClosed
      yield* Fiber.join(closing).pipe(within("5 seconds", "the detach"))
      attached = false
      const after = yield* rejected
      const mine = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(mine.status, 200)
      yield* mine.closed
      assert.strictEqual(mine.received().toString(), "app")
      assert.strictEqual((yield* rejected) - after, 0, "a handshake was refused after detaching")
    }))

  it.scopedLive("after detaching, a CONNECT elsewhere is left to the app's session listener: no 404 of ours", () =>
    Effect.gen(function*() {
      // the app listens on each session, not on the server: the server has no other 'stream' listener
      const server = yield* appServer((s) =>
        s.on("session", (session: http2.ServerHttp2Session) =>
          session.on("stream", (stream, headers) => {
            if (headers[":path"] !== "/app") return
            stream.respond({ ":status": 200 })
            stream.end("app")
          }))
      )
      const scope = yield* Scope.make()
      yield* HttpUpgrade.attachHttp2(server, { path: "/ws", handler: echo }).pipe(Scope.extend(scope))
      yield* Scope.close(scope, Exit.void)
      const port = (server.address() as net.AddressInfo).port
      const session = yield* h2Session(port, cert)
      const before = yield* rejected
      const app = yield* h2Open(session, connectHeaders(port, { ":path": "/app" }))
      assert.strictEqual(app.status, 200)
      yield* app.closed
      assert.strictEqual(app.received().toString(), "app")
      assert.strictEqual((yield* rejected) - before, 0)
    }))

  it.scopedLive("with the compatibility API: after detaching, a CONNECT gets Node's 405, nothing of ours", () =>
    Effect.gen(function*() {
      const server = yield* appServer((s) => s.on("request", (_req, res) => res.end("a page")))
      const scope = yield* Scope.make()
      yield* HttpUpgrade.attachHttp2(server, { path: "/ws", handler: echo }).pipe(Scope.extend(scope))
      const port = (server.address() as net.AddressInfo).port
      const session = yield* h2Session(port, cert)
      const elsewhere = yield* h2Open(session, connectHeaders(port, { ":path": "/chat" }))
      assert.strictEqual(elsewhere.status, 404)
      yield* elsewhere.closed
      assert.strictEqual(elsewhere.received().toString(), "no WebSocket endpoint here")
      yield* Scope.close(scope, Exit.void)
      const before = yield* rejected
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(ws.status, 405)
      assert.strictEqual((yield* rejected) - before, 0)
    }))
})

describe("the standalone server's other answers", () => {
  it.scopedLive("http2 without tls: a ServerError (Tls) saying why", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(WebSocketServer.make({ handler: echo, http2: true }))
      assert.strictEqual(error._tag, "ServerError")
      assert.strictEqual(
        (error as { readonly cause: Error }).cause.message,
        "http2 needs tls: browsers speak HTTP/2 only over TLS"
      )
    }))

  it.scopedLive("a plain HTTP/1.1 request on the TLS port: 426, text/plain", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, tls: { key, cert }, http2: true })
      const answer = yield* Effect.async<{ status: number; type: unknown; body: string }>((resume) => {
        const req = https.get({ host: "127.0.0.1", port: server.address.port, path: "/", ca: cert }, (res) => {
          const chunks: Array<Buffer> = []
          res.on("data", (c: Buffer) => chunks.push(c))
          res.on("end", () =>
            resume(Effect.succeed({
              status: res.statusCode ?? 0,
              type: res.headers["content-type"],
              body: Buffer.concat(chunks).toString()
            })))
        })
        req.on("error", (e) => resume(Effect.die(e)))
      }).pipe(within("5 seconds", "the answer to a plain request"))
      assert.strictEqual(answer.status, 426)
      assert.strictEqual(answer.type, "text/plain; charset=utf-8")
    }))

  it.scopedLive("an HTTP/1.1 upgrade Node's parser does not flag (Connection: Upgrade<TAB>): 426 with its reason", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, tls: { key, cert }, http2: true })
      const response = yield* Effect.async<string>((resume) => {
        const socket = tls.connect({ host: "127.0.0.1", port: server.address.port, ca: cert, ALPNProtocols: ["http/1.1"] })
        const chunks: Array<Buffer> = []
        socket.on("secureConnect", () =>
          socket.write(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\t\r\n" +
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
          ))
        socket.on("data", (c: Buffer) => {
          chunks.push(c)
          const text = Buffer.concat(chunks).toString()
          // the body is chunked: complete with its last chunk
          if (text.endsWith("\r\n0\r\n\r\n")) {
            socket.destroy()
            resume(Effect.succeed(text))
          }
        })
        socket.on("error", (e) => resume(Effect.die(e)))
      }).pipe(within("5 seconds", "the answer to the upgrade request"))
      assert.match(response, /^HTTP\/1\.1 426 /)
      assert.match(response, /\r\nupgrade: websocket\r\n/i)
      assert.isTrue(response.endsWith("\r\n\r\n1f\r\nthis request cannot be upgraded\r\n0\r\n\r\n"), response)
    }))
})

describe("an upgrade hook that answers after its stream was given up (the re-check after the hook)", () => {
  /**
   * A standalone server whose hook holds `/slow` until `release`, a short close timeout (a failing
   * check does not keep the shutdown waiting long on the WebSocket it left open), and the URLs of
   * the connections whose handler ran.
   */
  const slowServer = (scope: Scope.Scope, logs?: Array<string>) =>
    Effect.gen(function*() {
      const hookStarted = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const handled: Array<string> = []
      const make = WebSocketServer.make({
        handler: (ws: Ws<unknown>) => Effect.suspend(() => {
          handled.push(ws.request.url)
          return echo(ws)
        }),
        tls: { key, cert },
        http2: true,
        closeTimeout: 500,
        onUpgrade: holdSlow(hookStarted, release)
      })
      const server = yield* (logs === undefined ? make : make.pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => void logs.push(String(message))))),
        Logger.withMinimumLogLevel(LogLevel.All)
      )).pipe(Scope.extend(scope))
      return { port: server.address.port, hookStarted, release, handled }
    })

  it.scopedLive("shutdown begins while the hook runs: a new stream gets 503 with its reason, the hook's stream RST_STREAM(REFUSED_STREAM), no handler runs for it", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { handled, hookStarted, port, release } = yield* slowServer(scope)
      const session = yield* h2Session(port, cert)
      // a WebSocket that holds the shutdown open (its closing handshake) while the hook answers
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(yield* roundTrip(ws, "held"), "held")
      const slow = session.request(connectHeaders(port, { ":path": "/slow" }), { endStream: false })
      slow.on("error", () => {})
      // on a failure, the client's streams and session go first: nothing is left for the shutdown to wait on
      yield* Effect.addFinalizer((exit) =>
        Effect.sync(() => {
          if (Exit.isSuccess(exit)) return
          slow.close(http2.constants.NGHTTP2_CANCEL)
          session.destroy()
        })
      )
      // what ends the wait on the slow stream first: a response (its status) or its close (its code)
      const slowOutcome = Effect.async<string>((resume) => {
        slow.once("response", (h) => resume(Effect.succeed(`response ${h[":status"]}`)))
        slow.once("close", () => resume(Effect.succeed(`closed ${slow.rstCode}`)))
      })
      yield* Deferred.await(hookStarted).pipe(within("5 seconds", "the slow hook to start"))
      // on a failure before the release, the hook is released first: none of it is left waiting
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      const frames = yield* ws.until((fs) => fs.some((f) => f.opcode === CLOSE)).pipe(
        within("5 seconds", "the server's Close 1001 (shutdown begun)")
      )
      const close = frames.find((f) => f.opcode === CLOSE)!
      assert.strictEqual(close.payload.readUInt16BE(0), 1001)
      // the hook accepts after shutdown began: its stream is reset, never answered
      yield* Deferred.succeed(release, undefined)
      const outcome = yield* slowOutcome.pipe(within("5 seconds", "a response or a reset on the slow stream"))
      assert.strictEqual(outcome, `closed ${NGHTTP2_REFUSED_STREAM}`)
      assert.deepStrictEqual(handled, ["/ws"])
      // a stream that arrives while the shutdown waits is refused before validation, with the shutdown's reason
      const late = yield* answerOf(session, connectHeaders(port)).pipe(within("5 seconds", "the answer to a new stream"))
      assert.deepStrictEqual(late, { status: 503, body: "server is shutting down" })
      ws.send(CLOSE, close.payload.subarray(0, 2))
      yield* Fiber.join(closing).pipe(within("5 seconds", "the shutdown"))
      assert.deepStrictEqual(handled, ["/ws"])
    }))

  it.scopedLive("the client resets the stream while the hook runs: nothing is sent on it, no connection opens, no fiber ends with a defect", () =>
    Effect.gen(function*() {
      const logs: Array<string> = []
      const { handled, hookStarted, port, release } = yield* slowServer(yield* Effect.scope, logs)
      const session = yield* h2Session(port, cert)
      const slow = session.request(connectHeaders(port, { ":path": "/slow" }), { endStream: false })
      slow.on("error", () => {})
      let slowAnswered = false
      slow.once("response", () => {
        slowAnswered = true
      })
      yield* Deferred.await(hookStarted).pipe(within("5 seconds", "the slow hook to start"))
      slow.close(http2.constants.NGHTTP2_CANCEL)
      // a round trip on the same session: the server has handled the reset before it answers
      const ws = yield* h2Open(session, connectHeaders(port))
      assert.strictEqual(yield* roundTrip(ws, "after the reset"), "after the reset")
      const before = yield* Metric.value(Metrics.connectionsTotal)
      yield* Deferred.succeed(release, undefined)
      // the hook's fiber has ended once another handshake after it is through: the hook runs
      // on its own fiber, so a second stream through the same hook is the barrier
      const second = yield* Effect.fork(h2Open(session, connectHeaders(port, { ":path": "/slow" })))
      const opened = yield* Fiber.join(second).pipe(within("5 seconds", "a second /slow stream, released"))
      assert.strictEqual(opened.status, 200)
      assert.strictEqual(yield* roundTrip(opened, "second"), "second")
      assert.strictEqual((yield* Metric.value(Metrics.connectionsTotal)).count - before.count, 1)
      assert.deepStrictEqual(handled, ["/ws", "/slow"])
      assert.isFalse(slowAnswered, "the reset stream got a response")
      assert.deepStrictEqual(logs.filter((m) => m.includes("unhandled") || m.includes("terminated")), [])
    }))
})

describe("a refusal's stream when the client's TCP connection is reset", () => {
  it.scopedLive("a refusal whose body is still being written (the client stopped reading), then a TCP reset: no unhandled 'error'", () =>
    Effect.gen(function*() {
      const errors = yield* uncaughtErrors
      const sessionClosed = yield* Deferred.make<void>()
      const streams: Array<http2.ServerHttp2Stream> = []
      // the server's session of the client that is reset (the first one), and its streams
      const server = yield* appServer((s) =>
        s.once("session", (session: http2.ServerHttp2Session) => {
          session.on("stream", (stream: http2.ServerHttp2Stream) => void streams.push(stream))
          session.once("close", () => Deferred.unsafeDone(sessionClosed, Exit.void))
        })
      )
      yield* attachBigRefusal(server)
      const port = (server.address() as net.AddressInfo).port
      // the client's own TCP socket under its TLS: it can be reset (RST), which a TLS socket cannot
      const tcp = net.connect(port, "127.0.0.1")
      tcp.on("error", () => {})
      const session = yield* Effect.acquireRelease(
        Effect.async<http2.ClientHttp2Session, Error>((resume) => {
          const s = http2.connect(`https://127.0.0.1:${port}`, {
            createConnection: () => tls.connect({ socket: tcp, host: "127.0.0.1", ca: cert, ALPNProtocols: ["h2"] })
          })
          s.on("error", () => {})
          s.once("remoteSettings", () => resume(Effect.succeed(s)))
          s.once("close", () => resume(Effect.fail(new Error("session closed before SETTINGS"))))
        }),
        (s) => Effect.sync(() => s.destroy())
      ).pipe(within("5 seconds", "the session over the client's own TCP socket"))
      const big = yield* h2Open(session, connectHeaders(port, { ":path": "/big" }))
      big.stream.pause()
      assert.strictEqual(big.status, 403)
      // the first bytes of the body: the server is writing it, and waits for a window it never gets
      yield* Effect.async<void>((resume) => {
        big.stream.once("readable", () => resume(Effect.void))
      }).pipe(within("5 seconds", "the first bytes of the refusal's body"))
      // the refusal's stream is still open on the server, its body not all written
      assert.strictEqual(streams.length, 1)
      assert.isFalse(streams[0]!.destroyed, "the refused stream is already destroyed")
      assert.isFalse(streams[0]!.writableFinished, "the refusal's body was all written")
      tcp.resetAndDestroy()
      yield* Deferred.await(sessionClosed).pipe(within("5 seconds", "the server's session to close after the reset"))
      // a round trip on a new session: the server has handled everything of the reset before it answers
      const other = yield* h2Session(port, cert)
      const ws = yield* h2Open(other, connectHeaders(port))
      assert.strictEqual(yield* roundTrip(ws, "after the reset"), "after the reset")
      assert.deepStrictEqual(errors, [])
    }))
})
