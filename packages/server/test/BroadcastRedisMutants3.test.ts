/**
 * Pins down behaviour of `src/BroadcastRedis.ts` lines 401–707 for mutation testing, on a real
 * redis-server, at the level of the backend connection (`makeBackend(...).connect(receive)`):
 * the commands Redis sees (watched through `MONITOR` on a connection of the test's own), the keys
 * they leave, the events and the metrics (`BroadcastRedis.metrics`, compared before/after):
 * presence writes and flushes, where a new subscription starts reading a stream, the bounded
 * queue and its writer, the health and presence loops, Pub/Sub delivery and reconnection, the
 * stream reader and its trimmed-stream check, readiness, history and members.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Metric, Schedule, Scope, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as net from "node:net"
import type * as Broadcast from "../src/Broadcast.js"
import * as BroadcastRedis from "../src/BroadcastRedis.js"
import { createClient } from "redis"
import { type RedisServer, startRedis } from "./redisServer.js"
import { pollUntil, waitUntil, within } from "./utils.js"

const { encodeMessage, metrics } = BroadcastRedis

const counter = (m: typeof metrics.gaps) => Effect.map(Metric.value(m), (s) => s.count)
const queued = Effect.map(Metric.value(metrics.queued), (g) => g.value)

interface Received {
  readonly topic: string
  readonly message: string
  readonly compress: boolean | undefined
  readonly offset: string | undefined
}

/** The backend connection on Redis, in the current scope, with what it receives and its events. */
const backend = (options: BroadcastRedis.Options) =>
  Effect.gen(function*() {
    const received: Array<Received> = []
    const conn = yield* BroadcastRedis.makeBackend(options).connect((topic, message, opts, offset) => {
      received.push({ topic, message: String(message), compress: opts.compress, offset })
    })
    const events: Array<Broadcast.BackendEvent> = []
    yield* Effect.forkScoped(Stream.runForEach(conn.events!, (e) => Effect.sync(() => events.push(e))))
    yield* Effect.yieldNow()
    yield* Effect.yieldNow()
    return { conn, received, events }
  })

const disconnections = (events: ReadonlyArray<Broadcast.BackendEvent>) =>
  events.flatMap((e) => (e._tag === "Disconnected" ? [e.reason] : []))

/** One command of the monitored Redis: its arguments as text (latin1), and its connection's name. */
type Cmd = ReadonlyArray<string> & { readonly client?: string }

/** Parses the arguments of one `MONITOR` line (`"SET" "k" "v\x00"`). */
const parseArgs = (s: string): Array<string> => {
  const out: Array<string> = []
  let i = 0
  while (i < s.length) {
    if (s[i] !== "\"") {
      i++
      continue
    }
    i++
    let arg = ""
    while (i < s.length && s[i] !== "\"") {
      if (s[i] === "\\") {
        const c = s[i + 1]!
        if (c === "x") {
          arg += String.fromCharCode(parseInt(s.slice(i + 2, i + 4), 16))
          i += 4
          continue
        }
        arg += ({ n: "\n", r: "\r", t: "\t", a: "\x07", b: "\b" } as Record<string, string>)[c] ?? c
        i += 2
        continue
      }
      arg += s[i]
      i++
    }
    out.push(arg)
    i++
  }
  return out
}

/** Every command Redis runs from now on (`MONITOR` on a connection of its own). */
const monitor = (redis: RedisServer) =>
  Effect.acquireRelease(
    Effect.async<{ socket: net.Socket; commands: Array<Cmd> }>((resume) => {
      const socket = net.connect(redis.port, "127.0.0.1")
      const commands: Array<Cmd> = []
      const names = new Map<string, string>()
      let buffer = ""
      let started = false
      socket.on("connect", () => socket.write("MONITOR\r\n"))
      socket.on("data", (d: Buffer) => {
        buffer += d.toString("latin1")
        let nl: number
        while ((nl = buffer.indexOf("\r\n")) >= 0) {
          const line = buffer.slice(0, nl)
          buffer = buffer.slice(nl + 2)
          if (!started && line === "+OK") {
            started = true
            resume(Effect.succeed({ socket, commands }))
            continue
          }
          const at = line.indexOf("] ")
          if (!line.startsWith("+") || at < 0) continue
          const addr = line.slice(line.indexOf("[") + 1, at).split(" ").pop()!
          const args = parseArgs(line.slice(at + 2))
          const upper = args.map((a) => a.toUpperCase())
          if (upper[0] === "CLIENT" && upper[1] === "SETNAME") names.set(addr, args[2]!)
          if (upper[0] === "HELLO" && upper.includes("SETNAME")) names.set(addr, args[upper.indexOf("SETNAME") + 1]!)
          commands.push(Object.assign(args, { client: names.get(addr) ?? "" }))
        }
      })
    }),
    ({ socket }) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.map(({ commands }) => commands))

/** The commands named `name` (case-insensitive) in `commands` from index `from` on. */
const named = (commands: ReadonlyArray<Cmd>, name: string, from = 0) =>
  commands.slice(from).filter((c) => c[0]!.toUpperCase() === name.toUpperCase())

/** The backend's commands (from its connections, named `ews:<pid>:<role>`) but CLIENT, from index `from`. */
const ours = (commands: ReadonlyArray<Cmd>, from = 0) =>
  commands.slice(from).filter((c) => c.client!.startsWith("ews:") && c[0]!.toUpperCase() !== "CLIENT").map((c) => [...c])

const clientList = (redis: RedisServer, send: (args: Array<string>) => Effect.Effect<unknown> = redis.command) =>
  Effect.map(send(["CLIENT", "LIST"]), (l) =>
    String(l).split("\n").filter((x) => x.length > 0).map((line) => {
      const field = (k: string) => line.match(new RegExp(`(?:^| )${k}=(\\S*)`))?.[1] ?? ""
      return { id: field("id"), name: field("name"), cmd: field("cmd"), flags: field("flags") }
    }))

/** The process id of a backend connected to `redis` (not one of `others`), from its connections' names. */
const processIdOf = (redis: RedisServer, others: ReadonlyArray<string> = []) =>
  Effect.map(clientList(redis), (cs) => {
    const c = cs.find((x) => /^ews:[0-9a-f]{16}:cmd$/.test(x.name) && !others.includes(x.name.split(":")[1]!))
    assert.isDefined(c, "a command connection named ews:<pid>:cmd")
    return c!.name.split(":")[1]!
  })

/** Closes the backend's connection of `role` from the server side (`CLIENT KILL ID`). */
const killRole = (redis: RedisServer, role: string, send: (args: Array<string>) => Effect.Effect<unknown> = redis.command) =>
  Effect.gen(function*() {
    const ids = (yield* clientList(redis, send)).filter((c) => c.name.endsWith(`:${role}`)).map((c) => c.id)
    assert.strictEqual(ids.length, 1, `one ${role} connection`)
    yield* send(["CLIENT", "KILL", "ID", ids[0]!])
  })

