/**
 * The zlib layer under permessage-deflate (`internal/deflate.ts`) on its own: the pools of
 * idle contexts, the offload queue, and what `deflateMessage` and `inflatePiece` return when
 * zlib fails or misbehaves. `PerMessageDeflate` hides most of this (it falls back to stored
 * blocks when compression fails), so these tests call the internal functions directly and
 * inject faults: a native handle whose `writeSync` follows a script, and `node:zlib`
 * functions replaced for the length of one test (`syncBuiltinESMExports`).
 */
import { assert, describe, it } from "@effect/vitest"
import { createRequire, syncBuiltinESMExports } from "node:module"
import * as Zlib from "node:zlib"
import { InternalError, InvalidPayloadError, MessageTooBigError } from "../src/Errors.js"
import * as internal from "../src/internal/deflate.js"
import type { ZContext } from "../src/internal/deflate.js"
import { hex } from "./helpers.js"

/** The CommonJS object behind `node:zlib`, whose properties `syncBuiltinESMExports` copies to the ESM namespace. */
const zlibModule = createRequire(import.meta.url)("node:zlib") as typeof Zlib

/** Runs `body` with `zlibModule[name]` replaced by `fake`, for every importer of `node:zlib`. */
const replacingZlib = async <K extends keyof typeof Zlib, A>(
  name: K,
  fake: (typeof Zlib)[K],
  body: () => A | Promise<A>
): Promise<A> => {
  // `createDeflateRaw` and `createInflateRaw` are read-only, but configurable
  const real = Object.getOwnPropertyDescriptor(zlibModule, name)!
  Object.defineProperty(zlibModule, name, { ...real, value: fake })
  syncBuiltinESMExports()
  try {
    return await body()
  } finally {
    Object.defineProperty(zlibModule, name, real)
    syncBuiltinESMExports()
  }
}

const TAIL = hex("0000ffff")
const SYNC = { finishFlush: Zlib.constants.Z_SYNC_FLUSH }
const Z_STREAM_ERROR = Zlib.constants.Z_STREAM_ERROR

/** Incompressible bytes, deterministic. */
const noise = (n: number, seed: number): Buffer => {
  const out = Buffer.allocUnsafe(n)
  let s = seed >>> 0
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    out[i] = s >>> 24
  }
  return out
}

const inflateAll = (payload: Uint8Array): Buffer => Zlib.inflateRawSync(Buffer.concat([payload, TAIL]), SYNC)

const open = (kind: internal.ZKind, windowBits = 15, level = 1, memLevel = 8): ZContext => {
  const z = kind === "deflate" ? internal.borrowDeflater(windowBits, level, memLevel) : internal.borrowInflater(windowBits)
  if (!(z instanceof internal.ZContext)) return assert.fail(`no ${kind} context: ${z.reason}`)
  return z
}

const buffer = (r: unknown): Buffer => {
  if (!Buffer.isBuffer(r)) return assert.fail(`expected bytes, got ${String(r)}`)
  return r
}

// ---------------------------------------------------------------------------------------
// A scripted native handle
// ---------------------------------------------------------------------------------------

/** What one scripted `writeSync` does: bytes written at the start of the output, input bytes consumed (all by default), an error reported through `onerror`. */
interface Step {
  readonly out?: Uint8Array
  readonly consumed?: number
  readonly error?: readonly [message: string, errno: number]
}

/**
 * Replaces the context's native `writeSync` with `steps`, one per call. A call past the end
 * of the script consumes and writes nothing and reports "script exhausted" (errno
 * Z_STREAM_ERROR), so that a loop that should have stopped ends with that error instead of
 * spinning. The real zlib stream is never called. Returns a function that tells how many
 * calls were made.
 */
