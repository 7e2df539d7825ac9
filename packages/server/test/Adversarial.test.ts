/**
 * Hardened by default: what an attacker can send to a server built with the default
 * options (or small timeouts to keep the tests fast), over real sockets on 127.0.0.1.
 * Each case names what the peer sends and what the server must do.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Scope, Stream } from "effect"
import * as tls from "node:tls"
import * as zlib from "node:zlib"
import type { CloseInfo, WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import {
  clientFrame,
  closeCodeIn,
  connect,
  craftFrame,
  headEnd,
  loadCount,
  makeCertificate,
  parseServerFrames,
  pollUntil,
  rawConnect,
  rawExchange,
  rawSocket,
  recorder,
  recordSocket,
  upgradeRequest,
  uncaughtErrors,
  waitUntil,
  within
} from "./utils.js"

type Options = Partial<WebSocketServer.Options<undefined, never, never>>

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

/** A server whose handler invocations and `closed` outcomes are recorded. */
const instrumented = (options: Options = {}, handler: (ws: Ws<unknown>) => Effect.Effect<unknown, unknown> = echo) =>
  Effect.gen(function*() {
    const stats = { handlers: 0, exits: [] as Array<Exit.Exit<CloseInfo, unknown>> }
    const server = yield* WebSocketServer.make({
      ...options,
      handler: (ws) =>
        Effect.gen(function*() {
          stats.handlers++
          yield* Effect.forkDaemon(
            Effect.exit(ws.closed).pipe(Effect.flatMap((e) => Effect.sync(() => stats.exits.push(e))))
          )
          yield* handler(ws)
        })
    })
    const exits = (n: number) =>
      pollUntil(Effect.sync(() => stats.exits), (e) => e.length >= n, 5_000).pipe(
        Effect.flatMap((e) =>
          e.length >= n ? Effect.succeed(e) : Effect.dieMessage(`expected ${n} closed outcomes, got ${e.length}`)
        )
      )
    const drained = pollUntil(server.connections, (n) => n === 0, 5_000)
    return { server, stats, exits, drained }
  })

const tcpHandles = () => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length

const statusOf = (response: string): number => Number(response.slice(9, 12))
const responseCount = (response: string): number => (response.match(/HTTP\/1\.1 \d{3} /g) ?? []).length

/** Sends `bytes` on an upgraded connection (pieces written `gapMs` apart) and waits for TCP to close. */
const failWith = (port: number, pieces: ReadonlyArray<Buffer>, gapMs = 0) =>
  Effect.gen(function*() {
    const raw = yield* rawConnect(port)
    for (const piece of pieces) {
      raw.socket.write(piece)
      if (gapMs > 0) yield* Effect.sleep(gapMs)
    }
    yield* raw.ended.pipe(within("5 seconds", "the server did not close the connection"))
    return raw.received()
  })

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")

