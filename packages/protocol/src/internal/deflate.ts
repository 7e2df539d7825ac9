/**
 * Synchronous raw DEFLATE for permessage-deflate (RFC 7692 §7.2), on persistent zlib
 * contexts.
 *
 * Node offers no public API for a zlib context that survives several synchronous calls:
 * `zlib.*Sync` create and destroy a context per call, the stream API goes through the
 * thread pool and answers later, and on Node 20 `stream._processChunk(chunk, flag)` closes
 * the native handle when it returns (`processChunkSync` ends with `_close(self)`), so it is
 * single-use. What `processChunkSync` does underneath is one call to the native handle's
 * `writeSync`, with the results left in `stream._writeState`. We do that directly. Every
 * use of Node internals (`_handle`, `_writeState`, the handle's `writeSync`, `reset`,
 * `close` and `onerror`) is in the first section below (`nativeOpen`, `nativeWrite`,
 * `closeContext`, `resetContext`), checked on Node 20.20 by the tests (golden vectors,
 * round trips, error paths).
 *
 * Node initialises zlib lazily, on a context's first write, so an unused context costs only
 * its JS objects (~1.3 KiB); memory figures for used ones are in `PerMessageDeflate.ts`.
 *
 * @since 0.1.0
 * @internal
 */
import * as Zlib from "node:zlib"
import { InternalError, InvalidPayloadError, MessageTooBigError } from "../Errors.js"

// ---------------------------------------------------------------------------------------
// Node internals, isolated
// ---------------------------------------------------------------------------------------

/** The native zlib context behind a Node zlib stream (`stream._handle`). */
interface NativeZlib {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number
  ): void
  reset(): void
  close(): void
  /** Called synchronously from inside `writeSync` when zlib reports an error. */
  onerror: (this: NativeZlib, message: string, errno: number) => void
  /** Ours: the last error reported through `onerror`. */
  zerror: string | undefined
  zerrno: number
}

interface StreamInternals {
  readonly _handle: NativeZlib | null
  /** `[availOutAfter, availInAfter]` of the last write. */
  readonly _writeState: Uint32Array
}

function recordError(this: NativeZlib, message: string, errno: number): void {
  // Replaces Node's own handler, which would destroy the stream and emit 'error' on the
  // next tick (an uncaught exception: nobody listens on the stream object).
  this.zerror = message
  this.zerrno = errno
}

const Z_SYNC_FLUSH = Zlib.constants.Z_SYNC_FLUSH
const Z_DATA_ERROR = Zlib.constants.Z_DATA_ERROR

/** Which way a context works. */
export type ZKind = "deflate" | "inflate"

/**
 * One zlib context. `handle` is undefined once closed; writing then would hit a native
 * CHECK and abort the process, so every write goes through `nativeWrite`, which is only
 * reached with an open handle.
 */
export class ZContext {
  handle: NativeZlib | undefined
  readonly state: Uint32Array
  readonly kind: ZKind
  readonly windowBits: number
  /** Pool key (deflate: windowBits/level/memLevel; inflate: windowBits). */
  readonly key: number
  constructor(kind: ZKind, handle: NativeZlib, state: Uint32Array, windowBits: number, key: number) {
    this.kind = kind
    this.handle = handle
    this.state = state
    this.windowBits = windowBits
    this.key = key
  }
}

let live = 0

/** Open zlib contexts in this process that this module created and has not closed (tests). */
export const liveContexts = (): number => live

/**
 * Creates a raw deflate or inflate context through the public constructors (which validate
 * the parameters), then keeps only its native handle and write-state array. `chunkSize` is
 * the minimum so the stream's own unused output buffer costs 64 bytes instead of 16 KiB.
 * Throws only if zlib cannot initialise (out of memory); callers catch.
 */
const nativeOpen = (kind: ZKind, windowBits: number, level: number, memLevel: number, key: number): ZContext => {
  const stream = (kind === "deflate"
    ? Zlib.createDeflateRaw({ windowBits, level, memLevel, chunkSize: Zlib.constants.Z_MIN_CHUNK })
    : Zlib.createInflateRaw({ windowBits, chunkSize: Zlib.constants.Z_MIN_CHUNK })) as unknown as StreamInternals
  const handle = stream._handle
  const state = stream._writeState
  if (handle === null || typeof handle.writeSync !== "function" || !(state instanceof Uint32Array)) {
    throw new Error("node:zlib internals changed: no _handle.writeSync / _writeState")
  }
  handle.onerror = recordError
  handle.zerror = undefined
  handle.zerrno = 0
  live++
  return new ZContext(kind, handle, state, windowBits, key)
}

/**
 * One synchronous zlib call with Z_SYNC_FLUSH. Afterwards `z.state[0]` is the output space
 * left and `z.state[1]` the input left. Returns the zlib error message, if any (`z.state`
 * is then stale).
 */