const script = (z: ZContext, steps: ReadonlyArray<Step>): () => number => {
  let calls = 0
  const handle = z.handle!
  handle.writeSync = function(_flush, _input, _inOff, inLen, out, outOff, outLen) {
    const step: Step = steps[calls++] ?? { consumed: 0, error: ["script exhausted", Z_STREAM_ERROR] }
    const bytes = step.out ?? new Uint8Array(0)
    out.set(bytes, outOff)
    z.state[0] = outLen - bytes.length
    z.state[1] = inLen - (step.consumed ?? inLen)
    if (step.error !== undefined) this.onerror(step.error[0], step.error[1])
  }
  return () => calls
}

// ---------------------------------------------------------------------------------------

describe("opening contexts", () => {
  it("reports a context that zlib refuses to create, with the kind and the cause", () => {
    const before = internal.liveContexts()
    const r = internal.openContext("deflate", 99, 1, 8)
    assert.instanceOf(r, InternalError)
    assert.strictEqual(r.reason, "cannot create a zlib deflate context")
    assert.instanceOf(r.cause, RangeError)
    assert.strictEqual((r.cause as RangeError & { code: string }).code, "ERR_OUT_OF_RANGE")
    const i = internal.openContext("inflate", 7, 0, 0)
    assert.instanceOf(i, InternalError)
    assert.strictEqual(i.reason, "cannot create a zlib inflate context")
    assert.instanceOf(i.cause, RangeError)
    assert.strictEqual(internal.liveContexts(), before)
  })

  it("refuses a zlib stream that lacks the internals it relies on (_handle.writeSync, _writeState)", async () => {
    const fakes = [
      { _handle: null, _writeState: new Uint32Array(2) },
      { _handle: { writeSync: "not a function" }, _writeState: new Uint32Array(2) },
      { _handle: { writeSync() {} }, _writeState: [0, 0] }
    ]
    const before = internal.liveContexts()
    for (const fake of fakes) {
      for (const kind of ["deflate", "inflate"] as const) {
        const name = kind === "deflate" ? "createDeflateRaw" : "createInflateRaw"
        const r = await replacingZlib(name, (() => fake) as never, () => internal.openContext(kind, 15, 1, 8))
        assert.instanceOf(r, InternalError, `${kind} with ${JSON.stringify(fake)}`)
        assert.strictEqual(r.reason, `cannot create a zlib ${kind} context`)
        assert.instanceOf(r.cause, Error)
        assert.strictEqual((r.cause as Error).message, "node:zlib internals changed: no _handle.writeSync / _writeState")
      }
    }
    assert.strictEqual(internal.liveContexts(), before)
    // and the real constructors are back
    const z = internal.openContext("inflate", 15, 0, 0)
    assert.instanceOf(z, internal.ZContext)
    internal.closeContext(z as ZContext)
  })

  it("keys a deflater by windowBits, level + 1 and memLevel as decimal digits; an inflater by windowBits", () => {
    for (const windowBits of [8, 9, 12, 15]) {
      for (const level of [-1, 0, 1, 6, 9]) {
        for (const memLevel of [1, 5, 8, 9]) {
          const z = internal.openContext("deflate", windowBits, level, memLevel) as ZContext
          assert.deepStrictEqual(
            [Math.floor(z.key / 1000), Math.floor((z.key % 1000) / 10) - 1, z.key % 10],
            [windowBits, level, memLevel]
          )
          internal.closeContext(z)
        }
      }
      const i = internal.openContext("inflate", windowBits, 0, 0) as ZContext
      assert.strictEqual(i.key, windowBits)
      internal.closeContext(i)
    }
  })
})

