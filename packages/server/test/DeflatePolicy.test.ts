/**
 * The default permessage-deflate memory policy over real sockets with `ws` clients:
 * limits, isolation between connections sharing zlib state, metrics, broadcast.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Either, Layer, Metric, Stream } from "effect"
import * as http from "node:http"
import * as Broadcast from "../src/Broadcast.js"
import * as HttpUpgrade from "../src/HttpUpgrade.js"
import * as Metrics from "../src/Metrics.js"
import type { WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connect, pollUntil, recorder, responseHeaders } from "./utils.js"

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

const jsonish = (n: number, seed: number) =>
  JSON.stringify(Array.from({ length: n }, (_, i) => ({ id: seed * 1000 + i, name: "user-" + (i % 17), active: i % 3 === 0 })))

const BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

const counter = (c: Metric.Metric.Counter<number>) => Effect.map(Metric.value(c), (s) => s.count)

describe("permessage-deflate, default memory policy, real sockets", () => {
  it.scopedLive("a compression bomb from a ws client is cut at the message limit: 1009 at the server and the client", () =>
    Effect.gen(function*() {
      const ended = yield* Deferred.make<Either.Either<unknown, { readonly closeCode?: number }>>()
      const server = yield* WebSocketServer.make({
        maxMessageSize: 64 * 1024,
        perMessageDeflate: true,
        handler: (ws) =>
          echo(ws).pipe(
            Effect.zipRight(ws.closed),
            Effect.either,
            Effect.flatMap((e) => Deferred.succeed(ended, e as never))
          )
      })
      const bystander = yield* connect(server.url, { perMessageDeflate: {} })
      const client = yield* connect(server.url, { perMessageDeflate: {} })
      assert.strictEqual(responseHeaders(client)["sec-websocket-extensions"], BOTH)
      const rec = recorder(client)
      // 16 MiB of zeros compresses to ~16 KiB: one small frame far under the frame limit
      client.send(Buffer.alloc(16 * 1024 * 1024))
      yield* rec.waitClose
      assert.strictEqual(rec.closed?.code, 1009)
      const outcome = yield* Deferred.await(ended)
      assert.isTrue(Either.isLeft(outcome))
      assert.strictEqual((outcome as Either.Left<{ readonly closeCode?: number }, unknown>).left.closeCode, 1009)
      // the other connection, sharing the compressor and the decompressor pool, goes on
      const other = recorder(bystander)
      bystander.send(jsonish(300, 1))
      yield* other.waitMessages(1)
      assert.strictEqual(other.messages[0]!.data, jsonish(300, 1))
    }))

  it.scopedLive("a connection that sends corrupt compressed data fails with 1007; the others' streams are intact", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ perMessageDeflate: { threshold: 0 }, handler: echo })
      const clients = yield* Effect.forEach([0, 1, 2, 3], () => connect(server.url, { perMessageDeflate: { threshold: 0 } }))
      const bad = clients[0]!
      // ws compresses, then the frame goes out as is: corrupt it on the way through its socket
      const socket = (bad as unknown as { _socket: import("node:net").Socket })._socket
      const write = socket.write.bind(socket)
      socket.write = ((chunk: Buffer, ...rest: Array<never>) => {
        const copy = Buffer.from(chunk)
        if (copy.length > 64) copy.fill(0xff, 16) // masked garbage: inflates to an error
        return write(copy, ...rest)
      }) as typeof socket.write
      const messages = Array.from({ length: 20 }, (_, i) => jsonish(100 + i * 10, i))
      for (let k = 0; k < messages.length; k++) for (const c of clients.slice(1)) c.send(messages[k]!)
      bad.send(jsonish(500, 99))
      const badRec = recorder(bad)
      yield* badRec.waitClose
      assert.strictEqual(badRec.closed?.code, 1007)
      for (const c of clients.slice(1)) {
        const rec = recorder(c)
        yield* rec.waitMessages(messages.length)
        assert.deepStrictEqual(rec.messages.map((m) => m.data), messages)
      }
    }))

  it.scopedLive("metrics count compressed and uncompressed bytes each way", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ perMessageDeflate: true, handler: echo })
      const client = yield* connect(server.url, { perMessageDeflate: {} })
      const rec = recorder(client)
      const before = yield* Effect.all([
        counter(Metrics.deflateUncompressedBytesSent),
        counter(Metrics.deflateCompressedBytesSent),
        counter(Metrics.deflateCompressedBytesReceived),
        counter(Metrics.deflateUncompressedBytesReceived)
      ])
      const m = jsonish(400, 5)
      client.send(m)
      yield* rec.waitMessages(1)
      const after = yield* Effect.all([
        counter(Metrics.deflateUncompressedBytesSent),
        counter(Metrics.deflateCompressedBytesSent),
        counter(Metrics.deflateCompressedBytesReceived),
        counter(Metrics.deflateUncompressedBytesReceived)
      ])
      const [uSent, cSent, cReceived, uReceived] = after.map((a, i) => a - before[i]!)
      assert.strictEqual(uSent, m.length)
      assert.strictEqual(uReceived, m.length)
      assert.isAbove(cSent!, 0)
      assert.isBelow(cSent!, m.length / 3)
      assert.isAbove(cReceived!, 0)
      assert.isBelow(cReceived!, m.length / 3)
    }))

  it.scopedLive("broadcast compresses a publish once for every subscriber on the default policy", () =>
    Effect.gen(function*() {
      const topics = yield* Broadcast.make().pipe(Effect.provide(Broadcast.backendLocal))
      const server = yield* WebSocketServer.make({
        perMessageDeflate: { threshold: 64 },
        handler: (ws) => Effect.zipRight(topics.subscribe("t", ws), ws.run(() => {}))
      })
      // a Chromium-like offer and a gorilla-like one agree the same parameters
      const clients = [
        ...yield* Effect.forEach([0, 1, 2], () => connect(server.url, { perMessageDeflate: {} })),
        ...yield* Effect.forEach(
          [0, 1],
          () => connect(server.url, { perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true } })
        )
      ]
      for (const c of clients) assert.strictEqual(responseHeaders(c)["sec-websocket-extensions"], BOTH)
      yield* pollUntil(topics.subscriberCount("t"), (n) => n === clients.length, 5_000)
      const before = yield* counter(Metrics.deflateUncompressedBytesSent)
      const message = jsonish(300, 7)
      const result = yield* topics.publish("t", message)
      assert.deepStrictEqual([result.sent, result.compressions], [clients.length, 1])
      // metrics count what each subscriber was sent
      assert.strictEqual((yield* counter(Metrics.deflateUncompressedBytesSent)) - before, message.length * clients.length)
      for (const c of clients) {
        const rec = recorder(c)
        yield* rec.waitMessages(1)
        assert.strictEqual(rec.messages[0]!.data, message)
      }
    }))

  it.scopedLive("each HttpUpgrade route has its own memory policy", () =>
    Effect.gen(function*() {
      const app = HttpRouter.empty.pipe(
        HttpRouter.get("/shared", HttpUpgrade.handler({ handler: echo, perMessageDeflate: true })),
        HttpRouter.get("/window", HttpUpgrade.handler({ handler: echo, perMessageDeflate: { memory: "window4k" } }))
      )
      const context = yield* Layer.build(
        HttpServer.serve(app).pipe(
          Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
        ) as Layer.Layer<HttpServer.HttpServer>
      )
      const { port } = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
      const shared = yield* connect(`ws://127.0.0.1:${port}/shared`, { perMessageDeflate: {} })
      const window = yield* connect(`ws://127.0.0.1:${port}/window`, { perMessageDeflate: {} })
      assert.strictEqual(responseHeaders(shared)["sec-websocket-extensions"], BOTH)
      assert.strictEqual(responseHeaders(window)["sec-websocket-extensions"], "permessage-deflate; client_max_window_bits=12")
      for (const c of [shared, window]) {
        const rec = recorder(c)
        c.send(jsonish(200, 3))
        yield* rec.waitMessages(1)
        assert.strictEqual(rec.messages[0]!.data, jsonish(200, 3))
      }
    }))
})
