import { globalValue } from "effect/GlobalValue"
import { randomFillSync } from "node:crypto"
import { MessageTooBigError, ProtocolViolationError } from "../Errors.js"
import type { ProtocolError } from "../Errors.js"
import { applyMask, unmaskInto } from "./mask.js"

/** Opcodes of RFC 6455 §5.2. */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa
} as const
export type Opcode = (typeof Opcode)[keyof typeof Opcode]

export const isControl = (opcode: number): boolean => (opcode & 0x8) !== 0

/** Who we are on the wire: servers receive masked frames and send unmasked ones (§5.1). */
export type Role = "server" | "client"

/** A decoded header, reused between frames by the decoder. */
export interface FrameHeader {
  fin: boolean
  rsv1: boolean
  opcode: number
  masked: boolean
  /** Declared payload length (at most 2^53 - 1 after the checks). */
  length: number
}

/**
 * Receives what the decoder finds. Implemented by the connection as methods, so the
 * per-frame path creates no closures.
 */
export interface FrameSink {
  /** A complete, frame-locally valid header. Return an error to fail the connection. */
  onFrameHeader(header: FrameHeader): ProtocolError | undefined
  /** Unmasked payload bytes `buf[start, end)` of the current frame, as they arrive. */
  onFramePayload(buf: Buffer, start: number, end: number): ProtocolError | undefined
  /** The current frame's payload is complete. */
  onFrameEnd(): ProtocolError | undefined
  /**
   * Optional, with `onFramePayloadCopied`. For masked payload bytes the sink would copy anyway
   * (a message assembled from several reads): a view of exactly `length` bytes to receive them,
   * or an error to fail with (a size limit), or undefined to get them through `onFramePayload`.
   * The decoder unmasks while it copies into the view (one pass over the bytes instead of two).
   */
  payloadTarget?(length: number): Uint8Array | ProtocolError | undefined
  /** The `length` bytes asked for by the last `payloadTarget` are in place, unmasked. */
  onFramePayloadCopied?(length: number): ProtocolError | undefined
}

export interface FrameDecoderOptions {
  readonly role: Role
  /** Frames declaring more payload than this fail with 1009 before any payload is read. */
  readonly maxFrameSize: number
  /** Whether RSV1 may be set (permessage-deflate negotiated). */
  readonly allowRsv1: boolean
}

const HEADER = 0
const PAYLOAD = 1
const STOPPED = 2

/** Size of a header given its first two bytes. */
const headerSize = (b1: number): number => {
  const len7 = b1 & 0x7f
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0)
}

/**
 * Incremental RFC 6455 frame decoder (§5.2): headers may be cut at any byte; payload bytes
 * are handed to the sink as they arrive, unmasked in place (or, where the sink offers a
 * `payloadTarget`, unmasked while copied there). Header rules are checked before any payload
 * is read. After an error it stops and ignores all further input.
 */
export class FrameDecoder {
  private state = HEADER
  /** Made when a header is first cut by a chunk boundary. */
  private spill: Buffer | undefined = undefined
  private spilled = 0
  private remaining = 0
  // Its own 4 bytes (V8 keeps typed arrays this small inside the object: no ArrayBuffer of
  // its own), not a slice of Buffer's shared 8 KiB pool: a slice kept for the connection's
  // life keeps the whole slab alive, with whatever else was cut from it.
  private readonly maskKey: Uint8Array = new Uint8Array(4)
  private maskPos = 0
  private readonly header: FrameHeader = { fin: false, rsv1: false, opcode: 0, masked: false, length: 0 }
  private readonly expectMasked: boolean
  private readonly maxFrameSize: number
  allowRsv1: boolean

  constructor(
    private readonly sink: FrameSink,
    options: FrameDecoderOptions
  ) {
    this.expectMasked = options.role === "server"
    this.maxFrameSize = options.maxFrameSize
    this.allowRsv1 = options.allowRsv1
  }

  /** True once an error stopped the decoder, or `stop()` was called. */
  get stopped(): boolean {
    return this.state === STOPPED
  }

  /** Ignore everything from now on (after a failure or a Close, RFC 6455 §7.1.7). */
  stop(): void {
    this.state = STOPPED
  }