describe("pools of idle contexts", () => {
  it("lends a released deflater again only for the same windowBits, level and memLevel", () => {
    internal.releaseIdleContexts()
    const base = internal.liveContexts()
    // level -1 is zlib's default level; 9 is the highest
    const sets = [[15, 1, 8], [15, 1, 9], [15, 2, 8], [14, 1, 8], [15, 9, 1], [15, -1, 2], [15, 0, 9], [15, -1, 9]] as const
    const lent = sets.map(([w, l, m]) => open("deflate", w, l, m))
    lent.forEach((z) => internal.releaseDeflater(z))
    assert.strictEqual(internal.liveContexts(), base + sets.length)
    // borrowed back in the order they were released: each set finds its own context
    const again = sets.map(([w, l, m]) => open("deflate", w, l, m))
    again.forEach((z, i) => assert.strictEqual(z, lent[i], `set ${sets[i]}`))
    assert.strictEqual(internal.liveContexts(), base + sets.length)
    again.forEach((z) => internal.closeContext(z))
    assert.strictEqual(internal.liveContexts(), base)
  })

  it("keeps several idle contexts of one key, last released first lent, and closes them all on release", () => {
    internal.releaseIdleContexts()
    const base = internal.liveContexts()
    const a = open("inflate")
    const b = open("inflate")
    assert.notStrictEqual(a, b)
    internal.releaseInflater(a)
    internal.releaseInflater(b)
    assert.strictEqual(open("inflate"), b)
    assert.strictEqual(open("inflate"), a)
    internal.releaseInflater(a)
    internal.releaseInflater(b)
    internal.releaseIdleContexts()
    assert.strictEqual(internal.liveContexts(), base)
    assert.strictEqual(a.handle, undefined)
    assert.strictEqual(b.handle, undefined)
  })

  it("keeps at most 2 idle deflaters and 16 idle inflaters per key, and closes the rest", () => {
    internal.releaseIdleContexts()
    const base = internal.liveContexts()
    const deflaters = Array.from({ length: 3 }, () => open("deflate"))
    assert.strictEqual(new Set(deflaters).size, 3)
    deflaters.forEach((z) => internal.releaseDeflater(z))
    assert.deepStrictEqual(deflaters.map((z) => z.handle !== undefined), [true, true, false])
    assert.strictEqual(internal.liveContexts(), base + 2)
    const inflaters = Array.from({ length: 17 }, () => open("inflate", 12))
    assert.strictEqual(new Set(inflaters).size, 17)
    inflaters.forEach((z) => internal.releaseInflater(z))
    assert.deepStrictEqual(inflaters.map((z) => z.handle !== undefined), [...Array(16).fill(true), false])
    assert.strictEqual(internal.liveContexts(), base + 2 + 16)
    internal.releaseIdleContexts()
    assert.strictEqual(internal.liveContexts(), base)
  })

  it("keeps idle contexts for at most 32 keys; a context of a 33rd key is closed on release", () => {
    internal.releaseIdleContexts()
    const base = internal.liveContexts()
    const sets: Array<readonly [number, number, number]> = []
    for (let level = 0; level <= 9 && sets.length < 33; level++) {
      for (let memLevel = 1; memLevel <= 9 && sets.length < 33; memLevel++) sets.push([15, level, memLevel])
    }
    const lent = sets.map(([w, l, m]) => open("deflate", w, l, m))
    lent.forEach((z) => internal.releaseDeflater(z))
    assert.deepStrictEqual(lent.map((z) => z.handle !== undefined), [...Array(32).fill(true), false])
    assert.strictEqual(internal.liveContexts(), base + 32)
    // a key already in the pool still takes its context back
    const again = open("deflate", ...sets[0]!)
    assert.strictEqual(again, lent[0])
    internal.releaseDeflater(again)
    assert.strictEqual(again.handle !== undefined, true)
    internal.releaseIdleContexts()
    assert.strictEqual(internal.liveContexts(), base)
  })

  it("releasing a context that was closed keeps nothing and throws nothing", () => {
    internal.releaseIdleContexts()
    const base = internal.liveContexts()
    for (const kind of ["deflate", "inflate"] as const) {
      const z = open(kind)
      internal.closeContext(z)
      internal.closeContext(z)
      assert.strictEqual(internal.liveContexts(), base)
      if (kind === "deflate") internal.releaseDeflater(z)
      else internal.releaseInflater(z)
      const next = open(kind)
      assert.notStrictEqual(next, z)
      assert.isDefined(next.handle)
      internal.closeContext(next)
    }
    assert.strictEqual(internal.liveContexts(), base)
  })
})

// ---------------------------------------------------------------------------------------

