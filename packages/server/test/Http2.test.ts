/**
 * WebSockets over HTTP/2 (RFC 8441) against Node's http2 client speaking extended CONNECT by
 * hand: frames are built and masked here, the server's bytes parsed here.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Metric, Scope, Stream } from "effect"
import * as http2 from "node:http2"
import * as https from "node:https"
import { deflateRawSync, inflateRawSync } from "node:zlib"
import * as Metrics from "../src/Metrics.js"
import { UpgradeRejected } from "../src/Errors.js"
import type { CloseInfo, WebSocket as Ws } from "../src/WebSocket.js"
import * as HttpUpgrade from "../src/HttpUpgrade.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connectHeaders, h2Open, h2Session } from "./h2client.js"
import type { H2WebSocket } from "./h2client.js"
import { connect, craftFrame, makeCertificate, pollUntil, recorder } from "./utils.js"
import type { ServerFrame } from "./utils.js"

const { cert, key } = makeCertificate()
const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

const TEXT = 1
const BINARY = 2
const CLOSE = 8
const PING = 9
const PONG = 10

const closePayload = (code: number, reason = "") => {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason))
  b.writeUInt16BE(code, 0)
  b.write(reason, 2)
  return b
}
const codeOf = (payload: Buffer) => (payload.length >= 2 ? payload.readUInt16BE(0) : 1005)

/** An HTTP/2 server whose handler reports every connection's handle and how it ended. */
const observed = (
  options: Partial<WebSocketServer.Options<any, never, never>> = {},
  handler: (ws: Ws<any>) => Effect.Effect<unknown, unknown> = echo,
  /** The server's own scope (the client session stays in the test's). */
  serverScope?: Scope.Scope
) =>
  Effect.gen(function*() {
    const handles: Array<Ws<any>> = []
    const ended = new Map<number, Exit.Exit<CloseInfo, unknown>>()
    const server = yield* WebSocketServer.make({
      ...options,
      tls: { key, cert },
      http2: true,
      handler: (ws) =>
        Effect.gen(function*() {
          handles.push(ws)
          yield* Effect.forkDaemon(Effect.exit(ws.closed).pipe(Effect.map((e) => ended.set(ws.id, e))))
          yield* handler(ws)
        })
    }).pipe(serverScope === undefined ? (e) => e : Scope.extend(serverScope))
    const session = yield* h2Session(server.address.port, cert)
    const open = (extra: Record<string, string | undefined> = {}) =>
      h2Open(session, connectHeaders(server.address.port, extra))
    const endedOf = (ws: Ws<any>) =>
      pollUntil(Effect.sync(() => ended.get(ws.id)), (e) => e !== undefined, 10_000).pipe(
        Effect.map((e) => (e !== undefined && Exit.isSuccess(e) ? e.value : undefined))
      )
    return { server, session, open, handles, endedOf }
  })

/** The close code of the protocol error a connection failed with (its `closed` fails with it). */
const failureCode = (ws: Ws<any>) =>
  Effect.flip(ws.closed).pipe(Effect.map((e) => (e as { readonly closeCode: number }).closeCode))

const messagesOf = (frames: ReadonlyArray<ServerFrame>) =>
  frames.filter((f) => f.opcode === TEXT || f.opcode === BINARY)

const echoed = (ws: H2WebSocket, n: number) => ws.until((frames) => messagesOf(frames).length >= n)

