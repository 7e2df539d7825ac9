import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import type { Scope } from "effect"
import * as zlib from "node:zlib"
import type WsClient from "ws"
import * as Broadcast from "../src/Broadcast.js"
import type { CloseInfo, Message, WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import type { RawSocket } from "./utils.js"
import { connect, framesOf, pollUntil, rawClient, recorder, wrap } from "./utils.js"

const pathOf = (ws: Ws<unknown>) => ws.request.url.split("?")[0]!.slice(1)

/**
 * A server whose connections subscribe to the topic named by their path (`/news` → "news")
 * and whose handles and close outcomes are recorded.
 */
const setup = (
  options: {
    readonly topics?: Broadcast.Options
    readonly server?: Partial<WebSocketServer.Options<undefined, never, never>>
    readonly policy?: (ws: Ws<unknown>) => Broadcast.SlowSubscriberPolicy | undefined
  } = {}
) =>
  Effect.gen(function*() {
    const topics = yield* Broadcast.make(options.topics).pipe(Effect.provide(Broadcast.backendLocal))
    return yield* serveTopics(topics, options)
  })

const serveTopics = (
  topics: Broadcast.Service,
  options: {
    readonly server?: Partial<WebSocketServer.Options<undefined, never, never>>
    readonly policy?: (ws: Ws<unknown>) => Broadcast.SlowSubscriberPolicy | undefined
  } = {}
) =>
  Effect.gen(function*() {
    const handles: Array<Ws<unknown>> = []
    const outcomes = new Map<Ws<unknown>, CloseInfo>()
    const server = yield* WebSocketServer.make({
      ...options.server,
      handler: (ws) =>
        Effect.gen(function*() {
          handles.push(ws)
          yield* topics.subscribe(pathOf(ws), ws, options.policy?.(ws))
          yield* ws.run(() => {})
          outcomes.set(ws, yield* Effect.orDie(ws.closed))
        })
    })
    const subscribers = (topic: string, n: number) =>
      pollUntil(topics.subscriberCount(topic), (c) => c === n, 5_000).pipe(
        Effect.tap((c) => assert.strictEqual(c, n, `subscribers of ${topic}`))
      )
    return { topics, server, handles, outcomes, subscribers }
  })

const waitFrames = (raw: RawSocket, n: number) => raw.waitFor(() => framesOf(raw).length >= n)

const inflate = (payload: Buffer): string =>
  zlib.inflateRawSync(Buffer.concat([payload, Buffer.from([0, 0, 0xff, 0xff])]), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH
  }).toString("utf8")

const pause = (client: WsClient) => (client as unknown as { _socket: { pause(): void } })._socket.pause()
const resume = (client: WsClient) => (client as unknown as { _socket: { resume(): void } })._socket.resume()

const connectMany = (url: string, n: number, options: WsClient.ClientOptions = {}) =>
  Effect.forEach(Array.from({ length: n }), () => connect(url, options), { concurrency: 8 })