describe("deflateMessage", () => {
  it("compresses a message whose output spans several 64 KiB scratch buffers", () => {
    const z = open("deflate", 15, 1, 8)
    for (const n of [70_000, 200_000]) {
      const data = noise(n, n)
      const out = buffer(internal.deflateMessage(z, data))
      assert.isAbove(out.length, 64 * 1024)
      assert.deepStrictEqual(inflateAll(out), data)
      internal.resetContext(z)
    }
    internal.closeContext(z)
  })

  it("returns zlib's error as an InternalError with the message as its cause", () => {
    const z = open("deflate")
    // the write also leaves a well-formed result behind: only the error tells them apart
    script(z, [{ out: hex("f248cdc9c90700 0000ffff"), error: ["stream error", Z_STREAM_ERROR] }])
    const r = internal.deflateMessage(z, Buffer.from("Hello"))
    assert.instanceOf(r, InternalError)
    assert.strictEqual(r.reason, "zlib deflate failed")
    assert.strictEqual(r.cause, "stream error")
    internal.closeContext(z)
  })

  const notFlushed = "zlib deflate output does not end with a sync flush marker"

  it("refuses output that does not end with the sync flush marker", () => {
    const pieces: ReadonlyArray<ReadonlyArray<string>> = [
      [""],
      ["ff"],
      ["00ffff"],
      ["00010203"], // four bytes, not the marker
      ["f248cdc9c90700 0000fffe"],
      ["f248cdc9c90700 00ffffff"],
      ["f248cdc9c90700"]
    ]
    for (const steps of pieces) {
      const z = open("deflate")
      script(z, steps.map((s) => ({ out: hex(s) })))
      const r = internal.deflateMessage(z, Buffer.from("Hello"))
      assert.instanceOf(r, InternalError, steps.join(" | "))
      assert.strictEqual(r.reason, notFlushed)
      assert.isUndefined(r.cause)
      internal.closeContext(z)
    }
  })

  it("drops the marker, also when it is all there is or when it straddles scratch buffers", () => {
    const full = noise(64 * 1024, 7)
    const cases: ReadonlyArray<readonly [steps: ReadonlyArray<Uint8Array>, expected: Buffer]> = [
      [[TAIL], Buffer.alloc(0)],
      [[hex("f248cdc9c90700 0000ffff")], hex("f248cdc9c90700")],
      // the whole marker in the last, short piece after a full one
      [[full, hex("00 0000ffff")], Buffer.concat([full, hex("00")])],
      [[full, TAIL], full],
      // the marker cut after 1, 2 and 3 of its bytes
      ...[1, 2, 3].map((k) => {
        const head = Buffer.concat([full.subarray(k), TAIL.subarray(0, k)])
        return [[head, TAIL.subarray(k)], full.subarray(k)] as const
      }),
      // three pieces, the marker cut between the second and the third
      [[full, Buffer.concat([full.subarray(3), TAIL.subarray(0, 3)]), TAIL.subarray(3)], Buffer.concat([full, full.subarray(3)])],
      // a full last piece: zlib is called once more and adds nothing
      [[Buffer.concat([full.subarray(4), TAIL]), Buffer.alloc(0)], full.subarray(4)]
    ]
    for (const [steps, expected] of cases) {
      const z = open("deflate")
      const calls = script(z, steps.map((out) => ({ out })))
      const r = buffer(internal.deflateMessage(z, Buffer.from("input")))
      assert.strictEqual(calls(), steps.length)
      assert.strictEqual(r.length, expected.length, steps.map((s) => s.length).join(" + "))
      assert.isTrue(r.equals(expected), steps.map((s) => s.length).join(" + "))
      internal.closeContext(z)
    }
  })
})

// ---------------------------------------------------------------------------------------