describe("RFC 8441 §4-5: the extended CONNECT handshake", () => {
  it.scopedLive("the server advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and answers :status 200, no accept key", () =>
    Effect.gen(function*() {
      const { handles, open, session } = yield* observed()
      assert.isTrue(session.remoteSettings.enableConnectProtocol)
      // receive windows for many WebSockets: 1 MiB per stream, 16 MiB for the connection
      assert.strictEqual(session.remoteSettings.initialWindowSize, 1024 * 1024)
      const window = yield* pollUntil(Effect.sync(() => session.state.remoteWindowSize ?? 0), (n) => n > 65_535, 2_000)
      assert.strictEqual(window, 16 * 1024 * 1024)
      const ws = yield* open()
      assert.strictEqual(ws.status, 200)
      assert.isUndefined(ws.headers["sec-websocket-accept"])
      ws.send(TEXT, "hello")
      yield* echoed(ws, 1)
      assert.strictEqual(handles.length, 1)
      const request = handles[0]!.request
      assert.strictEqual(request.transport, "h2")
      assert.strictEqual(request.url, "/ws")
      assert.strictEqual(request.headers["sec-websocket-version"], "13")
      assert.strictEqual(request.remoteAddress, "127.0.0.1")
      assert.strictEqual(request.remotePort, session.socket.localPort)
    }))

  it.scopedLive("HTTP/1.1 clients upgrade on the same port (ALPN http/1.1)", () =>
    Effect.gen(function*() {
      const { handles, server } = yield* observed()
      const client = yield* connect(server.url, { ca: cert })
      const rec = recorder(client)
      client.send("over http/1.1")
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "over http/1.1")
      assert.strictEqual(handles[0]!.request.transport, "http/1.1")
    }))

  it.scopedLive("a plain HTTP/1.1 request on the same port is 426 with Upgrade: websocket", () =>
    Effect.gen(function*() {
      const { server } = yield* observed()
      const answer = yield* Effect.async<{ status: number; upgrade: unknown }>((resume) => {
        const req = https.get(
          { host: "127.0.0.1", port: server.address.port, path: "/", ca: cert }, // no ALPN: HTTP/1.1
          (res) => {
            res.resume()
            resume(Effect.succeed({ status: res.statusCode ?? 0, upgrade: res.headers["upgrade"] }))
          }
        )
        req.on("error", (e) => resume(Effect.die(e)))
      })
      assert.deepStrictEqual(answer, { status: 426, upgrade: "websocket" })
    }))

  it.scopedLive("subprotocol and permessage-deflate are negotiated in the header block", () =>
    Effect.gen(function*() {
      const { open } = yield* observed({
        protocols: ["chat"],
        perMessageDeflate: { threshold: 0 }
      })
      const ws = yield* open({
        "sec-websocket-protocol": "superchat, chat",
        "sec-websocket-extensions": "permessage-deflate; client_max_window_bits"
      })
      assert.strictEqual(ws.headers["sec-websocket-protocol"], "chat")
      assert.include(String(ws.headers["sec-websocket-extensions"]), "permessage-deflate")
      // a compressed message from the client (RSV1), echoed compressed
      const text = "compressed over h2 ".repeat(20)
      const deflated = deflateRawSync(Buffer.from(text), { finishFlush: 2 /* Z_SYNC_FLUSH: ends in 00 00 ff ff */ })
      ws.stream.write(craftFrame({ opcode: TEXT, rsv: 4, payload: deflated.subarray(0, deflated.length - 4) }))
      const frames = messagesOf(yield* echoed(ws, 1))
      assert.strictEqual(frames[0]!.rsv, 4)
      const inflated = inflateRawSync(Buffer.concat([frames[0]!.payload, Buffer.from([0, 0, 0xff, 0xff])]), {
        finishFlush: 2 // Z_SYNC_FLUSH: the message ends on a sync flush, not a final block
      })
      assert.strictEqual(inflated.toString(), text)
    }))

  it.scopedLive("the upgrade hook sees transport h2 and hands typed data to the handler; a refusal is its status", () =>
    Effect.gen(function*() {
      const seen = yield* Deferred.make<string>()
      const { open } = yield* observed({
        onUpgrade: (info) =>
          info.url === "/ws?user=ada"
            ? Effect.succeed({ data: { user: "ada", transport: info.transport } })
            : Effect.fail(new UpgradeRejected({ status: 403, body: "who are you" }))
      }, (ws) => Deferred.succeed(seen, `${ws.data.user} over ${ws.data.transport}`).pipe(Effect.zipRight(echo(ws))))
      const refused = yield* open({ ":path": "/ws?user=eve" })
      assert.strictEqual(refused.status, 403)
      yield* refused.closed
      assert.strictEqual(refused.received().toString(), "who are you")
      const ws = yield* open({ ":path": "/ws?user=ada" })
      assert.strictEqual(ws.status, 200)
      assert.strictEqual(yield* Deferred.await(seen), "ada over h2")
    }))
})

