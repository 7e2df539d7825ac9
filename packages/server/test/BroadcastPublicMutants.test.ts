/**
 * Tests of the public broadcast module (`src/Broadcast.ts`) on its own lines: `BackendError`'s
 * message, `layerLocal`'s offsets and history ring (a topic keeps its count and its window when
 * its last subscriber leaves and when a new one comes; `since` replays only what came after it;
 * no offsets and no resume without a `historySize`), how a subscription's partial policy merges
 * with the layer's defaults, wrapped handles (served through the public API: drop, close 1008
 * with its reason, `compress` passed on), the compression flag of messages a backend hands to
 * `receive` and of publishes handed to the backend, `unsubscribeAll`, and the registry closed
 * with its scope. They pin down survivors of a StrykerJS run over `src/Broadcast.ts`.
 *
 * Subscribers are real connections with `ws` (or raw TCP) clients on 127.0.0.1; a wrapped handle
 * (not the engine's object) scripts only `bufferedAmount`, everything else goes to the real
 * connection. The mutants judged equivalent are listed in `mutation-equivalents.md`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Metric, Queue, Scope, Stream } from "effect"
import * as Broadcast from "../src/Broadcast.js"
import type { Message, WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connect, framesOf, pollUntil, rawClient, recorder, waitUntil, within, wrap } from "./utils.js"

/** A server that hands every connection's handle to the test (the handler keeps reading until it closes). */
const serveHandles = (options: Partial<WebSocketServer.Options<undefined, never, never>> = {}) =>
  Effect.gen(function*() {
    const handles = yield* Queue.unbounded<Ws<unknown>>()
    const server = yield* WebSocketServer.make({
      ...options,
      handler: (ws) =>
        Effect.gen(function*() {
          yield* Queue.offer(handles, ws)
          yield* ws.run(() => {})
        })
    })
    const next = within("5 seconds", "the server's handle of the client that just connected")(Queue.take(handles))
    return { server, next }
  })

const localTopics = (options: Broadcast.Options = {}) =>
  Broadcast.make(options).pipe(Effect.provide(Broadcast.backendLocal))

const buildLocal = (options: Parameters<typeof Broadcast.layerLocal>[0]) =>
  Effect.flatMap(
    Layer.build(Broadcast.layerLocal(options)),
    (ctx) => Effect.succeed(ctx.unsafeMap.get(Broadcast.Topics.key) as Broadcast.Service)
  )

/** Clients subscribe to the topic of their path, with `?since=` and `?name=` when given. */
const serveTopic = (topics: Broadcast.Service) =>
  WebSocketServer.make({
    handler: (ws) =>
      Effect.gen(function*() {
        const url = new URL(ws.request.url, "http://x")
        yield* topics.subscribe(url.pathname.slice(1), ws, {
          since: url.searchParams.get("since") ?? undefined,
          presence: url.searchParams.get("name") ?? undefined
        })
        yield* ws.run(() => {})
      })
  })

const texts = (client: Parameters<typeof recorder>[0]) => recorder(client).messages.map((m) => String(m.data))

const subscribers = (topics: Broadcast.Service, topic: string, n: number) =>
  pollUntil(topics.subscriberCount(topic), (c) => c === n, 5_000).pipe(
    Effect.tap((c) => assert.strictEqual(c, n, `subscribers of ${topic}`))
  )

/** Waits until the client got a message `last` or was closed (whichever first). */
const untilMessageOrClose = (client: Parameters<typeof recorder>[0], last: string) =>
  waitUntil(
    () => texts(client).some((m) => m === last || m.endsWith(` ${last}`)) || recorder(client).closed !== undefined,
    `the client got "${last}" or was closed`
  )

describe("BackendError", () => {
  it("its message names the reason and the detail", () => {
    const error = new Broadcast.BackendError({ reason: "Auth", detail: "WRONGPASS" })
    assert.strictEqual(error.message, "topics backend: Auth: WRONGPASS")
  })
})

