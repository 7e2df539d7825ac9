/**
 * The frame decoder and encoder on their own (RFC 6455 §5.2), through a sink that records
 * what the decoder hands over: length boundaries, every header rule with its close code and
 * reason, control-frame limits, random masks.
 */
import { assert, describe, it } from "@effect/vitest"
import { MessageTooBigError, ProtocolViolationError } from "../src/Errors.js"
import type { ProtocolError } from "../src/Errors.js"
import { encodeFrame, FrameDecoder, headerLength, isControl, randomMask, writeHeader } from "../src/Frame.js"
import type { FrameHeader, FrameSink, Role } from "../src/Frame.js"
import { globalValue } from "effect/GlobalValue"
import { i32, kernel } from "../src/internal/simd.js"
import { applyMask } from "../src/Frame.js"
import { hex } from "./helpers.js"

/** A sink that records each frame's header and payload. */
const recording = () => {
  const frames: Array<{ header: FrameHeader; payload: Buffer }> = []
  let parts: Array<Buffer> = []
  let header: FrameHeader | undefined
  const sink: FrameSink = {
    onFrameHeader: (h) => {
      header = { ...h }
      parts = []
      return undefined
    },
    onFramePayload: (buf, start, end) => {
      parts.push(Buffer.from(buf.subarray(start, end)))
      return undefined
    },
    onFrameEnd: () => {
      frames.push({ header: header!, payload: Buffer.concat(parts) })
      return undefined
    }
  }
  return { frames, sink }
}

const decode = (
  bytes: Uint8Array,
  options: { role?: Role; maxFrameSize?: number; allowRsv1?: boolean } = {}
) => {
  const { frames, sink } = recording()
  const decoder = new FrameDecoder(sink, {
    role: options.role ?? "server",
    maxFrameSize: options.maxFrameSize ?? 1 << 20,
    allowRsv1: options.allowRsv1 ?? false
  })
  const error = decoder.push(Buffer.from(bytes))
  return { decoder, error, frames }
}

const encoded = (opcode: number, payload: Uint8Array, options: Parameters<typeof encodeFrame>[2] = {}) =>
  Buffer.concat(encodeFrame(opcode, payload, options))

const MASK = Uint8Array.of(1, 2, 3, 4)

const violation = (error: ProtocolError | undefined, reason: string) => {
  assert.instanceOf(error, ProtocolViolationError)
  assert.strictEqual(error!.closeCode, 1002)
  assert.strictEqual(error!.reason, reason)
}

describe("RFC 6455 §5.2 payload length: 7-bit, 16-bit and 64-bit forms at their edges", () => {
  for (const length of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
    it(`${length} bytes: the minimal form, masked and unmasked, decoded back whole`, () => {
      const payload = Buffer.alloc(length, 0x5a)
      const size = length < 126 ? 2 : length < 65536 ? 4 : 10
      assert.strictEqual(headerLength(length, false), size)
      assert.strictEqual(headerLength(length, true), size + 4)
      const masked = encoded(2, payload, { mask: MASK })
      assert.strictEqual(masked.length, size + 4 + length)
      const server = decode(masked)
      assert.strictEqual(server.error, undefined)
      assert.strictEqual(server.frames.length, 1)
      assert.strictEqual(server.frames[0]!.header.length, length)
      assert.isTrue(server.frames[0]!.payload.equals(payload))
      const client = decode(encoded(2, payload), { role: "client" })
      assert.strictEqual(client.error, undefined)
      assert.isTrue(client.frames[0]!.payload.equals(payload))
    })
  }

  it("writes a 64-bit length above 2^32 in network order", () => {
    const target = new Uint8Array(10)
    const length = 2 ** 32 + 5
    assert.strictEqual(writeHeader(target, 0, true, false, 2, length, undefined), 10)
    assert.strictEqual(Buffer.from(target).toString("hex"), "827f" + "0000000100000005")
  })
})