describe("RFC 6455 §5 over an HTTP/2 stream", () => {
  it.scopedLive("echoes every size class, text and binary (7-bit, 16-bit and 64-bit lengths)", () =>
    Effect.gen(function*() {
      const { open } = yield* observed()
      const ws = yield* open()
      const sizes = [0, 1, 125, 126, 127, 65_535, 65_536, 200_000, 1024 * 1024]
      const payloads = sizes.map((n, i) => Buffer.alloc(n, 0x61 + (i % 26)))
      payloads.forEach((p, i) => ws.send(i % 2 === 0 ? TEXT : BINARY, p))
      const frames = messagesOf(yield* echoed(ws, sizes.length))
      assert.deepStrictEqual(frames.map((f) => f.payload.length), sizes)
      frames.forEach((f, i) => {
        assert.strictEqual(f.opcode, i % 2 === 0 ? TEXT : BINARY)
        assert.isTrue(f.payload.equals(payloads[i]!))
      })
    }))

  it.scopedLive("fragments are reassembled, with a ping between them", () =>
    Effect.gen(function*() {
      const { open } = yield* observed()
      const ws = yield* open()
      ws.send(TEXT, "frag", false)
      ws.send(PING, "in between")
      ws.send(0, "men", false)
      ws.send(0, "ted", true)
      const frames = yield* ws.until((fs) => messagesOf(fs).length >= 1)
      assert.deepStrictEqual(frames.map((f) => [f.opcode, f.payload.toString()]), [
        [PONG, "in between"],
        [TEXT, "fragmented"]
      ])
    }))

  it.scopedLive("a server ping is answered and timed", () =>
    Effect.gen(function*() {
      const rtt = yield* Deferred.make<number>()
      const { open } = yield* observed({}, (ws) =>
        ws.ping(Buffer.from("p")).pipe(Effect.flatMap((ms) => Deferred.succeed(rtt, ms)), Effect.zipRight(echo(ws))))
      const ws = yield* open()
      const frames = yield* ws.until((fs) => fs.some((f) => f.opcode === PING))
      ws.send(PONG, frames.find((f) => f.opcode === PING)!.payload)
      assert.isAtLeast(yield* Deferred.await(rtt), 0)
    }))
})

describe("RFC 6455 §7 close paths over HTTP/2, and how stream resets map", () => {
  it.scopedLive("client Close: echoed, the server ends the stream, 1000 clean and remote", () =>
    Effect.gen(function*() {
      const { endedOf, handles, open } = yield* observed()
      const ws = yield* open()
      ws.send(TEXT, "x")
      yield* echoed(ws, 1)
      ws.send(CLOSE, closePayload(1000, "bye"))
      const rst = yield* ws.closed
      const close = ws.frames().find((f) => f.opcode === CLOSE)!
      assert.strictEqual(codeOf(close.payload), 1000)
      assert.isTrue(ws.ended())
      assert.strictEqual(rst, http2.constants.NGHTTP2_NO_ERROR)
      assert.deepStrictEqual(yield* endedOf(handles[0]!), { code: 1000, reason: "bye", wasClean: true, initiatedBy: "remote" })
    }))

  it.scopedLive("server Close (the handler ends): the client answers, 1000 clean and local", () =>
    Effect.gen(function*() {
      const { endedOf, handles, open } = yield* observed({}, () => Effect.void)
      const ws = yield* open()
      const frames = yield* ws.until((fs) => fs.some((f) => f.opcode === CLOSE))
      assert.strictEqual(codeOf(frames.find((f) => f.opcode === CLOSE)!.payload), 1000)
      ws.send(CLOSE, closePayload(1000))
      yield* ws.closed
      assert.deepStrictEqual(yield* endedOf(handles[0]!), { code: 1000, reason: "", wasClean: true, initiatedBy: "local" })
    }))

  it.scopedLive("RST_STREAM from the client: 1006, not clean, initiated by the transport", () =>
    Effect.gen(function*() {
      const { endedOf, handles, open } = yield* observed()
      const ws = yield* open()
      ws.send(TEXT, "x")
      yield* echoed(ws, 1)
      ws.stream.close(http2.constants.NGHTTP2_CANCEL)
      assert.deepStrictEqual(yield* endedOf(handles[0]!), {
        code: 1006,
        reason: "",
        wasClean: false,
        initiatedBy: "transport"
      })
    }))

  it.scopedLive("END_STREAM without a Close: 1006", () =>
    Effect.gen(function*() {
      const { endedOf, handles, open } = yield* observed()
      const ws = yield* open()
      ws.send(TEXT, "x")
      yield* echoed(ws, 1)
      ws.stream.end()
      assert.strictEqual((yield* endedOf(handles[0]!))?.code, 1006)
    }))

  it.scopedLive("the server's limits apply: a frame declared over maxMessageSize is refused with 1009", () =>
    Effect.gen(function*() {
      const { handles, open } = yield* observed({ maxMessageSize: 1000, closeTimeout: 60_000 })
      const ws = yield* open()
      ws.stream.write(craftFrame({ opcode: BINARY, payload: Buffer.alloc(10), length: 5000 }))
      // reset right after the Close (a close timeout of a minute would let the test time out otherwise)
      assert.strictEqual(yield* ws.closed, http2.constants.NGHTTP2_NO_ERROR)
      assert.isTrue(ws.ended())
      assert.strictEqual(codeOf(ws.frames().find((f) => f.opcode === CLOSE)!.payload), 1009)
      assert.strictEqual(yield* failureCode(handles[0]!), 1009)
    }))

  it.scopedLive("a protocol error (unmasked frame): Close 1002, then the stream is reset; the session lives on", () =>
    Effect.gen(function*() {
      const { handles, open } = yield* observed({ closeTimeout: 60_000 })
      const ws = yield* open()
      ws.stream.write(craftFrame({ opcode: TEXT, payload: "no mask", mask: false }))
      // the server does not wait for our Close: END_STREAM then RST_STREAM(NO_ERROR)
      const rst = yield* ws.closed
      const close = ws.frames().find((f) => f.opcode === CLOSE)
      assert.strictEqual(codeOf(close!.payload), 1002)
      assert.strictEqual(rst, http2.constants.NGHTTP2_NO_ERROR)
      assert.strictEqual(yield* failureCode(handles[0]!), 1002)
      const other = yield* open()
      other.send(TEXT, "still here")
      assert.strictEqual(messagesOf(yield* echoed(other, 1))[0]!.payload.toString(), "still here")
    }))
})

