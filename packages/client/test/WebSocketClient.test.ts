import { WebSocketClient } from "@effect-websocket/client"
import {
  ConnectError,
  DnsError,
  HandshakeResponseError,
  HandshakeTimeoutError,
  HttpStatusError,
  InvalidOptionsError,
  InvalidSendError,
  MessageTooBigError,
  ProtocolViolationError,
  ProxyError,
  TlsError
} from "@effect-websocket/client/Errors"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, FiberRef, Logger, Option, Scope, Stream } from "effect"
import type { Scope as ScopeT } from "effect"
import * as Net from "node:net"
import { deflateRawSync } from "node:zlib"
import { WebSocketServer as WsServer } from "ws"
import { accept101, certificate, connectProxy, ourServer, rawServer, wsServer } from "./helpers.js"

const take = <A, E>(stream: Stream.Stream<A, E>, n: number) =>
  Stream.runCollect(Stream.take(stream, n)).pipe(Effect.map(Chunk.toReadonlyArray))

const bytes = (n: number, seed = 1): Uint8Array => {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}

/** Frame boundaries of the payload length (RFC 6455 §5.2: 7-bit, 16-bit, 64-bit lengths). */
const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 200_000]

const suite = (name: string, server: () => Effect.Effect<string, never, ScopeT.Scope>) =>
  describe(`against ${name}`, () => {
    it.scopedLive("echoes text and binary of every length class (RFC 6455 §5.2)", () =>
      Effect.gen(function*() {
        const ws = yield* WebSocketClient.connect(yield* server())
        for (const n of SIZES) {
          const text = "é".repeat(n >> 1) + (n & 1 ? "a" : "")
          yield* ws.send(text)
          yield* ws.send(bytes(n, n))
        }
        const got = yield* take(ws.messages, SIZES.length * 2)
        SIZES.forEach((n, i) => {
          assert.strictEqual(got[2 * i], "é".repeat(n >> 1) + (n & 1 ? "a" : ""))
          assert.deepStrictEqual(new Uint8Array(got[2 * i + 1] as Uint8Array), bytes(n, n))
        })
      }))

    it.scopedLive("echoes compressed messages with permessage-deflate (RFC 7692)", () =>
      Effect.gen(function*() {
        const ws = yield* WebSocketClient.connect(yield* server(), {
          perMessageDeflate: { threshold: 0, clientMaxWindowBits: 12 }
        })
        assert.match(ws.extensions ?? "", /^permessage-deflate/)
        const big = "compress me ".repeat(20_000)
        yield* ws.send(big)
        yield* ws.send("small")
        yield* ws.send(bytes(70_000))
        const got = yield* take(ws.messages, 3)
        assert.strictEqual(got[0], big)
        assert.strictEqual(got[1], "small")
        assert.deepStrictEqual(new Uint8Array(got[2] as Uint8Array), bytes(70_000))
      }))

    it.scopedLive("the run form echoes in order", () =>
      Effect.gen(function*() {
        const ws = yield* WebSocketClient.connect(yield* server())
        const got: Array<unknown> = []
        for (let i = 0; i < 100; i++) ws.unsafeSend(`m${i}`)
        yield* ws.run((m) => {
          got.push(m)
          if (got.length === 100) return Effect.asVoid(ws.close())
        })
        assert.deepStrictEqual(got, Array.from({ length: 100 }, (_, i) => `m${i}`))
      }))

    it.scopedLive("ping yields a round trip (RFC 6455 §5.5.2-5.5.3)", () =>
      Effect.gen(function*() {
        const ws = yield* WebSocketClient.connect(yield* server())
        const rtt = yield* ws.ping(new Uint8Array([1, 2, 3]))
        assert.isAtLeast(rtt, 0)
        const tooBig = yield* Effect.exit(ws.ping(new Uint8Array(126)))
        assert.isTrue(Exit.isFailure(tooBig))
      }))

    it.scopedLive("close(code, reason): a clean close initiated locally (RFC 6455 §7.1.2)", () =>
      Effect.gen(function*() {
        const ws = yield* WebSocketClient.connect(yield* server())
        const info = yield* ws.close(4001, "bye")
        assert.deepInclude(info, { code: 4001, wasClean: true, initiatedBy: "local" })
        assert.deepStrictEqual(yield* ws.closed, info)
        const after = yield* Effect.exit(ws.send("late"))
        assert.isTrue(Exit.isFailure(after))
        const bad = yield* Effect.exit(ws.close(1005))
        assert.isTrue(Exit.isSuccess(bad) || Exit.isFailure(bad)) // closed already: either way no crash
      }))

    it.scopedLive("an invalid close code or a long reason is refused before the wire", () =>
      Effect.gen(function*() {
        const ws = yield* WebSocketClient.connect(yield* server())
        const e1 = yield* Effect.flip(ws.close(1005))
        assert.instanceOf(e1, InvalidSendError)
        const e2 = yield* Effect.flip(ws.close(1000, "x".repeat(124)))
        assert.instanceOf(e2, InvalidSendError)
        yield* ws.send("still open")
        assert.deepStrictEqual(yield* take(ws.messages, 1), ["still open"])
      }))

    it.scopedLive("closing the Scope sends Close 1000 and ends the connection", () =>
      Effect.gen(function*() {
        const url = yield* server()
        const scope = yield* Scope.make()
        const ws = yield* Scope.extend(WebSocketClient.connect(url), scope)
        yield* ws.send("x")
        yield* Scope.close(scope, Exit.void)
        const info = yield* ws.closed
        assert.strictEqual(info.code, 1000)
        assert.isTrue(info.wasClean)
        assert.strictEqual(info.initiatedBy, "local")
      }))
  })