/** A stream entry or Pub/Sub payload of another process, by hand. */
const foreign = (publisher: string, seq: number, text: string, compress = true) =>
  encodeMessage(Buffer.from(publisher, "latin1"), seq, text, compress)

const xadd = (redis: RedisServer, topic: string, payload: Buffer | string) =>
  Effect.map(redis.command(["XADD", `ews:t:${topic}`, "*", "m", payload] as unknown as Array<string>), String)

const fast = { reconnect: Schedule.spaced("50 millis"), healthInterval: "1 minute" } as const

describe("BroadcastRedis backend: the connection's face", () => {
  it.scopedLive("loopback is true in stream mode only; a Pub/Sub topic's position is \"\" once subscribed", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const stream = yield* backend({ url: redis.url, mode: "stream", ...fast })
      const pubsub = yield* backend({ url: redis.url, mode: "pubsub", ...fast })
      assert.strictEqual(stream.conn.loopback, true)
      assert.strictEqual(pubsub.conn.loopback, false)
      assert.isUndefined(pubsub.conn.history, "no history over Pub/Sub")
      assert.isFunction(stream.conn.history)
      assert.isUndefined(pubsub.conn.position!("t"))
      pubsub.conn.interest("t", true)
      assert.strictEqual(pubsub.conn.position!("t"), "")
      pubsub.conn.interest("t", false)
      assert.isUndefined(pubsub.conn.position!("t"))
    }))

  it.scopedLive("the layer not ready within connectTimeout fails with Timeout, \"not ready within <duration>\"", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      yield* redis.freeze
      yield* Effect.addFinalizer(() => redis.thaw)
      const exit = yield* Effect.exit(
        Effect.scoped(backend({ url: redis.url, connectTimeout: "300 millis" })).pipe(within("5 seconds", "the layer's failure"))
      )
      assert.isTrue(Exit.isFailure(exit))
      const failure = Cause.failureOption((exit as Exit.Failure<unknown, Broadcast.BackendError>).cause)
      assert.isTrue(failure._tag === "Some", "a typed failure")
      const error = (failure as { value: Broadcast.BackendError }).value
      assert.strictEqual(error._tag, "BackendError")
      assert.strictEqual(error.reason, "Timeout")
      assert.strictEqual(error.detail, "not ready within 300ms")
    }))
})

describe("BroadcastRedis backend: presence", () => {
  it.scopedLive("SET <key> <names> PX <ttl> then SADD; no names left: DEL then SREM; [] for an unknown topic writes nothing", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn } = yield* backend({ url: redis.url, presenceTtl: "9 seconds", ...fast })
      const pid = yield* processIdOf(redis)
      const key = `ews:p:room:${pid}`
      const start = mon.length
      conn.presence!("never", []) // unknown topic, no names: nothing to write
      conn.presence!("room", ["ada", "bob"])
      yield* waitUntil(() => named(mon, "SADD", start).length >= 1, "the SADD of room")
      assert.deepStrictEqual(ours(mon, start), [
        ["SET", key, "[\"ada\",\"bob\"]", "PX", "9000"],
        ["SADD", "ews:p:room", pid]
      ])
      const pttl = Number(yield* redis.command(["PTTL", key]))
      assert.isTrue(pttl > 8000 && pttl <= 9000, `PTTL ${pttl}`)
      assert.deepStrictEqual(yield* redis.command(["SMEMBERS", "ews:p:room"]), [pid])
      assert.strictEqual(String(yield* redis.command(["GET", key])), "[\"ada\",\"bob\"]")
      const emptied = mon.length
      conn.presence!("room", [])
      yield* waitUntil(() => named(mon, "SREM", emptied).length >= 1, "the SREM of room")
      assert.deepStrictEqual(ours(mon, emptied), [["DEL", key], ["SREM", "ews:p:room", pid]])
      assert.strictEqual(Number(yield* redis.command(["EXISTS", key])), 0)
      assert.deepStrictEqual(yield* redis.command(["SMEMBERS", "ews:p:room"]), [])
    }))

  it.scopedLive("a change rewrites only the topics that changed (dirty), each once", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn } = yield* backend({ url: redis.url, presenceTtl: "1 minute", ...fast })
      const pid = yield* processIdOf(redis)
      conn.presence!("a", ["x"])
      conn.presence!("b", ["y"])
      yield* waitUntil(() => named(mon, "SADD").length >= 2, "the SADDs of a and b")
      const mark = mon.length
      conn.presence!("b", ["y", "z"])
      yield* waitUntil(() => named(mon, "SADD", mark).length >= 1, "the SADD of b")
      conn.presence!("c", ["w"])
      yield* waitUntil(() => named(mon, "SADD", mark).length >= 2, "the SADD of c")
      assert.deepStrictEqual(ours(mon, mark), [
        ["SET", `ews:p:b:${pid}`, "[\"y\",\"z\"]", "PX", "60000"],
        ["SADD", "ews:p:b", pid],
        ["SET", `ews:p:c:${pid}`, "[\"w\"]", "PX", "60000"],
        ["SADD", "ews:p:c", pid]
      ])
    }))

  it.scopedLive("the heartbeat rewrites every topic's presence each presenceTtl/3, so the key never expires", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn } = yield* backend({ url: redis.url, presenceTtl: "1500 millis", ...fast })
      const pid = yield* processIdOf(redis)
      const key = `ews:p:room:${pid}`
      conn.presence!("room", ["ada"])
      const sets = () => named(mon, "SET").filter((c) => c[1] === key)
      yield* waitUntil(() => sets().length >= 1, "the SET of the change")
      const t0 = Date.now()
      // then one every 500 ms (every 4.5 s if it were presenceTtl * 3)
      yield* waitUntil(() => sets().length >= 4, "three heartbeats after the change", "4 seconds")
      const elapsed = Date.now() - t0
      assert.isAtLeast(elapsed, 950, `3 heartbeats 500 ms apart took ${elapsed} ms`)
      for (const c of sets()) assert.deepStrictEqual(c, ["SET", key, "[\"ada\"]", "PX", "1500"])
      yield* waitUntil(() => named(mon, "SADD").length >= 4, "each with its SADD")
      assert.strictEqual(Number(yield* redis.command(["EXISTS", key])), 1, "never expired")
    }))

  it.scopedLive("closing the connection empties every topic's presence: DEL + SREM of each", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const scope = yield* Scope.make()
      const { conn } = yield* backend({ url: redis.url, presenceTtl: "1 minute", ...fast }).pipe(Scope.extend(scope))
      const pid = yield* processIdOf(redis)
      conn.presence!("a", ["x"])
      conn.presence!("b", ["y"])
      yield* waitUntil(() => named(mon, "SADD").length >= 2, "the SADDs of a and b")
      const mark = mon.length
      yield* Scope.close(scope, Exit.void)
      yield* waitUntil(() => named(mon, "SREM", mark).length >= 2, "the SREMs of a and b")
      assert.deepStrictEqual(ours(mon, mark), [
        ["DEL", `ews:p:a:${pid}`],
        ["SREM", "ews:p:a", pid],
        ["DEL", `ews:p:b:${pid}`],
        ["SREM", "ews:p:b", pid]
      ])
      assert.deepStrictEqual(yield* redis.command(["KEYS", "ews:p:*"]), [])
    }))

  it.scopedLive("a new command connection rewrites all presence and resolves the topics subscribed meanwhile", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const { conn, events } = yield* backend({ url: redis.url, presenceTtl: "1 minute", ...fast })
      const pid = yield* processIdOf(redis)
      const key = `ews:p:room:${pid}`
      conn.presence!("room", ["ada"])
      yield* pollUntil(redis.command(["EXISTS", key]), (n) => Number(n) === 1, 5_000)
      yield* redis.command(["DEL", key]) // as if it had expired
      yield* killRole(redis, "cmd")
      yield* waitUntil(() => disconnections(events).length >= 1, "Disconnected of cmd")
      conn.interest("s", true) // no command connection: resolved when it is back
      yield* waitUntil(() => conn.position!("s") !== undefined, "the position of s once cmd is back")
      assert.strictEqual(conn.position!("s"), "0-0")
      const back = yield* pollUntil(redis.command(["GET", key]), (v) => v !== null, 5_000)
      assert.strictEqual(String(back), "[\"ada\"]", "the presence written again on the new connection")
    }))
})