describe("flow control and multiplexing", () => {
  it.scopedLive("a reader that stops reading: HTTP/2 flow control suspends send, buffered bytes stay bounded", () =>
    Effect.gen(function*() {
      const message = Buffer.alloc(64 * 1024, 0x62)
      const total = 160 // 10 MiB if nothing held it back
      let sent = 0
      let maxBuffered = 0
      const { open } = yield* observed({ highWaterMark: 256 * 1024 }, (ws) =>
        Effect.gen(function*() {
          for (let i = 0; i < total; i++) {
            yield* ws.send(message)
            sent++
            maxBuffered = Math.max(maxBuffered, yield* ws.bufferedAmount)
          }
          yield* Stream.runDrain(ws.messages)
        }))
      const ws = yield* open()
      ws.stream.pause()
      // sends stop well before the end and stay stopped while nothing is read
      const stalled = yield* pollUntil(Effect.sync(() => sent), (n) => n > 0, 5_000)
      yield* Effect.sleep(300)
      const later = sent
      yield* Effect.sleep(300)
      assert.isAbove(stalled, 0)
      assert.strictEqual(sent, later, "send kept completing while the reader was stopped")
      assert.isBelow(sent, total / 2)
      assert.isAtMost(maxBuffered, 256 * 1024 + message.length)
      // reading again lets everything through, in order and complete
      ws.stream.resume()
      const frames = messagesOf(yield* echoed(ws, total))
      assert.strictEqual(frames.length, total)
      assert.isTrue(frames.every((f) => f.payload.equals(message)))
    }))

  it.scopedLive("100 WebSockets multiplexed on one session: one TLS connection, each echoes its own", () =>
    Effect.gen(function*() {
      const total = yield* Metric.value(Metrics.connectionsTotal)
      const { handles, open, server, session } = yield* observed()
      const sockets = yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), () => open(), {
        concurrency: "unbounded"
      })
      sockets.forEach((ws, i) => ws.send(TEXT, `socket ${i}`))
      const results = yield* Effect.forEach(sockets, (ws) => echoed(ws, 1), { concurrency: "unbounded" })
      results.forEach((frames, i) => assert.strictEqual(messagesOf(frames)[0]!.payload.toString(), `socket ${i}`))
      assert.strictEqual(yield* server.connections, 100)
      assert.strictEqual((yield* Metric.value(Metrics.connectionsTotal)).count - total.count, 100)
      // the peer's address and port are those of the one TCP+TLS connection they share
      const tcpConnections = new Set(handles.map((h) => `${h.request.remoteAddress}:${h.request.remotePort}`))
      assert.strictEqual(tcpConnections.size, 1)
      assert.isTrue(handles.every((h) => h.request.transport === "h2"))
      assert.strictEqual(handles[0]!.request.remotePort, session.socket.localPort)
    }))
})