describe("Broadcast.Topics: fan-out", () => {
  it.scopedLive("publishes to every subscriber of the topic, in order, and to no one else", () =>
    Effect.gen(function*() {
      const { server, subscribers, topics } = yield* setup()
      const clients = yield* connectMany(`${server.url}/room`, 40)
      const other = yield* connect(`${server.url}/elsewhere`)
      yield* subscribers("room", 40)
      yield* subscribers("elsewhere", 1)
      const before = yield* Metric.value(Broadcast.metrics.fanOut)
      const results: Array<Broadcast.PublishResult> = []
      for (let i = 0; i < 20; i++) results.push(yield* topics.publish("room", `message ${i}`))
      const expected = Array.from({ length: 20 }, (_, i) => `message ${i}`)
      for (const client of clients) {
        const rec = recorder(client)
        yield* rec.waitMessages(20)
        assert.deepStrictEqual(rec.messages.map((m) => m.data), expected)
      }
      assert.deepStrictEqual(results[0], { subscribers: 40, sent: 40, dropped: 0, closed: 0, compressions: 0 })
      const after = yield* Metric.value(Broadcast.metrics.fanOut)
      assert.strictEqual(after.count - before.count, 20)
      assert.strictEqual(after.sum - before.sum, 20 * 40)
      // binary stays binary
      yield* topics.publish("elsewhere", new Uint8Array([1, 2, 3]))
      const rec = recorder(other)
      yield* rec.waitMessages(1)
      assert.deepStrictEqual(rec.messages, [{ data: Buffer.from([1, 2, 3]), isBinary: true }])
    }))

  it.scopedLive("a published frame keeps its place among the connection's own sends", () =>
    Effect.gen(function*() {
      const topics = yield* Broadcast.make().pipe(Effect.provide(Broadcast.backendLocal))
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            yield* topics.subscribe("t", ws)
            // queued, not yet written: the publish must not overtake it
            yield* ws.send("before")
            yield* topics.publish("t", "published")
            yield* ws.send("after")
            yield* ws.closed
          })
      })
      const client = yield* connect(server.url)
      const rec = recorder(client)
      yield* rec.waitMessages(3)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), ["before", "published", "after"])
    }))

  it.scopedLive("a connection is unsubscribed from everything when it closes, and by unsubscribe", () =>
    Effect.gen(function*() {
      const { handles, server, subscribers, topics } = yield* setup()
      const a = yield* connect(`${server.url}/one?a`)
      yield* connect(`${server.url}/one?b`)
      yield* subscribers("one", 2)
      const handle = handles.find((h) => h.request.url.endsWith("?a"))!
      yield* topics.subscribe("two", handle)
      assert.deepStrictEqual([...(yield* topics.topicsOf(handle))].sort(), ["one", "two"])
      yield* topics.unsubscribe("one", handle)
      const r1 = yield* topics.publish("one", "to one")
      assert.strictEqual(r1.sent, 1)
      yield* topics.publish("two", "to two")
      const rec = recorder(a)
      yield* rec.waitMessages(1)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), ["to two"])
      a.close()
      yield* subscribers("two", 0)
      yield* subscribers("one", 1)
      assert.deepStrictEqual(yield* topics.topicsOf(handle), [])
      // a closed connection is not subscribed again
      yield* topics.subscribe("three", handle)
      assert.strictEqual(yield* topics.subscriberCount("three"), 0)
    }))

  it.scopedLive("a handle that wraps a connection is served through the public API", () =>
    Effect.gen(function*() {
      const topics = yield* Broadcast.make().pipe(Effect.provide(Broadcast.backendLocal))
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            // not the engine's object: no fast path
            const wrapped = wrap(ws)
            yield* topics.subscribe("t", wrapped)
            yield* ws.closed
          })
      })
      const client = yield* connect(server.url)
      yield* pollUntil(topics.subscriberCount("t"), (n) => n === 1, 5_000)
      const r = yield* topics.publish("t", "through the handle")
      assert.deepStrictEqual([r.subscribers, r.sent], [1, 1])
      const rec = recorder(client)
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "through the handle")
      client.close()
      assert.strictEqual(yield* pollUntil(topics.subscriberCount("t"), (n) => n === 0, 5_000), 0)
    }))
})

/** Publishes 16 KiB messages (index in the first 4 bytes) until `enough`, yielding to I/O between them. */
const publishUntil = (
  topics: Broadcast.Service,
  topic: string,
  enough: (total: Broadcast.PublishResult) => boolean,
  max = 1_500
) =>
  Effect.gen(function*() {
    const total = { subscribers: 0, sent: 0, dropped: 0, closed: 0, compressions: 0 }
    let published = 0
    while (published < max && !enough(total)) {
      const payload = Buffer.alloc(16 * 1024, 0x61)
      payload.writeUInt32BE(published, 0)
      const r = yield* topics.publish(topic, payload)
      total.subscribers += r.subscribers
      total.sent += r.sent
      total.dropped += r.dropped
      total.closed += r.closed
      published++
      yield* Effect.sleep(0)
    }
    return { published, total }
  })

const indexes = (messages: ReadonlyArray<{ data: string | Buffer }>) =>
  messages.map((m) => (m.data as Buffer).readUInt32BE(0))

