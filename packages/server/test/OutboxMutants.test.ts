/**
 * The outbox on its own, over a real protocol core and an in-memory transport, with a fake
 * compression hook whose off-loop compressions complete when the test says so. Covers what the
 * outbox holds back behind a message being compressed (later messages, prebuilt frames, our Close
 * and the owed Close), the bytes it counts for backpressure while holding, our Close (validated,
 * sent once), which frames it still takes, and the messages-sent count (seen through `touch`).
 * Each test pins down surviving mutants of a StrykerJS run over `src/internal/outbox.ts`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Connection } from "@effect-websocket/protocol/Connection"
import type { MessageCompression } from "@effect-websocket/protocol/Connection"
import { ProtocolViolationError } from "@effect-websocket/protocol/Errors"
import { Effect } from "effect"
import type { ProtocolError } from "../src/Errors.js"
import { resolve } from "../src/internal/options.js"
import { Outbox } from "../src/internal/outbox.js"
import type { OutboxHost } from "../src/internal/outbox.js"
import { MemoryTransport } from "./memory.js"
import type { Frame } from "./memory.js"

/** Messages of at least this many bytes are compressed off the loop. */
const OFFLOAD = 1000

/** A compression hook that "compresses" to the same bytes; off-loop work completes on `finish`. */
const makeCompression = () => {
  const pending: Array<{ input: Uint8Array; done: (payload: Buffer) => void }> = []
  const compression: MessageCompression = {
    decompress: (data) => Buffer.from(data),
    compress: (data) => Buffer.from(data),
    shouldCompress: () => true,
    shouldOffload: (n) => n >= OFFLOAD,
    compressOffloaded: (input, done) => void pending.push({ input, done }),
    close: () => {}
  }
  /** Completes the oldest off-loop compression. */
  const finish = () => {
    const p = pending.shift()!
    p.done(Buffer.from(p.input))
  }
  return { compression, pending, finish }
}

const makeOutbox = (deferClose = true) => {
  const transport = new MemoryTransport()
  const { compression, finish, pending } = makeCompression()
  const core = new Connection({ role: "server", compression, deferClose })
  const log = { closing: 0, touch: 0, terminated: [] as Array<ProtocolError> }
  const host: OutboxHost & { transportEnded: boolean } = {
    transport,
    core,
    options: resolve({}),
    transportEnded: false,
    closing: () => void log.closing++,
    terminate: (e) => void log.terminated.push(e),
    touch: () => void log.touch++,
    fork: (e) => void Effect.runFork(e)
  }
  const outbox = new Outbox(host)
  /** What went out so far. */
  const frames = () => transport.frames()
  return { outbox, host, core, transport, log, frames, finish, pending }
}

const big = (c = "b") => c.repeat(OFFLOAD)
const TEXT = 0x1
const BINARY = 0x2
const CLOSE = 0x8
const closeCode = (f: Frame) => f.payload.readUInt16BE(0)