/** A connection of the test's own, opened now (it outlives a `maxclients` that refuses new ones). */
const admin = (redis: RedisServer) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = createClient({ url: redis.url, socket: { reconnectStrategy: false } })
      client.on("error", () => {})
      await client.connect()
      return client
    }),
    (client) => Effect.sync(() => client.destroy())
  ).pipe(Effect.map((client) => (args: ReadonlyArray<string | Buffer>) => Effect.promise(() => client.sendCommand([...args]))))

/** Runs `f` with the backend's `role` connection closed and no new connection accepted. */
const withoutRole = <A>(
  redis: RedisServer,
  send: (args: ReadonlyArray<string | Buffer>) => Effect.Effect<unknown>,
  role: string,
  f: Effect.Effect<A, Error>
) =>
  Effect.gen(function*() {
    const connected = (yield* clientList(redis, send)).length
    // existing connections stay; the reconnection is refused until maxclients is raised again
    yield* send(["CONFIG", "SET", "maxclients", String(connected - 1)])
    yield* killRole(redis, role, send)
    const a = yield* f
    yield* send(["CONFIG", "SET", "maxclients", "10000"])
    return a
  })

/** How many CLIENT UNBLOCK Redis has run (INFO commandstats). */
const unblocks = (redis: RedisServer) =>
  Effect.map(redis.command(["INFO", "commandstats"]), (info) => Number(String(info).match(/cmdstat_client\|unblock:calls=(\d+)/)?.[1] ?? 0))

const reconnected = (events: ReadonlyArray<Broadcast.BackendEvent>) => events.filter((e) => e._tag === "Reconnected").length