suite("this project's server", () => ourServer({ perMessageDeflate: true }))
suite("ws's server", () => wsServer({ perMessageDeflate: true }))

describe("server-initiated closes and failures", () => {
  it.scopedLive("the server's Close ends messages; closed has its code and reason (RFC 6455 §7.1.5)", () =>
    Effect.gen(function*() {
      const url = yield* ourServer({
        handler: (ws) => Effect.flatMap(ws.send("bye"), () => ws.close(4002, "done"))
      })
      const ws = yield* WebSocketClient.connect(url)
      assert.deepStrictEqual(yield* Stream.runCollect(ws.messages).pipe(Effect.map(Chunk.toReadonlyArray)), ["bye"])
      assert.deepStrictEqual(yield* ws.closed, { code: 4002, reason: "done", wasClean: true, initiatedBy: "remote" })
    }))

  for (const how of ["throws", "returns a failing Effect"] as const) {
    it.scopedLive(`a run callback that ${how} closes with 1011; what came after it is not handled`, () =>
      Effect.gen(function*() {
        const url = yield* ourServer({
          handler: (ws) => Effect.zipRight(ws.send("a"), Effect.zipRight(ws.send("boom"), ws.send("after")))
        })
        const ws = yield* WebSocketClient.connect(url)
        const handled: Array<unknown> = []
        yield* ws.run((m) => {
          handled.push(m)
          if (m !== "boom") return
          if (how === "throws") throw new Error("the callback threw")
          return Effect.fail(new Error("the callback's Effect failed"))
        })
        const info = yield* ws.closed
        assert.strictEqual(info.code, 1011)
        assert.strictEqual(info.initiatedBy, "local")
        if (how === "throws") assert.deepStrictEqual(handled, ["a", "boom"])
      }))
  }

  it.scopedLive("the Effects a run callback returns see the logger and the FiberRefs around run", () =>
    Effect.gen(function*() {
      const Tag = FiberRef.unsafeMake("none")
      const logged: Array<string> = []
      const seen: Array<string> = []
      const logger = Logger.make(({ message }) => logged.push(String(message)))
      const url = yield* ourServer({ handler: (ws) => Effect.zipRight(ws.send("a"), ws.close()) })
      const ws = yield* WebSocketClient.connect(url)
      yield* ws.run((m) =>
        Effect.gen(function*() {
          seen.push(yield* FiberRef.get(Tag))
          yield* Effect.log(`got ${String(m)}`)
        })
      ).pipe(Effect.locally(Tag, "set around run"), Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      // the Effect was forked by the callback: wait for it (bounded)
      yield* Effect.timeoutFail(Effect.gen(function*() {
        while (seen.length < 1) yield* Effect.sleep(2)
      }), { duration: 2_000, onTimeout: () => new Error("the callback's Effect never ran") })
      assert.deepStrictEqual(seen, ["set around run"])
      assert.deepStrictEqual(logged, ["got a"])
    }))

  it.scopedLive("the Effects a run callback returns are interrupted when the connection ends", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const url = yield* ourServer({
        handler: (ws) => Effect.zipRight(ws.send("a"), Stream.runDrain(ws.messages))
      })
      const ws = yield* WebSocketClient.connect(url)
      const run = yield* Effect.fork(ws.run(() =>
        Effect.onInterrupt(Effect.zipRight(Deferred.succeed(started, void 0), Effect.never), () =>
          Deferred.succeed(interrupted, void 0))
      ))
      yield* Effect.timeoutFail(Deferred.await(started), {
        duration: 2_000,
        onTimeout: () => new Error("the callback's Effect never started")
      })
      yield* ws.close()
      yield* Effect.timeoutFail(Deferred.await(interrupted), {
        duration: 2_000,
        onTimeout: () => new Error("the callback's Effect was not interrupted when the connection ended")
      })
      yield* Fiber.join(run)
    }))

  it.scopedLive("a TCP drop without Close is 1006, not clean", () =>
    Effect.gen(function*() {
      const { port } = yield* rawServer((socket, _head, key) => {
        socket.write(accept101(key))
        setTimeout(() => socket.destroy(), 20)
      })
      const ws = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}`)
      const info = yield* ws.closed
      assert.strictEqual(info.code, 1006)
      assert.isFalse(info.wasClean)
    }))

  it.scopedLive("a masked frame from the server fails with 1002 (RFC 6455 §5.1)", () =>
    Effect.gen(function*() {
      let fromClient = Buffer.alloc(0)
      const { port } = yield* rawServer((socket, _head, key) => {
        socket.on("data", (b: Buffer) => (fromClient = Buffer.concat([fromClient, b])))
        socket.write(accept101(key))
        socket.write(Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2]))
      })
      const ws = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}`)
      const error = yield* Effect.flip(ws.closed)
      assert.instanceOf(error, ProtocolViolationError)
      assert.strictEqual(error.closeCode, 1002)
      yield* Effect.sleep(50)
      assert.strictEqual(closeCodeOf(fromClient), 1002)
    }))

  it.scopedLive("fragments from ws's server are reassembled (RFC 6455 §5.4), with pings in between", () =>
    Effect.gen(function*() {
      const pongs: Array<string> = []
      const port = yield* Effect.acquireRelease(
        Effect.async<WsServer>((resume) => {
          const s: WsServer = new WsServer({ host: "127.0.0.1", port: 0 }, () => resume(Effect.succeed(s)))
          s.on("connection", (ws) => {
            ws.on("pong", (d: Buffer) => pongs.push(d.toString()))
            ws.send("fra", { fin: false })
            ws.ping("p1")
            ws.send("gm", { fin: false })
            ws.send("ent", { fin: true })
            ws.send(Buffer.from([1, 2]), { binary: true, fin: false })
            ws.send(Buffer.from([3]), { binary: true, fin: true })
          })
        }),
        (s) => Effect.sync(() => s.close())
      ).pipe(Effect.map((s) => (s.address() as Net.AddressInfo).port))
      const ws = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}`)
      const got = yield* take(ws.messages, 2)
      assert.strictEqual(got[0], "fragment")
      assert.deepStrictEqual(new Uint8Array(got[1] as Uint8Array), new Uint8Array([1, 2, 3]))
      yield* ws.ping()
      assert.deepStrictEqual(pongs, ["p1"])
    }))

  it.scopedLive("a message over maxMessageSize from the server closes with 1009", () =>
    Effect.gen(function*() {
      const url = yield* ourServer({ handler: (ws) => ws.send("x".repeat(5000)) })
      const ws = yield* WebSocketClient.connect(url, { maxMessageSize: 4096 })
      const error = yield* Effect.flip(ws.closed)
      assert.instanceOf(error, MessageTooBigError)
    }))

  it.scopedLive("a compression bomb from the server is cut at the limit with 1009 (RFC 7692 §8)", () =>
    Effect.gen(function*() {
      const bomb = deflateRawSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 })
      const payload = bomb.subarray(0, bomb.length) // a whole message: final block, then the sync tail trimmed
      let fromClient = Buffer.alloc(0)
      const { port } = yield* rawServer((socket, _head, key) => {
        socket.on("data", (b: Buffer) => (fromClient = Buffer.concat([fromClient, b])))
        socket.write(accept101(key, ["Sec-WebSocket-Extensions: permessage-deflate"]))
        socket.write(Buffer.concat([frameHeader(0xc2, payload.length), payload]))
      })
      const ws = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}`, {
        perMessageDeflate: true,
        maxMessageSize: 1024 * 1024
      })
      const error = yield* Effect.flip(ws.closed)
      assert.instanceOf(error, MessageTooBigError)
      yield* Effect.sleep(50)
      assert.strictEqual(closeCodeOf(fromClient), 1009)
    }))
})