// ===========================================================================================
describe("opening handshake (RFC 6455 §4.2.1) under attack", () => {
  const handshakeServer = (options: Options = {}) =>
    instrumented({ closeTimeout: 300, perMessageDeflate: true, protocols: ["chat"], ...options })

  it.scopedLive("a backtracking bait in Sec-WebSocket-Protocol under the header limit is a 400", () =>
    Effect.gen(function*() {
      const { server, stats } = yield* handshakeServer()
      // token, 15,000 spaces, another token without a comma: a naive /^(\s*\w+\s*,?)*$/ explodes
      const response = yield* rawExchange(
        server.address.port,
        upgradeRequest({ "Sec-WebSocket-Protocol": "chat" + " ".repeat(15_000) + "chat" })
      ).pipe(within("10 seconds", "response"))
      assert.strictEqual(statusOf(response), 400)
      assert.strictEqual(responseCount(response), 1)
      assert.strictEqual(stats.handlers, 0)
    }))

  it.scopedLive("backtracking baits in Sec-WebSocket-Extensions (unclosed quotes, runs of ';', spaces) are 400s", () =>
    Effect.gen(function*() {
      const { server, stats } = yield* handshakeServer()
      const baits = [
        `permessage-deflate; x="` + "a".repeat(15_000),
        `permessage-deflate; x="` + "\\a".repeat(7_000),
        "permessage-deflate" + "; a".repeat(5_000) + ";",
        "permessage-deflate" + " ".repeat(15_000) + "x",
        ", ".repeat(7_000) + "@",
        "a=" + "b".repeat(15_000)
      ]
      for (const bait of baits) {
        assert.isBelow(bait.length, 16 * 1024 - 200)
        const response = yield* rawExchange(
          server.address.port,
          upgradeRequest({ "Sec-WebSocket-Extensions": bait })
        ).pipe(within("10 seconds", "response"))
        assert.strictEqual(statusOf(response), 400, bait.slice(0, 40))
      }
      assert.strictEqual(stats.handlers, 0)
    }))

  it.scopedLive("a 1 MB Sec-WebSocket-Protocol or Sec-WebSocket-Extensions value is a 431, then the socket closes", () =>
    Effect.gen(function*() {
      const { server, stats } = yield* handshakeServer()
      for (const name of ["Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"]) {
        const response = yield* rawExchange(
          server.address.port,
          upgradeRequest({ [name]: "a" + " ".repeat(1024 * 1024) + `"` })
        ).pipe(within("10 seconds", "response"))
        assert.strictEqual(statusOf(response), 431, name)
        assert.strictEqual(responseCount(response), 1)
      }
      assert.strictEqual(stats.handlers, 0)
    }))

  it.scopedLive("__proto__ / constructor as extension names and parameters: no crash, nothing negotiated", () =>
    Effect.gen(function*() {
      const { server } = yield* handshakeServer()
      const offers = [
        "permessage-deflate; __proto__=1",
        "permessage-deflate; constructor; prototype=x",
        "__proto__; permessage-deflate, constructor",
        `permessage-deflate; __proto__="constructor", toString`,
        "permessage-deflate; server_max_window_bits=__proto__"
      ]
      for (const offer of offers) {
        const raw = yield* rawSocket(server.address.port)
        raw.socket.write(
          upgradeRequest({ "Sec-WebSocket-Extensions": offer, "Sec-WebSocket-Protocol": "__proto__, constructor", "__proto__": "x" })
        )
        assert.isTrue(yield* raw.waitFor((r) => headEnd(r) > 0).pipe(within("5 seconds", "101")))
        const head = raw.received().subarray(0, headEnd(raw.received())).toString("latin1")
        assert.match(head, /^HTTP\/1\.1 101 /, offer)
        assert.notMatch(head, /Sec-WebSocket-Extensions/i, offer)
        assert.notMatch(head, /Sec-WebSocket-Protocol/i, offer)
        // and the connection works
        raw.socket.write(clientFrame(1, "still here"))
        const echoed = yield* raw.waitFor((r) =>
          parseServerFrames(r.subarray(headEnd(r))).some((f) => f.payload.toString() === "still here")
        ).pipe(within("5 seconds", "echo"))
        assert.isTrue(echoed)
        raw.socket.destroy()
      }
      // a valid offer after the bait in the same header is still accepted
      const raw = yield* rawSocket(server.address.port)
      raw.socket.write(upgradeRequest({ "Sec-WebSocket-Extensions": "permessage-deflate; __proto__, permessage-deflate" }))
      yield* raw.waitFor((r) => headEnd(r) > 0)
      assert.match(
        raw.received().toString("latin1"),
        /Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n/
      )
    }))

  it.scopedLive("2,000 header lines, or one header block over 16 KiB, is a 431 and a close", () =>
    Effect.gen(function*() {
      const { server, stats } = yield* handshakeServer()
      const many = upgradeRequest().replace(/\r\n\r\n$/, "\r\n") + "X-A: 1\r\n".repeat(2_000) + "\r\n"
      const r1 = yield* rawExchange(server.address.port, many).pipe(within("10 seconds", "response"))
      assert.strictEqual(statusOf(r1), 431)
      const big = upgradeRequest({ "X-Big": "b".repeat(20_000) })
      const r2 = yield* rawExchange(server.address.port, big).pipe(within("10 seconds", "response"))
      assert.strictEqual(statusOf(r2), 431)
      // 2,000 tiny header lines sent one per write
      const raw = yield* rawSocket(server.address.port)
      raw.socket.write("GET / HTTP/1.1\r\n")
      for (let i = 0; i < 2_000 && !raw.isClosed(); i++) raw.socket.write("A: 1\r\n")
      yield* raw.closed.pipe(within("10 seconds", "close"))
      assert.strictEqual(statusOf(raw.received().toString("latin1")), 431)
      assert.strictEqual(stats.handlers, 0)
    }))

  it.scopedLive("Sec-WebSocket-Version: 8 is a 426 naming version 13", () =>
    Effect.gen(function*() {
      const { server } = yield* handshakeServer()
      const response = yield* rawExchange(server.address.port, upgradeRequest({ "Sec-WebSocket-Version": "8" }))
      assert.strictEqual(statusOf(response), 426)
      assert.match(response, /\r\nSec-WebSocket-Version: 13\r\n/i)
    }))

  it.scopedLive("POST with Upgrade is a 405 with Allow: GET", () =>
    Effect.gen(function*() {
      const { server } = yield* handshakeServer()
      const response = yield* rawExchange(
        server.address.port,
        upgradeRequest({ "Content-Length": "0" }, "POST / HTTP/1.1")
      )
      assert.strictEqual(statusOf(response), 405)
      assert.match(response, /\r\nAllow: GET\r\n/i)
    }))

  it.scopedLive("a missing or malformed Sec-WebSocket-Key is a 400", () =>
    Effect.gen(function*() {
      const { server } = yield* handshakeServer()
      const keys: Array<string | null> = [
        null,
        "",
        "short",
        "dGhlIHNhbXBsZQ==", // base64 of 10 bytes
        "dGhlIHNhbXBsZSBub25jZQ", // no padding
        "dGhlIHNhbXBsZSBub25jZQ=!",
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ=="
      ]
      for (const key of keys) {
        const response = yield* rawExchange(server.address.port, upgradeRequest({ "Sec-WebSocket-Key": key }))
        assert.strictEqual(statusOf(response), 400, String(key))
      }
    }))

  it.scopedLive("after any rejection the connection closes and nothing pipelined behind it is processed", () =>
    Effect.gen(function*() {
      const { server, stats } = yield* handshakeServer()
      const valid = upgradeRequest()
      const frames = Buffer.concat([clientFrame(1, "pipelined"), clientFrame(1, "frames")])
      const rejected: Array<[string, number]> = [
        [upgradeRequest({ "Sec-WebSocket-Version": "8" }), 426],
        [upgradeRequest({ "Content-Length": "0" }, "POST / HTTP/1.1"), 405],
        [upgradeRequest({ "Sec-WebSocket-Key": null }), 400],
        [upgradeRequest({ "Sec-WebSocket-Key": "short" }), 400],
        [upgradeRequest({ "Sec-WebSocket-Protocol": "a b" }), 400],
        [upgradeRequest({ "Sec-WebSocket-Extensions": `x; y="` }), 400],
        [upgradeRequest({ "Upgrade": null }), 426],
        [upgradeRequest({ "Host": null }), 400],
        [upgradeRequest({ "Transfer-Encoding": "chunked" }), 400],
        [upgradeRequest({}, "GET / HTTP/1.0"), 400],
        ["GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400],
        ["GET / HTTP/1.1\nHost: x\n\n", 400],
        [upgradeRequest({ "X-Big": "b".repeat(17_000) }), 431]
      ]
      for (const [request, status] of rejected) {
        const response = yield* rawExchange(
          server.address.port,
          Buffer.concat([Buffer.from(request, "latin1"), Buffer.from(valid), frames, Buffer.from(valid)])
        ).pipe(within("10 seconds", "response"))
        assert.strictEqual(statusOf(response), status, request.split("\r\n")[0])
        assert.strictEqual(responseCount(response), 1, request)
        assert.notInclude(response, "101 Switching")
        assert.notInclude(response, "pipelined")
      }
      assert.strictEqual(stats.handlers, 0)
    }))
})

// ===========================================================================================
describe("slowloris: the handshake timeout", () => {
  it.scopedLive("a TCP client that connects and sends nothing is closed, without a response", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, handshakeTimeout: 300 })
      const raw = yield* rawSocket(server.address.port)
      // the default timeout is 10 s; this waits at most 5
      yield* raw.closed.pipe(within("5 seconds", "handshake timeout"))
      assert.strictEqual(raw.received().length, 0)
    }))

  it.scopedLive("a client that dribbles one header byte every 50 ms is closed before it finishes", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, handshakeTimeout: 300 })
      const raw = yield* rawSocket(server.address.port)
      const request = Buffer.from(upgradeRequest({ "X-Slow": "z".repeat(100) }))
      let sent = 0
      // one byte per 50 ms: the full request would take about 10 s
      while (!raw.isClosed() && sent < request.length) {
        raw.socket.write(request.subarray(sent, sent + 1))
        sent++
        yield* Effect.sleep(50)
      }
      assert.isTrue(raw.isClosed())
      assert.isBelow(sent, request.length, "the server waited for the whole request")
      assert.strictEqual(raw.received().length, 0)
    }))

  describe("over TLS", () => {
    const { cert, key } = makeCertificate()
    const tlsServer = WebSocketServer.make({ handler: echo, handshakeTimeout: 300, tls: { key, cert } })

    it.scopedLive("TCP to the wss server and nothing sent: closed", () =>
      Effect.gen(function*() {
        const server = yield* tlsServer
        const raw = yield* rawSocket(server.address.port)
        yield* raw.closed.pipe(within("5 seconds", "TLS handshake timeout"))
      }))

    it.scopedLive("a partial ClientHello that never completes: closed", () =>
      Effect.gen(function*() {
        const server = yield* tlsServer
        const raw = yield* rawSocket(server.address.port)
        // record header (handshake, TLS 1.0, 512 bytes), ClientHello header, version, 4 random bytes
        raw.socket.write(hex("16 0301 0200 01 0001fc 0303 a1b2c3d4"))
        yield* raw.closed.pipe(within("5 seconds", "TLS handshake timeout"))
      }))

    it.scopedLive("a completed TLS handshake with no HTTP request after it: closed", () =>
      Effect.gen(function*() {
        const server = yield* tlsServer
        const socket = tls.connect({ port: server.address.port, host: "127.0.0.1", ca: cert })
        yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
        const raw = recordSocket(socket)
        yield* Effect.async<void>((resume) => {
          socket.once("secureConnect", () => resume(Effect.void))
        }).pipe(within("5 seconds", "TLS handshake"))
        yield* raw.closed.pipe(within("5 seconds", "WebSocket handshake timeout"))
        assert.strictEqual(raw.received().length, 0)
      }))
  })
})

