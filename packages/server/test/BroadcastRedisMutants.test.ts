/**
 * The Redis backend's wire format (`encodeMessage`/`decodeMessage`: flags, truncated buffers at
 * their exact boundary lengths), its typed `InvalidUrl`/`Connect` errors and their details, and
 * the defaults of `connectRedis` seen in Redis's keys (mode "stream", the presence set's name).
 * Pins down survivors of a StrykerJS run over `src/BroadcastRedis.ts` lines 1–240.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { vi } from "vitest"
import * as Broadcast from "../src/Broadcast.js"
import * as BroadcastRedis from "../src/BroadcastRedis.js"
import { freePort, redisTopics, serve, startRedis } from "./redisServer.js"
import { connect, pollUntil } from "./utils.js"

const { decodeMessage, encodeMessage } = BroadcastRedis

/** The typed failure of building the layer with `options`. */
const layerFailure = (options: BroadcastRedis.Options) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Effect.scoped(redisTopics(options)))
    assert.isTrue(Exit.isFailure(exit), "the layer should fail")
    const failure = Cause.failureOption((exit as Exit.Failure<unknown, Broadcast.BackendError>).cause)
    assert.isTrue(failure._tag === "Some", "a typed failure")
    return (failure as { value: Broadcast.BackendError }).value
  })

/** A message's bytes by hand: flags, seq, publisher id length and id, body. */
const raw = (flags: number, seq: number, publisher: string, body: Buffer) => {
  const head = Buffer.alloc(10)
  head[0] = flags
  head.writeDoubleBE(seq, 1)
  head[9] = publisher.length
  return Buffer.concat([head, Buffer.from(publisher, "latin1"), body])
}

/** `decodeMessage`, failing the test with the length if it throws instead of answering `undefined`. */
const decode = (b: Buffer) => {
  try {
    return decodeMessage(b)
  } catch (e) {
    return assert.fail(`decodeMessage threw on ${b.length} bytes instead of returning undefined: ${String(e)}`)
  }
}

describe("BroadcastRedis wire format", () => {
  it("flags: bit 0 binary, bit 1 not compressed; a round trip keeps message type and compress", () => {
    const pub = Buffer.from("p1", "latin1")
    assert.strictEqual(encodeMessage(pub, 1, "hi", true)[0], 0)
    assert.strictEqual(encodeMessage(pub, 1, "hi", false)[0], 2)
    assert.strictEqual(encodeMessage(pub, 1, new Uint8Array([1, 2]), true)[0], 1)
    assert.strictEqual(encodeMessage(pub, 1, new Uint8Array([1, 2]), false)[0], 3)
    for (const compress of [true, false]) {
      const text = decodeMessage(encodeMessage(pub, 7, "héllo", compress))!
      assert.deepStrictEqual(text, { publisher: "p1", seq: 7, message: "héllo", compress })
      const binary = decodeMessage(encodeMessage(pub, 8, new Uint8Array([104, 105]), compress))!
      assert.instanceOf(binary.message, Uint8Array)
      assert.deepStrictEqual(Array.from(binary.message as Uint8Array), [104, 105])
      assert.strictEqual(binary.compress, compress)
      assert.strictEqual(binary.seq, 8)
    }
  })

  it("decode reads the flags of hand-made bytes", () => {
    const body = Buffer.from("ab")
    assert.deepStrictEqual(decodeMessage(raw(0, 3, "x", body)), { publisher: "x", seq: 3, message: "ab", compress: true })
    assert.deepStrictEqual(decodeMessage(raw(2, 3, "x", body))!.compress, false)
    const bin = decodeMessage(raw(1, 3, "x", body))!
    assert.instanceOf(bin.message, Uint8Array)
    assert.deepStrictEqual(Array.from(bin.message as Uint8Array), [97, 98])
    assert.strictEqual(bin.compress, true)
    assert.strictEqual(decodeMessage(raw(3, 3, "x", body))!.compress, false)
  })

  it("a buffer shorter than the header, or than header + publisher id, is undefined; exact lengths decode", () => {
    for (let n = 0; n < 10; n++) assert.isUndefined(decode(Buffer.alloc(n, 0)), `length ${n}`)
    // exactly the header, no publisher, no body
    assert.deepStrictEqual(decodeMessage(raw(0, 5, "", Buffer.alloc(0))), { publisher: "", seq: 5, message: "", compress: true })
    // a publisher id of 5 bytes, only 0..4 of them present
    const full = raw(0, 9, "abcde", Buffer.alloc(0))
    assert.strictEqual(full.length, 15)
    for (let n = 10; n < 15; n++) assert.isUndefined(decode(full.subarray(0, n)), `length ${n} of 15`)
    // exactly header + publisher id, empty body
    assert.deepStrictEqual(decodeMessage(full), { publisher: "abcde", seq: 9, message: "", compress: true })
    assert.deepStrictEqual(decodeMessage(encodeMessage(Buffer.from("abcde"), 9, "", true)), decodeMessage(full))
  })
})

describe("BroadcastRedis: typed errors of the layer", () => {
  it.scopedLive("a URL of another protocol, or without host, is InvalidUrl with a detail naming the problem", () =>
    Effect.gen(function*() {
      const http = yield* layerFailure({ url: "http://x" })
      assert.strictEqual(http.reason, "InvalidUrl")
      assert.strictEqual(http.detail, "http://x: protocol http:")
      const noHost = yield* layerFailure({ url: "redis://" })
      assert.strictEqual(noHost.reason, "InvalidUrl")
      assert.strictEqual(noHost.detail, "redis://: no host")
    }))

  it.scopedLive("rediss:// is a valid URL: nothing listening is Connect or Timeout, not InvalidUrl", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const error = yield* layerFailure({ url: `rediss://127.0.0.1:${port}`, connectTimeout: "500 millis" })
      assert.include(["Connect", "Timeout"], error.reason, `${error.reason}: ${error.detail}`)
    }))

  it.scopedLive("the redis package failing to load is Connect, naming the package", () =>
    Effect.gen(function*() {
      vi.doMock("redis", () => {
        throw new Error("no redis here")
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => vi.doUnmock("redis")))
      const error = yield* layerFailure({ url: "redis://127.0.0.1:1" })
      assert.strictEqual(error.reason, "Connect")
      assert.isTrue(error.detail.startsWith("the redis package: Error: "), error.detail)
      assert.isAbove(error.detail.length, "the redis package: Error: ".length, error.detail)
    }))
})

describe("BroadcastRedis: defaults seen in Redis", () => {
  it.scopedLive("the default mode is \"stream\": a publish is a stream entry; presence is in ews:p:<topic>", () =>
    Effect.gen(function*() {
      const redis = yield* startRedis()
      const server = yield* serve(yield* redisTopics({ url: redis.url }))
      const client = yield* connect(`${server.url}/room?name=ada`)
      const members = yield* pollUntil(redis.command(["SMEMBERS", "ews:p:room"]), (m) => (m as Array<unknown>).length === 1, 5_000)
      assert.strictEqual((members as Array<unknown>).length, 1, "this process in the presence set ews:p:room")
      client.send("hello")
      const type = yield* pollUntil(redis.command(["TYPE", "ews:t:room"]), (t) => String(t) === "stream", 5_000)
      assert.strictEqual(String(type), "stream", "the publish went to the stream ews:t:room")
    }))
})