describe("RFC 6455 §5.2 header rules: each fails with its close code and reason", () => {
  it("RSV2/RSV3 without an extension", () => {
    violation(decode(hex("a280 01020304")).error, "RSV2/RSV3 set without an extension")
    violation(decode(hex("9280 01020304")).error, "RSV2/RSV3 set without an extension")
  })

  it("RSV1 without permessage-deflate; with it, RSV1 on a data frame is accepted", () => {
    violation(decode(hex("c280 01020304")).error, "RSV1 set without an extension")
    assert.strictEqual(decode(hex("c280 01020304"), { allowRsv1: true }).error, undefined)
  })

  it("reserved opcodes 3-7 and B-F", () => {
    for (const op of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      violation(decode(Uint8Array.of(0x80 | op, 0x80, 1, 2, 3, 4)).error, `reserved opcode ${op}`)
    }
  })

  it("an unmasked frame to a server, a masked one to a client (§5.1)", () => {
    violation(decode(hex("8200")).error, "unmasked client frame")
    violation(decode(hex("8280 01020304"), { role: "client" }).error, "masked server frame")
  })

  it("non-minimal 16-bit and 64-bit lengths; a 64-bit length with its top bit set", () => {
    violation(decode(hex("82fe007d 01020304")).error, "non-minimal length encoding")
    violation(decode(hex("82ff000000000000ffff 01020304")).error, "non-minimal length encoding")
    violation(decode(hex("82ff8000000000000000 01020304")).error, "64-bit length with the top bit set")
  })

  it("a frame over maxFrameSize (1009), also one declaring more than 2^53 bytes", () => {
    const over = decode(encoded(2, Buffer.alloc(101), { mask: MASK }), { maxFrameSize: 100 })
    assert.instanceOf(over.error, MessageTooBigError)
    assert.strictEqual(over.error!.closeCode, 1009)
    assert.strictEqual(over.error!.reason, "frame too big")
    assert.strictEqual(over.frames.length, 0)
    assert.strictEqual(decode(encoded(2, Buffer.alloc(100), { mask: MASK }), { maxFrameSize: 100 }).error, undefined)
    const huge = decode(hex("82ff0020000000000000 01020304"), { maxFrameSize: Number.MAX_SAFE_INTEGER })
    assert.instanceOf(huge.error, MessageTooBigError)
    assert.strictEqual(huge.error!.reason, "frame too big")
  })

  it("control frames (§5.5): Close, Ping and Pong fragmented, over 125 bytes, or with RSV1", () => {
    for (const op of [8, 9, 0xa]) {
      violation(decode(Uint8Array.of(op, 0x80, 1, 2, 3, 4)).error, "fragmented control frame")
      violation(
        decode(encoded(op, Buffer.alloc(126), { mask: MASK })).error,
        "control frame payload over 125 bytes"
      )
      violation(
        decode(Uint8Array.of(0xc0 | op, 0x80, 1, 2, 3, 4), { allowRsv1: true }).error,
        "RSV1 set on a control frame"
      )
      const max = decode(encoded(op, Buffer.alloc(125, 1), { mask: MASK }))
      assert.strictEqual(max.error, undefined)
      assert.strictEqual(max.frames[0]!.payload.length, 125)
    }
  })

  it("after an error the decoder is stopped and reads nothing more (§7.1.7)", () => {
    const { decoder, error, frames } = decode(hex("8200"))
    assert.isDefined(error)
    assert.isTrue(decoder.stopped)
    assert.strictEqual(decoder.push(encoded(1, Buffer.from("hi"), { mask: MASK })), undefined)
    assert.strictEqual(frames.length, 0)
    const fresh = decode(new Uint8Array(0))
    assert.isFalse(fresh.decoder.stopped)
  })
})

describe("opcodes and masks", () => {
  it("isControl is true exactly for opcodes 8-15", () => {
    for (let op = 0; op < 16; op++) assert.strictEqual(isControl(op), op >= 8, `opcode ${op}`)
  })

  it("mask: true draws a fresh random mask per frame, past the pool's refill, and the frame decodes", () => {
    const payload = Buffer.from("masked with a random key")
    const keys = new Set<string>()
    // 2,048 masks fit in the pool: 3,000 frames cross a refill
    for (let i = 0; i < 3000; i++) {
      const frame = encoded(1, payload, { mask: true })
      assert.strictEqual(frame[1]! & 0x80, 0x80)
      keys.add(frame.subarray(2, 6).toString("hex"))
      const { error, frames } = decode(frame)
      assert.strictEqual(error, undefined)
      assert.isTrue(frames[0]!.payload.equals(payload))
      // every draw is four bytes, also at the pool's end and right after a refill
      assert.strictEqual(randomMask().length, 4, `draw ${i}`)
    }
    // 3,000 draws of 32 random bits: a repeat is possible but not 100 of them
    assert.isAbove(keys.size, 2900)
    assert.strictEqual(randomMask().length, 4)
  })
})