describe("Broadcast.Topics: one write per connection per tick", () => {
  it.scopedLive("the frames one tick publishes to a connection reach its socket in one write", () =>
    Effect.gen(function*() {
      const { handles, server, subscribers, topics } = yield* setup()
      const client = yield* connect(`${server.url}/t`)
      yield* subscribers("t", 1)
      const socket = (handles[0] as unknown as { transport: Record<string, unknown> }).transport
      let writes = 0
      for (const method of ["_write", "_writev"]) {
        const original = socket[method] as (...args: Array<unknown>) => unknown
        socket[method] = function(this: unknown, ...args: Array<unknown>) {
          writes++
          return original.apply(this, args)
        }
      }
      yield* Effect.sync(() => {
        for (let i = 0; i < 8; i++) Effect.runSync(topics.publish("t", `m${i}`))
      })
      yield* recorder(client).waitMessages(8)
      assert.deepStrictEqual(recorder(client).messages.map((m) => m.data), Array.from({ length: 8 }, (_, i) => `m${i}`))
      assert.strictEqual(writes, 1)
    }))
})

describe("Broadcast.Topics: slow subscribers (bounded memory)", () => {
  it.scopedLive("drop: a subscriber over its limit misses messages and stays subscribed; the others get all", () =>
    Effect.gen(function*() {
      const { server, subscribers, topics } = yield* setup({
        policy: (ws) => ws.request.url.endsWith("?slow") ? { maxBufferedBytes: 64 * 1024 } : undefined
      })
      const fast = yield* connectMany(`${server.url}/feed`, 3)
      const slow = yield* connect(`${server.url}/feed?slow`)
      yield* subscribers("feed", 4)
      pause(slow)
      const droppedBefore = yield* Metric.value(Broadcast.metrics.dropped)
      const { published, total } = yield* publishUntil(topics, "feed", (t) => t.dropped >= 5)
      assert.isAtLeast(total.dropped, 5, `dropped after ${published} publishes`)
      assert.isBelow(published, 1_500)
      const droppedAfter = yield* Metric.value(Broadcast.metrics.dropped)
      assert.strictEqual(droppedAfter.count - droppedBefore.count, total.dropped)
      for (const client of fast) {
        const rec = recorder(client)
        yield* rec.waitMessages(published)
        assert.deepStrictEqual(indexes(rec.messages), Array.from({ length: published }, (_, i) => i))
      }
      // it caught up: still subscribed, it gets the next message; what it missed is missing
      resume(slow)
      assert.strictEqual(yield* topics.subscriberCount("feed"), 4)
      const rec = recorder(slow)
      yield* rec.waitMessages(published - total.dropped)
      yield* topics.publish("feed", "caught up")
      yield* rec.waitMessages(published + 1 - total.dropped)
      const got = rec.messages.slice(0, -1)
      assert.strictEqual(got.length, published - total.dropped)
      const seen = indexes(got)
      assert.deepStrictEqual(seen, [...seen].sort((x, y) => x - y))
      assert.strictEqual(rec.messages[rec.messages.length - 1]!.data, "caught up")
    }))

  it.scopedLive("close: a subscriber over its limit is closed with 1008 and unsubscribed", () =>
    Effect.gen(function*() {
      const { handles, outcomes, server, subscribers, topics } = yield* setup({
        topics: { maxBufferedBytes: 64 * 1024, onSlow: "close" },
        server: { closeTimeout: 300 }
      })
      const fast = yield* connectMany(`${server.url}/feed`, 2)
      const slow = yield* connect(`${server.url}/feed?slow`)
      yield* subscribers("feed", 3)
      const slowHandle = handles.find((h) => h.request.url.endsWith("?slow"))!
      pause(slow)
      const { published, total } = yield* publishUntil(topics, "feed", (t) => t.closed >= 1)
      assert.strictEqual(total.closed, 1)
      assert.strictEqual(yield* topics.subscriberCount("feed"), 2)
      const info = yield* pollUntil(Effect.sync(() => outcomes.get(slowHandle)), (i) => i !== undefined, 5_000)
      assert.strictEqual(info?.code, 1008)
      assert.strictEqual(info?.initiatedBy, "local")
      for (const client of fast) yield* recorder(client).waitMessages(published)
      const after = yield* topics.publish("feed", "still flowing")
      assert.strictEqual(after.sent, 2)
    }))
})