/** An unmasked frame header with the minimal length encoding. */
const frameHeader = (first: number, length: number): Buffer => {
  if (length < 126) return Buffer.from([first, length])
  if (length < 65536) return Buffer.from([first, 126, length >> 8, length & 0xff])
  const h = Buffer.from([first, 127, 0, 0, 0, 0, 0, 0, 0, 0])
  h.writeUInt32BE(length, 6)
  return h
}

/** The close code of the first frame a client sent (masked), or undefined. */
const closeCodeOf = (b: Buffer): number | undefined => {
  if (b.length < 8 || (b[0]! & 0x0f) !== 0x8) return undefined
  const mask = b.subarray(2, 6)
  return ((b[6]! ^ mask[0]!) << 8) | (b[7]! ^ mask[1]!)
}

describe("opening handshake failures are typed", () => {
  it.scopedLive("a wrong Sec-WebSocket-Accept (RFC 6455 §4.1)", () =>
    Effect.gen(function*() {
      const { port } = yield* rawServer((socket) => socket.write(accept101("AAAAAAAAAAAAAAAAAAAAAA==")))
      const error = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}`))
      assert.instanceOf(error, HandshakeResponseError)
      assert.strictEqual(error.reason, "Accept")
    }))

  it.scopedLive("a 403 with its body and headers", () =>
    Effect.gen(function*() {
      const { port } = yield* rawServer((socket) =>
        socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nX-Why: origin\r\n\r\nno, you")
      )
      const error = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}`))
      assert.instanceOf(error, HttpStatusError)
      assert.strictEqual(error.status, 403)
      assert.strictEqual(error.body, "no, you")
      assert.strictEqual(error.headers["x-why"], "origin")
    }))

  it.scopedLive("a server that never answers the upgrade: HandshakeTimeoutError, socket closed", () =>
    Effect.gen(function*() {
      const { port, sockets } = yield* rawServer(() => {})
      const error = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}`, { handshakeTimeout: 200 }))
      assert.instanceOf(error, HandshakeTimeoutError)
      yield* Effect.async<void>((resume) => {
        const s = sockets[0]!
        if (s.readableEnded || s.destroyed) resume(Effect.void)
        else s.once("close", () => resume(Effect.void))
      })
    }))

  it.scopedLive("a refused TCP connection is a ConnectError with its code", () =>
    Effect.gen(function*() {
      const port = yield* Effect.async<number>((resume) => {
        const s = Net.createServer().listen(0, "127.0.0.1", () => {
          const p = (s.address() as Net.AddressInfo).port
          s.close(() => resume(Effect.succeed(p)))
        })
      })
      const error = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}`))
      assert.instanceOf(error, ConnectError)
      assert.strictEqual(error.code, "ECONNREFUSED")
    }))

  it.scopedLive("a name that does not resolve is a DnsError (resolver injected: no traffic)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(WebSocketClient.connect("ws://no.such.host.test/", {
        lookup: (hostname, _options, callback) =>
          callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" }), "", 4)
      }))
      assert.instanceOf(error, DnsError)
      assert.strictEqual(error.code, "ENOTFOUND")
      assert.strictEqual(error.host, "no.such.host.test")
    }))

  it.scopedLive("bad URLs and options are InvalidOptionsError", () =>
    Effect.gen(function*() {
      for (const url of ["ftp://x/", "ws://x/#frag", "not a url"]) {
        assert.instanceOf(yield* Effect.flip(WebSocketClient.connect(url)), InvalidOptionsError)
      }
      assert.instanceOf(
        yield* Effect.flip(WebSocketClient.connect("ws://127.0.0.1:1/", { headers: { "X-A": "a\r\nb: c" } })),
        InvalidOptionsError
      )
      assert.instanceOf(
        yield* Effect.flip(WebSocketClient.connect("ws://127.0.0.1:1/", { protocols: ["a b"] })),
        InvalidOptionsError
      )
    }))

  it.scopedLive("subprotocols and extra headers are sent; the selected protocol is exposed", () =>
    Effect.gen(function*() {
      let head = ""
      const { port } = yield* rawServer((socket, h, key) => {
        head = h
        socket.write(accept101(key, ["Sec-WebSocket-Protocol: b"]))
      })
      const ws = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}/p?q=1`, {
        closeTimeout: 100,
        protocols: ["a", "b"],
        headers: { Authorization: "Bearer t" }
      })
      assert.strictEqual(ws.protocol, "b")
      assert.match(head, /^GET \/p\?q=1 HTTP\/1\.1\r\n/)
      assert.match(head, /\r\nSec-WebSocket-Protocol: a, b\r\n/)
      assert.match(head, /\r\nAuthorization: Bearer t\r\n/)
      assert.strictEqual(ws.response.status, 101)
    }))

  it.scopedLive("a subprotocol the client did not offer is refused", () =>
    Effect.gen(function*() {
      const { port } = yield* rawServer((socket, _h, key) => socket.write(accept101(key, ["Sec-WebSocket-Protocol: z"])))
      const error = yield* Effect.flip(WebSocketClient.connect(`ws://127.0.0.1:${port}`, { protocols: ["a"] }))
      assert.instanceOf(error, HandshakeResponseError)
      assert.strictEqual(error.reason, "Protocol")
    }))
})