describe("layerLocal: offsets and the history ring", () => {
  it.scopedLive("a topic keeps its count and window when its last subscriber leaves and a new one comes; since replays only what came after it", () =>
    Effect.gen(function*() {
      const topics = yield* buildLocal({ historySize: 5, withOffset: (m, offset) => `${offset} ${String(m)}` })
      const server = yield* serveTopic(topics)
      const a = yield* connect(`${server.url}/t`)
      yield* subscribers(topics, "t", 1)
      for (let i = 1; i <= 3; i++) yield* topics.publish("t", `m${i}`)
      yield* within("5 seconds", "m1..m3 at the first subscriber")(recorder(a).waitMessages(3))
      assert.deepStrictEqual(texts(a), ["1 m1", "2 m2", "3 m3"])
      // the last subscriber leaves: the topic keeps its ring and its count
      a.close()
      yield* subscribers(topics, "t", 0)
      yield* topics.publish("t", "m4")
      // a new first subscriber, resuming after 2: 3 and 4 from history, not 2 (the one it saw)
      const b = yield* connect(`${server.url}/t?since=2`)
      yield* subscribers(topics, "t", 1)
      yield* topics.publish("t", "m5")
      yield* untilMessageOrClose(b, "m5")
      assert.deepStrictEqual(texts(b), ["3 m3", "4 m4", "5 m5"])
    }))

  it.scopedLive("without a historySize: no offsets (withOffset is not applied) and since is ignored", () =>
    Effect.gen(function*() {
      const topics = yield* buildLocal({ withOffset: (m, offset) => `${offset} ${String(m)}` })
      const server = yield* serveTopic(topics)
      const plain = yield* connect(`${server.url}/t`)
      const resuming = yield* connect(`${server.url}/t?since=5`)
      yield* subscribers(topics, "t", 2)
      const r = yield* topics.publish("t", "m1")
      assert.strictEqual(r.sent, 2)
      for (const client of [plain, resuming]) {
        yield* untilMessageOrClose(client, "m1")
        assert.deepStrictEqual(texts(client), ["m1"])
        assert.isUndefined(recorder(client).closed)
      }
    }))
})

describe("wrapped handles: the subscription's policy over the layer's defaults", () => {
  it.scopedLive("maxBufferedBytes alone: over it (not at it) the message is dropped, the subscriber stays", () =>
    Effect.gen(function*() {
      // layer default: 1 MiB, drop; this subscription: 1000 bytes (onSlow from the default)
      const topics = yield* localTopics()
      const { next, server } = yield* serveHandles()
      const client = yield* connect(server.url)
      const buffered = { value: 1001, calls: 0 }
      yield* topics.subscribe("t", wrap(yield* next, buffered), { maxBufferedBytes: 1000 })
      const droppedBefore = (yield* Metric.value(Broadcast.metrics.dropped)).count
      const r1 = yield* topics.publish("t", "m1")
      yield* waitUntil(() => buffered.calls === 1, "the publish of m1 read the handle's bufferedAmount")
      // skipped, not closed: still subscribed
      assert.deepStrictEqual({ ...r1 }, { subscribers: 1, sent: 0, dropped: 1, closed: 0, compressions: 0 })
      assert.strictEqual(yield* topics.subscriberCount("t"), 1)
      buffered.value = 1000
      const r2 = yield* topics.publish("t", "m2")
      yield* waitUntil(() => buffered.calls === 2, "the publish of m2 read the handle's bufferedAmount")
      buffered.value = 0
      yield* topics.publish("t", "m3")
      yield* untilMessageOrClose(client, "m3")
      assert.deepStrictEqual(texts(client), ["m2", "m3"])
      assert.isUndefined(recorder(client).closed)
      assert.deepStrictEqual({ ...r2 }, { subscribers: 1, sent: 1, dropped: 0, closed: 0, compressions: 0 })
      assert.strictEqual((yield* Metric.value(Broadcast.metrics.dropped)).count - droppedBefore, 1)
      assert.strictEqual(yield* topics.subscriberCount("t"), 1)
    }))

  it.scopedLive("onSlow: close alone: over the default limit it is closed with 1008 \"subscriber too slow\" and unsubscribed", () =>
    Effect.gen(function*() {
      // layer default: 1000 bytes, drop; this subscription: close (the limit from the default)
      const topics = yield* localTopics({ maxBufferedBytes: 1000 })
      const { next, server } = yield* serveHandles()
      const client = yield* connect(server.url)
      const buffered = { value: 1001, calls: 0 }
      yield* topics.subscribe("t", wrap(yield* next, buffered), { onSlow: "close" })
      const closedBefore = (yield* Metric.value(Broadcast.metrics.slowClosed)).count
      const r1 = yield* topics.publish("t", "m1")
      yield* waitUntil(() => buffered.calls === 1, "the publish of m1 read the handle's bufferedAmount")
      buffered.value = 0
      yield* topics.publish("t", "after")
      yield* untilMessageOrClose(client, "after")
      assert.deepStrictEqual(texts(client), [])
      assert.deepStrictEqual(recorder(client).closed, { code: 1008, reason: "subscriber too slow" })
      assert.deepStrictEqual({ ...r1 }, { subscribers: 1, sent: 0, dropped: 0, closed: 1, compressions: 0 })
      assert.strictEqual((yield* Metric.value(Broadcast.metrics.slowClosed)).count - closedBefore, 1)
      assert.strictEqual(yield* topics.subscriberCount("t"), 0)
    }))
})

