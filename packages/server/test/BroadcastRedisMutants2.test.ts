/**
 * The Redis backend's running life on a real redis-server: duplicates and sequence jumps of a
 * publisher (`Gap` events, the `gaps`/`missed`/`duplicates` metrics), `Disconnected` emitted once
 * per loss with the role and the cause (an unanswered `PING`, a socket closed by the server), the
 * `reconnects` metric counting reconnections only, an idle `XREAD BLOCK` outliving
 * `commandTimeout`, presence keys removed (DEL + SREM) when a topic has no names left, and every
 * connection closed with the layer.
 * Pins down survivors of a StrykerJS run over `src/BroadcastRedis.ts` lines 241–400.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Metric, Schedule, Scope, Stream } from "effect"
import type * as Broadcast from "../src/Broadcast.js"
import * as BroadcastRedis from "../src/BroadcastRedis.js"
import { redisTopics, serve, startRedis } from "./redisServer.js"
import { connect, pollUntil, recorder, waitUntil, within } from "./utils.js"

const { encodeMessage, metrics } = BroadcastRedis

const counter = (m: typeof metrics.gaps) => Effect.map(Metric.value(m), (s) => s.count)

/** Every event of `topics` from now on, in an array. */
const recordEvents = (topics: Broadcast.Service) =>
  Effect.gen(function*() {
    const events: Array<Broadcast.BackendEvent> = []
    yield* Effect.forkScoped(Stream.runForEach(topics.events, (e) => Effect.sync(() => events.push(e))))
    yield* Effect.yieldNow()
    return events
  })

const disconnections = (events: Array<Broadcast.BackendEvent>) =>
  events.flatMap((e) => (e._tag === "Disconnected" ? [e.reason] : []))

describe("BroadcastRedis: a publisher's sequence numbers (admit)", () => {
  it.scopedLive("a repeated seq is a duplicate (not delivered, counted); a jump is one Gap with what was missed", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const topics = yield* redisTopics({ url: redis.url, mode: "pubsub" })
      const events = yield* recordEvents(topics)
      const server = yield* serve(topics)
      const client = yield* connect(`${server.url}/g`)
      yield* pollUntil(redis.command(["PUBSUB", "NUMSUB", "ews:t:g"]), (r) => (r as Array<unknown>)[1] === 1, 5_000)
      const gaps0 = yield* counter(metrics.gaps)
      const missed0 = yield* counter(metrics.missed)
      const dup0 = yield* counter(metrics.duplicates)
      // another process's messages, by hand: seq 1, 1 again, 2, then 5 (3 and 4 missed)
      const other = Buffer.from("another-process", "latin1")
      for (const [seq, text] of [[1, "a"], [1, "dup"], [2, "b"], [5, "c"]] as const) {
        yield* redis.command(["PUBLISH", "ews:t:g", encodeMessage(other, seq, text, true)] as unknown as Array<string>)
      }
      yield* recorder(client).waitMessages(3).pipe(within("5 seconds", "a, b and c delivered"))
      assert.deepStrictEqual(recorder(client).messages.map((m) => String(m.data)), ["a", "b", "c"])
      yield* waitUntil(() => events.some((e) => e._tag === "Gap"), "the Gap event of the jump 2 -> 5")
      assert.deepStrictEqual(events, [{ _tag: "Gap", topic: "g", missed: 2 }])
      assert.strictEqual((yield* counter(metrics.duplicates)) - dup0, 1, "one duplicate")
      assert.strictEqual((yield* counter(metrics.gaps)) - gaps0, 1, "one gap")
      assert.strictEqual((yield* counter(metrics.missed)) - missed0, 2, "two missed")
    }))
})

