import { encodeFrame } from "../src/Frame.js"
import { Connection } from "../src/Connection.js"
import type { ConnectionEvent, ConnectionOptions } from "../src/Connection.js"
import { assert } from "@effect/vitest"
import type { InternalError, InvalidPayloadError, MessageTooBigError } from "../src/Errors.js"

/**
 * A property's number of runs, scaled by PROPERTY_RUNS_SCALE (default 1): mutation testing
 * (`pnpm mutate`) runs the covering tests once per mutant and uses a tenth of the runs.
 */
export const runs = (n: number): number =>
  Math.max(10, Math.round(n * Number(process.env.PROPERTY_RUNS_SCALE ?? 1)))

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex")

const MASK = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d)

/** A client frame (masked unless told otherwise), as one buffer. */
export const frame = (
  opcode: number,
  payload: Uint8Array | string = "",
  options: { fin?: boolean; rsv1?: boolean; mask?: Uint8Array | false } = {}
): Buffer => {
  const bytes = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload
  const [h, p] = encodeFrame(opcode, bytes, {
    fin: options.fin ?? true,
    rsv1: options.rsv1 ?? false,
    ...(options.mask === false ? {} : { mask: options.mask ?? MASK })
  })
  return Buffer.concat([h, p])
}

export const closePayload = (code: number, reason: string | Uint8Array = ""): Buffer => {
  const r = typeof reason === "string" ? Buffer.from(reason, "utf8") : Buffer.from(reason)
  const b = Buffer.alloc(2 + r.length)
  b.writeUInt16BE(code, 0)
  r.copy(b, 2)
  return b
}

/** Feeds `chunks` to a fresh server connection and returns what came out. */
export const run = (chunks: ReadonlyArray<Uint8Array>, options: ConnectionOptions = {}) => {
  const c = new Connection(options)
  const events: Array<ConnectionEvent> = []
  for (const chunk of chunks) {
    // the decoder unmasks in place: give it its own copy, as a socket would
    c.receiveData(Buffer.from(chunk))
    events.push(...c.eventsReceived())
  }
  return { connection: c, events, sent: Buffer.concat(c.dataToSend()) }
}

/** Splits `bytes` at the given cut points (sorted, deduplicated, in range). */
export const splitAt = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((c) => Math.max(0, Math.min(bytes.length, c))))].sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let prev = 0
  for (const p of points) {
    if (p > prev) out.push(bytes.subarray(prev, p))
    prev = p
  }
  if (prev < bytes.length) out.push(bytes.subarray(prev))
  return out
}

/** Events in a comparable form (Buffers as hex). */
export const plain = (events: ReadonlyArray<ConnectionEvent>): Array<unknown> =>
  events.map((e) => ("data" in e && typeof e.data !== "string" ? { ...e, data: Buffer.from(e.data).toString("hex") } : e))

/** Unwraps a successful decompression; fails the test with the error otherwise. */
export const ok = (r: Buffer | InvalidPayloadError | MessageTooBigError | InternalError): Buffer => {
  if (!Buffer.isBuffer(r)) assert.fail(`expected bytes, got ${r._tag}: ${r.message}`)
  return r
}

/** Text with plenty of repeats, deterministic. */
export const jsonText = (n: number, seed = 1): Buffer => {
  let s = seed
  const rnd = (k: number) => ((s = (s * 1103515245 + 12345) & 0x7fffffff) % k)
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
  let out = ""
  while (out.length < n) out += JSON.stringify({ id: rnd(100000), name: words[rnd(8)], ok: rnd(2) === 1 }) + ","
  return Buffer.from(out.slice(0, n))
}

/** Asserts that `f` throws an instance of `type` whose message is exactly `message`. */
export const assertThrowsExactly = (f: () => unknown, type: typeof TypeError | typeof RangeError, message: string): void => {
  try {
    f()
  } catch (error) {
    assert.instanceOf(error, type)
    assert.strictEqual((error as Error).message, message)
    return
  }
  assert.fail(`expected a ${type.name}: ${message}`)
}