describe("outbox", () => {
  it.effect("send refuses once the transport ended", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      t.host.transportEnded = true
      assert.isFalse(t.outbox.send("x"))
      t.outbox.flush()
      assert.strictEqual(t.core.bufferedAmount, 0)
    }))

  it.effect("send refuses once our Close went out", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      assert.isUndefined(t.outbox.close(1000, "bye"))
      assert.isFalse(t.outbox.send("x"))
      assert.deepStrictEqual(t.frames().map((f) => f.op), [CLOSE])
    }))

  it.effect("a second close is a no-op, an invalid one fails without closing", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      assert.strictEqual(t.outbox.close(999, "")?.kind, "CloseCode")
      assert.strictEqual(t.log.closing, 0)
      assert.deepStrictEqual(t.frames(), [])
      assert.isTrue(t.outbox.takesFrames)
      assert.isUndefined(t.outbox.close(1000, ""))
      assert.strictEqual(t.log.closing, 1)
      assert.isUndefined(t.outbox.close(1001, ""))
      assert.isUndefined(t.outbox.close(999, ""))
      assert.strictEqual(t.log.closing, 1)
      assert.deepStrictEqual(t.frames().map((f) => f.op), [CLOSE])
    }))

  it.effect("prebuilt frames are taken only while open and the transport is there", () =>
    Effect.sync(() => {
      const frame = Uint8Array.from([0x82, 0x01, 0x41])
      const t = makeOutbox()
      t.host.transportEnded = true
      t.outbox.writePrebuilt(frame)
      assert.deepStrictEqual(t.transport.chunks, [])
      assert.strictEqual(t.log.touch, 0)
      t.host.transportEnded = false
      t.outbox.writePrebuilt(frame)
      assert.deepStrictEqual(t.frames().map((f) => f.payload.toString()), ["A"])
      t.outbox.close(1000, "")
      assert.isFalse(t.outbox.takesFrames)
      t.outbox.writePrebuilt(frame)
      assert.deepStrictEqual(t.frames().map((f) => f.op), [BINARY, CLOSE])
    }))

  it.effect("an offloaded message counts as sent", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      assert.isTrue(t.outbox.send(big()))
      assert.strictEqual(t.pending.length, 1)
      assert.strictEqual(t.log.touch, 0)
      t.finish()
      const fs = t.frames()
      assert.deepStrictEqual(fs.map((f) => [f.op, f.rsv1]), [[TEXT, true]])
      assert.strictEqual(t.log.touch, 1)
    }))

  it.effect("held messages, frames and their bytes; compress: false is kept", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      assert.isTrue(t.outbox.send(big()))
      assert.strictEqual(t.outbox.bufferedBytes(), OFFLOAD)
      assert.isTrue(t.outbox.send("small", { compress: false }))
      assert.strictEqual(t.outbox.bufferedBytes(), OFFLOAD + 5)
      t.outbox.writePrebuilt(Uint8Array.from([0x82, 0x01, 0x41]))
      assert.strictEqual(t.outbox.bufferedBytes(), OFFLOAD + 5 + 3)
      assert.deepStrictEqual(t.transport.chunks, [])
      t.finish()
      assert.strictEqual(t.outbox.bufferedBytes(), 0)
      const fs = t.frames()
      assert.deepStrictEqual(fs.map((f) => [f.op, f.rsv1, f.payload.length]), [
        [TEXT, true, OFFLOAD],
        [TEXT, false, 5],
        [BINARY, false, 1]
      ])
    }))

  it.effect("our Close is held behind the offloaded message; nothing is taken after it", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      t.outbox.send(big())
      assert.strictEqual(t.outbox.close(999, "")?.kind, "CloseCode")
      assert.isTrue(t.outbox.takesFrames)
      assert.isUndefined(t.outbox.close(4000, "later"))
      assert.isFalse(t.outbox.takesFrames)
      assert.isUndefined(t.outbox.close(999, ""))
      assert.isFalse(t.outbox.send("after"))
      t.outbox.writePrebuilt(Uint8Array.from([0x82, 0x01, 0x41]))
      assert.strictEqual(t.log.closing, 0)
      assert.deepStrictEqual(t.transport.chunks, [])
      t.finish()
      const fs = t.frames()
      assert.deepStrictEqual(fs.map((f) => f.op), [TEXT, CLOSE])
      assert.strictEqual(closeCode(fs[1]!), 4000)
      assert.strictEqual(t.log.closing, 1)
    }))

  it.effect("send refuses while holding once the core is no longer open", () =>
    Effect.sync(() => {
      const t = makeOutbox(false)
      t.outbox.send(big())
      t.core.fail(new ProtocolViolationError({ reason: "test" }))
      assert.notStrictEqual(t.core.state, "OPEN")
      assert.isFalse(t.outbox.send("after"))
      assert.strictEqual(t.outbox.bufferedBytes() - t.core.bufferedAmount, OFFLOAD)
    }))

  it.effect("the owed Close goes after what is held, once", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      t.outbox.send(big())
      t.core.fail(new ProtocolViolationError({ reason: "test" }))
      assert.isTrue(t.core.closeOwed)
      t.outbox.replyClose()
      t.outbox.replyClose()
      t.finish()
      const fs = t.frames()
      assert.deepStrictEqual(fs.map((f) => f.op), [TEXT, CLOSE])
      assert.strictEqual(closeCode(fs[1]!), 1002)
    }))

  it.effect("the owed Close is queued behind a held message too", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      t.outbox.send(big())
      t.outbox.send("small")
      t.core.fail(new ProtocolViolationError({ reason: "test" }))
      t.outbox.replyClose()
      t.finish()
      const fs = t.frames()
      assert.deepStrictEqual(fs.map((f) => f.op), [TEXT, TEXT, CLOSE])
    }))

  it.effect("dropHeld forgets what is held, its bytes and the held Close", () =>
    Effect.sync(() => {
      const t = makeOutbox()
      t.outbox.send(big())
      t.outbox.send("small")
      t.outbox.close(1000, "")
      t.outbox.dropHeld()
      assert.strictEqual(t.outbox.bufferedBytes(), 0)
      assert.isTrue(t.outbox.takesFrames)
      t.finish()
      assert.deepStrictEqual(t.transport.chunks, [])
      assert.strictEqual(t.log.closing, 0)
    }))
})