describe("BroadcastRedis backend: where a stream subscription starts (resolvePositions) and the reader", () => {
  it.scopedLive("a topic with entries starts after its last one, an empty stream at 0-0: only later entries are received", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      yield* xadd(redis, "s", foreign("other", 1, "old1"))
      const old2 = yield* xadd(redis, "s", foreign("other", 2, "old2"))
      conn.interest("s", true)
      yield* waitUntil(() => conn.position!("s") !== undefined, "the position of s")
      assert.strictEqual(conn.position!("s"), old2, "the last entry's id")
      assert.deepStrictEqual(named(ours(mon), "XREVRANGE")[0], ["XREVRANGE", "ews:t:s", "+", "-", "COUNT", "1"])
      // another topic resolves alone
      const mark = mon.length
      conn.interest("e", true)
      yield* waitUntil(() => conn.position!("e") !== undefined, "the position of e")
      assert.strictEqual(conn.position!("e"), "0-0", "an empty stream")
      yield* waitUntil(() => named(mon, "XREAD", mark).some((c) => c.includes("ews:t:e")), "the XREAD of s and e")
      assert.deepStrictEqual(named(ours(mon, mark), "XREVRANGE"), [["XREVRANGE", "ews:t:e", "+", "-", "COUNT", "1"]])
      const newer = yield* xadd(redis, "s", foreign("other", 3, "new", false))
      const first = yield* xadd(redis, "e", foreign("other", 1, "e1"))
      yield* waitUntil(() => received.length >= 2, "the new entries of s and e")
      assert.deepStrictEqual(received, [
        { topic: "s", message: "new", compress: false, offset: newer },
        { topic: "e", message: "e1", compress: true, offset: first }
      ])
      assert.strictEqual(conn.position!("s"), newer)
      assert.strictEqual(conn.position!("e"), first)
    }))

  it.scopedLive("a topic unsubscribed before its position is known stays unknown; an undecodable entry moves the position only", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      yield* xadd(redis, "u", foreign("other", 1, "u1"))
      conn.interest("u", true)
      conn.interest("u", false)
      conn.interest("v", true)
      yield* waitUntil(() => conn.position!("v") !== undefined, "the position of v (resolved after u's answer)")
      assert.isUndefined(conn.position!("u"))
      const junk = yield* xadd(redis, "v", "junk")
      yield* waitUntil(() => conn.position!("v") === junk, "the position at the undecodable entry")
      assert.deepStrictEqual(received, [])
      const good = yield* xadd(redis, "v", foreign("other", 1, "good"))
      yield* waitUntil(() => received.length >= 1, "the entry after the undecodable one")
      assert.deepStrictEqual(received, [{ topic: "v", message: "good", compress: true, offset: good }])
    }))

  it.scopedLive("entries of a topic dropped while its XREAD answer is on the way are not received, and it gets no position", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      conn.interest("keep", true)
      yield* waitUntil(() => named(mon, "XREAD").some((c) => c.includes("ews:t:keep")), "the reader blocked in an XREAD of keep")
      conn.interest("gone", true)
      yield* waitUntil(
        () => named(mon, "XREAD").some((c) => c.includes("ews:t:gone") && c.includes("ews:t:keep")),
        "the reader blocked in an XREAD of keep and gone"
      )
      // Redis has answered the XREAD (redis-cli returned) before gone is dropped; this process
      // reads the answer after
      yield* Effect.sync(() => {
        execFileSync("redis-cli", ["-p", String(redis.port), "-x", "XADD", "ews:t:gone", "*", "m"], { input: foreign("other", 1, "late") })
        conn.interest("gone", false)
      })
      const id = yield* xadd(redis, "keep", foreign("other", 1, "kept"))
      yield* waitUntil(() => received.length >= 1, "the entry of keep")
      assert.deepStrictEqual(received, [{ topic: "keep", message: "kept", compress: true, offset: id }])
      assert.isUndefined(conn.position!("gone"))
    }))

  it.scopedLive("XREAD COUNT 512 BLOCK 5000; a change of topics unblocks it (CLIENT UNBLOCK <reader id>) to read the new set", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      const readerId = (yield* clientList(redis)).find((c) => c.name.endsWith(":reader"))!.id
      conn.interest("a", true)
      yield* waitUntil(() => named(mon, "XREAD").length >= 1, "the reader's XREAD of a")
      assert.deepStrictEqual(named(mon, "XREAD")[0], ["XREAD", "COUNT", "512", "BLOCK", "5000", "STREAMS", "ews:t:a", "0-0"])
      const mark = mon.length
      conn.interest("b", true)
      yield* waitUntil(() => named(mon, "XREAD", mark).some((c) => c.includes("ews:t:b")), "an XREAD of a and b")
      // the blocked XREAD (5 s) was cut short by one CLIENT UNBLOCK (MONITOR does not show it)
      assert.strictEqual(yield* unblocks(redis), 1, "one CLIENT UNBLOCK (MONITOR does not show it)")
      assert.strictEqual((yield* clientList(redis)).find((c) => c.name.endsWith(":reader"))!.id, readerId, "the same reader")
      assert.deepStrictEqual(named(mon, "XREAD", mark).find((c) => c.includes("ews:t:b")), [
        "XREAD", "COUNT", "512", "BLOCK", "5000", "STREAMS", "ews:t:a", "ews:t:b", "0-0", "0-0"
      ])
      const id = yield* xadd(redis, "b", foreign("other", 1, "b1"))
      // well within the 5 s block: the reader was woken to read b
      yield* waitUntil(() => received.length >= 1, "b1 received", "3 seconds")
      assert.deepStrictEqual(received, [{ topic: "b", message: "b1", compress: true, offset: id }])
      const mark2 = mon.length
      conn.interest("a", false)
      yield* waitUntil(
        () => named(mon, "XREAD", mark2).some((c) => !c.includes("ews:t:a")),
        "an XREAD of b alone after unsubscribing a"
      )
      assert.deepStrictEqual(named(mon, "XREAD", mark2).find((c) => !c.includes("ews:t:a")), [
        "XREAD", "COUNT", "512", "BLOCK", "5000", "STREAMS", "ews:t:b", id
      ])
      assert.deepStrictEqual(named(mon, "UNSUBSCRIBE", mark2), [], "an UNSUBSCRIBE on the stream reader's connection")
      assert.strictEqual(yield* unblocks(redis), 2)
    }))

  it.scopedLive("topics subscribed one after the other are each asked for once, even while an earlier ask is on its way", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      // the same tick: a's XREVRANGE is sent and not answered yet when b is subscribed
      conn.interest("a", true)
      conn.interest("b", true)
      conn.interest("c", true)
      yield* waitUntil(() => ["a", "b", "c"].every((t) => conn.position!(t) !== undefined), "the positions of a, b and c")
      yield* waitUntil(() => named(mon, "XREAD").some((c) => c.includes("ews:t:c")), "an XREAD of a, b and c")
      assert.deepStrictEqual(
        named(mon, "XREVRANGE").map((c) => c[1]),
        ["ews:t:a", "ews:t:b", "ews:t:c"],
        "a topic asked for twice"
      )
    }))

  it.scopedLive("a topic subscribed again is asked for again; publishing wakes no blocked reader", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      conn.interest("a", true)
      yield* waitUntil(() => named(mon, "XREAD").length >= 1, "the reader blocked on a")
      // the writer resolves pending positions before each batch: with none pending, it leaves
      // the blocked reader alone (the entry itself ends the XREAD)
      const unblocks0 = yield* unblocks(redis)
      yield* conn.publish("a", "m1", {})
      yield* waitUntil(() => received.length >= 1, "m1 read back")
      assert.strictEqual(yield* unblocks(redis), unblocks0, "a CLIENT UNBLOCK for a publish")
      conn.interest("a", false)
      conn.interest("a", true)
      assert.isUndefined(conn.position!("a"))
      yield* waitUntil(() => conn.position!("a") !== undefined, "a's position asked for again")
      assert.strictEqual(named(mon, "XREVRANGE").length, 2)
    }))

  it.scopedLive("600 entries come in order in XREADs of at most 512", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      conn.interest("n", true)
      yield* waitUntil(() => named(mon, "XREAD").length >= 1, "the reader's XREAD of n")
      const many = Array.from({ length: 600 }, (_, i) => foreign("other", i + 1, `n${i}`))
      yield* redis.command(["EVAL", "for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'm', ARGV[i]) end", "1", "ews:t:n", ...many] as unknown as Array<string>)
      yield* waitUntil(() => received.length >= 600 && named(mon, "XREAD").length >= 3, "600 entries, then the next XREAD")
      assert.deepStrictEqual(received.map((r) => r.message), Array.from({ length: 600 }, (_, i) => `n${i}`))
      const reads = named(mon, "XREAD").map((c) => c[c.length - 1]!)
      const ids = received.map((r) => r.offset!)
      // the XREADs resume from 0-0, then after the 512th entry, then after the 600th
      assert.deepStrictEqual(reads, ["0-0", ids[511]!, ids[599]!])
    }))
})

describe("BroadcastRedis backend: a stream trimmed while the reader was away (checkTrimmed)", () => {
  it.scopedLive("after a reconnection: no Gap for new or deleted entries up to the position; a Gap when one past it was deleted", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const send = yield* admin(redis)
      const { conn, events, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      yield* xadd(redis, "s", foreign("other", 1, "s1"))
      const s2 = String(yield* send(["XADD", "ews:t:s", "*", "m", foreign("other", 2, "s2")]))
      conn.interest("s", true)
      yield* waitUntil(() => conn.position!("s") === s2, "the position of s")
      const gaps0 = yield* counter(metrics.gaps)
      const tags = () => events.filter((e) => e._tag !== "Disconnected").map((e) => e._tag === "Gap" ? `Gap ${e.topic} ${e.missed}` : e._tag)

      // 1. an entry added (not deleted) while away: read after the reconnection, no Gap
      const s3 = yield* withoutRole(redis, send, "reader", Effect.map(send(["XADD", "ews:t:s", "*", "m", foreign("other", 3, "s3")]), String))
      yield* waitUntil(() => reconnected(events) >= 1, "Reconnected (1)")
      yield* waitUntil(() => received.length >= 1, "s3 read after the reconnection")
      assert.deepStrictEqual(received.map((r) => [r.message, r.offset]), [["s3", s3]])
      assert.deepStrictEqual(tags(), ["Reconnected"])

      // 2. the entry at the position deleted: nothing after it was lost, no Gap
      yield* withoutRole(redis, send, "reader", Effect.asVoid(send(["XDEL", "ews:t:s", s3])))
      yield* waitUntil(() => reconnected(events) >= 2, "Reconnected (2)")
      assert.deepStrictEqual(tags(), ["Reconnected", "Reconnected"])
      assert.strictEqual((yield* counter(metrics.gaps)) - gaps0, 0)

      // 3. an entry after the position added and deleted while away: a Gap of unknown size, then Reconnected
      yield* withoutRole(
        redis,
        send,
        "reader",
        Effect.asVoid(send(["EVAL", "local id = redis.call('XADD', KEYS[1], '*', 'm', 'x') redis.call('XDEL', KEYS[1], id)", "1", "ews:t:s"]))
      )
      yield* waitUntil(() => reconnected(events) >= 3, "Reconnected (3)")
      assert.deepStrictEqual(tags(), ["Reconnected", "Reconnected", "Gap s undefined", "Reconnected"])
      assert.strictEqual((yield* counter(metrics.gaps)) - gaps0, 1)
    }))
})