describe("wss", () => {
  it.scopedLive("connects with the test certificate as CA; refuses an untrusted one", () =>
    Effect.gen(function*() {
      const good = yield* certificate()
      const other = yield* certificate()
      const url = yield* ourServer({ tls: good })
      assert.match(url, /^wss:/)
      const ws = yield* WebSocketClient.connect(url, { tls: { ca: good.cert } })
      yield* ws.send("secure")
      assert.deepStrictEqual(yield* take(ws.messages, 1), ["secure"])
      const untrusted = yield* Effect.flip(WebSocketClient.connect(url))
      assert.instanceOf(untrusted, TlsError)
      const wrong = yield* Effect.flip(WebSocketClient.connect(url, { tls: { ca: other.cert } }))
      assert.instanceOf(wrong, TlsError)
    }))

  it.scopedLive("a client certificate (mutual TLS): accepted when given, refused when missing", () =>
    Effect.gen(function*() {
      const server = yield* certificate()
      const client = yield* certificate("client", { clientAuth: true })
      const url = yield* ourServer({
        tls: { ...server, ca: client.cert, requestCert: true, rejectUnauthorized: true }
      })
      const ws = yield* WebSocketClient.connect(url, { tls: { ca: server.cert, cert: client.cert, key: client.key } })
      yield* ws.send("mutual")
      assert.deepStrictEqual(yield* take(ws.messages, 1), ["mutual"])
      const refused = yield* Effect.flip(WebSocketClient.connect(url, { tls: { ca: server.cert } }))
      assert.instanceOf(refused, TlsError)
    }))

  it.scopedLive("servername: a name the certificate does not hold is refused", () =>
    Effect.gen(function*() {
      const good = yield* certificate()
      const url = yield* ourServer({ tls: good })
      const error = yield* Effect.flip(WebSocketClient.connect(url, { tls: { ca: good.cert, servername: "example.org" } }))
      assert.instanceOf(error, TlsError)
      assert.strictEqual(error.code, "ERR_TLS_CERT_ALTNAME_INVALID")
    }))
})

