import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { applyMask } from "../src/Frame.js"
import { unmaskInto } from "../src/internal/mask.js"
import { Utf8Validator } from "../src/Utf8.js"
import { splitAt } from "./helpers.js"

const fatal = new TextDecoder("utf-8", { fatal: true })
const reference = (bytes: Uint8Array): boolean => {
  try {
    fatal.decode(bytes)
    return true
  } catch {
    return false
  }
}

const streamValid = (chunks: ReadonlyArray<Uint8Array>): boolean => {
  const v = new Utf8Validator()
  for (const c of chunks) if (!v.validate(c, 0, c.length)) return false
  return v.complete
}

/** Bytes biased towards UTF-8 edge cases: lead bytes, continuations, boundaries. */
const utf8ishBytes = FastCheck.array(
  FastCheck.oneof(
    FastCheck.integer({ min: 0, max: 255 }),
    FastCheck.constantFrom(0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90)
  ),
  { maxLength: 40 }
).map((a) => Uint8Array.from(a))

describe("RFC 3629 UTF-8 validation (RFC 6455 §8.1)", () => {
  it("agrees with TextDecoder on Autobahn 6.x style vectors", () => {
    const cases: Array<[string, boolean]> = [
      ["cebae1bdb9cf83cebcceb5", true],
      ["cebae1bdb9cf83cebcceb5eda080656469746564", false], // surrogate
      ["f4908080", false], // > U+10FFFF
      ["c0af", false], // overlong
      ["e080af", false],
      ["f08f8080", false],
      ["f48fbfbf", true],
      ["edbfbf", false],
      ["ee8080", true],
      ["", true],
      ["e282", false] // truncated
    ]
    for (const [h, ok] of cases) {
      const b = Buffer.from(h, "hex")
      assert.strictEqual(streamValid([b]), ok, h)
      assert.strictEqual(reference(b), ok, h)
    }
  })

  it("fails at the first impossible byte, before the code point is complete", () => {
    const v = new Utf8Validator()
    assert.isTrue(v.validate(Buffer.from("f4", "hex"), 0, 1))
    assert.isFalse(v.validate(Buffer.from("90", "hex"), 0, 1))
    const w = new Utf8Validator()
    assert.isFalse(w.validate(Buffer.from("61f5", "hex"), 0, 2))
  })

  it.prop(
    "the streaming validator agrees with TextDecoder(fatal) at arbitrary split points",
    [FastCheck.oneof(utf8ishBytes, FastCheck.string({ unit: "binary", maxLength: 60 }).map((s) => Buffer.from(s, "utf8"))), FastCheck.array(FastCheck.nat(64), { maxLength: 6 })],
    ([bytes, cuts]) => {
      assert.strictEqual(streamValid(splitAt(bytes, cuts)), reference(bytes))
    },
    { fastCheck: { numRuns: 5000 } }
  )

  it.prop(
    "long valid runs take the native path and agree too",
    [FastCheck.string({ unit: "binary", minLength: 20, maxLength: 200 }), FastCheck.nat(600), FastCheck.integer({ min: 0, max: 255 })],
    ([s, at, byte]) => {
      const b = Buffer.from(s, "utf8")
      const broken = Buffer.from(b)
      if (broken.length > 0) broken[at % broken.length] = byte
      assert.strictEqual(streamValid([broken]), reference(broken))
      assert.strictEqual(streamValid(splitAt(broken, [at % 50])), reference(broken))
    },
    { fastCheck: { numRuns: 2000 } }
  )
})

describe("RFC 6455 §5.3 masking", () => {
  it.prop(
    "the SIMD path agrees with byte-wise masking on long payloads, any alignment, any offset",
    [FastCheck.integer({ min: 200, max: 300_000 }), FastCheck.uint8Array({ minLength: 4, maxLength: 4 }), FastCheck.nat(15), FastCheck.nat(3), FastCheck.nat(1000)],
    ([length, mask, align, offset, cut]) => {
      const data = new Uint8Array(length)
      for (let i = 0; i < length; i++) data[i] = (i * 131 + 7) & 255
      const backing = Buffer.alloc(length + 16)
      const view = backing.subarray(align, align + length)
      view.set(data)
      const c = cut % length
      const k = applyMask(view, 0, c, mask, offset)
      applyMask(view, c, length, mask, k)
      const expected = Uint8Array.from(data, (b, i) => b ^ mask[(i + offset) % 4]!)
      assert.isTrue(Buffer.from(view).equals(Buffer.from(expected)))
    },
    { fastCheck: { numRuns: 200 } }
  )

  const naive = (data: Uint8Array, mask: Uint8Array) => Uint8Array.from(data, (b, i) => b ^ mask[i % 4]!)

  it.prop(
    "masking with an offset equals masking the whole payload, at any alignment and split",
    [FastCheck.uint8Array({ maxLength: 300 }), FastCheck.uint8Array({ minLength: 4, maxLength: 4 }), FastCheck.nat(300), FastCheck.nat(7)],
    ([data, mask, cut, align]) => {
      // place the payload at an arbitrary byte offset to exercise the word-wide path's alignment
      const backing = Buffer.alloc(data.length + 8)
      const view = backing.subarray(align, align + data.length)
      view.set(data)
      const c = data.length === 0 ? 0 : cut % (data.length + 1)
      const k = applyMask(view, 0, c, mask, 0)
      applyMask(view, c, data.length, mask, k)
      assert.deepStrictEqual(Uint8Array.from(view), naive(data, mask))
    },
    { fastCheck: { numRuns: 2000 } }
  )

  it.prop(
    "unmasking into another buffer equals copying then masking, and leaves the source as it was",
    [
      FastCheck.integer({ min: 0, max: 40_000 }),
      FastCheck.uint8Array({ minLength: 4, maxLength: 4 }),
      FastCheck.nat(15),
      FastCheck.nat(15),
      FastCheck.nat(3)
    ],
    ([length, mask, from, at, offset]) => {
      // lengths cross the SIMD threshold (256) and its 16 KiB block; odd offsets on both sides
      const src = Buffer.alloc(from + length + 3)
      for (let i = 0; i < src.length; i++) src[i] = (i * 193 + 11) & 255
      const before = Buffer.from(src)
      const dst = Buffer.alloc(at + length + 5, 0xee)
      const k = unmaskInto(src, from, from + length, dst, at, mask, offset)
      const expected = Buffer.alloc(dst.length, 0xee)
      for (let i = 0; i < length; i++) expected[at + i] = src[from + i]! ^ mask[(offset + i) & 3]!
      assert.isTrue(dst.equals(expected))
      assert.isTrue(src.equals(before))
      assert.strictEqual(k, (offset + length) & 3)
    },
    { fastCheck: { numRuns: 300 } }
  )
})