describe("BroadcastRedis backend: the stream queue and its writer", () => {
  for (const onQueueFull of ["dropOldest", "dropNewest"] as const) {
    it.scopedLive(`${onQueueFull}: queueSize publishes fit, the next one drops ${onQueueFull === "dropOldest" ? "the oldest" : "itself"}; queued and queueDropped count`, () =>
      Effect.gen(function*() {
        const redis = yield* startRedis()
        const { conn, received } = yield* backend({ url: redis.url, mode: "stream", queueSize: 3, onQueueFull, ...fast })
        conn.interest("q", true)
        yield* waitUntil(() => conn.position!("q") !== undefined, "the position of q")
        const dropped0 = yield* counter(metrics.queueDropped)
        // all in one synchronous run: the writer cannot take any before the last
        const seen = yield* Effect.sync(() =>
          [1, 2, 3, 4].map((i) => {
            Effect.runSync(conn.publish("q", `m${i}`, {}))
            return [Effect.runSync(queued), Effect.runSync(counter(metrics.queueDropped)) - dropped0]
          })
        )
        assert.deepStrictEqual(seen, [[1, 0], [2, 0], [3, 0], [3, 1]])
        yield* waitUntil(() => received.length >= 3, "the three kept")
        assert.deepStrictEqual(received.map((r) => r.message), onQueueFull === "dropOldest" ? ["m2", "m3", "m4"] : ["m1", "m2", "m3"])
        assert.strictEqual(yield* pollUntil(queued, (n) => n === 0, 5_000), 0, "the queue empties once sent")
        assert.strictEqual(Number(yield* redis.command(["XLEN", "ews:t:q"])), 3, "each sent once")
        assert.strictEqual((yield* counter(metrics.queueDropped)) - dropped0, 1)
      }))
  }

  it.scopedLive("600 publishes at once go out in three batches with no further publish to wake the writer: in order, each once", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      conn.interest("p", true)
      yield* waitUntil(() => conn.position!("p") !== undefined, "the position of p")
      yield* Effect.sync(() => {
        for (let i = 0; i < 600; i++) Effect.runSync(conn.publish("p", `p${i}`, {}))
      })
      yield* waitUntil(() => received.length >= 600, "600 received")
      assert.deepStrictEqual(received.map((r) => r.message), Array.from({ length: 600 }, (_, i) => `p${i}`))
      assert.strictEqual(yield* pollUntil(queued, (n) => n === 0, 5_000), 0)
      assert.strictEqual(Number(yield* redis.command(["XLEN", "ews:t:p"])), 600)
    }))

  it.scopedLive("a batch is the 256 oldest, in order, with MAXLEN ~ maxLen; a failed one drops the link and leaves the queue whole", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      yield* redis.command(["SET", "ews:t:bad", "not a stream"])
      const { conn, events } = yield* backend({
        url: redis.url,
        mode: "stream",
        maxLen: 777,
        reconnect: Schedule.spaced("1 minute"),
        healthInterval: "1 minute"
      })
      // 255 to g, the 256th to bad, 45 more to g
      yield* Effect.sync(() => {
        for (let i = 0; i < 255; i++) Effect.runSync(conn.publish("g", `g${i}`, {}))
        Effect.runSync(conn.publish("bad", "x", {}))
        for (let i = 255; i < 300; i++) Effect.runSync(conn.publish("g", `g${i}`, {}))
      })
      yield* waitUntil(() => disconnections(events).length >= 1, "Disconnected after the refused XADD")
      assert.match(disconnections(events)[0]!, /^cmd: .*WRONGTYPE/)
      // the first batch: g0..g254 and bad, all run by Redis before bad's error; the 45 others never sent
      assert.strictEqual(Number(yield* redis.command(["XLEN", "ews:t:g"])), 255)
      const xadds = named(mon, "XADD")
      assert.strictEqual(xadds.length, 256, "one batch of 256")
      assert.deepStrictEqual(xadds[0]!.slice(0, 7), ["XADD", "ews:t:g", "MAXLEN", "~", "777", "*", "m"])
      assert.strictEqual(xadds[0]!.length, 8)
      assert.deepStrictEqual(xadds[255]!.slice(0, 7), ["XADD", "ews:t:bad", "MAXLEN", "~", "777", "*", "m"])
      const first = (yield* redis.command(["XRANGE", "ews:t:g", "-", "+", "COUNT", "1"])) as Array<[string, Array<string>]>
      assert.isTrue(first[0]![1][1]!.endsWith("g0"), "g0 first")
      const last = (yield* redis.command(["XREVRANGE", "ews:t:g", "+", "-", "COUNT", "1"])) as Array<[string, Array<string>]>
      assert.isTrue(last[0]![1][1]!.endsWith("g254"), "g254 last")
      assert.strictEqual(yield* queued, 301, "nothing left the queue")
    }))

  it.scopedLive("an XADD unanswered for commandTimeout drops the link (\"XADD unanswered\"); without a link, history is [] and members are this process's", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      yield* Effect.addFinalizer(() => redis.thaw)
      const { conn, events } = yield* backend({
        url: redis.url,
        mode: "stream",
        commandTimeout: "300 millis",
        reconnect: Schedule.spaced("1 minute"),
        healthInterval: "1 minute"
      })
      conn.interest("x", true)
      yield* waitUntil(() => conn.position!("x") !== undefined, "the position of x")
      yield* redis.freeze
      yield* conn.publish("x", "m", {})
      yield* waitUntil(() => disconnections(events).length >= 1, "Disconnected after the XADD", "3 seconds")
      assert.strictEqual(disconnections(events)[0], "cmd: XADD unanswered")
      assert.strictEqual(yield* queued, 1, "still queued")
      conn.presence!("x", ["zed", "amy"])
      assert.deepStrictEqual(yield* conn.members!("x").pipe(within("1 second", "members without a link")), ["amy", "zed"])
      assert.deepStrictEqual(yield* conn.members!("nobody").pipe(within("1 second", "members of an unknown topic without a link")), [])
      assert.deepStrictEqual(yield* conn.history!("x", "0-0").pipe(within("1 second", "history without a link")), [])
    }))
})

const numsub = (redis: RedisServer, topic: string) =>
  Effect.map(redis.command(["PUBSUB", "NUMSUB", `ews:t:${topic}`]), (r) => Number((r as Array<unknown>)[1]))

const publishRaw = (redis: RedisServer, topic: string, payload: Buffer | string) =>
  redis.command(["PUBLISH", `ews:t:${topic}`, payload] as unknown as Array<string>)

