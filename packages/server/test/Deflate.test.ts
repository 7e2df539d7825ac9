import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Stream } from "effect"
import * as net from "node:net"
import * as zlib from "node:zlib"
import type { WebSocket as Ws } from "../src/WebSocket.js"
import { offloadStats } from "@effect-websocket/protocol/PerMessageDeflate"
import type { PerMessageDeflateOptions } from "@effect-websocket/protocol/PerMessageDeflate"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { clientFrame, connect, rawExchange, recorder, responseHeaders, within } from "./utils.js"

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

/** JSON-like text that compresses well and differs between messages. */
const jsonish = (n: number, seed: number) =>
  JSON.stringify(Array.from({ length: n }, (_, i) => ({ id: seed * 1000 + i, name: "user-" + (i % 17), active: i % 3 === 0 })))

type ClientPmd = {
  serverNoContextTakeover?: boolean
  clientNoContextTakeover?: boolean
  serverMaxWindowBits?: number
  clientMaxWindowBits?: number
}

const PMD = "permessage-deflate"
const BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

/** ws client options; its offers always carry client_max_window_bits (as Chromium's and python-websockets' do). */
const offers: Array<[string, ClientPmd]> = [
  ["client_max_window_bits without a value (ws, Chromium, python-websockets)", {}],
  ["server_no_context_takeover", { serverNoContextTakeover: true }],
  ["client_no_context_takeover", { clientNoContextTakeover: true }],
  ["server_max_window_bits=10", { serverMaxWindowBits: 10 }],
  ["client_max_window_bits=9", { clientMaxWindowBits: 9 }],
  ["every parameter at once", { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 11 }]
]

/**
 * The parameters a response states (RFC 7692 §7.1), read independently of the server's
 * code; `serverCap` is the window the server compresses with when it need not say so.
 */
const paramsOf = (response: string, serverCap: number) => {
  const bits = (name: string) => Number(new RegExp(`${name}=(\\d+)`).exec(response)?.[1] ?? 15)
  return {
    serverNoContextTakeover: response.includes("server_no_context_takeover"),
    clientNoContextTakeover: response.includes("client_no_context_takeover"),
    serverMaxWindowBits: Math.min(serverCap, bits("server_max_window_bits")),
    clientMaxWindowBits: bits("client_max_window_bits")
  }
}

/** Per memory policy, the exact response to each of `offers`. */
const policies: Array<[string, PerMessageDeflateOptions, ReadonlyArray<string>, number]> = [
  ["the default (shared)", {}, [
    BOTH,
    BOTH,
    BOTH,
    `${BOTH}; server_max_window_bits=10`,
    `${BOTH}; client_max_window_bits=9`,
    `${BOTH}; server_max_window_bits=9; client_max_window_bits=11`
  ], 15],
  ["window32k", { memory: "window32k" }, [
    PMD,
    `${PMD}; server_no_context_takeover`,
    `${PMD}; client_no_context_takeover`,
    `${PMD}; server_max_window_bits=10`,
    `${PMD}; client_max_window_bits=9`,
    `${BOTH}; server_max_window_bits=9; client_max_window_bits=11`
  ], 15],
  ["window4k", { memory: "window4k" }, [
    `${PMD}; client_max_window_bits=12`,
    `${PMD}; server_no_context_takeover; client_max_window_bits=12`,
    `${PMD}; client_no_context_takeover; client_max_window_bits=12`,
    `${PMD}; server_max_window_bits=10; client_max_window_bits=12`,
    `${PMD}; client_max_window_bits=9`,
    `${BOTH}; server_max_window_bits=9; client_max_window_bits=11`
  ], 12]
]