describe("Broadcast.Topics: permessage-deflate (RFC 7692)", () => {
  const text = (n: number) => Array.from({ length: 200 }, (_, i) => `line ${i} of message ${n}; `).join("")

  it.scopedLive("server_no_context_takeover: one compression per publish, the same bytes to every subscriber", () =>
    Effect.gen(function*() {
      const { server, subscribers, topics } = yield* setup({
        server: { perMessageDeflate: { serverNoContextTakeover: true, threshold: 64 } }
      })
      const port = server.address.port
      const clients = yield* connectMany(`${server.url}/news`, 6, { perMessageDeflate: true })
      const r1 = yield* rawClient(port, "/news", { "Sec-WebSocket-Extensions": "permessage-deflate" })
      const r2 = yield* rawClient(port, "/news", { "Sec-WebSocket-Extensions": "permessage-deflate" })
      assert.match(r1.head, /server_no_context_takeover/)
      yield* subscribers("news", 8)
      const before = yield* Metric.value(Broadcast.metrics.compressions)
      const results = [yield* topics.publish("news", text(1)), yield* topics.publish("news", text(2))]
      assert.deepStrictEqual(results.map((r) => [r.sent, r.compressions]), [[8, 1], [8, 1]])
      const after = yield* Metric.value(Broadcast.metrics.compressions)
      assert.strictEqual(after.count - before.count, 2)
      yield* waitFrames(r1.raw, 2)
      yield* waitFrames(r2.raw, 2)
      const f1 = framesOf(r1.raw)
      const f2 = framesOf(r2.raw)
      assert.deepStrictEqual(f1.map((f) => [f.opcode, f.rsv]), [[1, 4], [1, 4]])
      assert.isTrue(f1[0]!.payload.equals(f2[0]!.payload))
      assert.isTrue(f1[1]!.payload.equals(f2[1]!.payload))
      assert.isBelow(f1[0]!.payload.length, text(1).length / 2)
      assert.deepStrictEqual(f1.map((f) => inflate(f.payload)), [text(1), text(2)])
      for (const client of clients) {
        const rec = recorder(client)
        yield* rec.waitMessages(2)
        assert.deepStrictEqual(rec.messages.map((m) => m.data), [text(1), text(2)])
      }
    }))

  it.scopedLive("below the threshold, or with compress: false, everyone gets the one uncompressed frame", () =>
    Effect.gen(function*() {
      const { server, subscribers, topics } = yield* setup({
        server: { perMessageDeflate: { serverNoContextTakeover: true, threshold: 1024 } }
      })
      const { raw } = yield* rawClient(server.address.port, "/t", { "Sec-WebSocket-Extensions": "permessage-deflate" })
      const plain = yield* rawClient(server.address.port, "/t")
      yield* subscribers("t", 2)
      const small = yield* topics.publish("t", "short")
      const secret = yield* topics.publish("t", text(3), { compress: false })
      assert.deepStrictEqual([small.compressions, secret.compressions], [0, 0])
      yield* waitFrames(raw, 2)
      yield* waitFrames(plain.raw, 2)
      assert.deepStrictEqual(framesOf(raw).map((f) => [f.rsv, f.payload.toString()]), [[0, "short"], [0, text(3)]])
      assert.deepStrictEqual(framesOf(plain.raw).map((f) => [f.rsv, f.payload.toString()]), [[0, "short"], [0, text(3)]])
    }))

  it.scopedLive("context takeover: each connection compresses with its own deflater; plain peers get plain frames", () =>
    Effect.gen(function*() {
      const { server, subscribers, topics } = yield* setup({
        server: { perMessageDeflate: { memory: "window32k", threshold: 64 } }
      })
      const port = server.address.port
      const compressed = yield* connectMany(`${server.url}/room`, 3, { perMessageDeflate: true })
      const plainClient = yield* connect(`${server.url}/room`)
      const { raw, head } = yield* rawClient(port, "/room", { "Sec-WebSocket-Extensions": "permessage-deflate" })
      assert.notMatch(head, /server_no_context_takeover/)
      yield* subscribers("room", 5)
      const sent = [text(4), text(4), text(5)]
      for (const m of sent) {
        const r = yield* topics.publish("room", m)
        assert.deepStrictEqual([r.sent, r.compressions], [5, 0])
      }
      for (const client of [...compressed, plainClient]) {
        const rec = recorder(client)
        yield* rec.waitMessages(3)
        assert.deepStrictEqual(rec.messages.map((m) => m.data), sent)
      }
      yield* waitFrames(raw, 3)
      const frames = framesOf(raw)
      assert.deepStrictEqual(frames.map((f) => f.rsv), [4, 4, 4])
      // The same text compresses smaller the second time: it refers back to the connection's history.
      assert.isBelow(frames[1]!.payload.length, frames[0]!.payload.length)
      // One inflate stream over the three payloads: each refers to the ones before it.
      const stream = Buffer.concat(frames.flatMap((f) => [f.payload, Buffer.from([0, 0, 0xff, 0xff])]))
      assert.strictEqual(inflate(stream), sent.join(""))
    }))
})

