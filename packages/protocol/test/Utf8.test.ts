import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { applyMask } from "../src/Frame.js"
import { unmaskInto } from "../src/internal/mask.js"
import { isValidUtf8, Utf8Validator } from "../src/Utf8.js"
import { runs, splitAt } from "./helpers.js"

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

/** Where a byte-at-a-time stream first fails: the first index TextDecoder(fatal, stream) rejects. */
const referenceFailsAt = (bytes: Uint8Array): number => {
  const decoder = new TextDecoder("utf-8", { fatal: true })
  for (let i = 0; i < bytes.length; i++) {
    try {
      decoder.decode(bytes.subarray(i, i + 1), { stream: true })
    } catch {
      return i
    }
  }
  return -1
}
const validatorFailsAt = (bytes: Uint8Array): number => {
  const v = new Utf8Validator()
  for (let i = 0; i < bytes.length; i++) if (!v.validate(bytes, i, i + 1)) return i
  return -1
}

const cont = FastCheck.integer({ min: 0x80, max: 0xbf })
const byteIn = (min: number, max: number) => FastCheck.integer({ min, max })
const seq = (...parts: Array<FastCheck.Arbitrary<number>>) => FastCheck.tuple(...parts)

/** A valid code point of each length, the range edges (U+7F/80, U+7FF/800, U+D7FF, U+E000, U+FFFF/10000, U+10FFFF) included. */
const validCodePoint = FastCheck.oneof(
  FastCheck.integer({ min: 0, max: 0x7f }),
  FastCheck.integer({ min: 0x80, max: 0x7ff }),
  FastCheck.integer({ min: 0x800, max: 0xd7ff }),
  FastCheck.integer({ min: 0xe000, max: 0xffff }),
  FastCheck.integer({ min: 0x10000, max: 0x10ffff }),
  FastCheck.constantFrom(0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff)
).map((cp) => Array.from(Buffer.from(String.fromCodePoint(cp), "utf8")))

/** One sequence of every class of invalid UTF-8 (RFC 3629 §3-4, Unicode Table 3-7). */
const invalidClasses = {
  /** C0/C1 leads, E0 80..9F, F0 80..8F: a code point in more bytes than it needs. */
  overlong: FastCheck.oneof(
    seq(byteIn(0xc0, 0xc1), cont),
    seq(FastCheck.constant(0xe0), byteIn(0x80, 0x9f), cont),
    seq(FastCheck.constant(0xf0), byteIn(0x80, 0x8f), cont, cont)
  ),
  /** ED A0..BF: U+D800..DFFF. */
  surrogate: seq(FastCheck.constant(0xed), byteIn(0xa0, 0xbf), cont),
  /** F4 90..BF and F5..FF: above U+10FFFF. */
  aboveMax: FastCheck.oneof(
    seq(FastCheck.constant(0xf4), byteIn(0x90, 0xbf), cont, cont),
    seq(byteIn(0xf5, 0xff), cont, cont, cont),
    seq(byteIn(0xf5, 0xff))
  ),
  /** A continuation byte with no lead. */
  loneContinuation: seq(cont),
  /** A valid 2-, 3- or 4-byte sequence cut short, followed by something that is not its continuation. */
  truncated: FastCheck.tuple(
    validCodePoint.filter((b) => b.length > 1),
    FastCheck.nat(2),
    FastCheck.oneof(FastCheck.integer({ min: 0, max: 0x7f }), byteIn(0xc2, 0xf4))
  ).map(([b, k, next]) => [...b.slice(0, 1 + (k % (b.length - 1))), next])
}

