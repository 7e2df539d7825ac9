/**
 * Bytes on the wire for the load generator: the upgrade request, precomputed masked client frames,
 * permessage-deflate payloads, and the latency histogram shared between threads.
 *
 * Everything here runs once per scenario (not per message), so it favours clarity over speed.
 */
import { createHash } from "node:crypto"
import { constants as zlibConstants, deflateRawSync, inflateRawSync } from "node:zlib"

/** The key from RFC 6455 §1.3; servers do not care that every connection reuses it. */
export const WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
export const WS_ACCEPT = createHash("sha1").update(WS_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64")

export const OP_CONTINUATION = 0x0
export const OP_TEXT = 0x1
export const OP_BINARY = 0x2
export const OP_CLOSE = 0x8

/** What the generator offers when a scenario asks for permessage-deflate (RFC 7692 §7). */
export const DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover"

export const upgradeRequest = (host: string, port: number, deflate: boolean): Buffer =>
  Buffer.from(
    `GET / HTTP/1.1\r\n` +
      `Host: ${host}:${port}\r\n` +
      `Upgrade: websocket\r\n` +
      `Connection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${WS_KEY}\r\n` +
      `Sec-WebSocket-Version: 13\r\n` +
      (deflate ? `Sec-WebSocket-Extensions: ${DEFLATE_OFFER}\r\n` : "") +
      `\r\n`,
    "latin1"
  )

/** A fixed mask key: the server must unmask whatever key it gets, and a fixed one keeps frames precomputable. */
export const MASK_KEY: Uint8Array = Uint8Array.of(0x37, 0xfa, 0x21, 0x3d)

/** One masked client frame (RFC 6455 §5.2) with FIN set. */
export const maskedFrame = (opcode: number, payload: Uint8Array, rsv1 = false): Buffer => {
  const len = payload.length
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8
  const header = 2 + lenBytes + 4
  const out = Buffer.allocUnsafe(header + len)
  out[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode
  if (lenBytes === 0) {
    out[1] = 0x80 | len
  } else if (lenBytes === 2) {
    out[1] = 0x80 | 126
    out.writeUInt16BE(len, 2)
  } else {
    out[1] = 0x80 | 127
    out.writeUInt32BE(Math.floor(len / 2 ** 32), 2)
    out.writeUInt32BE(len >>> 0, 6)
  }
  out.set(MASK_KEY, 2 + lenBytes)
  for (let i = 0; i < len; i++) out[header + i] = payload[i] ^ MASK_KEY[i & 3]
  return out
}

/** A masked Close frame with status 1000 (RFC 6455 §5.5.1). */
export const closeFrame = (): Buffer => maskedFrame(OP_CLOSE, Uint8Array.of(0x03, 0xe8))

const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff])

/**
 * Compress one message as RFC 7692 §7.2.1 asks: raw deflate, sync flush, and the trailing
 * `00 00 ff ff` removed. Compressed without context, so it is valid under client_no_context_takeover.
 */
export const compressMessage = (payload: Uint8Array): Buffer => {
  const out = deflateRawSync(payload, { finishFlush: zlibConstants.Z_SYNC_FLUSH })
  if (out.length >= 4 && out.subarray(out.length - 4).equals(TRAILER)) return out.subarray(0, out.length - 4)
  return out
}

/** Inverse of {@link compressMessage} for a message that does not depend on an earlier one. */
export const decompressMessage = (payload: Uint8Array): Buffer =>
  inflateRawSync(Buffer.concat([payload, TRAILER]), { finishFlush: zlibConstants.Z_SYNC_FLUSH })

export type PayloadKind = "text" | "binary" | "json"

/** A small deterministic PRNG so every run (and every server) sees the same bytes. */
const xorshift = (seed: number) => {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s / 4294967296
  }
}

/**
 * The payload of every message in a scenario. Text is printable ASCII, binary is pseudo-random
 * bytes (incompressible), JSON is a realistic array of records that compresses about 4-6x.
 */
export const makePayload = (kind: PayloadKind, size: number): Buffer => {
  const rnd = xorshift(0x5eed + size)
  if (kind === "binary") {
    const b = Buffer.allocUnsafe(size)
    for (let i = 0; i < size; i++) b[i] = (rnd() * 256) | 0
    return b
  }
  if (kind === "text") {
    const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    let s = ""
    for (let i = 0; i < size; i++) s += alphabet[(rnd() * alphabet.length) | 0]
    return Buffer.from(s, "latin1")
  }
  const statuses = ["active", "pending", "suspended", "closed"]
  const cities = ["Lisbon", "Osaka", "Montreal", "Nairobi", "Tallinn", "Recife", "Perth", "Bergen"]
  const items: Array<unknown> = []
  let json = "[]"
  for (let id = 1; ; id++) {
    items.push({
      id,
      user: `user_${(rnd() * 100000) | 0}`,
      email: `person${id}@example.org`,
      status: statuses[(rnd() * statuses.length) | 0],
      city: cities[(rnd() * cities.length) | 0],
      score: Math.round(rnd() * 100000) / 100,
      tags: ["alpha", "beta", "gamma", "delta"].filter(() => rnd() < 0.5),
      updatedAt: new Date(1_700_000_000_000 + ((rnd() * 1e10) | 0)).toISOString()
    })
    const next = JSON.stringify(items)
    if (next.length > size) break
    json = next
  }
  return Buffer.from(json, "utf8")
}

// ---------------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets over microseconds, ~3% resolution, mergeable by addition.
// ---------------------------------------------------------------------------------------------

/** Exact below 64 µs, then 32 sub-buckets per power of two up to 2^31 µs. */
export const HIST_BUCKETS = 64 + 25 * 32

export const bucketOf = (micros: number): number => {
  const v = micros < 0 ? 0 : micros >= 2147483647 ? 2147483647 : micros | 0
  if (v < 64) return v
  const e = 31 - Math.clz32(v)
  return 64 + (e - 6) * 32 + ((v >>> (e - 5)) & 31)
}

/** The middle of a bucket, in microseconds. */
export const bucketValue = (b: number): number => {
  if (b < 64) return b
  const e = ((b - 64) >> 5) + 6
  const sub = (b - 64) & 31
  const width = 2 ** (e - 5)
  return (32 + sub) * width + width / 2
}

/** The p-quantile (0..1) of a histogram, in microseconds; NaN when it is empty. */
export const quantile = (hist: ArrayLike<number>, p: number): number => {
  let total = 0
  for (let i = 0; i < hist.length; i++) total += hist[i]
  if (total === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil(p * total))
  let seen = 0
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i]
    if (seen >= rank) return bucketValue(i)
  }
  return bucketValue(hist.length - 1)
}

// ---------------------------------------------------------------------------------------------
// Shared counters: one Uint32Array per generator thread, written by that thread only and read by
// the orchestrator at the start and end of the measured interval (no messages on the hot path).
// ---------------------------------------------------------------------------------------------

export const C_MSGS = 0
export const C_ERRORS = 1
export const C_OPEN = 2
export const C_LEN_MISMATCH = 3
export const C_VERIFY_OK = 4
export const C_VERIFY_FAIL = 5
export const C_UNEXPECTED_CLOSE = 6
export const C_DROPPED = 7
export const C_SENT = 8
export const C_CLIENT_CLOSED_FIRST = 9
export const COUNTERS = 16
export const SHARED_WORDS = COUNTERS + HIST_BUCKETS