describe("a sink that takes masked payload into its own buffer (payloadTarget)", () => {
  const frame = encoded(2, Buffer.from("0123456789abcdef"), { mask: MASK })
  const copying = (refuseAfter: number) => {
    const into = Buffer.alloc(16)
    let taken = 0
    const sink: FrameSink = {
      onFrameHeader: () => undefined,
      onFramePayload: () => new ProtocolViolationError({ reason: "payload through onFramePayload" }),
      onFrameEnd: () => undefined,
      payloadTarget: (length) =>
        taken + length > refuseAfter
          ? new MessageTooBigError({ reason: "message too big", limit: refuseAfter })
          : into.subarray(taken, taken + length),
      onFramePayloadCopied: (length) => {
        taken += length
        return undefined
      }
    }
    const decoder = new FrameDecoder(sink, { role: "server", maxFrameSize: 1 << 20, allowRsv1: false })
    return { decoder, into, taken: () => taken }
  }

  it("gets the bytes unmasked in its view, piece by piece", () => {
    const { decoder, into, taken } = copying(16)
    for (const cut of [frame.subarray(0, 9), frame.subarray(9)]) assert.strictEqual(decoder.push(cut), undefined)
    assert.strictEqual(taken(), 16)
    assert.strictEqual(into.toString(), "0123456789abcdef")
  })

  it("an error it returns instead of a view stops the decoder with that error", () => {
    const { decoder, taken } = copying(10)
    assert.strictEqual(decoder.push(frame.subarray(0, 11)), undefined)
    const error = decoder.push(frame.subarray(11))
    assert.instanceOf(error, MessageTooBigError)
    assert.strictEqual((error as MessageTooBigError).limit, 10)
    assert.isTrue(decoder.stopped)
    assert.strictEqual(taken(), 5)
  })
})

describe("the WebAssembly SIMD masking kernel", () => {
  // the kernel's load state, shared with src/internal/simd.ts through its global key
  const state = globalValue(Symbol.for("@effect-websocket/protocol/simd"), () => ({
    loaded: false,
    kernel: undefined as unknown
  }))
  const masked = (n: number) => {
    const buf = Buffer.alloc(n, 0x5a)
    applyMask(buf, 0, n, MASK, 1)
    return buf
  }
  const reference = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => 0x5a ^ MASK[(i + 1) & 3]!))

  it("loads once per process on a runtime with WebAssembly SIMD (Node 20), and masks long runs right", () => {
    const first = kernel()
    assert.isDefined(first, "Node 20 runs WebAssembly SIMD: the kernel should load")
    assert.strictEqual(kernel(), first, "loaded once, then kept")
    assert.isTrue(masked(1000).equals(reference(1000)))
  })

  // The four-lane loop's step is an `i32.const`, whose immediate is *signed* LEB128: 64 written as the
  // one byte 0x40 reads as -64, the loop never runs, and the 16-byte loop does all the work with the
  // same bytes out. So no masking test notices; this one reads the immediates back.
  it("the kernel's constants are encoded as the signed LEB128 that i32.const reads (0 to 8191, and 2^k up to 2^30)", () => {
    const large = Array.from({ length: 18 }, (_, k) => 2 ** (k + 13))
    for (const n of [...Array.from({ length: 8192 }, (_, n) => n), ...large, ...large.map((n) => n - 1)]) {
      const [op, ...imm] = i32(n)
      assert.strictEqual(op, 0x41)
      let value = 0
      let shift = 0
      let at = 0
      let byte: number
      do {
        byte = imm[at++]!
        value |= (byte & 0x7f) << shift
        shift += 7
      } while ((byte & 0x80) !== 0)
      if ((byte & 0x40) !== 0) value |= -1 << shift
      assert.strictEqual(value, n, `i32.const ${n}`)
      assert.strictEqual(at, imm.length, "no bytes after the immediate")
    }
  })

  it("WS_NO_SIMD=1 turns it off (read when it first loads), and masking stays right without it", () => {
    const saved = { loaded: state.loaded, kernel: state.kernel, env: process.env.WS_NO_SIMD }
    try {
      state.loaded = false
      process.env.WS_NO_SIMD = "1"
      assert.isUndefined(kernel())
      assert.isTrue(masked(1000).equals(reference(1000)))
      state.loaded = false
      process.env.WS_NO_SIMD = "0"
      assert.isDefined(kernel())
    } finally {
      state.loaded = saved.loaded
      state.kernel = saved.kernel
      if (saved.env === undefined) delete process.env.WS_NO_SIMD
      else process.env.WS_NO_SIMD = saved.env
    }
  })
})
