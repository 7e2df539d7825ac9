/**
 * Unit tests of the broadcast registry (`src/internal/broadcast.ts`): `deliveryOf`'s Shared
 * key and window, `compareOffsets` on `ms-seq` ids and counters, the `Registry`'s interest and
 * presence callbacks, holding and releasing live messages for a resuming member (`MAX_HELD`
 * included), `publish` (non-accepting and slow subscribers, the compression threshold, the
 * slow subscriber's 1008 reason) with its metrics, and `close`. They pin down survivors of a
 * StrykerJS run over `src/internal/broadcast.ts`.
 *
 * The subscribers are handles with a scripted port (what `portOf` finds under `PortId`): each
 * records the frames written to it, the messages sent through it and how it was terminated,
 * so every rule is checked on what the registry hands to a connection.
 */
import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import type { PerMessageDeflateParams, ResolvedPerMessageDeflateOptions } from "@effect-websocket/protocol/PerMessageDeflate"
import { assert, describe, it } from "@effect/vitest"
import { Effect, ExecutionStrategy, Metric, Scope } from "effect"
import type { Held, LocalResult, Member, Policy } from "../src/internal/broadcast.js"
import { compareOffsets, deliveryOf, MAX_HELD, Registry } from "../src/internal/broadcast.js"
import type { ConnectionPort } from "../src/internal/port.js"
import { PortId } from "../src/internal/port.js"
import * as Metrics from "../src/Metrics.js"
import type { Message, SendOptions, WebSocket } from "../src/WebSocket.js"
import { parseFrames } from "./memory.js"

interface Fake {
  readonly ws: WebSocket<unknown>
  readonly port: Mutable
  /** Frames handed to `writeFrame`. */
  readonly frames: Array<Buffer>
  /** Messages handed to the handle's `unsafeSend`, with their options. */
  readonly sends: Array<{ readonly message: Message; readonly options: SendOptions | undefined }>
  readonly terminated: Array<ProtocolError>
}

type Mutable = { -readonly [K in keyof ConnectionPort]: ConnectionPort[K] } & { buffered: number }

const compression = (
  serverNoContextTakeover: boolean,
  serverMaxWindowBits: number,
  threshold = 0
): ConnectionPort["compression"] => ({
  options: { threshold, level: 6, memLevel: 8 } as unknown as ResolvedPerMessageDeflateOptions,
  params: { serverNoContextTakeover, serverMaxWindowBits } as unknown as PerMessageDeflateParams
})

/** A handle with a scripted port; `sendOk` decides what `unsafeSend` answers. */
const fake = (
  options: {
    readonly compression?: ConnectionPort["compression"]
    readonly transportEnded?: boolean
    readonly sendOk?: (message: Message) => boolean
  } = {}
): Effect.Effect<Fake, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const frames: Array<Buffer> = []
    const sends: Fake["sends"] = []
    const terminated: Array<ProtocolError> = []
    const port = {
      id: 1,
      scope,
      accepting: true,
      transportEnded: options.transportEnded ?? false,
      transportClosed: Effect.void,
      released: Effect.void,
      compression: options.compression,
      buffered: 0,
      bufferedBytes() {
        return port.buffered
      },
      sendNow: () => true,
      writeFrame(frame: Uint8Array) {
        frames.push(Buffer.from(frame))
      },
      startClose: () => {},
      terminate(error: ProtocolError) {
        terminated.push(error)
      },
      checkDeadlines: () => {},
      destroy: () => {},
      interruptHandler: () => false
    } as Mutable
    const ws = {
      [PortId]: port,
      unsafeSend(message: Message, opts?: SendOptions) {
        sends.push({ message, options: opts })
        return options.sendOk?.(message) ?? true
      }
    } as unknown as WebSocket<unknown>
    return { ws, port, frames, sends, terminated }
  })

/** A handle that is not one of the engine's connections (no port). */
const wrapper = (): WebSocket<unknown> => ({ unsafeSend: () => true }) as unknown as WebSocket<unknown>