describe("BroadcastRedis backend: Pub/Sub", () => {
  it.scopedLive("own messages, undecodable payloads and topics no longer subscribed are not received; unsubscribing forgets seqs", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const a = yield* backend({ url: redis.url, mode: "pubsub", ...fast })
      const b = yield* backend({ url: redis.url, mode: "pubsub", ...fast })
      a.conn.interest("t", true)
      a.conn.interest("m", true)
      b.conn.interest("t", true)
      yield* pollUntil(numsub(redis, "t"), (n) => n === 2, 5_000)
      yield* pollUntil(numsub(redis, "m"), (n) => n === 1, 5_000)
      yield* a.conn.publish("t", "own", {})
      yield* waitUntil(() => b.received.length >= 1, "b receives a's message")
      assert.deepStrictEqual(b.received, [{ topic: "t", message: "own", compress: true, offset: undefined }])
      yield* publishRaw(redis, "t", "short")
      yield* publishRaw(redis, "t", foreign("other", 5, "five", false))
      yield* waitUntil(() => a.received.length >= 1, "a receives another process's message")
      assert.deepStrictEqual(a.received, [{ topic: "t", message: "five", compress: false, offset: undefined }])

      // unsubscribed and subscribed again: seq 3 of the same publisher is new again
      a.conn.interest("t", false)
      assert.strictEqual(yield* pollUntil(numsub(redis, "t"), (n) => n === 1, 5_000), 1, "a unsubscribed from t")
      a.conn.interest("t", true)
      assert.strictEqual(yield* pollUntil(numsub(redis, "t"), (n) => n === 2, 5_000), 2, "a subscribed to t again")
      yield* publishRaw(redis, "t", foreign("other", 3, "three"))
      yield* waitUntil(() => a.received.length >= 2, "seq 3 after resubscribing")
      assert.deepStrictEqual(a.received.map((r) => r.message), ["five", "three"])

      // a message already on its way when the topic is dropped: Redis has sent it (redis-cli
      // returned) before the unsubscribe, and this process reads it after
      yield* Effect.sync(() => {
        execFileSync("redis-cli", ["-p", String(redis.port), "-x", "PUBLISH", "ews:t:t"], { input: foreign("other", 4, "late") })
        a.conn.interest("t", false)
      })
      yield* publishRaw(redis, "m", foreign("other", 1, "marker"))
      yield* waitUntil(() => a.received.length >= 3, "the marker on m")
      assert.deepStrictEqual(a.received.map((r) => r.message), ["five", "three", "marker"])
    }))

  // node-redis drops a channel's listeners when the UNSUBSCRIBE's reply comes back; a SUBSCRIBE
  // asked for before that reply must still be sent, or the topic is lost until a reconnection
  it.scopedLive("a topic dropped and taken again before Redis answers the UNSUBSCRIBE is subscribed again and receives", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const a = yield* backend({ url: redis.url, mode: "pubsub", ...fast })
      a.conn.interest("t", true)
      yield* pollUntil(numsub(redis, "t"), (n) => n === 1, 5_000)
      const mark = mon.length
      a.conn.interest("t", false)
      a.conn.interest("t", true) // same tick: the UNSUBSCRIBE is not answered yet
      yield* waitUntil(() => named(mon, "SUBSCRIBE", mark).length >= 1, "a SUBSCRIBE of t after dropping it")
      assert.deepStrictEqual(
        ours(mon, mark).filter((c) => /^(UN)?SUBSCRIBE$/i.test(c[0]!)).map(([name, ...args]) => [name!.toUpperCase(), ...args]),
        [["UNSUBSCRIBE", "ews:t:t"], ["SUBSCRIBE", "ews:t:t"]]
      )
      assert.strictEqual(yield* pollUntil(numsub(redis, "t"), (n) => n === 1, 5_000), 1, "subscribed to t")
      yield* publishRaw(redis, "t", foreign("other", 1, "after"))
      yield* waitUntil(() => a.received.length >= 1, "the message published after taking t again")
      assert.deepStrictEqual(a.received.map((r) => r.message), ["after"])
    }))

  it.scopedLive("a new subscription connection resubscribes every topic: Disconnected, a Gap per topic, then Reconnected", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const { conn, events } = yield* backend({ url: redis.url, mode: "pubsub", ...fast })
      conn.interest("a", true)
      conn.interest("b", true)
      yield* pollUntil(numsub(redis, "b"), (n) => n === 1, 5_000)
      const gaps0 = yield* counter(metrics.gaps)
      yield* killRole(redis, "sub")
      yield* waitUntil(() => reconnected(events) >= 1, "Reconnected")
      assert.deepStrictEqual(events.slice(1), [
        { _tag: "Gap", topic: "a", missed: undefined },
        { _tag: "Gap", topic: "b", missed: undefined },
        { _tag: "Reconnected" }
      ])
      assert.match(disconnections(events)[0]!, /^sub: /)
      assert.strictEqual((yield* counter(metrics.gaps)) - gaps0, 2)
      assert.strictEqual(yield* pollUntil(numsub(redis, "a"), (n) => n === 1, 5_000), 1, "a subscribed again")
      assert.strictEqual(yield* numsub(redis, "b"), 1, "b subscribed again")
    }))

  it.scopedLive("no topic: the subscription connection comes back with Reconnected alone", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const { events } = yield* backend({ url: redis.url, mode: "pubsub", ...fast })
      yield* killRole(redis, "sub")
      yield* waitUntil(() => reconnected(events) >= 1, "Reconnected")
      assert.deepStrictEqual(events.filter((e) => e._tag !== "Disconnected"), [{ _tag: "Reconnected" }])
    }))

  it.scopedLive("publishFailures counts a publish with no command link and a PUBLISH Redis refuses, without dropping the link", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      yield* redis.command(["ACL", "SETUSER", "nopub", "on", ">pw", "~*", "&*", "+@all", "-publish"])
      const { conn, events } = yield* backend({ url: `redis://nopub:pw@127.0.0.1:${redis.port}`, mode: "pubsub", ...fast })
      const failures0 = yield* counter(metrics.publishFailures)
      yield* conn.publish("t", "refused", {})
      const failures = yield* pollUntil(Effect.map(counter(metrics.publishFailures), (n) => n - failures0), (n) => n >= 1, 5_000)
      assert.strictEqual(failures, 1)
      conn.presence!("t", ["ada"])
      yield* pollUntil(redis.command(["SMEMBERS", "ews:p:t"]), (m) => (m as Array<unknown>).length === 1, 5_000)
      assert.deepStrictEqual(events, [], "the command link stayed up")

      yield* Effect.addFinalizer(() => redis.thaw)
      const frozen = yield* backend({
        url: redis.url,
        mode: "pubsub",
        commandTimeout: "300 millis",
        healthInterval: "50 millis",
        reconnect: Schedule.spaced("1 minute")
      })
      yield* redis.freeze
      yield* waitUntil(() => disconnections(frozen.events).length >= 2, "Disconnected of cmd and sub")
      const before = yield* counter(metrics.publishFailures)
      yield* frozen.conn.publish("t", "no link", {})
      assert.strictEqual((yield* counter(metrics.publishFailures)) - before, 1)
      frozen.conn.presence!("t", ["zed", "amy"])
      assert.deepStrictEqual(yield* frozen.conn.members!("t").pipe(within("1 second", "members without a link")), ["amy", "zed"])
    }))
})