describe("GOAWAY", () => {
  it.scopedLive("a client GOAWAY (NO_ERROR) during traffic: open WebSockets carry on and close cleanly", () =>
    Effect.gen(function*() {
      const { endedOf, handles, open, session } = yield* observed()
      const sockets = yield* Effect.forEach([0, 1, 2, 3], () => open())
      for (const ws of sockets) for (let i = 0; i < 50; i++) ws.send(TEXT, `before ${i}`)
      session.goaway(http2.constants.NGHTTP2_NO_ERROR)
      for (const ws of sockets) for (let i = 0; i < 50; i++) ws.send(TEXT, `after ${i}`)
      for (const ws of sockets) {
        const frames = messagesOf(yield* echoed(ws, 100))
        assert.strictEqual(frames[99]!.payload.toString(), "after 49")
        ws.send(CLOSE, closePayload(1000))
      }
      for (const h of handles) assert.strictEqual((yield* endedOf(h))?.wasClean, true)
    }))

  it.scopedLive("a client GOAWAY with an error: every WebSocket of the session ends as 1006 (transport)", () =>
    Effect.gen(function*() {
      const { endedOf, handles, open, session } = yield* observed()
      const sockets = yield* Effect.forEach([0, 1, 2], () => open())
      for (const ws of sockets) ws.send(TEXT, "x")
      for (const ws of sockets) yield* echoed(ws, 1)
      session.goaway(http2.constants.NGHTTP2_PROTOCOL_ERROR)
      for (const h of handles) {
        const info = yield* endedOf(h)
        assert.deepStrictEqual(info && [info.code, info.wasClean, info.initiatedBy], [1006, false, "transport"])
      }
    }))

  it.scopedLive("shutdown during traffic: 1001 on every stream, the closing handshakes, then GOAWAY", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { handles, open, session } = yield* observed({}, echo, scope)
      const sockets = yield* Effect.forEach([0, 1, 2, 3, 4], () => open())
      for (const ws of sockets) ws.send(TEXT, "x")
      for (const ws of sockets) yield* echoed(ws, 1)
      const goaway = yield* Deferred.make<number>()
      session.once("goaway", (code: number) => Deferred.unsafeDone(goaway, Exit.succeed(code)))
      // every client answers the server's Close
      const answered = Effect.forEach(sockets, (ws) =>
        ws.until((fs) => fs.some((f) => f.opcode === CLOSE)).pipe(
          Effect.tap((fs) => Effect.sync(() => ws.send(CLOSE, fs.find((f) => f.opcode === CLOSE)!.payload.subarray(0, 2))))
        ), { concurrency: "unbounded", discard: true })
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* answered
      yield* closing
      for (const ws of sockets) {
        assert.strictEqual(codeOf(ws.frames().find((f) => f.opcode === CLOSE)!.payload), 1001)
      }
      assert.strictEqual(yield* Deferred.await(goaway), http2.constants.NGHTTP2_NO_ERROR)
      assert.strictEqual(handles.length, 5)
    }))
})