const recorded = () => {
  const interest: Array<[string, boolean]> = []
  const presence: Array<[string, ReadonlyArray<string>]> = []
  const watched: Array<WebSocket<unknown>> = []
  const registry = new Registry(
    (topic, subscribed) => interest.push([topic, subscribed]),
    (ws) => watched.push(ws),
    (topic, names) => presence.push([topic, [...names]])
  )
  return { registry, interest, presence, watched }
}

const DROP: Policy = { maxBufferedBytes: 100, onSlow: "drop" }
const CLOSE: Policy = { maxBufferedBytes: 100, onSlow: "close" }

const emptyResult = (): LocalResult => ({ subscribers: 0, sent: 0, dropped: 0, closed: 0, compressions: 0 })

const publish = (registry: Registry, topic: string, message: Message, compress = true, offset?: string) => {
  const result = emptyResult()
  const fallbacks: Array<[Member, Policy]> = []
  registry.publish(topic, message, compress, offset, result, fallbacks)
  return { result, fallbacks }
}

const count = (counter: Metric.Metric.Counter<number>) => Metric.value(counter).pipe(Effect.map((s) => s.count))

/** The counters' values before and after `f`. */
const deltas = <A>(
  counters: ReadonlyArray<Metric.Metric.Counter<number>>,
  f: () => A
): Effect.Effect<[A, Array<number>]> =>
  Effect.gen(function*() {
    const before = yield* Effect.forEach(counters, count)
    const a = f()
    const after = yield* Effect.forEach(counters, count)
    return [a, after.map((v, i) => v - before[i]!)] as [A, Array<number>]
  })

const payloads = (fake: Fake) => fake.sends.map((s) => s.message)

// First in the file on purpose: it needs a process where these counters were never touched
// (Vitest runs each test file in its own process). A counter's series is registered by its
// first update, so a publish that delivers, drops, closes and compresses nothing must not
// update (and so expose at 0) any of them.
describe("publish with nothing to count", () => {
  const untouched = [
    "websocket_broadcast_delivered_total",
    "websocket_broadcast_dropped_total",
    "websocket_broadcast_slow_closed_total",
    "websocket_broadcast_compressions_total",
    "websocket_deflate_uncompressed_bytes_sent_total",
    "websocket_deflate_compressed_bytes_sent_total",
    "websocket_messages_sent_total",
    "websocket_bytes_sent_total"
  ]
  const registered = Effect.map(Metric.snapshot, (pairs) => new Set(pairs.map((p) => p.metricKey.name)))

  it.scoped("registers no counter series it did not add to", () =>
    Effect.gen(function*() {
      const before = yield* registered
      assert.deepStrictEqual(untouched.filter((name) => before.has(name)), [], "fresh process: counters untouched")
      const { registry } = recorded()
      const a = yield* fake()
      registry.subscribe("t", a.ws, DROP, false)
      a.port.accepting = false
      const { result } = publish(registry, "t", "x")
      assert.strictEqual(result.subscribers, 1)
      const after = yield* registered
      assert.isTrue(after.has("websocket_broadcast_publishes_total"))
      assert.deepStrictEqual(untouched.filter((name) => after.has(name)), [])
    }))
})

describe("deliveryOf", () => {
  it.scoped("Shared keeps the agreed window above 9 and keys by window/level/memLevel", () =>
    Effect.gen(function*() {
      const a = yield* fake({ compression: compression(true, 15) })
      const d = deliveryOf(a.port)
      assert.strictEqual(d._tag, "Shared")
      if (d._tag !== "Shared") return
      assert.strictEqual(d.windowBits, 15)
      assert.strictEqual(d.key, "15/6/8")
      const b = yield* fake({ compression: compression(true, 12) })
      const e = deliveryOf(b.port)
      assert.strictEqual(e._tag === "Shared" ? e.key : undefined, "12/6/8")
    }))

  it.scoped("two Shared settings are compressed once each", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake({ compression: compression(true, 15) })
      const b = yield* fake({ compression: compression(true, 12) })
      registry.subscribe("t", a.ws, DROP, false)
      registry.subscribe("t", b.ws, DROP, false)
      const { result } = publish(registry, "t", "hello hello hello hello")
      assert.strictEqual(result.compressions, 2)
      assert.strictEqual(result.sent, 2)
    }))
})