describe("BroadcastRedis backend: members and history", () => {
  it.scopedLive("members: this process's names from memory, the others' from Redis, sorted; a pid without names is SREM'd", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const a = yield* backend({ url: redis.url, mode: "pubsub", presenceTtl: "1 minute", ...fast })
      const pidA = yield* processIdOf(redis)
      const b = yield* backend({ url: redis.url, mode: "pubsub", presenceTtl: "1 minute", ...fast })
      a.conn.presence!("lobby", ["zed", "amy"])
      b.conn.presence!("lobby", ["bob"])
      yield* redis.command(["SET", "ews:p:lobby:cafe", "[\"carl\"]"])
      yield* redis.command(["SADD", "ews:p:lobby", "cafe", "dead"]) // dead: its key is gone
      yield* pollUntil(redis.command(["SCARD", "ews:p:lobby"]), (n) => Number(n) === 4, 5_000)
      assert.deepStrictEqual(yield* a.conn.members!("lobby"), ["amy", "bob", "carl", "zed"])
      const set = yield* pollUntil(redis.command(["SMEMBERS", "ews:p:lobby"]), (m) => (m as Array<unknown>).length === 3, 5_000)
      assert.deepStrictEqual([...(set as Array<string>)].sort(), [pidA, "cafe", (yield* processIdOf(redis, [pidA]))].sort())
      assert.deepStrictEqual(named(ours(mon), "SREM"), [["SREM", "ews:p:lobby", "dead"]])
      // this process's names as they are now, once each
      a.conn.presence!("lobby", ["zed", "al", "amy"])
      assert.deepStrictEqual(yield* a.conn.members!("lobby"), ["al", "amy", "bob", "carl", "zed"])
      assert.deepStrictEqual(yield* b.conn.members!("lobby"), ["al", "amy", "bob", "carl", "zed"])
      assert.strictEqual(named(ours(mon), "SREM").length, 1, "nothing gone, no SREM")
      assert.deepStrictEqual(yield* a.conn.members!("nobody"), [])
      // a presence set that holds no pid: this process's names, sorted, and no MGET of no key
      // (Redis refuses it, and the refusal used to drop the command connection)
      a.conn.presence!("solo", ["zed", "amy"])
      yield* pollUntil(redis.command(["SCARD", "ews:p:solo"]), (n) => Number(n) === 1, 5_000)
      yield* redis.command(["SREM", "ews:p:solo", pidA])
      const mark = mon.length
      assert.deepStrictEqual(yield* a.conn.members!("solo"), ["amy", "zed"])
      yield* waitUntil(() => named(mon, "SMEMBERS", mark).length === 1, "the SMEMBERS of solo")
      assert.deepStrictEqual(named(mon, "MGET", mark), [], "an MGET with no key")
      assert.deepStrictEqual(yield* a.conn.members!("solo"), ["amy", "zed"])
      assert.deepStrictEqual(disconnections(a.events), [], "the command connection was dropped")
    }))

  it.scopedLive("history: after `since` (exclusive), at most maxLen entries, skipping undecodable ones and each sender's repeats; [] on failure", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const e1 = yield* xadd(redis, "h", foreign("P", 1, "p1"))
      yield* xadd(redis, "h", "junk")
      const e3 = yield* xadd(redis, "h", foreign("P", 1, "p1 again"))
      const e4 = yield* xadd(redis, "h", foreign("Q", 1, "q1", false))
      const e5 = yield* xadd(redis, "h", foreign("P", 2, "p2"))
      yield* xadd(redis, "h", foreign("P", 2, "p2 again"))
      yield* xadd(redis, "h", foreign("Q", 1, "q1 again"))
      const e8 = yield* xadd(redis, "h", foreign("P", 3, "p3"))
      yield* redis.command(["SET", "ews:t:bad", "not a stream"])
      const { conn } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      conn.interest("h", true)
      yield* waitUntil(() => conn.position!("h") !== undefined, "the position of h")
      const text = (h: ReadonlyArray<Broadcast.HistoryEntry>) => h.map((x) => [x.offset, String(x.message), x.compress])
      assert.deepStrictEqual(text(yield* conn.history!("h", "0-0")), [
        [e1, "p1", true],
        [e4, "q1", false],
        [e5, "p2", true],
        [e8, "p3", true]
      ])
      assert.deepStrictEqual(text(yield* conn.history!("h", e1)), [
        [e3, "p1 again", true],
        [e4, "q1", false],
        [e5, "p2", true],
        [e8, "p3", true]
      ])
      assert.deepStrictEqual(text(yield* conn.history!("h", e8)), [])
      const small = yield* backend({ url: redis.url, mode: "stream", maxLen: 4, commandTimeout: "500 millis", ...fast })
      small.conn.interest("h", true)
      yield* waitUntil(() => small.conn.position!("h") !== undefined, "the position of h (maxLen 4)")
      assert.deepStrictEqual(text(yield* small.conn.history!("h", "0-0")), [[e1, "p1", true], [e4, "q1", false]])
      // a subscribed topic whose position is known answers at once
      const t0 = Date.now()
      yield* small.conn.history!("h", e8)
      assert.isBelow(Date.now() - t0, 400, "no wait for a known position")
      // a topic with no known position waits for one at most commandTimeout (500 ms), then reads;
      // XRANGE on a key that is no stream fails (WRONGTYPE)
      const t1 = Date.now()
      assert.deepStrictEqual(yield* small.conn.history!("bad", "0-0").pipe(within("3 seconds", "history of bad")), [])
      assert.isAtLeast(Date.now() - t1, 490, "waited for a position")
    }))
})

/** Waits until the backend's `role` connection is held by a `CLIENT PAUSE` (its command postponed). */
const paused = (redis: RedisServer, send: (args: Array<string>) => Effect.Effect<unknown>, role: string) =>
  Effect.gen(function*() {
    const flags = yield* pollUntil(
      Effect.map(clientList(redis, send), (cs) => cs.find((c) => c.name.endsWith(`:${role}`))?.flags ?? ""),
      (f) => f.includes("b"),
      5_000
    )
    assert.include(flags, "b", `the ${role} connection blocked by the pause (flags ${flags})`)
  })