  /** Feeds bytes; returns the first error found, after which the decoder is stopped. */
  push(data: Buffer): ProtocolError | undefined {
    const end = data.length
    let pos = 0
    while (pos < end) {
      if (this.state === PAYLOAD) {
        const n = end - pos < this.remaining ? end - pos : this.remaining
        const sink = this.sink
        const target = this.header.masked && sink.payloadTarget !== undefined ? sink.payloadTarget(n) : undefined
        let err: ProtocolError | undefined
        if (target === undefined) {
          if (this.header.masked) this.maskPos = applyMask(data, pos, pos + n, this.maskKey, this.maskPos)
          err = sink.onFramePayload(data, pos, pos + n)
        } else if (target instanceof Uint8Array) {
          this.maskPos = unmaskInto(data, pos, pos + n, target, 0, this.maskKey, this.maskPos)
          err = sink.onFramePayloadCopied!(n)
        } else {
          err = target
        }
        if (err !== undefined) return this.halt(err)
        pos += n
        this.remaining -= n
        if (this.remaining === 0) {
          this.state = HEADER
          const e = this.sink.onFrameEnd()
          if (e !== undefined) return this.halt(e)
        }
      } else if (this.state === HEADER) {
        if (this.spilled === 0 && end - pos >= 2) {
          const size = headerSize(data[pos + 1]!)
          if (end - pos >= size) {
            const err = this.decodeHeader(data, pos)
            if (err !== undefined) return this.halt(err)
            pos += size
            continue
          }
        }
        // The header is cut by the end of this chunk: gather it in the spill area.
        const spill = this.spill ??= Buffer.allocUnsafe(14)
        while (pos < end) {
          spill[this.spilled++] = data[pos++]!
          if (this.spilled >= 2 && this.spilled === headerSize(spill[1]!)) {
            this.spilled = 0
            const err = this.decodeHeader(spill, 0)
            if (err !== undefined) return this.halt(err)
            break
          }
        }
      } else {
        return undefined
      }
    }
    return undefined
  }

  private halt(err: ProtocolError): ProtocolError {
    this.state = STOPPED
    return err
  }

  private decodeHeader(b: Buffer, p: number): ProtocolError | undefined {
    const b0 = b[p]!
    const b1 = b[p + 1]!
    const h = this.header
    h.fin = (b0 & 0x80) !== 0
    h.rsv1 = (b0 & 0x40) !== 0
    h.opcode = b0 & 0x0f
    h.masked = (b1 & 0x80) !== 0
    if ((b0 & 0x30) !== 0) return new ProtocolViolationError({ reason: "RSV2/RSV3 set without an extension" })
    if (h.rsv1 && !this.allowRsv1) return new ProtocolViolationError({ reason: "RSV1 set without an extension" })
    const op = h.opcode
    if (op > 0x2 && (op < 0x8 || op > 0xa)) {
      return new ProtocolViolationError({ reason: `reserved opcode ${op}` })
    }
    if (h.masked !== this.expectMasked) {
      return new ProtocolViolationError({ reason: this.expectMasked ? "unmasked client frame" : "masked server frame" })
    }
    const len7 = b1 & 0x7f
    let length = len7
    let q = p + 2
    if (len7 === 126) {
      length = (b[q]! << 8) | b[q + 1]!
      q += 2
      if (length < 126) return new ProtocolViolationError({ reason: "non-minimal length encoding" })
    } else if (len7 === 127) {
      const hi = b.readUInt32BE(q)
      const lo = b.readUInt32BE(q + 4)
      q += 8
      if (hi & 0x80000000) return new ProtocolViolationError({ reason: "64-bit length with the top bit set" })
      if (hi > 0x1fffff) {
        return new MessageTooBigError({ reason: "frame too big", limit: this.maxFrameSize })
      }
      length = hi * 0x100000000 + lo
      if (length < 0x10000) return new ProtocolViolationError({ reason: "non-minimal length encoding" })
    }
    if (op >= 0x8) {
      if (!h.fin) return new ProtocolViolationError({ reason: "fragmented control frame" })
      if (len7 > 125) return new ProtocolViolationError({ reason: "control frame payload over 125 bytes" })
      if (h.rsv1) return new ProtocolViolationError({ reason: "RSV1 set on a control frame" })
    }
    if (length > this.maxFrameSize) {
      return new MessageTooBigError({ reason: "frame too big", limit: this.maxFrameSize })
    }
    h.length = length
    if (h.masked) {
      this.maskKey[0] = b[q]!
      this.maskKey[1] = b[q + 1]!
      this.maskKey[2] = b[q + 2]!
      this.maskKey[3] = b[q + 3]!
      this.maskPos = 0
    }
    const err = this.sink.onFrameHeader(h)
    if (err !== undefined) return err
    if (length === 0) return this.sink.onFrameEnd()
    this.remaining = length
    this.state = PAYLOAD
    return undefined
  }
}

