/**
 * Real processes on a real Redis: two server processes (`fixtures/topicsServer.ts`), `ws`
 * clients on each, and Redis killed, restarted, frozen during a steady publish load.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import type WsClient from "ws"
import * as Broadcast from "../src/Broadcast.js"
import { type ServerProcess, serverProcess, startRedis } from "./redisServer.js"
import { connect, pollUntil, recorder } from "./utils.js"

const bodies = (client: WsClient) => recorder(client).messages.map((m) => String(m.data).split(" ")[1]!)

/** Sends `count` messages from `client`, one every `everyMs`, while `during` runs alongside. */
const steadyLoad = <E>(client: WsClient, count: number, everyMs: number, during: Effect.Effect<void, E>) =>
  Effect.all([
    Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) =>
      Effect.zipRight(Effect.sync(() => client.send(`p${i}`)), Effect.sleep(everyMs)), { discard: true }),
    during
  ], { concurrency: 2, discard: true })

const expected = (n: number) => Array.from({ length: n }, (_, i) => `p${i}`)

const twoProcesses = (mode: "pubsub" | "stream", url: string) =>
  Effect.all([serverProcess({ REDIS_URL: url, MODE: mode }), serverProcess({ REDIS_URL: url, MODE: mode })], {
    concurrency: 2
  })

const noneClosed = (clients: ReadonlyArray<WsClient>) => {
  for (const c of clients) {
    assert.strictEqual(recorder(c).closed, undefined, "no WebSocket dropped")
    assert.strictEqual(c.readyState, c.OPEN)
  }
}

const alive = (processes: ReadonlyArray<ServerProcess>) => {
  for (const p of processes) assert.isTrue(p.alive(), "no process crashed")
}