describe("compareOffsets", () => {
  it("orders counters", () => {
    assert.strictEqual(compareOffsets("5", "3"), 1)
    assert.strictEqual(compareOffsets("3", "5"), -1)
    assert.strictEqual(compareOffsets("12", "3"), 1)
    assert.strictEqual(compareOffsets("2", "1"), 1)
    assert.strictEqual(compareOffsets("7", "7"), 0)
  })

  it("orders ms-seq ids by ms first, then by seq", () => {
    assert.strictEqual(compareOffsets("2-0", "1-5"), 1)
    assert.strictEqual(compareOffsets("1-5", "2-0"), -1)
    assert.strictEqual(compareOffsets("1-2", "1-1"), 1)
    assert.strictEqual(compareOffsets("1-1", "1-2"), -1)
    assert.strictEqual(compareOffsets("1-2", "1-2"), 0)
  })

  it("a counter equals the id of its ms with seq 0", () => {
    assert.strictEqual(compareOffsets("5-0", "5"), 0)
    assert.strictEqual(compareOffsets("5", "5-0"), 0)
    assert.strictEqual(compareOffsets("5", "5-1"), -1)
  })

  it("a leading dash is an empty ms (0) followed by the seq", () => {
    assert.strictEqual(compareOffsets("-5", "0-3"), 1)
    assert.strictEqual(compareOffsets("0-2", "-3"), -1)
    assert.strictEqual(compareOffsets("0-5", "-5"), 0)
  })
})

describe("Registry: interest and presence", () => {
  it.scoped("interest is reported for the first subscriber only", () =>
    Effect.gen(function*() {
      const { registry, interest } = recorded()
      const a = yield* fake()
      const b = yield* fake()
      assert.isTrue(registry.subscribe("t", a.ws, DROP, false))
      assert.isTrue(registry.subscribe("t", b.ws, DROP, false))
      assert.deepStrictEqual(interest, [["t", true]])
      registry.unsubscribe("t", a.ws)
      registry.unsubscribe("t", b.ws)
      assert.deepStrictEqual(interest, [["t", true], ["t", false]])
    }))

  it.scoped("presence is reported only for named subscribers, sorted", () =>
    Effect.gen(function*() {
      const { registry, presence } = recorded()
      const a = yield* fake()
      const b = yield* fake()
      const c = yield* fake()
      // named before subscribing: nothing to report yet
      registry.setPresence(b.ws, "t", "bob")
      assert.deepStrictEqual(presence, [])
      // unnamed subscriber: no presence change
      registry.subscribe("t", c.ws, DROP, false)
      assert.deepStrictEqual(presence, [])
      registry.subscribe("t", b.ws, DROP, false)
      assert.deepStrictEqual(presence, [["t", ["bob"]]])
      registry.subscribe("t", a.ws, DROP, false)
      assert.deepStrictEqual(presence.length, 1)
      // named after subscribing: reported
      registry.setPresence(a.ws, "t", "alice")
      assert.deepStrictEqual(presence, [["t", ["bob"]], ["t", ["alice", "bob"]]])
      assert.deepStrictEqual(registry.presence("t"), ["alice", "bob"])
      // an unnamed subscriber leaving changes no presence
      registry.unsubscribe("t", c.ws)
      assert.strictEqual(presence.length, 2)
      registry.unsubscribe("t", a.ws)
      assert.deepStrictEqual(presence.at(-1), ["t", ["bob"]])
    }))

  it.scoped("a connection whose transport ended is not subscribed", () =>
    Effect.gen(function*() {
      const { registry, interest } = recorded()
      const a = yield* fake({ transportEnded: true })
      assert.isFalse(registry.subscribe("t", a.ws, DROP, false))
      assert.strictEqual(registry.subscriberCount("t"), 0)
      assert.deepStrictEqual(interest, [])
    }))

  it.scoped("a closed registry takes no subscriber and no presence", () =>
    Effect.gen(function*() {
      const { interest, presence, registry, watched } = recorded()
      const a = yield* fake()
      assert.isTrue(registry.subscribe("t", a.ws, DROP, false))
      registry.close()
      assert.strictEqual(registry.subscriberCount("t"), 0)
      assert.deepStrictEqual(registry.topicsOf(a.ws), [])
      assert.isFalse(registry.subscribe("u", a.ws, DROP, false))
      assert.strictEqual(registry.subscriberCount("u"), 0)
      assert.deepStrictEqual(interest, [["t", true]])
      const w = wrapper()
      registry.setPresence(w, "t", "walt")
      assert.isFalse(registry.subscribe("t", w, DROP, false))
      assert.deepStrictEqual(watched, [])
      assert.deepStrictEqual(presence, [])
      assert.deepStrictEqual(registry.topicsOf(w), [])
    }))
})