describe("inflatePiece", () => {
  const hello = Zlib.deflateRawSync(Buffer.from("Hello, world"), SYNC).subarray(0, -4)

  it("refuses output past maxBytes with 1009, naming the limit", () => {
    for (const limit of [0, 5, 11]) {
      const z = open("inflate")
      const r = internal.inflatePiece(z, hello, true, limit)
      assert.instanceOf(r, MessageTooBigError)
      assert.strictEqual(r.reason, "message too big after decompression")
      assert.strictEqual(r.limit, limit)
      assert.strictEqual(r.message, "message too big (1009): message too big after decompression")
      internal.closeContext(z)
    }
    const z = open("inflate")
    assert.strictEqual(buffer(internal.inflatePiece(z, hello, true, 12)).toString(), "Hello, world")
    internal.closeContext(z)
  })

  it("treats a negative or NaN maxBytes as 0", () => {
    for (const limit of [-0.5, -1, -1e9, Number.NEGATIVE_INFINITY, Number.NaN]) {
      const z = open("inflate")
      const r = internal.inflatePiece(z, hello, true, limit)
      assert.instanceOf(r, MessageTooBigError, String(limit))
      assert.strictEqual(r.limit, 0, String(limit))
      internal.resetContext(z)
      // an empty message fits in 0 bytes
      assert.strictEqual(buffer(internal.inflatePiece(z, hex("00"), true, limit)).length, 0)
      internal.closeContext(z)
    }
  })

  it("counts a fractional maxBytes in whole bytes, also over several scratch buffers", () => {
    // 70,000 bytes inflate into two 64 KiB scratch buffers
    const big = noise(70_000, 7)
    const payload = Zlib.deflateRawSync(big, SYNC).subarray(0, -4)
    for (const [limit, fits] of [[70_000.5, true], [70_000.99, true], [69_999.5, false]] as const) {
      const z = open("inflate")
      const r = internal.inflatePiece(z, payload, true, limit)
      if (fits) {
        assert.isTrue(buffer(r).equals(big), String(limit))
      } else {
        assert.instanceOf(r, MessageTooBigError, String(limit))
        assert.strictEqual(r.limit, 69_999)
      }
      internal.closeContext(z)
    }
  })

  it("names zlib's complaint about invalid data (1007)", () => {
    const cases = [
      ["07", "invalid block type"],
      ["00 0100 0000", "invalid stored block lengths"]
    ] as const
    for (const [data, complaint] of cases) {
      const z = open("inflate")
      const r = internal.inflatePiece(z, hex(data), true, 100)
      assert.instanceOf(r, InvalidPayloadError)
      assert.strictEqual(r.reason, `invalid compressed data: ${complaint}`)
      internal.closeContext(z)
    }
  })

  it("reports any other zlib error as an InternalError with zlib's message as the cause", () => {
    const z = open("inflate")
    script(z, [{ consumed: 0, error: ["injected fault", Z_STREAM_ERROR] }])
    const r = internal.inflatePiece(z, hello, true, 100)
    assert.instanceOf(r, InternalError)
    assert.strictEqual(r.reason, "zlib inflate failed")
    assert.strictEqual(r.cause, "injected fault")
    internal.closeContext(z)
  })

  it("a piece that follows the end of a stream (BFINAL as the previous piece's last block) starts a new stream", () => {
    const z = open("inflate")
    const first = Zlib.deflateRawSync(Buffer.from("first "))
    const second = Zlib.deflateRawSync(Buffer.from("second"))
    assert.strictEqual(buffer(internal.inflatePiece(z, first, false, 100)).toString(), "first ")
    assert.strictEqual(buffer(internal.inflatePiece(z, second, false, 100)).toString(), "second")
    assert.strictEqual(buffer(internal.inflatePiece(z, hello, true, 100)).toString(), "Hello, world")
    internal.closeContext(z)
  })

  it("gives up with 1007 when a stream started after the end of another makes no progress", () => {
    const z = open("inflate")
    // zlib stops without consuming anything (the stream ended), then the fresh stream does not move either
    const calls = script(z, [{ consumed: 0 }, { consumed: 0 }])
    const r = internal.inflatePiece(z, Buffer.from("stuck"), true, 100)
    assert.instanceOf(r, InvalidPayloadError)
    assert.strictEqual(r.reason, "invalid compressed data: no progress after end of stream")
    assert.strictEqual(calls(), 2)
    internal.closeContext(z)
  })

  it("output from a fresh stream counts as progress even when no input was consumed", () => {
    const z = open("inflate")
    const calls = script(z, [{ consumed: 0 }, { out: Buffer.from("A"), consumed: 0 }, { out: Buffer.from("B") }])
    const r = internal.inflatePiece(z, Buffer.from("xyz"), false, 100)
    assert.strictEqual(buffer(r).toString(), "AB")
    assert.strictEqual(calls(), 3)
    internal.closeContext(z)
  })
})