// ===========================================================================================
describe("framing (RFC 6455 §5) under attack", () => {
  const limits: Options = { maxMessageSize: 100_000, maxFragments: 1_000, closeTimeout: 300 }

  it.scopedLive("rule-breaking frames fail the connection with 1002 and TCP closes", () =>
    Effect.gen(function*() {
      const { exits, server } = yield* instrumented(limits)
      const cases: Array<[string, Buffer]> = [
        ["unmasked text frame", craftFrame({ opcode: 1, payload: "hi", mask: false })],
        ["unmasked empty ping", craftFrame({ opcode: 9, mask: false })],
        ["RSV1 without permessage-deflate", craftFrame({ opcode: 1, payload: "x", rsv: 0b100 })],
        ["RSV2", craftFrame({ opcode: 1, payload: "x", rsv: 0b010 })],
        ["RSV3", craftFrame({ opcode: 2, payload: "x", rsv: 0b001 })],
        ["RSV3 on a ping", craftFrame({ opcode: 9, rsv: 0b001 })],
        ...[3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op): [string, Buffer] => [
          `reserved opcode ${op}`,
          craftFrame({ opcode: op, payload: "x" })
        ]),
        ["ping with 126 bytes", craftFrame({ opcode: 9, payload: Buffer.alloc(126) })],
        ["pong with a 64-bit length", craftFrame({ opcode: 10, payload: Buffer.alloc(3), length: 3n })],
        ["fragmented ping", craftFrame({ opcode: 9, payload: "a", fin: false })],
        ["fragmented close", craftFrame({ opcode: 8, payload: hex("03e8"), fin: false })],
        ["64-bit length with the top bit set", craftFrame({ opcode: 2, length: 0x8000_0000_0000_0001n }).subarray(0, 14)],
        ["64-bit length 2^64 - 1", craftFrame({ opcode: 2, length: 0xffff_ffff_ffff_ffffn }).subarray(0, 14)],
        ["non-minimal 16-bit length", Buffer.concat([hex("81fe007d"), hex("11223344"), Buffer.alloc(125)])],
        ["continuation with no message", craftFrame({ opcode: 0, payload: "x" })],
        ["text inside a fragmented message", Buffer.concat([
          craftFrame({ opcode: 1, payload: "a", fin: false }),
          craftFrame({ opcode: 1, payload: "b" })
        ])]
      ]
      for (const [name, bytes] of cases) {
        const received = yield* failWith(server.address.port, [bytes])
        assert.strictEqual(closeCodeIn(received), 1002, name)
      }
      // every connection ended with the typed error, not a success
      const outcomes = yield* exits(cases.length)
      assert.isTrue(outcomes.every(Exit.isFailure))
    }))

  it.scopedLive("a declared length over the limit is refused with 1009 from the header alone", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented(limits)
      for (const length of [100_001, 65_536 * 4, 2 ** 31, 2 ** 53]) {
        // only the header: the payload is never sent, the server must not wait for it
        const header = craftFrame({ opcode: 2, length: BigInt(length) }).subarray(0, 14)
        const received = yield* failWith(server.address.port, [header])
        assert.strictEqual(closeCodeIn(received), 1009, String(length))
      }
      const header16 = craftFrame({ opcode: 1, length: 100_001 }).subarray(0, 14)
      assert.strictEqual(closeCodeIn(yield* failWith(server.address.port, [header16])), 1009)
    }))

  it.scopedLive("a fragmented message whose fragments add up past the limit is refused with 1009", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented(limits)
      const part = Buffer.alloc(40_000, 0x61)
      const received = yield* failWith(server.address.port, [
        craftFrame({ opcode: 2, payload: part, fin: false }),
        craftFrame({ opcode: 0, payload: part, fin: false }),
        // the third header alone takes it over 100,000
        craftFrame({ opcode: 0, payload: part, fin: true }).subarray(0, 8)
      ], 20)
      assert.strictEqual(closeCodeIn(received), 1009)
    }))

  it.scopedLive("an endless run of tiny or empty continuation frames is cut with 1008 at the fragment cap", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented(limits)
      for (const payload of ["", "a"]) {
        const raw = yield* rawConnect(server.address.port)
        raw.socket.write(craftFrame({ opcode: 1, payload, fin: false }))
        const batch = Buffer.concat(Array.from({ length: 100 }, () => craftFrame({ opcode: 0, payload, fin: false })))
        let frames = 0
        // bounded: 100,000 frames at most, 100 times the cap
        while (frames < 100_000 && closeCodeIn(raw.received()) === undefined) {
          raw.socket.write(batch)
          frames += 100
          yield* Effect.sleep(1)
        }
        yield* raw.ended.pipe(within("5 seconds", "close"))
        assert.strictEqual(closeCodeIn(raw.received()), 1008, JSON.stringify(payload))
        assert.isAtLeast(frames, 1_000)
      }
    }))

  it.scopedLive("invalid UTF-8 split across frames fails with 1007", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented(limits)
      const cases: Array<[string, Array<Buffer>]> = [
        ["lead byte, then an ASCII continuation frame", [
          craftFrame({ opcode: 1, payload: hex("61e282"), fin: false }),
          craftFrame({ opcode: 0, payload: hex("41") })
        ]],
        ["a message that ends inside a code point", [
          craftFrame({ opcode: 1, payload: hex("61f09f"), fin: false }),
          craftFrame({ opcode: 0, payload: hex("98") })
        ]],
        ["a surrogate split over three frames", [
          craftFrame({ opcode: 1, payload: hex("ed"), fin: false }),
          craftFrame({ opcode: 0, payload: hex("a0"), fin: false }),
          craftFrame({ opcode: 0, payload: hex("80") })
        ]],
        ["an overlong encoding split over two frames", [
          craftFrame({ opcode: 1, payload: hex("c0"), fin: false }),
          craftFrame({ opcode: 0, payload: hex("80") })
        ]]
      ]
      for (const [name, frames] of cases) {
        assert.strictEqual(closeCodeIn(yield* failWith(server.address.port, frames, 20)), 1007, name)
      }
    }))

  it.scopedLive("invalid UTF-8 split across TCP chunks fails with 1007; the same split of valid text is accepted", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented(limits)
      const bad = craftFrame({ opcode: 1, payload: hex("e282 61 62") })
      // header + 1 payload byte, then the second byte, then the rest, each in its own TCP write
      assert.strictEqual(
        closeCodeIn(yield* failWith(server.address.port, [bad.subarray(0, 7), bad.subarray(7, 8), bad.subarray(8)], 20)),
        1007
      )
      const good = craftFrame({ opcode: 1, payload: hex("e282ac") }) // "€"
      const raw = yield* rawConnect(server.address.port)
      for (const piece of [good.subarray(0, 7), good.subarray(7, 8), good.subarray(8)]) {
        raw.socket.write(piece)
        yield* Effect.sleep(20)
      }
      const echoed = yield* Effect.async<boolean>((resume) => {
        const check = () => {
          const f = parseServerFrames(raw.received())
          if (f.length > 0) resume(Effect.succeed(f[0]!.opcode === 1 && f[0]!.payload.toString() === "€"))
          else setTimeout(check, 10)
        }
        check()
      }).pipe(within("5 seconds", "echo"))
      assert.isTrue(echoed)
    }))

  it.scopedLive("an invalid byte in the middle of a big frame whose rest never comes: 1007 at that byte", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented(limits)
      const payload = Buffer.alloc(60_000, 0x61)
      payload[30_000] = 0xff
      const frame = craftFrame({ opcode: 1, payload })
      assert.strictEqual(frame.length, 8 + 60_000) // 16-bit length and a mask: an 8-byte header
      // header + 30,000 valid bytes + the bad byte + a little more; 29,990 bytes never sent
      yield* failWith(server.address.port, [frame.subarray(0, 8 + 30_010)]).pipe(
        Effect.map((received) => assert.strictEqual(closeCodeIn(received), 1007))
      )
      // the same with the bad byte alone in its TCP chunk
      yield* failWith(server.address.port, [frame.subarray(0, 8 + 30_000), frame.subarray(8 + 30_000, 8 + 30_001)], 20).pipe(
        Effect.map((received) => assert.strictEqual(closeCodeIn(received), 1007))
      )
      // a fragmented text message: the bad byte in the second fragment
      yield* failWith(server.address.port, [
        craftFrame({ opcode: 1, payload: "abc", fin: false }),
        craftFrame({ opcode: 0, payload }).subarray(0, 8 + 30_001)
      ], 20).pipe(Effect.map((received) => assert.strictEqual(closeCodeIn(received), 1007)))
    }))

  it.scopedLive("permessage-deflate: a compression bomb is cut at the message limit (1009), bad data is 1007", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented({ ...limits, perMessageDeflate: true })
      const deflate = (data: Buffer) => {
        const out = zlib.deflateRawSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH })
        return out.subarray(0, out.length - 4) // RFC 7692 §7.2.1: drop 00 00 ff ff
      }
      const extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
      // 64 MiB of zeros deflate to about 64 KiB; the limit is 100,000 inflated bytes
      const bomb = deflate(Buffer.alloc(64 * 1024 * 1024))
      assert.isBelow(bomb.length, 100_000)
      const cases: Array<[string, Array<Buffer>, number]> = [
        ["one-frame bomb", [craftFrame({ opcode: 2, payload: bomb, rsv: 0b100 })], 1009],
        ["bomb in fragments", [
          craftFrame({ opcode: 1, payload: bomb.subarray(0, 1000), rsv: 0b100, fin: false }),
          craftFrame({ opcode: 0, payload: bomb.subarray(1000), fin: true })
        ], 1009],
        ["not deflate data", [craftFrame({ opcode: 2, payload: hex("ffffffffffff"), rsv: 0b100 })], 1007],
        ["inflates to invalid UTF-8", [craftFrame({ opcode: 1, payload: deflate(hex("61ff")), rsv: 0b100 })], 1007],
        ["RSV1 on a continuation frame", [
          craftFrame({ opcode: 1, payload: deflate(Buffer.from("ab")), rsv: 0b100, fin: false }),
          craftFrame({ opcode: 0, payload: deflate(Buffer.from("cd")), rsv: 0b100 })
        ], 1002]
      ]
      for (const [name, frames, code] of cases) {
        const raw = yield* rawConnect(server.address.port, extension)
        for (const f of frames) raw.socket.write(f)
        yield* raw.ended.pipe(within("5 seconds", name))
        assert.strictEqual(closeCodeIn(raw.received()), code, name)
      }
      // and a legitimate compressed message still goes through
      const raw = yield* rawConnect(server.address.port, extension)
      raw.socket.write(craftFrame({ opcode: 1, payload: deflate(Buffer.from("x".repeat(50_000))), rsv: 0b100 }))
      yield* pollUntil(Effect.sync(() => parseServerFrames(raw.received()).length), (n) => n > 0, 5_000)
      const echoed = parseServerFrames(raw.received())[0]!
      const text = echoed.rsv & 0b100
        ? zlib.inflateRawSync(Buffer.concat([echoed.payload, hex("0000ffff")]), { finishFlush: zlib.constants.Z_SYNC_FLUSH })
          .toString()
        : echoed.payload.toString()
      assert.strictEqual(text, "x".repeat(50_000))
    }))

  it.scopedLive("caps do not break legitimate traffic: 100,000 tiny messages in a row", () =>
    Effect.gen(function*() {
      const total = 100_000
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            let n = 0
            yield* Stream.runForEach(ws.messages, () => {
              n++
              return n === total ? ws.send(`got ${n}`) : Effect.void
            })
          })
      })
      const raw = yield* rawConnect(server.address.port)
      const one = clientFrame(1, "x")
      raw.socket.write(Buffer.concat(Array.from({ length: total }, () => one)))
      const done = yield* Effect.async<string>((resume) => {
        const check = () => {
          const f = parseServerFrames(raw.received())
          if (f.length > 0) resume(Effect.succeed(f[0]!.payload.toString()))
          else setTimeout(check, 10)
        }
        check()
      }).pipe(within("20 seconds", "all messages"))
      assert.strictEqual(done, `got ${total}`)
    }))

  it.scopedLive("caps do not break legitimate traffic: 65,536 fragments of one message within the size limit", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: (ws) => Stream.runForEach(ws.messages, (m) => ws.send(`length ${typeof m === "string" ? m.length : -1}`))
      })
      const raw = yield* rawConnect(server.address.port)
      const n = 65_536
      const frames: Array<Buffer> = [craftFrame({ opcode: 1, payload: "a", fin: false })]
      const middle = craftFrame({ opcode: 0, payload: "a", fin: false })
      for (let i = 1; i < n - 1; i++) frames.push(middle)
      frames.push(craftFrame({ opcode: 0, payload: "a", fin: true }))
      raw.socket.write(Buffer.concat(frames))
      const reply = yield* Effect.async<Buffer>((resume) => {
        const check = () => {
          const f = parseServerFrames(raw.received())
          if (f.length > 0) resume(Effect.succeed(raw.received()))
          else setTimeout(check, 10)
        }
        check()
      }).pipe(within("20 seconds", "the reassembled message"))
      const first = parseServerFrames(reply)[0]!
      assert.strictEqual(first.opcode, 1)
      assert.strictEqual(first.payload.toString(), `length ${n}`)
    }))
})