describe("BroadcastRedis: losing Redis and finding it again (keep)", () => {
  it.scopedLive("Disconnected once per loss and role with its cause; reconnects counts reconnections, not the first connection", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      yield* Effect.addFinalizer(() => redis.thaw)
      const reconnects0 = yield* counter(metrics.reconnects)
      const gaps0 = yield* counter(metrics.gaps)
      const topics = yield* redisTopics({
        url: redis.url,
        mode: "pubsub",
        connectTimeout: "300 millis",
        commandTimeout: "300 millis",
        healthInterval: "100 millis",
        reconnect: Schedule.spaced("50 millis")
      })
      assert.strictEqual((yield* counter(metrics.reconnects)) - reconnects0, 0, "the first connection is no reconnection")
      const events = yield* recordEvents(topics)
      const server = yield* serve(topics)
      yield* connect(`${server.url}/room`)
      yield* pollUntil(redis.command(["PUBSUB", "NUMSUB", "ews:t:room"]), (r) => (r as Array<unknown>)[1] === 1, 5_000)

      // 1. Redis answers nothing: the health PING times out and drops both connections.
      yield* redis.freeze
      yield* waitUntil(() => disconnections(events).length >= 2, "Disconnected of cmd and sub after the freeze")
      assert.deepStrictEqual(disconnections(events).sort(), ["cmd: PING unanswered", "sub: PING unanswered"])
      // Frozen for 1 s: reconnection attempts (every 50 ms, each timing out after 300 ms) fail
      // several times; none of them is another Disconnected.
      yield* Effect.sleep("1 second")
      yield* redis.thaw
      yield* waitUntil(() => events.some((e) => e._tag === "Reconnected"), "Reconnected after the thaw")
      const reconnects = yield* pollUntil(
        Effect.map(counter(metrics.reconnects), (n) => n - reconnects0),
        (n) => n >= 2,
        5_000
      )
      assert.strictEqual(reconnects, 2, "cmd and sub reconnected, once each")
      assert.strictEqual(disconnections(events).length, 2, `one Disconnected per role and loss: ${disconnections(events)}`)
      // the resubscription is a Gap of unknown size, counted
      assert.deepStrictEqual(events.filter((e) => e._tag === "Gap"), [{ _tag: "Gap", topic: "room", missed: undefined }])
      assert.strictEqual((yield* counter(metrics.gaps)) - gaps0, 1)

      // 2. Redis is killed: the sockets' "error" (closed by the server) drops both at once.
      yield* redis.kill
      yield* waitUntil(() => disconnections(events).length >= 4, "Disconnected of cmd and sub after the kill")
      const lost = disconnections(events).slice(2).sort()
      assert.deepStrictEqual(lost.map((r) => r.split(": ")[0]), ["cmd", "sub"])
      for (const reason of lost) assert.match(reason, /^(cmd|sub): .*(Socket closed unexpectedly|ECONNRESET)/, reason)
    }))
})

describe("BroadcastRedis: a failing command drops its connection", () => {
  it.scopedLive("a presence write Redis refuses (WRONGTYPE) drops the command connection: Disconnected naming the error", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      // the presence set's key holds a string: SADD fails with WRONGTYPE (Redis itself answers)
      yield* redis.command(["SET", "ews:p:room", "not a set"])
      const topics = yield* redisTopics({ url: redis.url, healthInterval: "1 minute" })
      const events = yield* recordEvents(topics)
      const server = yield* serve(topics)
      yield* connect(`${server.url}/room?name=ada`)
      yield* waitUntil(() => disconnections(events).length >= 1, "Disconnected after the refused SADD")
      const [reason] = disconnections(events)
      assert.match(reason!, /^cmd: .*WRONGTYPE/, reason)
    }))
})

describe("BroadcastRedis: stream reader, presence keys, closing", () => {
  it.scopedLive("an idle XREAD BLOCK (5 s) outlives a 300 ms commandTimeout: no Disconnected, no reconnection", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const topics = yield* redisTopics({
        url: redis.url,
        mode: "stream",
        commandTimeout: "300 millis",
        healthInterval: "1 minute"
      })
      const events = yield* recordEvents(topics)
      const reconnects0 = yield* counter(metrics.reconnects)
      const server = yield* serve(topics)
      const client = yield* connect(`${server.url}/s`)
      yield* topics.publish("s", "first")
      yield* recorder(client).waitMessages(1).pipe(within("5 seconds", "the first message read by XREAD"))
      // the reader is now blocked in XREAD with nothing to read; 1 s is over 3 command timeouts
      yield* Effect.sleep("1 second")
      assert.deepStrictEqual(disconnections(events), [])
      assert.strictEqual((yield* counter(metrics.reconnects)) - reconnects0, 0)
      yield* topics.publish("s", "second")
      yield* recorder(client).waitMessages(2).pipe(within("5 seconds", "the second message"))
    }))

  it.scopedLive("presence: the last name leaving DELs the key and SREMs the set; closing the layer closes every connection", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const scope = yield* Scope.make()
      const topics = yield* redisTopics({ url: redis.url }).pipe(Scope.extend(scope))
      const server = yield* serve(topics).pipe(Scope.extend(scope))
      const ada = yield* connect(`${server.url}/room?name=ada`)
      const keys = redis.command(["KEYS", "ews:p:room:*"]).pipe(Effect.map((k) => k as Array<unknown>))
      const members = redis.command(["SMEMBERS", "ews:p:room"]).pipe(Effect.map((k) => k as Array<unknown>))
      assert.strictEqual((yield* pollUntil(members, (m) => m.length === 1, 5_000)).length, 1, "in the presence set")
      assert.strictEqual((yield* pollUntil(keys, (k) => k.length === 1, 5_000)).length, 1, "its names' key")
      ada.close()
      assert.deepStrictEqual(yield* pollUntil(members, (m) => m.length === 0, 5_000), [], "SREM from the set")
      assert.deepStrictEqual(yield* pollUntil(keys, (k) => k.length === 0, 5_000), [], "DEL of the key")
      const ours = redis.command(["CLIENT", "LIST"]).pipe(
        Effect.map((l) => String(l).split("\n").filter((x) => / name=ews:[0-9a-f]+:/.test(x)).length)
      )
      assert.strictEqual(yield* ours, 2, "cmd and reader connected")
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* pollUntil(ours, (n) => n === 0, 5_000), 0, "every connection closed with the layer")
    }))
})