// ---------------------------------------------------------------------------------------

describe("deflateOffloaded", () => {
  type DeflateRaw = typeof Zlib.deflateRaw

  /**
   * Runs `deflateOffloaded` on `data` with `Zlib.deflateRaw` answering `error` / `out` on the
   * next turn; resolves with the payload, or with what the completion callback threw.
   */
  const offloadAnswering = (data: Buffer, error: Error | null, out: Buffer | undefined) =>
    new Promise<Buffer | { readonly threw: unknown }>((resolve, reject) => {
      const fake = ((_data: unknown, _options: unknown, callback: (error: Error | null, out: Buffer) => void) => {
        setImmediate(() => {
          try {
            callback(error, out as Buffer)
          } catch (threw) {
            resolve({ threw })
          }
        })
      }) as DeflateRaw
      replacingZlib("deflateRaw", fake, () => internal.deflateOffloaded(data, 15, 1, 8, resolve)).catch(reject)
    })

  it("falls back to stored blocks when zlib fails", async () => {
    internal.resetOffload()
    const data = Buffer.from("Hello, offloaded world")
    const r = await offloadAnswering(data, new Error("injected"), undefined)
    assert.isTrue(Buffer.isBuffer(r), Buffer.isBuffer(r) ? "" : `the callback threw ${String(r.threw)}`)
    assert.deepStrictEqual(r, internal.storedBlocks(data))
    assert.deepStrictEqual(inflateAll(r as Buffer), data)
    assert.strictEqual(internal.offloadStats().running, 0)
  })

  it("falls back to stored blocks when zlib's output does not end with 00 00 ff ff", async () => {
    internal.resetOffload()
    const data = Buffer.from("Hello, offloaded world")
    for (const tail of ["", "ff", "ffff", "0100ffff", "0001ffff", "0000feff", "0000fffe", "ffffffff", "00000000"]) {
      const r = await offloadAnswering(data, null, hex("f248cdc9c90700" + tail))
      assert.deepStrictEqual(r, internal.storedBlocks(data), `output ending ${tail}`)
    }
    for (const output of ["", "ff", "00ffff"]) {
      const r = await offloadAnswering(data, null, hex(output))
      assert.deepStrictEqual(r, internal.storedBlocks(data), `output ${output}`)
    }
  })

  it("drops the 00 00 ff ff tail, also when it is the whole output", async () => {
    internal.resetOffload()
    const data = Buffer.from("Hello")
    assert.deepStrictEqual(await offloadAnswering(data, null, hex("f248cdc9c90700 0000ffff")), hex("f248cdc9c90700"))
    assert.deepStrictEqual(await offloadAnswering(data, null, TAIL), Buffer.alloc(0))
  })

  it("the peak is the most jobs that ever ran at once, not the latest count", async () => {
    internal.resetOffload()
    const run = (data: Buffer) => new Promise<Buffer>((resolve) => internal.deflateOffloaded(data, 15, 1, 8, resolve))
    const inputs = [noise(1000, 1), noise(1000, 2), noise(1000, 3)]
    const [a, b] = await Promise.all([run(inputs[0]!), run(inputs[1]!)])
    assert.strictEqual(internal.offloadStats().peak, 2)
    const c = await run(inputs[2]!)
    assert.deepStrictEqual(internal.offloadStats(), { limit: 2, running: 0, queued: 0, peak: 2, jobs: 3 })
    ;[a, b, c].forEach((out, i) => assert.deepStrictEqual(inflateAll(out!), inputs[i]))
    internal.resetOffload()
  })
})