describe("Registry: hold and release", () => {
  it.scoped("messages are held until release, then history up to upTo, then later kept ones", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake()
      registry.subscribe("t", a.ws, DROP, true)
      publish(registry, "t", "k2", false, "2")
      publish(registry, "t", "k3", false, "3")
      publish(registry, "t", "k4", true, "4")
      assert.deepStrictEqual(a.frames, [], "held: nothing written live")
      const history: Array<Held> = [
        { offset: "1", message: "h1", compress: false },
        { offset: "2", message: "h2", compress: true },
        { offset: "3", message: "h3", compress: false }
      ]
      const [, [d]] = yield* deltas([Metrics.broadcastDelivered], () => registry.release("t", a.ws, history, "2"))
      assert.deepStrictEqual(payloads(a), ["h1", "h2", "k3", "k4"])
      assert.deepStrictEqual(a.sends.map((s) => s.options?.compress), [false, true, false, true])
      assert.strictEqual(d, 4)
      // live again
      publish(registry, "t", "live", false, "5")
      assert.strictEqual(a.frames.length, 1)
    }))

  it.scoped("delivered counts only the kept messages the connection took", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake({ sendOk: (m) => m !== "k2" })
      registry.subscribe("t", a.ws, DROP, true)
      publish(registry, "t", "k1", false, "1")
      publish(registry, "t", "k2", false, "2")
      const [, [d]] = yield* deltas([Metrics.broadcastDelivered], () => registry.release("t", a.ws, [], undefined))
      assert.deepStrictEqual(payloads(a), ["k1", "k2"])
      assert.strictEqual(d, 1)
    }))

  it.scoped("releasing one topic keeps the others held", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake()
      registry.subscribe("t", a.ws, DROP, true)
      registry.subscribe("u", a.ws, DROP, true)
      registry.release("t", a.ws, [], undefined)
      publish(registry, "u", "held", false, "1")
      assert.deepStrictEqual(a.frames, [], "u is still held")
      registry.release("u", a.ws, [], undefined)
      assert.deepStrictEqual(payloads(a), ["held"])
      publish(registry, "u", "live", false, "2")
      assert.strictEqual(a.frames.length, 1)
    }))

  it.scoped("at most MAX_HELD messages are kept, the rest dropped", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake()
      registry.subscribe("t", a.ws, DROP, true)
      const first = publish(registry, "t", "m", false, "1")
      assert.strictEqual(first.result.dropped, 0)
      for (let i = 2; i <= MAX_HELD; i++) publish(registry, "t", "m", false, String(i))
      const [over, [dropped]] = yield* deltas(
        [Metrics.broadcastDropped],
        () => publish(registry, "t", "m", false, String(MAX_HELD + 1))
      )
      assert.strictEqual(over.result.dropped, 1)
      assert.strictEqual(dropped, 1)
      registry.release("t", a.ws, [], undefined)
      assert.strictEqual(a.sends.length, MAX_HELD)
      assert.deepStrictEqual(a.frames, [])
    }))
})