const nativeWrite = (
  z: ZContext,
  input: Uint8Array,
  inOff: number,
  inLen: number,
  out: Uint8Array,
  outLen: number
): string | undefined => {
  const h = z.handle!
  h.writeSync(Z_SYNC_FLUSH, input, inOff, inLen, out, 0, outLen)
  return h.zerror
}

/** Closes a context's native handle (frees zlib's memory now); idempotent. */
export const closeContext = (z: ZContext): void => {
  const h = z.handle
  if (h === undefined) return
  z.handle = undefined
  live--
  h.close()
}

/** Back to a fresh stream: empty window, no pending bits (deflateReset / inflateReset). */
export const resetContext = (z: ZContext): void => {
  z.handle!.reset()
}

// ---------------------------------------------------------------------------------------
// Shared state: scratch output and idle-context pools
// ---------------------------------------------------------------------------------------

// Everything here is synchronous and never re-entered, so one scratch buffer serves every
// call in the process; results are copied out of it into exactly-sized buffers the caller
// owns. Nothing in it survives from one call to the next.
const SCRATCH = Buffer.allocUnsafeSlow(64 * 1024)

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])
const EMPTY = Buffer.alloc(0)
const EMPTY_BLOCK = Buffer.from([0x00])

// Idle, reset contexts. A deflater is only ever borrowed for the span of one synchronous
// `compress`, so one per parameter set is all that is used; inflaters are borrowed from a
// message's first frame to its last, so several connections may hold one at once.
const MAX_IDLE_DEFLATERS = 2
const MAX_IDLE_INFLATERS = 16
const MAX_POOL_KEYS = 32
const deflatePool = new Map<number, Array<ZContext>>()
const inflatePool = new Map<number, Array<ZContext>>()

const deflateKey = (windowBits: number, level: number, memLevel: number): number =>
  windowBits * 1000 + (level + 1) * 10 + memLevel

const take = (pool: Map<number, Array<ZContext>>, key: number): ZContext | undefined => {
  const list = pool.get(key)
  return list === undefined ? undefined : list.pop()
}

const give = (pool: Map<number, Array<ZContext>>, z: ZContext, max: number): void => {
  let list = pool.get(z.key)
  if (list === undefined) {
    if (pool.size >= MAX_POOL_KEYS) return closeContext(z)
    list = []
    pool.set(z.key, list)
  }
  if (list.length >= max) return closeContext(z)
  list.push(z)
}

/**
 * Closes every idle context kept for reuse (at shutdown, or in tests). Contexts still held
 * by connections are not affected.
 */
export const releaseIdleContexts = (): void => {
  for (const pool of [deflatePool, inflatePool]) {
    for (const list of pool.values()) for (const z of list) closeContext(z)
    pool.clear()
  }
}

/** Opens a context, or returns the error that zlib's initialisation threw. */
export const openContext = (
  kind: ZKind,
  windowBits: number,
  level: number,
  memLevel: number
): ZContext | InternalError => {
  const key = kind === "deflate" ? deflateKey(windowBits, level, memLevel) : windowBits
  try {
    return nativeOpen(kind, windowBits, level, memLevel, key)
  } catch (cause) {
    return new InternalError({ reason: `cannot create a zlib ${kind} context`, cause })
  }
}

/** A reset deflater for one message, from the pool or new. Give it back with `releaseDeflater`. */
export const borrowDeflater = (windowBits: number, level: number, memLevel: number): ZContext | InternalError =>
  take(deflatePool, deflateKey(windowBits, level, memLevel)) ?? openContext("deflate", windowBits, level, memLevel)

/** Resets a borrowed deflater and keeps it for the next borrower. */
export const releaseDeflater = (z: ZContext): void => {
  if (z.handle === undefined) return
  resetContext(z)
  give(deflatePool, z, MAX_IDLE_DEFLATERS)
}

/** A reset inflater, from the pool or new. Give it back with `releaseInflater`. */
export const borrowInflater = (windowBits: number): ZContext | InternalError =>
  take(inflatePool, windowBits) ?? openContext("inflate", windowBits, 0, 0)

/** Resets a borrowed inflater and keeps it for the next borrower. */
export const releaseInflater = (z: ZContext): void => {
  if (z.handle === undefined) return
  resetContext(z)
  give(inflatePool, z, MAX_IDLE_INFLATERS)
}

// ---------------------------------------------------------------------------------------
// Compression (RFC 7692 §7.2.1)
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// Offloaded compression: libuv's thread pool, with a process-wide limit
// ---------------------------------------------------------------------------------------