// Child processes start slowly on a loaded machine (tsx compiles the sources).
describe("Broadcast.layerRedis across processes", { timeout: 180_000 }, () => {
  it.scopedLive("stream: subscribe, publish, unsubscribe and close are seen by both processes, in one order", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const [one, two] = yield* twoProcesses("stream", redis.url)
      const a = yield* connect(`${one.url}/room`)
      const b = yield* connect(`${two.url}/room`)
      yield* Effect.sleep(300)
      for (let i = 0; i < 20; i++) (i % 2 === 0 ? a : b).send(`p${i}`)
      yield* recorder(a).waitMessages(20)
      yield* recorder(b).waitMessages(20)
      assert.deepStrictEqual(bodies(a).sort(), expected(20).sort())
      assert.deepStrictEqual(bodies(a), bodies(b))
      const readers = redis.command(["CLIENT", "LIST"]).pipe(
        Effect.map((l) => String(l).split("\n").filter((x) => x.includes(":reader ")).length)
      )
      assert.strictEqual(yield* readers, 2)
      // a closes: b's publishes still reach b only
      a.close()
      yield* recorder(a).waitClose
      b.send("p20")
      yield* recorder(b).waitMessages(21)
      assert.strictEqual(recorder(a).messages.length, 20)
    }))

  it.scopedLive("pubsub: one channel subscription per process; it follows the first and last local subscriber", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const [one, two] = yield* twoProcesses("pubsub", redis.url)
      const numsub = redis.command(["PUBSUB", "NUMSUB", "ews:t:room"]).pipe(Effect.map((r) => (r as Array<number>)[1]))
      const as = [yield* connect(`${one.url}/room`), yield* connect(`${one.url}/room`), yield* connect(`${one.url}/room`)]
      const b = yield* connect(`${two.url}/room`)
      assert.strictEqual(yield* pollUntil(numsub, (n) => n === 2, 5_000), 2)
      for (let i = 0; i < 20; i++) as[0]!.send(`p${i}`)
      yield* recorder(b).waitMessages(20)
      assert.deepStrictEqual(recorder(b).messages.map((m) => String(m.data)), expected(20))
      for (const a of as) a.close()
      assert.strictEqual(yield* pollUntil(numsub, (n) => n === 1, 5_000), 1)
      b.close()
      assert.strictEqual(yield* pollUntil(numsub, (n) => n === 0, 5_000), 0)
    }))

  it.scopedLive("presence: a process killed with SIGKILL leaves the topic's members after its TTL", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const [one, two] = yield* twoProcesses("pubsub", redis.url)
      const observer = yield* Effect.flatMap(
        Layer.build(Broadcast.layerRedis({ url: redis.url, mode: "pubsub" })),
        (ctx) => Effect.succeed(ctx.unsafeMap.get(Broadcast.Topics.key) as Broadcast.Service)
      )
      yield* connect(`${one.url}/lobby?name=ada`)
      yield* connect(`${two.url}/lobby?name=bob`)
      const members = (n: number) => pollUntil(observer.members("lobby"), (m) => m.length === n, 10_000)
      assert.deepStrictEqual(yield* members(2), ["ada", "bob"])
      yield* two.kill("SIGKILL")
      assert.deepStrictEqual(yield* members(1), ["ada"])
    }))

  for (const fault of ["killed and restarted", "frozen (SIGSTOP) past the timeouts"] as const) {
    it.scopedLive(`stream: Redis ${fault} under a steady load: every message once and in order, no socket dropped`, () =>
      Effect.gen(function*() {
        const redis = yield* startRedis({ durable: true })
        const processes = yield* twoProcesses("stream", redis.url)
        const [one, two] = processes
        const publisher = yield* connect(`${one.url}/load`)
        const a = yield* connect(`${one.url}/load`)
        const b = yield* connect(`${two.url}/load`)
        yield* Effect.sleep(300)
        const n = 300
        const faultAction = fault === "killed and restarted"
          ? Effect.gen(function*() {
            yield* Effect.sleep(600)
            yield* redis.kill
            yield* Effect.sleep(1_000)
            yield* redis.start
          })
          : Effect.gen(function*() {
            yield* Effect.sleep(600)
            yield* redis.freeze
            yield* Effect.sleep(1_500) // commandTimeout is 500 ms in the fixture
            yield* redis.thaw
          })
        yield* steadyLoad(publisher, n, 10, faultAction)
        for (const c of [publisher, a, b]) yield* recorder(c).waitMessages(n)
        yield* Effect.sleep(300)
        for (const c of [publisher, a, b]) assert.deepStrictEqual(bodies(c), expected(n))
        noneClosed([publisher, a, b])
        alive(processes)
        // the processes did lose Redis
        assert.isTrue(two.events.some((e) => e._tag === "Disconnected"), "process two saw the loss")
        assert.isTrue(two.events.some((e) => e._tag === "Reconnected"), "process two came back")
      }))
  }

  for (const fault of ["killed and restarted", "frozen (SIGSTOP) past the timeouts"] as const) {
    it.scopedLive(`pubsub: Redis ${fault} under a steady load: the gap is reported and counted, what arrives is in order`, () =>
      Effect.gen(function*() {
        const redis = yield* startRedis()
        const processes = yield* twoProcesses("pubsub", redis.url)
        const [one, two] = processes
        const publisher = yield* connect(`${one.url}/load`)
        const b = yield* connect(`${two.url}/load`)
        yield* pollUntil(redis.command(["PUBSUB", "NUMSUB", "ews:t:load"]), (r) => (r as Array<number>)[1] === 2, 5_000)
        const n = 300
        yield* steadyLoad(publisher, n, 10, Effect.gen(function*() {
          yield* Effect.sleep(600)
          if (fault === "killed and restarted") {
            yield* redis.kill
            yield* Effect.sleep(1_000)
            yield* redis.start
          } else {
            yield* redis.freeze
            yield* Effect.sleep(1_500)
            yield* redis.thaw
          }
        }))
        yield* recorder(publisher).waitMessages(n) // local subscribers get everything
        const last = `p${n - 1}`
        yield* recorder(b).waitMessages(1)
        yield* pollUntil(Effect.sync(() => recorder(b).messages.at(-1)?.data), (d) => d === last, 10_000)
        const got = recorder(b).messages.map((m) => Number(String(m.data).slice(1)))
        assert.isBelow(got.length, n, "some messages were lost while Redis was away")
        assert.deepStrictEqual(got, [...got].sort((x, y) => x - y), "in order")
        assert.strictEqual(new Set(got).size, got.length, "no duplicates")
        const gaps = two.events.filter((e) => e._tag === "Gap" && e.topic === "load")
        assert.isAbove(gaps.length, 0, "the gap is reported")
        const counted = gaps.reduce((sum, e) => sum + (e.missed ?? 0), 0)
        assert.strictEqual(counted, n - got.length, "the publisher's sequence numbers count what was missed")
        noneClosed([publisher, b])
        alive(processes)
      }))
  }
})