describe("RFC 7692 with the ws client", () => {
  for (const [policy, options, responses, serverCap] of policies) {
    offers.forEach(([name, pmd], i) => {
      it.scopedLive(`${policy}: negotiates ${name} and echoes compressed messages both ways`, () =>
        Effect.gen(function*() {
          const seen = yield* Deferred.make<[string | undefined, unknown]>()
          const server = yield* WebSocketServer.make({
            handler: (ws) => Effect.zipRight(Deferred.succeed(seen, [ws.extensions, ws.deflate]), echo(ws)),
            perMessageDeflate: { ...options, threshold: 0 }
          })
          const client = yield* connect(server.url, { perMessageDeflate: { ...pmd, threshold: 0 } })
          const rec = recorder(client)
          assert.strictEqual(responseHeaders(client)["sec-websocket-extensions"], responses[i])
          // the handler sees the same response and its parameters parsed
          const [extensions, deflate] = yield* Deferred.await(seen)
          assert.strictEqual(extensions, responses[i])
          assert.deepStrictEqual(deflate, paramsOf(responses[i]!, serverCap))
          const messages = [jsonish(200, 1), jsonish(200, 1), jsonish(300, 2), "short", jsonish(2000, 3)]
          for (const m of messages) client.send(m)
          client.send(Buffer.from(jsonish(100, 4)))
          yield* rec.waitMessages(messages.length + 1)
          assert.deepStrictEqual(rec.messages.slice(0, messages.length).map((m) => m.data), messages)
          assert.isTrue(rec.messages[messages.length]!.isBinary)
          const total = messages.reduce((n, m) => n + m.length, 0)
          // what came back over TCP is far smaller than the text: it was compressed
          const socket = (client as unknown as { _socket: net.Socket })._socket
          assert.isBelow(socket.bytesRead, total / 3)
        }))
    })
  }

  it.scopedLive("declines compression when the server has it off, and when the offer is malformed", () =>
    Effect.gen(function*() {
      const off = yield* WebSocketServer.make({ handler: echo })
      const a = yield* connect(off.url, { perMessageDeflate: {} })
      assert.strictEqual(a.extensions, "")
      const on = yield* WebSocketServer.make({ handler: echo, perMessageDeflate: true })
      const response = yield* rawExchange(
        on.address.port,
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
          "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99, permessage-deflate; __proto__=1\r\n\r\n" +
          "\x88\x80\x00\x00\x00\x00"
      )
      assert.match(response, /^HTTP\/1\.1 101 /)
      assert.notMatch(response, /Sec-WebSocket-Extensions/i)
    }))

  it.scopedLive("a per-message opt-out sends a message uncompressed", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        perMessageDeflate: { threshold: 0 },
        handler: (ws) => Effect.zipRight(ws.send("secret".repeat(1000), { compress: false }), Effect.never)
      })
      const client = yield* connect(server.url, { perMessageDeflate: {} })
      const rec = recorder(client)
      yield* rec.waitMessages(1)
      const socket = (client as unknown as { _socket: net.Socket })._socket
      assert.isAtLeast(socket.bytesRead, 6000)
    }))

  it.scopedLive("a small frame that inflates past the message limit closes with 1009 (decompression bomb)", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        handler: echo,
        maxMessageSize: 64 * 1024,
        perMessageDeflate: true
      })
      const bomb = zlib.deflateRawSync(Buffer.alloc(16 * 1024 * 1024), { finishFlush: zlib.constants.Z_SYNC_FLUSH })
      const payload = bomb.subarray(0, bomb.length - 4)
      assert.isBelow(payload.length, 64 * 1024)
      const frame = clientFrame(2, payload)
      frame[0] = frame[0]! | 0x40 // RSV1: compressed
      const before = process.memoryUsage().rss
      const response = yield* rawExchange(
        server.address.port,
        Buffer.concat([
          Buffer.from(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
              "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
          ),
          frame
        ])
      ).pipe(within("5 seconds", "the server closing the connection"))
      const growth = process.memoryUsage().rss - before
      const body = Buffer.from(response.slice(response.indexOf("\r\n\r\n") + 4), "latin1")
      assert.strictEqual(body[0], 0x88)
      assert.strictEqual(body.readUInt16BE(2), 1009)
      assert.isBelow(growth, 8 * 1024 * 1024)
    }))

  it.scopedLive("a ws client's compressed message that inflates past the message limit gets 1009; `closed` fails with it", () =>
    Effect.gen(function*() {
      const closed = yield* Deferred.make<Exit.Exit<unknown, unknown>>()
      const server = yield* WebSocketServer.make({
        maxMessageSize: 64 * 1024,
        perMessageDeflate: true,
        handler: (ws) =>
          Effect.zipRight(
            Effect.forkDaemon(Effect.exit(ws.closed).pipe(Effect.flatMap((e) => Deferred.succeed(closed, e)))),
            echo(ws)
          )
      })
      const client = yield* connect(server.url, { perMessageDeflate: { threshold: 0 } })
      const rec = recorder(client)
      // 4 MiB of zeros: a frame of a few KiB on the wire, 64 x the limit once inflated
      client.send(Buffer.alloc(4 * 1024 * 1024))
      const seen = yield* rec.waitClose.pipe(within("5 seconds", "the server closing the connection"))
      assert.strictEqual(seen.code, 1009)
      const socket = (client as unknown as { _socket: net.Socket })._socket
      assert.isBelow(socket.bytesWritten, 64 * 1024, "the frame itself was under the limit")
      const exit = yield* Deferred.await(closed).pipe(within("5 seconds", "the handler's `closed`"))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
      assert.deepStrictEqual(Option.map(error, (e) => (e as { closeCode: number }).closeCode), Option.some(1009))
    }))
})