/** Bytes a header takes for a payload length, with or without a mask. */
export const headerLength = (length: number, masked: boolean): number =>
  (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0)

/**
 * Writes a frame header at `target[pos]` and returns the position after it. With a
 * `mask`, the 4 mask bytes follow the length; masking the payload is the caller's job.
 */
export const writeHeader = (
  target: Uint8Array,
  pos: number,
  fin: boolean,
  rsv1: boolean,
  opcode: number,
  length: number,
  mask: Uint8Array | undefined
): number => {
  target[pos++] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode
  const m = mask === undefined ? 0 : 0x80
  if (length < 126) {
    target[pos++] = m | length
  } else if (length < 0x10000) {
    target[pos++] = m | 126
    target[pos++] = length >>> 8
    target[pos++] = length & 0xff
  } else {
    target[pos++] = m | 127
    const hi = Math.floor(length / 0x100000000)
    const lo = length >>> 0
    target[pos++] = hi >>> 24
    target[pos++] = (hi >>> 16) & 0xff
    target[pos++] = (hi >>> 8) & 0xff
    target[pos++] = hi & 0xff
    target[pos++] = lo >>> 24
    target[pos++] = (lo >>> 16) & 0xff
    target[pos++] = (lo >>> 8) & 0xff
    target[pos++] = lo & 0xff
  }
  if (mask !== undefined) {
    target[pos++] = mask[0]!
    target[pos++] = mask[1]!
    target[pos++] = mask[2]!
    target[pos++] = mask[3]!
  }
  return pos
}

const MASK_POOL_SIZE = 8192
/** The process's pool of random mask bytes (one per process, shared by every client connection). */
const maskPool = globalValue(Symbol.for("@effect-websocket/protocol/Frame/maskPool"), () => ({
  bytes: Buffer.allocUnsafe(0),
  pos: 0
}))

/** Four crypto-random bytes for a client frame's mask (RFC 6455 §5.3), from a refilled pool. */
export const randomMask = (): Uint8Array => {
  const pool = maskPool
  if (pool.pos + 4 > pool.bytes.length) {
    pool.bytes = randomFillSync(Buffer.allocUnsafe(MASK_POOL_SIZE))
    pool.pos = 0
  }
  const m = pool.bytes.subarray(pool.pos, pool.pos + 4)
  pool.pos += 4
  return m
}

export interface EncodeOptions {
  readonly fin?: boolean
  readonly rsv1?: boolean
  /** Mask the frame (client role). `true` draws a random mask; bytes give a fixed one (tests). */
  readonly mask?: boolean | Uint8Array
}

/**
 * Encodes one frame as `[header, payload]` without copying an unmasked payload; a masked
 * payload is copied once (the caller's bytes are never modified).
 */
export const encodeFrame = (
  opcode: number,
  payload: Uint8Array,
  options: EncodeOptions = {}
): [Uint8Array, Uint8Array] => {
  const mask =
    options.mask === true ? randomMask() : options.mask instanceof Uint8Array ? options.mask : undefined
  const header = Buffer.allocUnsafe(headerLength(payload.length, mask !== undefined))
  writeHeader(header, 0, options.fin ?? true, options.rsv1 ?? false, opcode, payload.length, mask)
  if (mask === undefined) return [header, payload]
  const masked = Buffer.from(payload)
  applyMask(masked, 0, masked.length, mask, 0)
  return [header, masked]
}
