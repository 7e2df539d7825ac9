import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as net from "node:net"
import * as zlib from "node:zlib"
import type { WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { clientFrame, connect, rawExchange, recorder, responseHeaders } from "./utils.js"

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

const cases: Array<[string, ClientPmd, RegExp]> = [
  ["defaults (client_max_window_bits offered without a value)", {}, /^permessage-deflate(; client_max_window_bits=15)?$/],
  ["server_no_context_takeover", { serverNoContextTakeover: true }, /server_no_context_takeover/],
  ["client_no_context_takeover", { clientNoContextTakeover: true }, /client_no_context_takeover/],
  ["server_max_window_bits=10", { serverMaxWindowBits: 10 }, /server_max_window_bits=10/],
  ["client_max_window_bits=9", { clientMaxWindowBits: 9 }, /client_max_window_bits=9/],
  ["every parameter at once", { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 11 },
    /server_no_context_takeover.*client_no_context_takeover|client_no_context_takeover.*server_no_context_takeover/]
]

describe("RFC 7692 with the ws client", () => {
  for (const [name, pmd, expected] of cases) {
    it.scopedLive(`negotiates ${name} and echoes compressed messages both ways`, () =>
      Effect.gen(function*() {
        const server = yield* WebSocketServer.make({ handler: echo, perMessageDeflate: { threshold: 0 } })
        const client = yield* connect(server.url, { perMessageDeflate: { ...pmd, threshold: 0 } })
        const rec = recorder(client)
        assert.match(responseHeaders(client)["sec-websocket-extensions"] ?? "", expected)
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
      )
      const growth = process.memoryUsage().rss - before
      const body = Buffer.from(response.slice(response.indexOf("\r\n\r\n") + 4), "latin1")
      assert.strictEqual(body[0], 0x88)
      assert.strictEqual(body.readUInt16BE(2), 1009)
      assert.isBelow(growth, 8 * 1024 * 1024)
    }))
})
