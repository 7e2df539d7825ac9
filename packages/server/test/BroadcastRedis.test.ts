import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Metric, Stream } from "effect"
import { Scope } from "effect"
import * as Broadcast from "../src/Broadcast.js"
import * as BroadcastRedis from "../src/BroadcastRedis.js"
import { redisTopics, serve, startRedis } from "./redisServer.js"
import { connect, pollUntil, recorder } from "./utils.js"

const texts = (client: Parameters<typeof recorder>[0]) => recorder(client).messages.map((m) => String(m.data))

const failureOf = <A>(exit: Exit.Exit<A, Broadcast.BackendError>): Broadcast.BackendError => {
  assert.isTrue(Exit.isFailure(exit), "the layer should fail")
  const failure = Cause.failureOption((exit as Exit.Failure<A, Broadcast.BackendError>).cause)
  assert.isTrue(failure._tag === "Some", `a typed failure, got ${Cause.pretty((exit as Exit.Failure<A, Broadcast.BackendError>).cause)}`)
  return (failure as { value: Broadcast.BackendError }).value
}

describe("Broadcast.layerRedis: bad input fails the layer with a typed error, not a hang", () => {
  it.scopedLive("a URL that is not redis:// or rediss:// is InvalidUrl", () =>
    Effect.gen(function*() {
      for (const url of ["http://127.0.0.1:6379", "not a url", "redis://"]) {
        const error = failureOf(yield* Effect.exit(Effect.scoped(redisTopics({ url }))))
        assert.strictEqual(error.reason, "InvalidUrl", url)
      }
    }))

  it.scopedLive("nothing listening is Connect; a wrong password is Auth", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis({ password: "right-one" })
      const wrong = failureOf(
        yield* Effect.exit(Effect.scoped(redisTopics({ url: `redis://:wrong@127.0.0.1:${redis.port}` })))
      )
      assert.strictEqual(wrong._tag, "BackendError")
      assert.strictEqual(wrong.reason, "Auth")
      const none = failureOf(yield* Effect.exit(Effect.scoped(redisTopics({ url: `redis://127.0.0.1:${redis.port}` }))))
      assert.strictEqual(none.reason, "Auth") // no password given to a server that wants one
      yield* redis.kill
      const refused = failureOf(yield* Effect.exit(Effect.scoped(redisTopics({ url: redis.url }))))
      assert.strictEqual(refused.reason, "Connect")
    }))

  it.scopedLive("a Redis that accepts the connection and never answers is Timeout after connectTimeout", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      yield* redis.freeze
      yield* Effect.addFinalizer(() => redis.thaw)
      const exit = yield* Effect.exit(
        Effect.scoped(redisTopics({ url: redis.url, connectTimeout: "300 millis" })).pipe(
          Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Broadcast.BackendError({ reason: "Connect", detail: "hung" }) })
        )
      )
      const error = failureOf(exit)
      assert.strictEqual(error.reason, "Timeout")
    }))
})

const modes = ["pubsub", "stream"] as const