describe("large messages compressed off the event loop (offloadThreshold)", () => {
  const big = (n: number, seed: number) => jsonish(Math.ceil(n / 45), seed).slice(0, n)
  const pmd = { threshold: 0, offloadThreshold: 32 * 1024 }

  it.scopedLive("they keep their place among the connection's messages and before its Close", () =>
    Effect.gen(function*() {
      const sequence: Array<string | Buffer> = [
        jsonish(50, 1),
        big(100 * 1024, 2),
        jsonish(50, 1), // the same as the first: must not point back past the offloaded message
        Buffer.from(big(80 * 1024, 3)),
        big(200 * 1024, 4),
        "tail"
      ]
      const before = offloadStats().jobs
      const server = yield* WebSocketServer.make({
        perMessageDeflate: pmd,
        handler: (ws) =>
          Effect.gen(function*() {
            for (const m of sequence) yield* ws.send(m)
            yield* ws.close(4001, "done")
          })
      })
      const client = yield* connect(server.url, { perMessageDeflate: {} })
      const rec = recorder(client)
      const closed = yield* rec.waitClose
      assert.deepStrictEqual(closed, { code: 4001, reason: "done" })
      assert.deepStrictEqual(rec.messages.map((m) => m.data), sequence)
      assert.deepStrictEqual(rec.messages.map((m) => m.isBinary), sequence.map((m) => typeof m !== "string"))
      assert.strictEqual(offloadStats().jobs - before, 3)
      const socket = (client as unknown as { _socket: net.Socket })._socket
      assert.isBelow(socket.bytesRead, 380 * 1024 / 3)
    }))

  it.scopedLive("the reply to the peer's Close waits for a message still being compressed", () =>
    Effect.gen(function*() {
      const payload = big(300 * 1024, 5)
      const server = yield* WebSocketServer.make({
        perMessageDeflate: pmd,
        handler: (ws) => ws.run((m) => void ws.unsafeSend(m === "go" ? payload : "?"))
      })
      const client = yield* connect(server.url, { perMessageDeflate: {} })
      const rec = recorder(client)
      client.send("go")
      client.close(4002, "bye")
      const closed = yield* rec.waitClose
      assert.strictEqual(closed.code, 4002)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), [payload])
    }))

  it.scopedLive("a message being compressed counts as buffered: send suspends above the high-water mark", () =>
    Effect.gen(function*() {
      const payload = big(300 * 1024, 6)
      const seen = yield* Deferred.make<{ right: number; suspended: boolean }>()
      const server = yield* WebSocketServer.make({
        perMessageDeflate: pmd,
        highWaterMark: 64 * 1024,
        handler: (ws) =>
          Effect.gen(function*() {
            ws.unsafeSend(payload)
            const right = yield* ws.bufferedAmount
            // the send after it waits for the compressed message to be queued and drained
            const second = yield* Effect.fork(ws.send("after"))
            yield* Effect.yieldNow() // the fork runs its first steps (a send that need not wait ends there)
            const suspended = (yield* Fiber.poll(second))._tag === "None"
            yield* Deferred.succeed(seen, { right, suspended })
            yield* Fiber.join(second)
            yield* ws.run(() => {})
          })
      })
      const client = yield* connect(server.url, { perMessageDeflate: {} })
      const rec = recorder(client)
      const { right, suspended } = yield* Deferred.await(seen)
      assert.isAtLeast(right, payload.length)
      assert.isTrue(suspended)
      yield* rec.waitMessages(2)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), [payload, "after"])
    }))

  it.scopedLive("connections share one process-wide queue with the configured limit", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({
        perMessageDeflate: { ...pmd, offloadConcurrency: 1 },
        handler: (ws) =>
          ws.run((m) => {
            const n = Number(m)
            for (let i = 0; i < 3; i++) ws.unsafeSend(big(64 * 1024, n * 10 + i)), ws.unsafeSend(`${n}.${i}`)
          })
      })
      const clients = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => connect(server.url, { perMessageDeflate: {} }))
      const before = offloadStats().jobs
      clients.forEach((c, n) => c.send(String(n + 1)))
      yield* Effect.forEach(clients, (c) => recorder(c).waitMessages(6))
      clients.forEach((c, k) => {
        const n = k + 1
        const expected = [0, 1, 2].flatMap((i) => [big(64 * 1024, n * 10 + i), `${n}.${i}`])
        assert.deepStrictEqual(recorder(c).messages.map((m) => m.data), expected)
      })
      const stats = offloadStats()
      assert.strictEqual(stats.limit, 1)
      assert.strictEqual(stats.jobs - before, 18)
      assert.deepStrictEqual([stats.running, stats.queued], [0, 0])
    }))
})