describe("bad input gets its HTTP status and breaks nothing else on the session", () => {
  it.scopedLive("405, 501, 501, 400 (version), 400 (scheme), then a WebSocket on the same session works", () =>
    Effect.gen(function*() {
      const rejected = yield* Metric.value(Metrics.handshakesRejected)
      const { open } = yield* observed()
      const get = yield* open({ ":method": "GET", ":protocol": undefined, "sec-websocket-version": undefined })
      assert.strictEqual(get.status, 405)
      assert.strictEqual(get.headers["allow"], "CONNECT")
      const tunnel = yield* open({ ":protocol": undefined, ":scheme": undefined, ":path": undefined })
      assert.strictEqual(tunnel.status, 501)
      const other = yield* open({ ":protocol": "webtransport" })
      assert.strictEqual(other.status, 501)
      const version = yield* open({ "sec-websocket-version": "8" })
      assert.strictEqual(version.status, 400)
      assert.strictEqual(version.headers["sec-websocket-version"], "13")
      const scheme = yield* open({ ":scheme": "http" })
      assert.strictEqual(scheme.status, 400)
      for (const s of [get, tunnel, other, version, scheme]) yield* s.closed
      const after = yield* Metric.value(Metrics.handshakesRejected)
      assert.strictEqual(after.count - rejected.count, 5)
      const ws = yield* open()
      ws.send(TEXT, "fine")
      assert.strictEqual(messagesOf(yield* echoed(ws, 1))[0]!.payload.toString(), "fine")
    }))

  it.scopedLive("a CONNECT sent before the server's SETTINGS reached the client is served (the setting is in force)", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, tls: { key, cert }, http2: true })
      const session = yield* h2Session(server.address.port, cert, { waitSettings: false })
      const early = session.remoteSettings?.enableConnectProtocol
      const ws = yield* h2Open(session, connectHeaders(server.address.port))
      assert.notStrictEqual(early, true, "the request was sent before the server's SETTINGS arrived")
      assert.strictEqual(ws.status, 200)
      ws.send(TEXT, "early")
      assert.strictEqual(messagesOf(yield* echoed(ws, 1))[0]!.payload.toString(), "early")
    }))

  it.scopedLive("an HTTP/2 connection that opens no stream is closed after handshakeTimeout; one with a WebSocket is not", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, tls: { key, cert }, http2: true, handshakeTimeout: 300 })
      const idle = yield* h2Session(server.address.port, cert)
      const busy = yield* h2Session(server.address.port, cert)
      const ws = yield* h2Open(busy, connectHeaders(server.address.port))
      const goaway = yield* Deferred.make<void>()
      idle.once("goaway", () => Deferred.unsafeDone(goaway, Exit.void))
      yield* Deferred.await(goaway)
      assert.isFalse(busy.closed)
      ws.send(TEXT, "still open")
      assert.strictEqual(messagesOf(yield* echoed(ws, 1))[0]!.payload.toString(), "still open")
    }))

  it.scopedLive("http2 without tls fails with a ServerError", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(WebSocketServer.make({ handler: echo, http2: true }))
      assert.isTrue(Exit.isFailure(exit))
    }))
})

describe("HttpUpgrade.attachHttp2: WebSockets on an application's own node:http2 server", () => {
  /** A node:http2 server on port 0, closed with the scope; `pages` adds a 'request' listener. */
  const appServer = (pages: boolean) =>
    Effect.acquireRelease(
      Effect.async<http2.Http2SecureServer>((resume) => {
        const server = http2.createSecureServer({
          key,
          cert,
          allowHTTP1: true,
          settings: { enableConnectProtocol: true }
        })
        if (pages) server.on("request", (_req, res) => res.end("a page"))
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) => Effect.sync(() => server.close())
    )

  for (const pages of [false, true]) {
    it.scopedLive(
      `${pages ? "with" : "without"} the compatibility API: /ws is served, another path is 404, the session lives on`,
      () =>
        Effect.gen(function*() {
          const server = yield* appServer(pages)
          const attached = yield* HttpUpgrade.attachHttp2(server, { path: "/ws", handler: echo })
          const port = (server.address() as { port: number }).port
          const session = yield* h2Session(port, cert)
          const elsewhere = yield* h2Open(session, connectHeaders(port, { ":path": "/chat" }))
          assert.strictEqual(elsewhere.status, 404)
          if (pages) {
            const page = yield* h2Open(session, { ":path": "/" })
            assert.strictEqual(page.status, 200)
            yield* page.closed
            assert.strictEqual(page.received().toString(), "a page")
          } else {
            const get = yield* h2Open(session, { ":path": "/" })
            assert.strictEqual(get.status, 405)
          }
          const ws = yield* h2Open(session, connectHeaders(port, { ":path": "/ws?room=1" }))
          assert.strictEqual(ws.status, 200)
          ws.send(TEXT, "attached")
          assert.strictEqual(messagesOf(yield* echoed(ws, 1))[0]!.payload.toString(), "attached")
          assert.strictEqual(yield* attached.connections, 1)
        })
    )
  }
})