describe("compression flags through wrapped handles and the backend", () => {
  it.scopedLive("compress reaches a wrapped handle; receive without compress compresses; the backend gets the flag", () =>
    Effect.gen(function*() {
      let receive: Parameters<Broadcast.Backend["connect"]>[0] | undefined = undefined
      const published: Array<[string, Message, Broadcast.PublishOptions]> = []
      const backend: Broadcast.Backend = {
        connect: (r) =>
          Effect.sync(() => {
            receive = r
            return {
              publish: (topic, message, options) => Effect.sync(() => void published.push([topic, message, options])),
              interest: () => {},
              events: Stream.empty
            }
          })
      }
      const topics = yield* Broadcast.make().pipe(Effect.provideService(Broadcast.TopicsBackend, backend))
      const { next, server } = yield* serveHandles({ perMessageDeflate: { threshold: 0 } })
      const { raw } = yield* rawClient(server.address.port, "/", { "Sec-WebSocket-Extensions": "permessage-deflate" })
      yield* topics.subscribe("t", wrap(yield* next))
      const text = "a message that compresses, a message that compresses"
      yield* topics.publish("t", text, { compress: false })
      yield* topics.publish("t", text)
      receive!("t", text, {}, undefined)
      assert.isTrue(yield* within("5 seconds", "three frames at the raw client")(raw.waitFor(() => framesOf(raw).length >= 3)))
      assert.deepStrictEqual(framesOf(raw).map((f) => f.rsv), [0, 4, 4])
      assert.strictEqual(framesOf(raw)[0]!.payload.toString(), text)
      assert.deepStrictEqual(published, [["t", text, { compress: false }], ["t", text, { compress: true }]])
    }))
})

describe("Topics: unsubscribeAll and the end of the layer", () => {
  it.scopedLive("unsubscribeAll leaves every topic of the connection", () =>
    Effect.gen(function*() {
      const topics = yield* localTopics()
      const { next, server } = yield* serveHandles()
      const client = yield* connect(server.url)
      const handle = yield* next
      yield* topics.subscribe("a", handle)
      yield* topics.subscribe("b", handle)
      assert.deepStrictEqual([...(yield* topics.topicsOf(handle))].sort(), ["a", "b"])
      yield* topics.unsubscribeAll(handle)
      assert.deepStrictEqual(yield* topics.topicsOf(handle), [])
      assert.deepStrictEqual([yield* topics.subscriberCount("a"), yield* topics.subscriberCount("b")], [0, 0])
      assert.strictEqual((yield* topics.publish("a", "nobody")).sent, 0)
      yield* topics.publish("b", "nobody either")
      yield* topics.subscribe("c", handle)
      yield* topics.publish("c", "to c")
      yield* untilMessageOrClose(client, "to c")
      assert.deepStrictEqual(texts(client), ["to c"])
    }))

  it.scopedLive("when the Topics scope closes, the registry forgets its subscribers", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const topics = yield* localTopics().pipe(Scope.extend(scope))
      const { next, server } = yield* serveHandles()
      yield* connect(server.url)
      const handle = yield* next
      yield* topics.subscribe("t", handle)
      assert.strictEqual(yield* topics.subscriberCount("t"), 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* topics.subscriberCount("t"), 0)
      assert.deepStrictEqual(yield* topics.topicsOf(handle), [])
    }))
})