describe("Broadcast.layerRedis: two registries on one Redis", () => {
  for (const mode of modes) {
    it.scopedLive(`${mode}: clients of each receive every publish of both, in order, once`, () =>
      Effect.gen(function*() {
        const redis = yield* startRedis()
        const one = yield* serve(yield* redisTopics({ url: redis.url, mode }))
        const two = yield* serve(yield* redisTopics({ url: redis.url, mode }))
        const a = yield* connect(`${one.url}/room`)
        const a2 = yield* connect(`${one.url}/room`)
        const b = yield* connect(`${two.url}/room`)
        // every process subscribed before publishing
        yield* pollUntil(redis.command(["PUBSUB", "NUMSUB", "ews:t:room"]), (r) => mode === "stream" || (r as Array<unknown>)[1] === 2, 5_000)
        yield* Effect.sleep(mode === "stream" ? 200 : 0)
        for (let i = 0; i < 50; i++) {
          a.send(`a${i}`)
          b.send(`b${i}`)
        }
        for (const client of [a, a2, b]) yield* recorder(client).waitMessages(100)
        yield* Effect.sleep(100)
        for (const client of [a, a2, b]) {
          const got = texts(client)
          assert.strictEqual(got.length, 100, "each message once")
          assert.deepStrictEqual(got.filter((m) => m.startsWith("a")), Array.from({ length: 50 }, (_, i) => `a${i}`))
          assert.deepStrictEqual(got.filter((m) => m.startsWith("b")), Array.from({ length: 50 }, (_, i) => `b${i}`))
        }
        if (mode === "stream") {
          // one order everywhere
          assert.deepStrictEqual(texts(a), texts(b))
          assert.deepStrictEqual(texts(a2), texts(b))
        }
      }))

    it.scopedLive(`${mode}: one Redis subscription per topic and process, whatever the local subscribers`, () =>
      Effect.gen(function*() {
        const redis = yield* startRedis()
        const one = yield* serve(yield* redisTopics({ url: redis.url, mode }))
        const two = yield* serve(yield* redisTopics({ url: redis.url, mode }))
        const clients = []
        for (let i = 0; i < 5; i++) clients.push(yield* connect(`${one.url}/t1`), yield* connect(`${two.url}/t1`))
        const c2 = yield* connect(`${one.url}/t2`)
        const clientsOf = (role: string) =>
          redis.command(["CLIENT", "LIST"]).pipe(Effect.map((l) => String(l).split("\n").filter((x) => x.includes(`:${role} `)).length))
        if (mode === "pubsub") {
          const numsub = (topic: string) =>
            redis.command(["PUBSUB", "NUMSUB", `ews:t:${topic}`]).pipe(Effect.map((r) => (r as Array<number>)[1]))
          assert.strictEqual(yield* pollUntil(numsub("t1"), (n) => n === 2, 5_000), 2)
          assert.strictEqual(yield* pollUntil(numsub("t2"), (n) => n === 1, 5_000), 1)
          assert.strictEqual(yield* clientsOf("sub"), 2)
          c2.close()
          assert.strictEqual(yield* pollUntil(numsub("t2"), (n) => n === 0, 5_000), 0)
        } else {
          // one blocking reader per process over all its topics
          assert.strictEqual(yield* clientsOf("reader"), 2)
          c2.close()
        }
        for (const c of clients) c.close()
        yield* Effect.sleep(100)
        assert.strictEqual(yield* clientsOf(mode === "stream" ? "reader" : "sub"), 2)
      }))
  }

  it.scopedLive("presence: names of subscribers of every process, gone when they leave or their process stops", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const t1 = yield* redisTopics({ url: redis.url, mode: "pubsub" })
      const one = yield* serve(t1)
      const scope2 = yield* Scope.make()
      const two = yield* Effect.flatMap(redisTopics({ url: redis.url, mode: "pubsub" }), serve).pipe(Scope.extend(scope2))
      const ada = yield* connect(`${one.url}/lobby?name=ada`)
      yield* connect(`${two.url}/lobby?name=bob`)
      yield* connect(`${two.url}/lobby?name=cy`)
      yield* connect(`${two.url}/lobby`) // subscribed, not listed
      const members = (n: number) => pollUntil(t1.members("lobby"), (m) => m.length === n, 5_000)
      assert.deepStrictEqual(yield* members(3), ["ada", "bob", "cy"])
      ada.close()
      assert.deepStrictEqual(yield* members(2), ["bob", "cy"])
      yield* Scope.close(scope2, Exit.void)
      assert.deepStrictEqual(yield* members(0), [])
    }))
})

describe("Broadcast.layerRedis: resume (\"stream\")", () => {
  it.scopedLive("a client that passes the last offset it saw gets what it missed, then live messages, no gap, no duplicate", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const withOffset = (m: string | Uint8Array, offset: string) => `${offset} ${String(m)}`
      const topics = yield* redisTopics({ url: redis.url, mode: "stream", withOffset })
      const server = yield* serve(topics)
      const publisher = yield* connect(`${server.url}/news`)
      const first = yield* connect(`${server.url}/news`)
      yield* Effect.sleep(200)
      for (let i = 0; i < 10; i++) publisher.send(`m${i}`)
      yield* recorder(first).waitMessages(10)
      const seen = texts(first)
      assert.deepStrictEqual(seen.map((m) => m.split(" ")[1]), Array.from({ length: 10 }, (_, i) => `m${i}`))
      const offset = seen[4]!.split(" ")[0]!
      first.close()
      for (let i = 10; i < 20; i++) publisher.send(`m${i}`)
      yield* recorder(publisher).waitMessages(20)
      // back after m4: m5..m19 from history, while live messages keep coming
      const back = yield* connect(`${server.url}/news?since=${offset}`)
      for (let i = 20; i < 30; i++) publisher.send(`m${i}`)
      yield* recorder(back).waitMessages(25)
      yield* Effect.sleep(200)
      assert.deepStrictEqual(texts(back).map((m) => m.split(" ")[1]), Array.from({ length: 25 }, (_, i) => `m${i + 5}`))
      const offsets = texts(back).map((m) => m.split(" ")[0]!)
      assert.deepStrictEqual(offsets, [...offsets].sort((x, y) => x.localeCompare(y, undefined, { numeric: true })))
    }))
})