describe("BroadcastRedis backend: work arriving while Redis holds a command", () => {
  it.scopedLive("publishes while a batch is on its way shift it out of a full queue; the rest still go: each received once, in order", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const send = yield* admin(redis)
      const { conn, received } = yield* backend({ url: redis.url, mode: "stream", queueSize: 3, commandTimeout: "10 seconds", ...fast })
      conn.interest("w", true)
      yield* waitUntil(() => conn.position!("w") !== undefined, "the position of w")
      const dropped0 = yield* counter(metrics.queueDropped)
      yield* send(["CLIENT", "PAUSE", "10000", "WRITE"])
      yield* Effect.addFinalizer(() => Effect.ignore(redis.command(["CLIENT", "UNPAUSE"])))
      yield* Effect.sync(() => ["a", "b", "c"].forEach((m) => Effect.runSync(conn.publish("w", m, {}))))
      yield* paused(redis, send, "cmd")
      yield* Effect.sync(() => ["d", "e"].forEach((m) => Effect.runSync(conn.publish("w", m, {}))))
      assert.strictEqual((yield* counter(metrics.queueDropped)) - dropped0, 2, "a and b dropped from the queue (already sent)")
      assert.strictEqual(yield* queued, 3)
      const duplicates0 = yield* counter(metrics.duplicates)
      yield* send(["CLIENT", "UNPAUSE"])
      yield* waitUntil(() => received.length >= 5, "a..e received")
      assert.deepStrictEqual(received.map((r) => r.message), ["a", "b", "c", "d", "e"])
      assert.strictEqual(yield* pollUntil(queued, (n) => n === 0, 5_000), 0)
      // c went out with a and b: it left the queue with them and was not written again
      assert.strictEqual(Number(yield* redis.command(["XLEN", "ews:t:w"])), 5, "each message written once")
      assert.strictEqual((yield* counter(metrics.duplicates)) - duplicates0, 0, "no copy for a receiver to drop")
    }))

  it.scopedLive("a presence change while the previous write is on its way is written after it (the signal is remembered)", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const send = yield* admin(redis)
      const { conn } = yield* backend({ url: redis.url, presenceTtl: "1 minute", ...fast })
      const pid = yield* processIdOf(redis)
      yield* send(["CLIENT", "PAUSE", "10000", "WRITE"])
      yield* Effect.addFinalizer(() => Effect.ignore(redis.command(["CLIENT", "UNPAUSE"])))
      conn.presence!("t", ["first"])
      yield* paused(redis, send, "cmd")
      conn.presence!("t", ["second"])
      yield* send(["CLIENT", "UNPAUSE"])
      const value = yield* pollUntil(redis.command(["GET", `ews:p:t:${pid}`]), (v) => String(v) === "[\"second\"]", 3_000)
      assert.strictEqual(String(value), "[\"second\"]")
    }))
})

describe("BroadcastRedis backend: recovering from what Redis answers", () => {
  it.scopedLive("after a reconnection, a subscribed topic with no stream yet settles: one Disconnected, one Reconnected, no loop", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const { conn, events } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      const reconnects0 = yield* counter(metrics.reconnects)
      conn.interest("empty", true)
      yield* waitUntil(() => conn.position!("empty") === "0-0", "the position of a topic with no stream")
      yield* killRole(redis, "reader")
      yield* waitUntil(() => reconnected(events) >= 1, "Reconnected after the reader's loss")
      // XINFO STREAM of the missing stream is refused ("no such key"): a reply, not a lost
      // connection. Nothing is to happen in the next second (a fixed wait, for an absence).
      yield* Effect.sleep("1 second")
      assert.deepStrictEqual(events.map((e) => e._tag), ["Disconnected", "Reconnected"])
      assert.strictEqual((yield* counter(metrics.reconnects)) - reconnects0, 1)
    }))

  it.scopedLive("a topic subscribed while the command connection is down is read as soon as it is back, not after the reader's 5 s block", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const send = yield* admin(redis)
      const mon = yield* monitor(redis)
      const { conn, events, received } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      const reconnects0 = yield* counter(metrics.reconnects)
      conn.interest("a", true)
      yield* waitUntil(() => named(mon, "XREAD").length >= 1, "the reader blocked on a")
      const unblocks0 = yield* unblocks(redis)
      yield* withoutRole(redis, send, "cmd", Effect.gen(function*() {
        yield* waitUntil(() => disconnections(events).length >= 1, "the command connection's loss")
        // no command connection: b's position waits for the next one
        conn.interest("b", true)
      }))
      // the command connection back (it announces no Reconnected: only the reader's return does)
      yield* pollUntil(counter(metrics.reconnects), (n) => n > reconnects0, 5_000)
      yield* waitUntil(() => named(mon, "XREAD").some((c) => c.includes("ews:t:b")), "an XREAD of b", "10 seconds")
      // the reader was unblocked to read b, not left to its 5 s block on a alone
      assert.strictEqual(yield* unblocks(redis), unblocks0 + 1, "the reader went on blocking on a alone")
      const id = yield* xadd(redis, "b", foreign("other", 1, "b1"))
      yield* waitUntil(() => received.length >= 1, "b1 received")
      assert.deepStrictEqual(received, [{ topic: "b", message: "b1", compress: true, offset: id }])
    }))
})

/**
 * How many error replies Redis has given (INFO errorstats), asked on a connection of the test's
 * own (a new connection makes errors of its own: Redis 7.0 refuses node-redis's CLIENT SETINFO).
 */
const errorReplies = (send: (args: ReadonlyArray<string | Buffer>) => Effect.Effect<unknown>) =>
  Effect.map(send(["INFO", "errorstats"]), (info) =>
    [...String(info).matchAll(/errorstat_[A-Z]+:count=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0))

describe("BroadcastRedis backend: members and the reader, exactly", () => {
  it.scopedLive("members of a topic this process has no names in: the others' only; no SREM when no pid is gone", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const a = yield* backend({ url: redis.url, mode: "pubsub", presenceTtl: "1 minute", ...fast })
      const b = yield* backend({ url: redis.url, mode: "pubsub", presenceTtl: "1 minute", ...fast })
      b.conn.presence!("room", ["bob"])
      yield* pollUntil(redis.command(["SCARD", "ews:p:room"]), (n) => Number(n) === 1, 5_000)
      const send = yield* admin(redis)
      const errors0 = yield* errorReplies(send)
      const mark = mon.length
      assert.deepStrictEqual(yield* a.conn.members!("room"), ["bob"])
      assert.deepStrictEqual(named(mon, "SREM", mark), [], "an SREM though no pid was gone")
      assert.strictEqual(yield* errorReplies(send), errors0, "an error reply (an SREM of no member is refused)")
    }))

  it.scopedLive("a reader that stopped blocking is not unblocked: CLIENT UNBLOCK only while its XREAD waits", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const mon = yield* monitor(redis)
      const { conn } = yield* backend({ url: redis.url, mode: "stream", ...fast })
      conn.interest("a", true)
      yield* waitUntil(() => named(mon, "XREAD").length >= 1, "the reader blocked on a")
      const unblocks0 = yield* unblocks(redis)
      conn.interest("a", false)
      yield* pollUntil(unblocks(redis), (n) => n === unblocks0 + 1, 5_000)
      // the reader, unblocked, has no stream to read and waits for one without Redis; another
      // topic that comes and goes meanwhile needs no CLIENT UNBLOCK (a fixed wait: an absence)
      conn.interest("b", true)
      conn.interest("b", false)
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* unblocks(redis), unblocks0 + 1)
    }))
})