// ===========================================================================================
describe("closing handshake (RFC 6455 §5.5.1, §7.4) under attack", () => {
  const closeFrame = (payload: Buffer) => craftFrame({ opcode: 8, payload })

  it.scopedLive("a 1-byte Close payload fails with 1002", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented()
      assert.strictEqual(closeCodeIn(yield* failWith(server.address.port, [closeFrame(hex("03"))])), 1002)
    }))

  it.scopedLive("Close codes that may not be received fail with 1002", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented()
      for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
        const payload = Buffer.alloc(2)
        payload.writeUInt16BE(code)
        assert.strictEqual(closeCodeIn(yield* failWith(server.address.port, [closeFrame(payload)])), 1002, String(code))
      }
    }))

  it.scopedLive("a Close reason that is not UTF-8 fails with 1007", () =>
    Effect.gen(function*() {
      const { server } = yield* instrumented()
      for (const reason of ["ff", "c0af", "eda080", "f4908080", "e282"]) {
        const received = yield* failWith(server.address.port, [closeFrame(hex("03e8" + reason))])
        assert.strictEqual(closeCodeIn(received), 1007, reason)
      }
    }))

  it.scopedLive("data after the peer's Close is ignored; the close is clean", () =>
    Effect.gen(function*() {
      const seen: Array<unknown> = []
      const { exits, server } = yield* instrumented({}, (ws) =>
        Stream.runForEach(ws.messages, (m) => Effect.zipRight(Effect.sync(() => seen.push(m)), ws.send(m))))
      const raw = yield* rawConnect(server.address.port)
      raw.socket.write(Buffer.concat([
        clientFrame(1, "before"),
        closeFrame(hex("03e8") /* 1000 */),
        clientFrame(1, "after"),
        craftFrame({ opcode: 9, payload: "ping after" }),
        craftFrame({ opcode: 0x3, payload: "garbage after" }),
        Buffer.from("not even a frame")
      ]))
      yield* raw.ended.pipe(within("5 seconds", "close"))
      const frames = parseServerFrames(raw.received())
      assert.deepStrictEqual(frames.map((f) => [f.opcode, f.payload.toString("hex")]), [
        [1, Buffer.from("before").toString("hex")],
        [8, "03e8"]
      ])
      assert.deepStrictEqual(seen, ["before"])
      const [exit] = yield* exits(1)
      assert.deepStrictEqual(exit, Exit.succeed({ code: 1000, reason: "", wasClean: true, initiatedBy: "remote" }))
    }))

  it.scopedLive("a peer that never answers our Close is cut at the close timeout and freed", () =>
    Effect.gen(function*() {
      const { drained, exits, server } = yield* instrumented(
        { closeTimeout: 300 },
        (ws) => ws.close(4000, "go away")
      )
      const raw = yield* rawConnect(server.address.port)
      // the client keeps sending data and never a Close
      const keepSending = setInterval(() => raw.socket.write(clientFrame(1, "la la la")), 20)
      yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(keepSending)))
      yield* raw.ended.pipe(within("5 seconds", "close timeout"))
      assert.strictEqual(closeCodeIn(raw.received()), 4000)
      const [exit] = yield* exits(1)
      assert.isTrue(Exit.isSuccess(exit) && !exit.value.wasClean && exit.value.initiatedBy === "local")
      assert.strictEqual(yield* drained, 0)
    }))
})