describe("proxy CONNECT (RFC 9110 §9.3.6)", () => {
  it.scopedLive("ws:// and wss:// through an HTTP proxy", () =>
    Effect.gen(function*() {
      const proxy = yield* connectProxy()
      const plain = yield* ourServer()
      const ws = yield* WebSocketClient.connect(plain, { proxy: proxy.url })
      yield* ws.send("via proxy")
      assert.deepStrictEqual(yield* take(ws.messages, 1), ["via proxy"])
      assert.match(proxy.requests[0]!, new RegExp(`^CONNECT ${new URL(plain).host} HTTP/1\\.1\\r\\n`))
      const cert = yield* certificate()
      const secure = yield* ourServer({ tls: cert })
      const wss = yield* WebSocketClient.connect(secure, { proxy: proxy.url, tls: { ca: cert.cert } })
      yield* wss.send("tls via proxy")
      assert.deepStrictEqual(yield* take(wss.messages, 1), ["tls via proxy"])
    }))

  it.scopedLive("credentials go in Proxy-Authorization; a refusal is a ProxyError with its status", () =>
    Effect.gen(function*() {
      const proxy = yield* connectProxy({ requireAuth: "Basic " + Buffer.from("u:p w").toString("base64") })
      const url = yield* ourServer()
      const refused = yield* Effect.flip(WebSocketClient.connect(url, { proxy: proxy.url }))
      assert.instanceOf(refused, ProxyError)
      assert.strictEqual(refused.status, 407)
      const withAuth = proxy.url.replace("http://", "http://u:p%20w@")
      const ws = yield* WebSocketClient.connect(url, { proxy: withAuth })
      yield* ws.send("ok")
      assert.deepStrictEqual(yield* take(ws.messages, 1), ["ok"])
    }))
})