describe("Cluster.runMain: workers behind one port on Redis", { timeout: 180_000 }, () => {
  it.scopedLive("a worker killed with SIGKILL: its clients see 1006, the others carry on, it comes back, presence forgets it; SIGTERM closes all with 1001", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const primary = yield* serverProcess({ REDIS_URL: redis.url, MODE: "stream", WORKERS: "2" })
      const workers = () => primary.events.filter((e) => typeof e.worker === "number")
      yield* pollUntil(Effect.sync(workers), (w) => w.length === 2, 60_000)
      // both listening: the first printed its port before the helper returned, the second after
      yield* pollUntil(Effect.sync(() => primary.events.filter((e) => e.port !== undefined).length), (n) => n >= 1, 90_000)
      const observer = yield* Effect.flatMap(
        Layer.build(Broadcast.layerRedis({ url: redis.url, mode: "pubsub" })),
        (ctx) => Effect.succeed(ctx.unsafeMap.get(Broadcast.Topics.key) as Broadcast.Service)
      )
      // clients until both workers have some (the primary hands connections round-robin)
      const clients: Array<{ client: WsClient; pid: number; name: string }> = []
      const pids = () => new Set(clients.map((c) => c.pid))
      for (let i = 0; i < 20 && (clients.length < 6 || pids().size < 2); i++) {
        const name = `c${i}`
        const client = yield* connect(`${primary.url}/room?hello&name=${name}`)
        yield* recorder(client).waitMessages(1)
        clients.push({ client, pid: Number(String(recorder(client).messages[0]!.data).split(" ")[1]), name })
      }
      assert.strictEqual(pids().size, 2, "both workers serve clients")
      const members = (n: number) => pollUntil(observer.members("room"), (m) => m.length === n, 15_000)
      assert.strictEqual((yield* members(clients.length)).length, clients.length)
      const victim = clients[0]!.pid
      const dead = clients.filter((c) => c.pid === victim)
      const living = clients.filter((c) => c.pid !== victim)

      process.kill(victim, "SIGKILL")
      for (const c of dead) assert.strictEqual((yield* recorder(c.client).waitClose).code, 1006)
      // the others carry on: a publish on the surviving worker reaches all of them
      living[0]!.client.send("after-crash")
      for (const c of living) {
        yield* pollUntil(Effect.sync(() => recorder(c.client).messages.some((m) => String(m.data).endsWith("after-crash"))), (x) => x, 10_000)
        assert.strictEqual(recorder(c.client).closed, undefined)
      }
      // the worker comes back
      const replacement = yield* pollUntil(
        Effect.sync(() => workers().find((e) => e.replacing === victim)),
        (w) => w !== undefined,
        60_000
      )
      assert.isDefined(replacement)
      yield* pollUntil(Effect.sync(() => primary.events.filter((e) => e.port !== undefined).length), (n) => n >= 2, 90_000)
      // the new worker serves: a client it takes gets the publishes of the other worker's clients
      const fresh = []
      for (let i = 0; i < 2; i++) {
        const client = yield* connect(`${primary.url}/room?hello`)
        yield* recorder(client).waitMessages(1)
        fresh.push({ client, pid: Number(String(recorder(client).messages[0]!.data).split(" ")[1]) })
      }
      const onNew = fresh.find((c) => c.pid === replacement!.worker)
      assert.isDefined(onNew, "a new connection lands on the replacement worker")
      living[0]!.client.send("to-the-new-one")
      yield* pollUntil(Effect.sync(() => recorder(onNew!.client).messages.some((m) => String(m.data).endsWith("to-the-new-one"))), (x) => x, 10_000)
      // presence forgets the dead worker's clients (TTL), keeps the others
      assert.deepStrictEqual(yield* members(living.length), living.map((c) => c.name).sort())
      // graceful shutdown: every WebSocket gets 1001
      yield* primary.kill("SIGTERM")
      for (const c of [...living, ...fresh]) assert.strictEqual((yield* recorder(c.client).waitClose).code, 1001)
    }))
})