/** An in-memory bus standing in for Redis: what a cross-process backend has to do. */
const makeBus = () => {
  const members: Array<
    (topic: string, message: Message, options: Broadcast.PublishOptions, offset: string | undefined) => void
  > = []
  const interest: Array<[number, string, boolean]> = []
  const backend = (id: number): Broadcast.Backend => ({
    connect: (receive) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          members.push(receive)
          return {
            publish: (topic: string, message: Message, options: Broadcast.PublishOptions) =>
              Effect.sync(() => {
                for (const other of members) if (other !== receive) other(topic, message, options, undefined)
              }),
            interest: (topic: string, subscribed: boolean) => void interest.push([id, topic, subscribed])
          }
        }),
        () => Effect.sync(() => members.splice(members.indexOf(receive), 1))
      )
  })
  return { backend, interest }
}

describe("Broadcast.TopicsBackend: publishes across registries", () => {
  it.scopedLive("two registries on one bus deliver each other's publishes, once, and report interest", () =>
    Effect.gen(function*() {
      const bus = makeBus()
      const registry = (id: number): Effect.Effect<Broadcast.Service, Broadcast.BackendError, Scope.Scope> =>
        Broadcast.make().pipe(Effect.provideService(Broadcast.TopicsBackend, bus.backend(id)))
      const one = yield* serveTopics(yield* registry(1))
      const two = yield* serveTopics(yield* registry(2))
      const a = yield* connect(`${one.server.url}/room`)
      const b = yield* connect(`${two.server.url}/room`)
      yield* one.subscribers("room", 1)
      yield* two.subscribers("room", 1)
      const r = yield* one.topics.publish("room", "from one")
      assert.strictEqual(r.sent, 1)
      yield* two.topics.publish("room", "from two")
      for (const client of [a, b]) {
        const rec = recorder(client)
        yield* rec.waitMessages(2)
        assert.deepStrictEqual(rec.messages.map((m) => m.data), ["from one", "from two"])
      }
      b.close()
      yield* two.subscribers("room", 0)
      assert.deepStrictEqual(bus.interest, [[1, "room", true], [2, "room", true], [2, "room", false]])
      yield* one.topics.publish("room", "only one left")
      yield* recorder(a).waitMessages(3)
    }))
})

describe("Broadcast.Topics: with compression off the event loop", () => {
  it.scopedLive("a published frame waits behind a message the connection is still compressing", () =>
    Effect.gen(function*() {
      const topics = yield* Broadcast.make().pipe(Effect.provide(Broadcast.backendLocal))
      const payload = JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ id: i, name: `user-${i % 97}` })))
      const server = yield* WebSocketServer.make({
        perMessageDeflate: { threshold: 0, offloadThreshold: 32 * 1024 },
        handler: (ws) =>
          Effect.zipRight(
            topics.subscribe("t", ws),
            ws.run((m) =>
              m === "go"
                ? Effect.zipRight(Effect.sync(() => ws.unsafeSend(payload)), topics.publish("t", "after"))
                : undefined
            )
          )
      })
      // server_no_context_takeover: the topic's frame is compressed once and written as it is
      const client = yield* connect(server.url, { perMessageDeflate: { serverNoContextTakeover: true } })
      const rec = recorder(client)
      yield* pollUntil(topics.subscriberCount("t"), (n) => n === 1, 5_000)
      client.send("go")
      yield* rec.waitMessages(2)
      assert.isAbove(payload.length, 32 * 1024)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), [payload, "after"])
    }))
})