describe("backpressure and keepalive", () => {
  it.scopedLive("send suspends while more than highWaterMark bytes wait, and resumes on drain", () =>
    Effect.gen(function*() {
      const held: Array<Net.Socket> = []
      const { port } = yield* rawServer((socket, _h, key) => {
        socket.write(accept101(key))
        socket.pause()
        held.push(socket)
      })
      const ws = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}`, { highWaterMark: 256 * 1024, closeTimeout: 100 })
      const chunk = bytes(64 * 1024)
      const sender = yield* Effect.fork(Effect.forEach(Array.from({ length: 400 }), () => ws.send(chunk), { discard: true }))
      // wait (bounded) until the socket's buffer is over the mark
      for (let i = 0; i < 500 && (yield* ws.bufferedAmount) <= 256 * 1024; i++) yield* Effect.sleep(10)
      assert.isAbove(yield* ws.bufferedAmount, 256 * 1024)
      assert.isTrue(Option.isNone(yield* Fiber.poll(sender)))
      held[0]!.on("data", () => {})
      held[0]!.resume()
      yield* Fiber.join(sender)
    }))

  it.scopedLive("a keepalive ping without a Pong drops a half-open connection (1006)", () =>
    Effect.gen(function*() {
      const { port } = yield* rawServer((socket, _h, key) => {
        socket.write(accept101(key)) // and never answers anything
      })
      const ws = yield* WebSocketClient.connect(`ws://127.0.0.1:${port}`, { keepaliveInterval: 50, keepaliveTimeout: 100 })
      const info = yield* ws.closed
      assert.strictEqual(info.code, 1006)
    }))

  it.scopedLive("keepalive pings are answered by a live server and the connection stays open", () =>
    Effect.gen(function*() {
      const ws = yield* WebSocketClient.connect(yield* ourServer(), { keepaliveInterval: 20, keepaliveTimeout: 1000 })
      yield* Effect.sleep(150)
      yield* ws.send("alive")
      assert.deepStrictEqual(yield* take(ws.messages, 1), ["alive"])
    }))
})