describe("Registry: publish", () => {
  it.scoped("a connection that no longer accepts data gets nothing", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake()
      registry.subscribe("t", a.ws, DROP, false)
      a.port.accepting = false
      const { result } = publish(registry, "t", "x")
      assert.deepStrictEqual(a.frames, [])
      assert.strictEqual(result.sent, 0)
    }))

  it.scoped("exactly at the buffered-bytes limit is not slow", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake()
      registry.subscribe("t", a.ws, DROP, false)
      a.port.buffered = DROP.maxBufferedBytes
      const { result } = publish(registry, "t", "x")
      assert.strictEqual(result.sent, 1)
      assert.strictEqual(result.dropped, 0)
      a.port.buffered = DROP.maxBufferedBytes + 1
      const again = publish(registry, "t", "x")
      assert.strictEqual(again.result.sent, 0)
      assert.strictEqual(again.result.dropped, 1)
    }))

  it.scoped("a payload exactly at the threshold is compressed", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake({ compression: compression(true, 15, 10) })
      registry.subscribe("t", a.ws, DROP, false)
      const { result } = publish(registry, "t", "0123456789")
      assert.strictEqual(result.compressions, 1)
      assert.isTrue(parseFrames(a.frames[0]!)[0]!.rsv1)
      const short = publish(registry, "t", "012345678")
      assert.strictEqual(short.result.compressions, 0)
      assert.isFalse(parseFrames(a.frames[1]!)[0]!.rsv1)
    }))

  it.scoped("metrics: delivered, messages and bytes sent, deflated bytes", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const plain = yield* fake()
      const shared = yield* fake({ compression: compression(true, 15) })
      registry.subscribe("t", plain.ws, DROP, false)
      registry.subscribe("t", shared.ws, DROP, false)
      const message = "abcabcabcabcabcabcabcabcabcabc"
      const [{ result }, [delivered, messages, bytes, deflatedIn, deflatedOut, compressions]] = yield* deltas(
        [
          Metrics.broadcastDelivered,
          Metrics.messagesSent,
          Metrics.bytesSent,
          Metrics.deflateUncompressedBytesSent,
          Metrics.deflateCompressedBytesSent,
          Metrics.broadcastCompressions
        ],
        () => publish(registry, "t", message)
      )
      assert.strictEqual(result.sent, 2)
      assert.strictEqual(delivered, 2)
      assert.strictEqual(messages, 2)
      assert.strictEqual(bytes, plain.frames[0]!.length + shared.frames[0]!.length)
      assert.strictEqual(deflatedIn, message.length)
      const compressed = parseFrames(shared.frames[0]!)[0]!
      assert.isTrue(compressed.rsv1)
      assert.strictEqual(deflatedOut, compressed.payload.length)
      assert.isAbove(deflatedOut, 0)
      assert.strictEqual(compressions, 1)
    }))

  it.scoped("a slow subscriber under 'close' is failed with 1008 'subscriber too slow', counted and unsubscribed", () =>
    Effect.gen(function*() {
      const { registry } = recorded()
      const a = yield* fake()
      const b = yield* fake()
      registry.subscribe("t", a.ws, CLOSE, false)
      registry.subscribe("t", b.ws, CLOSE, false)
      a.port.buffered = CLOSE.maxBufferedBytes + 1
      const [{ result }, [slowClosed]] = yield* deltas([Metrics.broadcastSlowClosed], () => publish(registry, "t", "x"))
      assert.strictEqual(result.closed, 1)
      assert.strictEqual(result.sent, 1)
      assert.strictEqual(slowClosed, 1)
      assert.strictEqual(a.terminated.length, 1)
      const error = a.terminated[0]!
      assert.strictEqual(error._tag, "PolicyViolationError")
      assert.strictEqual(error.closeCode, 1008)
      assert.strictEqual(error.message, "policy violation (1008): subscriber too slow")
      assert.deepStrictEqual(registry.topicsOf(a.ws), [])
      assert.strictEqual(registry.subscriberCount("t"), 1)
    }))
})