describe("Broadcast.layerRedis: the local queue while Redis is away (\"stream\")", () => {
  it.scopedLive("publishes wait in a bounded queue; when full the oldest go (counted), the rest go out in order, the receivers see the gap", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const options = {
        url: redis.url,
        mode: "stream" as const,
        queueSize: 5,
        // long enough that a loaded machine does not time out the acknowledged "before" (which
        // would keep it queued and count one more drop), short enough to see the link go down
        commandTimeout: "1 second" as const,
        healthInterval: "100 millis" as const
      }
      const sender = yield* redisTopics(options)
      const receiver = yield* redisTopics(options)
      const events: Array<Broadcast.BackendEvent> = []
      const senderEvents: Array<Broadcast.BackendEvent> = []
      yield* Effect.forkScoped(Stream.runForEach(receiver.events, (e) => Effect.sync(() => events.push(e))))
      yield* Effect.forkScoped(Stream.runForEach(sender.events, (e) => Effect.sync(() => senderEvents.push(e))))
      const server = yield* serve(receiver)
      const client = yield* connect(`${server.url}/q`)
      yield* Effect.sleep(300)
      yield* sender.publish("q", "before")
      yield* recorder(client).waitMessages(1)
      // the queue is empty once the sender has its acknowledgement; only then is Redis stopped
      const acked = yield* pollUntil(Metric.value(BroadcastRedis.metrics.queued), (g) => g.value === 0, 5_000)
      assert.strictEqual(acked.value, 0, "the sender's queue should empty once \"before\" is acknowledged")
      const dropped0 = (yield* Metric.value(BroadcastRedis.metrics.queueDropped)).count
      yield* redis.freeze
      // the link is down when the sender says so (its health check outlived the command timeout)
      const down = yield* pollUntil(
        Effect.sync(() => senderEvents.some((e) => e._tag === "Disconnected")),
        (d) => d,
        10_000
      )
      assert.isTrue(down, "the sender should report Disconnected within 10 s of Redis stopping")
      for (let i = 0; i < 20; i++) yield* sender.publish("q", `m${i}`)
      assert.strictEqual((yield* Metric.value(BroadcastRedis.metrics.queued)).value, 5)
      assert.strictEqual((yield* Metric.value(BroadcastRedis.metrics.queueDropped)).count - dropped0, 15)
      yield* redis.thaw
      yield* recorder(client).waitMessages(6)
      yield* Effect.sleep(200)
      assert.deepStrictEqual(texts(client), ["before", "m15", "m16", "m17", "m18", "m19"])
      const gap = events.find((e) => e._tag === "Gap")
      assert.deepStrictEqual(gap, { _tag: "Gap", topic: "q", missed: 15 })
    }))
})

describe("Broadcast.layerLocal: offsets, resume and presence in one process", () => {
  it.scopedLive("offsets count a topic's publishes; since replays the kept window; members lists the named subscribers", () =>
    Effect.gen(function*() {
      const topics = yield* Effect.flatMap(
        Layer.build(Broadcast.layerLocal({ historySize: 3, withOffset: (m, offset) => `${offset} ${String(m)}` })),
        (ctx) => Effect.succeed(ctx.unsafeMap.get(Broadcast.Topics.key) as Broadcast.Service)
      )
      const server = yield* serve(topics)
      const a = yield* connect(`${server.url}/t?name=ada`)
      yield* pollUntil(topics.subscriberCount("t"), (n) => n === 1, 5_000)
      for (let i = 1; i <= 5; i++) yield* topics.publish("t", `m${i}`)
      yield* recorder(a).waitMessages(5)
      assert.deepStrictEqual(texts(a), ["1 m1", "2 m2", "3 m3", "4 m4", "5 m5"])
      // since 1: the window holds 3..5 only (2 is gone)
      const b = yield* connect(`${server.url}/t?since=1&name=bob`)
      yield* recorder(b).waitMessages(3)
      yield* topics.publish("t", "m6")
      yield* recorder(b).waitMessages(4)
      assert.deepStrictEqual(texts(b), ["3 m3", "4 m4", "5 m5", "6 m6"])
      assert.deepStrictEqual(yield* topics.members("t"), ["ada", "bob"])
      a.close()
      assert.deepStrictEqual(yield* pollUntil(topics.members("t"), (m) => m.length === 1, 5_000), ["bob"])
    }))
})