// libuv's pool (4 threads unless UV_THREADPOOL_SIZE says otherwise) also runs file system
// and DNS work, and every queued zlib job holds its input and a zlib context (~300 KiB at
// the defaults) until it runs: ws learned to cap them (its `concurrencyLimit`). Ours is one
// FIFO queue for the whole process, whatever the number of servers and connections.
export const DEFAULT_OFFLOAD_CONCURRENCY = 2
let offloadLimit = DEFAULT_OFFLOAD_CONCURRENCY
let offloadLimitSet = false
let offloadRunning = 0
let offloadPeak = 0
let offloadJobs = 0
const offloadQueue: Array<() => void> = []

/**
 * Lowers the process-wide limit on offloaded zlib jobs running at once (the smallest value
 * any configuration asked for applies; the first call replaces the default).
 */
export const limitOffloadConcurrency = (n: number): void => {
  offloadLimit = offloadLimitSet ? Math.min(offloadLimit, n) : n
  offloadLimitSet = true
}

/** The offload queue's state, for metrics and tests. */
export const offloadStats = (): {
  readonly limit: number
  readonly running: number
  readonly queued: number
  readonly peak: number
  readonly jobs: number
} => ({ limit: offloadLimit, running: offloadRunning, queued: offloadQueue.length, peak: offloadPeak, jobs: offloadJobs })

/** Tests only: back to the default limit and zeroed counters (nothing may be running). */
export const resetOffload = (): void => {
  offloadLimit = DEFAULT_OFFLOAD_CONCURRENCY
  offloadLimitSet = false
  offloadPeak = offloadJobs = 0
}

/**
 * Compresses one whole message on libuv's thread pool, on a fresh context (it refers to no
 * earlier message), with a sync flush and the `00 00 ff ff` tail removed: the payload of a
 * frame with RSV1. At most the process-wide limit of these run at once; the rest wait in
 * order. `done` is called once, from the event loop; if zlib fails, with the message as
 * blocks with no compression (always valid).
 */
export const deflateOffloaded = (
  data: Uint8Array,
  windowBits: number,
  level: number,
  memLevel: number,
  done: (payload: Buffer) => void
): void => {
  const run = () => {
    offloadRunning++
    offloadJobs++
    if (offloadRunning > offloadPeak) offloadPeak = offloadRunning
    Zlib.deflateRaw(data, { windowBits, level, memLevel, finishFlush: Zlib.constants.Z_SYNC_FLUSH }, (error, out) => {
      offloadRunning--
      const next = offloadQueue.shift()
      if (next !== undefined) next()
      done(error !== null || !endsWithTail(out) ? storedBlocks(data) : out.subarray(0, out.length - 4))
    })
  }
  if (offloadRunning < offloadLimit) run()
  else offloadQueue.push(run)
}

const endsWithTail = (b: Buffer): boolean =>
  b.length >= 4 && b[b.length - 4] === 0 && b[b.length - 3] === 0 && b[b.length - 2] === 0xff &&
  b[b.length - 1] === 0xff

/**
 * DEFLATE blocks with no compression (RFC 1951 §3.2.4) holding `data`, followed by the
 * header byte of the empty stored block whose `00 00 ff ff` the receiver appends: a valid
 * compressed payload that needs no zlib context (the fallback when zlib fails).
 */
export const storedBlocks = (data: Uint8Array): Buffer => {
  const blocks = Math.max(1, Math.ceil(data.length / 0xffff))
  const out = Buffer.allocUnsafe(data.length + blocks * 5 + 1)
  let o = 0
  for (let i = 0; i < blocks; i++) {
    const start = i * 0xffff
    const len = Math.min(0xffff, data.length - start)
    out[o] = 0x00
    out[o + 1] = len & 0xff
    out[o + 2] = len >>> 8
    out[o + 3] = ~len & 0xff
    out[o + 4] = (~len >>> 8) & 0xff
    out.set(data.subarray(start, start + len), o + 5)
    o += 5 + len
  }
  out[o] = 0x00
  return out
}

/**
 * Compresses one whole message with Z_SYNC_FLUSH and returns it without the final
 * `00 00 ff ff`. On a zlib error returns the error; the context is then unusable.
 */