/** Mostly valid text with one or more invalid sequences of any class anywhere, or truncated at its end. */
const segment = FastCheck.oneof(
  { weight: 6, arbitrary: validCodePoint },
  { weight: 1, arbitrary: FastCheck.oneof(...Object.values(invalidClasses)) },
  // a run of ASCII long enough for the native path
  { weight: 1, arbitrary: FastCheck.integer({ min: 16, max: 40 }).map((n) => Array<number>(n).fill(0x61)) }
)
const utf8ish = FastCheck.tuple(
  FastCheck.array(segment, { maxLength: 12 }),
  FastCheck.option(validCodePoint.filter((b) => b.length > 1), { nil: undefined }),
  FastCheck.nat(2)
).map(([segments, last, k]) =>
  Uint8Array.from([...segments.flat(), ...(last === undefined ? [] : last.slice(0, 1 + (k % (last.length - 1))))])
)

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

  it("reset forgets a code point left open and the range its next byte needed", () => {
    const v = new Utf8Validator()
    // ED opens a 3-byte code point whose next byte must be 80..9F
    assert.isTrue(v.validate(Buffer.from("ed", "hex"), 0, 1))
    assert.isFalse(v.complete)
    v.reset()
    assert.isTrue(v.complete)
    assert.isTrue(v.validate(Buffer.from("61", "hex"), 0, 1))
    v.reset()
    // after F4 the next byte must be 80..8F; after reset a fresh E1 takes any continuation
    assert.isTrue(v.validate(Buffer.from("f4", "hex"), 0, 1))
    v.reset()
    assert.isTrue(v.validate(Buffer.from("e1bfbf", "hex"), 0, 3))
    assert.isTrue(v.complete)
  })

  it("fails at the first impossible byte, before the code point is complete", () => {
    const v = new Utf8Validator()
    assert.isTrue(v.validate(Buffer.from("f4", "hex"), 0, 1))
    assert.isFalse(v.validate(Buffer.from("90", "hex"), 0, 1))
    const w = new Utf8Validator()
    assert.isFalse(w.validate(Buffer.from("61f5", "hex"), 0, 2))
  })

  it.prop(
    "the streaming validator agrees with TextDecoder(fatal) on every class of invalid sequence, at any split",
    [utf8ish, FastCheck.array(FastCheck.nat(120), { maxLength: 6 })],
    ([bytes, cuts]) => {
      assert.strictEqual(streamValid(splitAt(bytes, cuts)), reference(bytes))
    },
    { fastCheck: { numRuns: runs(5000) } }
  )

  it.prop(
    "fed byte by byte, it fails at the same byte as TextDecoder(fatal, stream)",
    [utf8ish],
    ([bytes]) => {
      assert.strictEqual(validatorFailsAt(bytes), referenceFailsAt(bytes))
    },
    { fastCheck: { numRuns: runs(3000) } }
  )

  for (const [name, arbitrary] of Object.entries(invalidClasses)) {
    it.prop(
      `${name}: refused after any valid prefix (short or native-path long), cut at every split`,
      [FastCheck.array(validCodePoint, { maxLength: 8 }), FastCheck.nat(24), arbitrary],
      ([prefix, ascii, bad]) => {
        const bytes = Uint8Array.from([...Array<number>(ascii).fill(0x61), ...prefix.flat(), ...bad])
        assert.isFalse(reference(bytes))
        for (let cut = 0; cut <= bytes.length; cut++) {
          assert.isFalse(streamValid(splitAt(bytes, [cut])), `cut at ${cut}`)
        }
        assert.strictEqual(validatorFailsAt(bytes), referenceFailsAt(bytes))
      },
      { fastCheck: { numRuns: runs(300) } }
    )
  }

  it.prop(
    "validate(bytes, start, end) reads only its window: bytes around it change nothing",
    [utf8ish, FastCheck.oneof(utf8ish, FastCheck.uint8Array({ maxLength: 3 })), utf8ish],
    ([before, window, after]) => {
      const alone = new Utf8Validator().validate(window, 0, window.length)
      const all = Uint8Array.from([...before, ...window, ...after])
      const inPlace = new Utf8Validator().validate(all, before.length, before.length + window.length)
      assert.strictEqual(inPlace, alone)
    },
    { fastCheck: { numRuns: runs(3000) } }
  )

  it.prop(
    "isValidUtf8 (one shot) agrees with TextDecoder(fatal)",
    [utf8ish],
    ([bytes]) => {
      assert.strictEqual(isValidUtf8(bytes), reference(bytes))
    },
    { fastCheck: { numRuns: runs(1000) } }
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
    { fastCheck: { numRuns: runs(2000) } }
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
    { fastCheck: { numRuns: runs(200) } }
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
    { fastCheck: { numRuns: runs(2000) } }
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
    { fastCheck: { numRuns: runs(300) } }
  )
})