// ===========================================================================================
/**
 * Writes 64 KiB binary frames as fast as the socket takes them (respecting 'drain') for 3 s
 * or 384 MiB, sampling this process's RSS; the server under test runs in this process.
 */
const flood = (port: number) =>
  Effect.gen(function*() {
    const raw = yield* rawConnect(port)
    const frame = clientFrame(2, Buffer.alloc(64 * 1024, 3))
    const attempt = 384 * 1024 * 1024
    const rssBefore = process.memoryUsage().rss
    let rssPeak = rssBefore
    let written = 0
    const deadline = Date.now() + 3_000
    while (written < attempt && Date.now() < deadline) {
      while (written < attempt && raw.socket.write(frame)) written += frame.length
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
      yield* Effect.race(
        Effect.async<void>((resume) => void raw.socket.once("drain", () => resume(Effect.void))),
        Effect.sleep(50)
      )
    }
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
    return { attempt, rssBefore, rssPeak, written }
  })

describe("resources", () => {
  it.scopedLive("a client that stops reading: buffered bytes stay under the hard limit, then it is dropped", () =>
    Effect.gen(function*() {
      const maxBufferedBytes = 4 * 1024 * 1024
      const chunk = Buffer.alloc(64 * 1024, 7)
      let maxBuffered = 0
      let sent = 0
      const { drained, exits, server } = yield* instrumented({
        highWaterMark: 256 * 1024,
        maxBufferedBytes,
        keepaliveInterval: 200,
        keepaliveTimeout: 200,
        closeTimeout: 200
      }, (ws) =>
        Effect.gen(function*() {
          // bounded: 16,000 x 64 KiB = 1 GiB if nothing pushed back
          for (let i = 0; i < 16_000; i++) {
            yield* ws.send(chunk)
            sent++
            maxBuffered = Math.max(maxBuffered, yield* ws.bufferedAmount)
          }
        }))
      const raw = yield* rawConnect(server.address.port)
      raw.socket.pause()
      const [exit] = yield* exits(1).pipe(within("10 seconds", "keepalive drop"))
      assert.isTrue(Exit.isSuccess(exit))
      assert.isBelow(sent, 16_000)
      assert.isAbove(sent, 0)
      assert.isAtMost(maxBuffered, maxBufferedBytes)
      assert.strictEqual(yield* drained, 0)
    }))

  it.scopedLive("a client that floods faster than the handler consumes is paused; RSS levels off", () =>
    Effect.gen(function*() {
      let handled = 0
      const server = yield* WebSocketServer.make({
        closeTimeout: 200,
        handler: (ws) =>
          Stream.runForEach(ws.messages, () => Effect.zipRight(Effect.sleep(5), Effect.sync(() => handled++)))
      })
      const { attempt, rssBefore, rssPeak, written } = yield* flood(server.address.port)
      // without pausing the server would have read (and queued) all 384 MiB in well under 3 s
      assert.isBelow(written, attempt / 4, `written ${written}`)
      assert.isBelow(rssPeak - rssBefore, 128 * 1024 * 1024, `rss grew by ${rssPeak - rssBefore}`)
      assert.isAbove(handled, 0)
    }))

  it.scopedLive("a ping flood from a peer that never reads its pongs is cut at the hard limit (1008)", () =>
    Effect.gen(function*() {
      const { drained, exits, server } = yield* instrumented(
        { maxBufferedBytes: 1024 * 1024, closeTimeout: 200, keepaliveInterval: 0 },
        () => Effect.never
      )
      const raw = yield* rawConnect(server.address.port)
      raw.socket.pause()
      const ping = craftFrame({ opcode: 9, payload: Buffer.alloc(125, 1) })
      const batch = Buffer.concat(Array.from({ length: 1_000 }, () => ping))
      let sent = 0
      // bounded: 500,000 pings (65 MB) at most
      while (sent < 500_000 && !raw.socket.destroyed && (yield* server.connections) > 0) {
        if (!raw.socket.write(batch)) {
          yield* Effect.race(Effect.async<void>((r) => void raw.socket.once("drain", () => r(Effect.void))), Effect.sleep(50))
        }
        sent += 1_000
      }
      // nothing else closes this connection (no keepalive, no idle timeout): only the hard limit
      const [exit] = yield* exits(1).pipe(within("10 seconds", "hard limit"))
      assert.isTrue(Exit.isSuccess(exit) && exit.value.code === 1008, JSON.stringify(exit))
      assert.strictEqual(yield* drained, 0)
    }))

  it.scopedLive("a flood faster than an effectful `run` callback pauses the socket too; RSS levels off", () =>
    Effect.gen(function*() {
      let handled = 0
      const server = yield* WebSocketServer.make({
        closeTimeout: 200,
        // each message takes 1 s to handle (a slow database write, say) and is kept until then
        handler: (ws) => ws.run((m) => Effect.zipRight(Effect.sleep(1_000), Effect.sync(() => handled += m.length > 0 ? 1 : 0)))
      })
      const { attempt, rssBefore, rssPeak, written } = yield* flood(server.address.port)
      yield* pollUntil(Effect.sync(() => handled), (h) => h > 0, 3_000)
      assert.isAbove(handled, 0)
      assert.isBelow(rssPeak - rssBefore, 128 * 1024 * 1024, `rss grew by ${rssPeak - rssBefore} (written ${written})`)
      assert.isBelow(written, attempt / 4, `written ${written}`)
    }))

  it.scopedLive("2,000 idle connections are reclaimed by the idle timeout; the connection count returns to 0", () =>
    Effect.gen(function*() {
      const n = loadCount(2_000)
      const { drained, server, stats } = yield* instrumented(
        { idleTimeout: 1_000, keepaliveInterval: 0, closeTimeout: 300, backlog: 4096 },
        () => Effect.never
      )
      const raws = yield* Effect.forEach(Array.from({ length: n }), () => rawConnect(server.address.port), {
        concurrency: 100
      })
      assert.strictEqual(yield* pollUntil(Effect.sync(() => stats.handlers), (h) => h === n, 2_000), n)
      // silent clients: they never answer the Close, the close timeout cuts them
      yield* Effect.forEach(raws, (r) => r.ended, { concurrency: "unbounded", discard: true }).pipe(
        within("15 seconds", "idle reclaim")
      )
      assert.isTrue(raws.every((r) => closeCodeIn(r.received()) === 1001))
      assert.strictEqual(yield* drained, 0)
    }))

  it.scopedLive("keepalive reclaims 1,000 silent peers and keeps the ones that answer pings", () =>
    Effect.gen(function*() {
      const { drained, server } = yield* instrumented(
        // a live peer gets a whole second to answer, even while 1,000 connections are being opened
        { keepaliveInterval: 300, keepaliveTimeout: 1_000, closeTimeout: 200, backlog: 4096 },
        () => Effect.never
      )
      const live = yield* Effect.forEach(Array.from({ length: 10 }), () => connect(server.url))
      const raws = yield* Effect.forEach(Array.from({ length: loadCount(1_000) }), () => rawConnect(server.address.port), {
        concurrency: 100
      })
      yield* Effect.forEach(raws, (r) => r.ended, { concurrency: "unbounded", discard: true }).pipe(
        within("15 seconds", "keepalive reclaim")
      )
      // each silent peer was pinged first
      assert.isTrue(raws.every((r) => parseServerFrames(r.received())[0]?.opcode === 9))
      const left = yield* pollUntil(server.connections, (c) => c === live.length, 2_000)
      assert.strictEqual(left, live.length)
      assert.isTrue(live.every((c) => c.readyState === c.OPEN))
      for (const c of live) c.terminate()
      assert.strictEqual(yield* drained, 0)
    }))

  it.scopedLive("ECONNRESET in the middle of the upgrade request: no crash, nothing leaks", () =>
    Effect.gen(function*() {
      const uncaught = yield* uncaughtErrors
      const { server, stats } = yield* instrumented()
      const before = tcpHandles()
      for (let i = 0; i < 20; i++) {
        const raw = yield* rawSocket(server.address.port)
        raw.socket.write(upgradeRequest().slice(0, 40 + i))
        yield* Effect.sleep(5)
        raw.socket.resetAndDestroy()
      }
      const after = yield* pollUntil(Effect.sync(tcpHandles), (h) => h <= before, 2_000)
      assert.isAtMost(after, before)
      assert.strictEqual(stats.handlers, 0)
      assert.strictEqual(yield* server.connections, 0)
      assert.deepStrictEqual(uncaught.map(String), [])
      // the server still serves
      const client = yield* connect(server.url)
      client.send("alive")
      yield* recorder(client).waitMessages(1)
    }))

  it.scopedLive("ECONNRESET while the upgrade hook runs: the handler never starts, nothing leaks", () =>
    Effect.gen(function*() {
      const uncaught = yield* uncaughtErrors
      let handlers = 0
      let hooksStarted = 0
      let hooksEnded = 0
      const gate = yield* Deferred.make<void>()
      const n = 10
      const server = yield* WebSocketServer.make({
        // the first n hooks wait for the gate, which opens after their clients reset
        onUpgrade: () =>
          Effect.suspend(() => ++hooksStarted <= n ? Deferred.await(gate) : Effect.void).pipe(
            Effect.as({ data: undefined }),
            Effect.ensuring(Effect.sync(() => hooksEnded++))
          ),
        handler: (ws) => Effect.zipRight(Effect.sync(() => handlers++), echo(ws))
      })
      for (let i = 0; i < n; i++) {
        const raw = yield* rawSocket(server.address.port)
        raw.socket.write(upgradeRequest())
        yield* waitUntil(() => hooksStarted === i + 1, `the upgrade hook of connection ${i} running`)
        raw.socket.resetAndDestroy()
      }
      // a connection accepted after the resets: by then the server has read them
      const client = yield* connect(server.url).pipe(within("5 seconds", "a connection after the resets"))
      assert.strictEqual(handlers, 1)
      yield* Deferred.succeed(gate, undefined)
      yield* waitUntil(() => hooksEnded === n + 1, "every hook finishing")
      client.send("alive")
      yield* recorder(client).waitMessages(1).pipe(within("5 seconds", "the live connection's echo"))
      // the hooks that outlived their sockets started no handler
      assert.strictEqual(handlers, 1)
      assert.strictEqual(yield* server.connections, 1)
      // the reset reaches a socket with no 'error' listener: an uncaught exception kills a real server
      assert.deepStrictEqual(uncaught.map(String), [])
    }))

  it.scopedLive("ECONNRESET in the middle of a frame: `closed` resolves with 1006, the count returns to 0", () =>
    Effect.gen(function*() {
      const { drained, exits, server } = yield* instrumented()
      const n = 20
      for (let i = 0; i < n; i++) {
        const raw = yield* rawConnect(server.address.port)
        raw.socket.write(clientFrame(2, Buffer.alloc(50_000)).subarray(0, 100 + i * 1000))
        yield* Effect.sleep(5)
        raw.socket.resetAndDestroy()
      }
      const outcomes = yield* exits(n)
      for (const exit of outcomes) {
        assert.deepStrictEqual(
          exit,
          Exit.succeed({ code: 1006, reason: "", wasClean: false, initiatedBy: "transport" }),
          JSON.stringify(exit)
        )
      }
      assert.strictEqual(yield* drained, 0)
    }))

  it.scopedLive("ECONNRESET while the server is writing a large message: no crash, `closed` resolves", () =>
    Effect.gen(function*() {
      const big = Buffer.alloc(8 * 1024 * 1024, 1)
      let sends = 0
      let sender: Ws<unknown> | undefined
      const { drained, exits, server } = yield* instrumented({}, (ws) =>
        Effect.gen(function*() {
          sender = ws
          for (let i = 0; i < 4; i++) {
            yield* ws.send(big)
            sends++
          }
        }))
      const raw = yield* rawConnect(server.address.port)
      // a reader that stops: the first message is written in part and the rest waits
      raw.socket.pause()
      const buffered = () => sender === undefined ? 0 : Effect.runSync(sender.bufferedAmount)
      yield* waitUntil(() => buffered() > 0, "the server writing the first large message")
      assert.isBelow(sends, 4, "the handler was still sending")
      raw.socket.resetAndDestroy()
      const [exit] = yield* exits(1)
      assert.isTrue(Exit.isSuccess(exit) && exit.value.code === 1006)
      assert.strictEqual(yield* drained, 0)
    }))

  it.scopedLive("shutting down frees connections still stuck in the handshake (slowloris) at once", () =>
    Effect.gen(function*() {
      const before = tcpHandles()
      const scope = yield* Scope.make()
      // the default handshake timeout (10 s) is far beyond this test's waits
      const server = yield* WebSocketServer.make({ handler: echo, closeTimeout: 300 }).pipe(Scope.extend(scope))
      const silent = yield* rawSocket(server.address.port)
      const partial = yield* rawSocket(server.address.port)
      partial.socket.write("GET / HTTP/1.1\r\nHost: x\r\n")
      const upgraded = yield* rawConnect(server.address.port)
      yield* Effect.sleep(50)
      yield* Scope.close(scope, Exit.void).pipe(within("5 seconds", "shutdown"))
      yield* upgraded.ended.pipe(within("3 seconds", "the upgraded connection closed"))
      assert.strictEqual(closeCodeIn(upgraded.received()), 1001)
      yield* silent.closed.pipe(within("3 seconds", "a silent socket closed by the shutdown"))
      yield* partial.closed.pipe(within("3 seconds", "a half-sent request closed by the shutdown"))
      const after = yield* pollUntil(Effect.sync(tcpHandles), (h) => h <= before, 2_000)
      assert.isAtMost(after, before)
    }))
})