export const deflateMessage = (z: ZContext, data: Uint8Array): Buffer | InternalError => {
  if (data.length === 0) {
    // An empty stored block: the peer appends `00 00 ff ff` to this one header byte. The
    // stream is already at a byte-aligned block boundary, so the window is unaffected.
    return Buffer.from(EMPTY_BLOCK)
  }
  let first: Buffer | undefined
  let rest: Array<Buffer> | undefined
  let total = 0
  let inOff = 0
  let inLen = data.length
  for (;;) {
    const err = nativeWrite(z, data, inOff, inLen, SCRATCH, SCRATCH.length)
    if (err !== undefined) return new InternalError({ reason: "zlib deflate failed", cause: err })
    const availOut = z.state[0]
    const availIn = z.state[1]
    const produced = SCRATCH.length - availOut
    inOff += inLen - availIn
    inLen = availIn
    if (availOut === 0) {
      // Scratch full: keep this piece and go on.
      const piece = Buffer.allocUnsafe(produced)
      SCRATCH.copy(piece, 0, 0, produced)
      if (first === undefined) first = piece
      else (rest ??= []).push(piece)
      total += produced
      continue
    }
    // Done: the output ends with the sync flush's empty stored block, whose last four bytes
    // (`00 00 ff ff`) are dropped; they may straddle the previous piece.
    const all = total + produced
    if (all < 4 || (produced >= 4 && SCRATCH.readUInt32BE(produced - 4) !== 0x0000ffff)) {
      return new InternalError({ reason: "zlib deflate output does not end with a sync flush marker" })
    }
    const size = all - 4
    const out = Buffer.allocUnsafe(size)
    let o = 0
    if (first !== undefined) {
      o += first.copy(out, o, 0, Math.min(first.length, size - o))
      if (rest !== undefined) for (const p of rest) o += p.copy(out, o, 0, Math.min(p.length, size - o))
    }
    if (o < size) SCRATCH.copy(out, o, 0, size - o)
    return out
  }
}

// ---------------------------------------------------------------------------------------
// Decompression (RFC 7692 §7.2.2)
// ---------------------------------------------------------------------------------------

const tooBig = (limit: number): MessageTooBigError =>
  new MessageTooBigError({ reason: "message too big after decompression", limit })

/**
 * Inflates one piece of a compressed message. With `fin`, then inflates the `00 00 ff ff`
 * tail that the sender removed. Output beyond `maxBytes` is never kept: zlib gets at most
 * `maxBytes + 1` bytes of room, and one byte too many fails the message with 1009.
 *
 * When the sender ends a DEFLATE stream (a block with BFINAL set, RFC 7692 §7.2.3.4), zlib
 * stops and reports leftover input; the context is reset and the rest inflated as a new
 * stream (what remains of the appended tail alone is dropped). The sliding window is lost
 * at that point, so a sender that ends the stream must not refer back across it.
 *
 * On error the context is unusable: the caller closes it.
 */
export const inflatePiece = (
  z: ZContext,
  data: Uint8Array,
  fin: boolean,
  maxBytes: number
): Buffer | MessageTooBigError | InvalidPayloadError | InternalError => {
  // a limit counts whole bytes (a fractional one would give zlib a fractional room)
  maxBytes = maxBytes >= 0 ? Math.floor(maxBytes) : 0
  let input: Uint8Array = data
  let inOff = 0
  let inLen = data.length
  let inTail = false
  if (inLen === 0) {
    if (!fin) return EMPTY
    input = TAIL
    inLen = 4
    inTail = true
  }
  let first: Buffer | undefined
  let rest: Array<Buffer> | undefined
  let total = 0
  let justReset = false
  for (;;) {
    const room = Math.min(SCRATCH.length, maxBytes - total + 1)
    const before = inLen
    const err = nativeWrite(z, input, inOff, inLen, SCRATCH, room)
    if (err !== undefined) {
      return z.handle!.zerrno === Z_DATA_ERROR
        ? new InvalidPayloadError({ reason: `invalid compressed data: ${err}` })
        : new InternalError({ reason: "zlib inflate failed", cause: err })
    }
    const availOut = z.state[0]
    const availIn = z.state[1]
    const produced = room - availOut
    // A fresh stream consumes at least one byte; if it did not, give up rather than spin.
    if (justReset && produced === 0 && availIn === before) {
      return new InvalidPayloadError({ reason: "invalid compressed data: no progress after end of stream" })
    }
    justReset = false
    if (produced > 0) {
      total += produced
      if (total > maxBytes) return tooBig(maxBytes)
      const piece = Buffer.allocUnsafe(produced)
      SCRATCH.copy(piece, 0, 0, produced)
      if (first === undefined) first = piece
      else (rest ??= []).push(piece)
    }
    inOff += inLen - availIn
    inLen = availIn
    if (availOut === 0) continue // no room left: there may be more output
    if (inLen > 0) {
      // Room and input left, yet zlib stopped: the DEFLATE stream ended (BFINAL).
      if (inTail) {
        resetContext(z)
        break
      }
      resetContext(z)
      justReset = true
      continue
    }
    if (fin && !inTail) {
      input = TAIL
      inOff = 0
      inLen = 4
      inTail = true
      continue
    }
    break
  }
  if (first === undefined) return EMPTY
  if (rest === undefined) return first
  rest.unshift(first)
  return Buffer.concat(rest, total)
}
