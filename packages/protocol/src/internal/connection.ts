import { globalValue } from "effect/GlobalValue"
import { isUtf8 } from "node:buffer"
import {
  InternalError,
  InvalidPayloadError,
  InvalidSendError,
  MessageTooBigError,
  PolicyViolationError,
  ProtocolViolationError
} from "../Errors.js"
import type { ProtocolError } from "../Errors.js"
import { FrameDecoder, headerLength, Opcode, randomMask, writeHeader } from "./frame.js"
import type { FrameHeader, FrameSink, Role } from "./frame.js"
import { applyMask } from "./mask.js"
import { Utf8Validator } from "./utf8.js"

/** What the peer sent, one event per message or control frame. */
export type ConnectionEvent =
  | { readonly _tag: "Text"; readonly data: string }
  | { readonly _tag: "Binary"; readonly data: Buffer }
  | { readonly _tag: "Ping"; readonly data: Buffer }
  | { readonly _tag: "Pong"; readonly data: Buffer }
  | {
    readonly _tag: "Close"
    /** 1005 when the Close frame carried no code (RFC 6455 §7.1.5). */
    readonly code: number
    readonly reason: string
  }

/**
 * The compression hook the connection drives synchronously (permessage-deflate, RFC 7692).
 * `decompress` receives a message's compressed bytes as they arrive and is called once more
 * with `fin` at the end of the message; `maxBytes` is what the message may still inflate to.
 */
export interface MessageCompression {
  decompress(
    data: Uint8Array,
    fin: boolean,
    maxBytes: number
  ): Buffer | MessageTooBigError | InvalidPayloadError | InternalError
  compress(data: Uint8Array): Buffer
  shouldCompress(byteLength: number): boolean
  /** Large messages may be compressed later, off the event loop (see `Connection.compressLater`). */
  shouldOffload?(byteLength: number): boolean
  compressOffloaded?(data: Uint8Array, done: (payload: Buffer) => void): void
  close(): void
}

export interface ConnectionOptions {
  /** Default "server": expects masked frames, sends unmasked ones. */
  readonly role?: Role
  /** Largest message, after inflation, in bytes. Default 1 MiB. */
  readonly maxMessageSize?: number
  /** Largest single frame payload. Default: `maxMessageSize`. */
  readonly maxFrameSize?: number
  /** Most frames in one message. Default 65,536 (Autobahn 9.3.1 needs that many). */
  readonly maxFragments?: number
  /** Negotiated permessage-deflate, if any. */
  readonly compression?: MessageCompression | undefined
  /**
   * Hold back the Close frame owed to the peer (the reply to its Close, or the Close of a
   * failure) until `sendOwedClose()` is called, so that an application that handles
   * messages asynchronously can still answer the messages that came before it (RFC 6455
   * §5.5.1 lets an endpoint finish sending its current messages first). Sends stay allowed
   * meanwhile; input is already discarded. Default false: the Close is queued at once.
   */
  readonly deferClose?: boolean
}

export const ConnectionState = { Open: "OPEN", Closing: "CLOSING", Closed: "CLOSED" } as const
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState]

/**
 * Why a Close with this code and reason may not be sent (the code must be one an endpoint may
 * send, the reason at most 123 bytes of UTF-8), or undefined when it may.
 */
export const checkClose = (code: number, reason: string): InvalidSendError | undefined =>
  !isValidCloseCode(code)
    ? new InvalidSendError({ kind: "CloseCode", reason: `close code ${code} may not be sent` })
    : Buffer.byteLength(reason, "utf8") > MAX_CLOSE_REASON
    ? new InvalidSendError({ kind: "CloseReason", reason: "close reason over 123 bytes" })
    : undefined

/** Close codes an endpoint may receive (RFC 6455 §7.4, IANA registry 1012-1014, 3000-4999). */
export const isValidCloseCode = (code: number): boolean =>
  (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)

const EMPTY = Buffer.alloc(0)
const SLAB_SIZE = 64 * 1024
/** Payloads up to this size are copied next to their header; larger ones go out as views. */
const COPY_LIMIT = 4096
const DEFAULT_MAX_MESSAGE = 1024 * 1024
const DEFAULT_MAX_FRAGMENTS = 65_536
/** A Close frame holds 125 bytes: 2 for the code, 123 for the reason. */
const MAX_CLOSE_REASON = 123
/**
 * Copied for each batch of events: `slice()` makes an array without an allocation site, so V8
 * cannot decide to allocate it in the old generation, where an array that dies young would keep
 * the message buffers it held alive through every scavenge until the next mark-compact (see
 * "V8's pretenuring" in bench/README.md). A literal `[]` can be so pretenured.
 */
const NO_EVENTS: ReadonlyArray<never> = []

/**
 * One output slab shared by every connection of the process (like Node's Buffer pool):
 * headers and small payloads are bump-allocated in it, so an idle connection holds no
 * output memory. Regions handed out are never written again; a full slab is replaced.
 */
const slabs = globalValue(Symbol.for("@effect-websocket/protocol/Connection/slab"), () => ({
  slab: Buffer.allocUnsafe(SLAB_SIZE),
  pos: 0
}))

const toBuffer = (u: Uint8Array): Buffer =>
  Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength)

/** Cuts a reason to 123 bytes without splitting a code point. */
const truncateReason = (reason: string): Buffer => {
  const bytes = Buffer.from(reason, "utf8")
  if (bytes.length <= MAX_CLOSE_REASON) return bytes
  let end = MAX_CLOSE_REASON
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return bytes.subarray(0, end)
}

/**
 * The RFC 6455 state machine of one connection, sans I/O: bytes go in with `receiveData`
 * and `receiveEof`; messages come out of `eventsReceived()`; bytes to write come out of
 * `dataToSend()`. It owns no socket and no clock: when `closeExpected` turns true the I/O
 * layer arms its close timeout, and when `closeTransport` turns true it closes TCP after
 * writing what `dataToSend()` returned (the server closes first, §7.1.1).
 *
 * Nothing the peer sends makes it throw: failures come back as `ProtocolError` values that
 * carry their close code, the Close frame is queued, and all later input is discarded
 * (§7.1.7).
 */
export class Connection implements FrameSink {
  readonly role: Role
  readonly maxMessageSize: number
  readonly maxFragments: number
  private readonly decoder: FrameDecoder
  private readonly compression: MessageCompression | undefined
  private readonly deferClose: boolean
  private owed: { readonly code: number | undefined; readonly reason: string } | undefined = undefined

  private _state: ConnectionState = ConnectionState.Open
  private _failure: ProtocolError | undefined = undefined
  private _closeReceived: { readonly code: number; readonly reason: string } | undefined = undefined
  private _closeSent: { readonly code: number; readonly reason: string } | undefined = undefined
  private _closeTransport = false
  private _eofReceived = false
  private events: Array<ConnectionEvent> = NO_EVENTS.slice()

  // current frame
  private frameOpcode = 0
  private frameFin = false
  private frameLength = 0
  /** A control frame's payload (made on the first control frame). */
  private control: Buffer | undefined = undefined
  private controlLength = 0

  // current message
  private msgOpcode = 0
  private msgCompressed = false
  private msgFragments = 0
  private msgWireBytes = 0
  private msgSize = 0
  private msgView: Buffer | undefined = undefined
  private msgBuf: Buffer | undefined = undefined
  private readonly utf8 = new Utf8Validator()

  // output: frames are written into the shared slab; `seg*` is this connection's pending run
  private out: Array<Uint8Array> = []
  private outBytes = 0
  private segSlab: Buffer | undefined = undefined
  private segStart = 0
  private segEnd = 0

  constructor(options: ConnectionOptions = {}) {
    this.role = options.role ?? "server"
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE
    this.maxFragments = options.maxFragments ?? DEFAULT_MAX_FRAGMENTS
    this.compression = options.compression
    this.deferClose = options.deferClose ?? false
    this.decoder = new FrameDecoder(this, {
      role: this.role,
      maxFrameSize: options.maxFrameSize ?? this.maxMessageSize,
      allowRsv1: this.compression !== undefined
    })
  }

  /** OPEN, CLOSING (we sent Close and wait for the peer's) or CLOSED. */
  get state(): ConnectionState {
    return this._state
  }

  /** The protocol error that failed the connection, if one did. */
  get failure(): ProtocolError | undefined {
    return this._failure
  }

  /** The peer's Close frame, if one arrived. */
  get closeReceived(): { readonly code: number; readonly reason: string } | undefined {
    return this._closeReceived
  }

  /** The Close frame we sent, if any. */
  get closeSent(): { readonly code: number; readonly reason: string } | undefined {
    return this._closeSent
  }

  /** Whether both Close frames were exchanged (the closing handshake completed). */
  get closeHandshakeDone(): boolean {
    return this._closeReceived !== undefined && this._closeSent !== undefined && this._failure === undefined
  }

  /**
   * How the connection ended, as the code and reason an application reports: the failure's,
   * else the peer's Close, else ours once the closing handshake completed, else 1006 (no
   * closing handshake). `wasClean` is `closeHandshakeDone`.
   */
  closeOutcome(): { readonly code: number; readonly reason: string; readonly wasClean: boolean } {
    const failure = this._failure
    const wasClean = this.closeHandshakeDone
    if (failure !== undefined) return { code: failure.closeCode, reason: failure.reason, wasClean }
    const last = this._closeReceived ?? (wasClean ? this._closeSent : undefined)
    return last === undefined ? { code: 1006, reason: "", wasClean } : { code: last.code, reason: last.reason, wasClean }
  }

  /** True once the peer closed TCP. */
  get eofReceived(): boolean {
    return this._eofReceived
  }

  /**
   * True when the I/O layer should close the transport after writing `dataToSend()`:
   * after the closing handshake on the server side, after a failure, or after the peer's EOF.
   */
  get closeTransport(): boolean {
    return this._closeTransport
  }

  /** True when the connection is closing: the I/O layer should arm its close timeout. */
  get closeExpected(): boolean {
    return this._state !== ConnectionState.Open || this.owed !== undefined
  }

  /** True while a Close frame is owed to the peer and held back (`deferClose`). */
  get closeOwed(): boolean {
    return this.owed !== undefined
  }

  /** Sends the Close frame held back by `deferClose`, and closes. No-op when none is owed. */
  sendOwedClose(): void {
    const owed = this.owed
    if (owed === undefined) return
    this.owed = undefined
    this.queueClose(owed.code, owed.reason)
    this._state = ConnectionState.Closed
    if (this.role === "server" || this._failure !== undefined) this._closeTransport = true
  }

  /** Bytes queued for writing and not yet taken by `dataToSend()`. */
  get bufferedAmount(): number {
    return this.outBytes
  }

  // ---------------------------------------------------------------- input

  /**
   * Feeds bytes from the transport. Returns the error that failed the connection if these
   * bytes did (its Close frame is then queued); later input is ignored.
   */
  receiveData(data: Uint8Array): ProtocolError | undefined {
    if (this.decoder.stopped) return undefined
    const err = this.decoder.push(toBuffer(data))
    if (err !== undefined) this.fail(err)
    return err
  }

  /** The peer closed its side of TCP. Anything after this is an abnormal closure (1006) unless closed. */
  receiveEof(): void {
    this._eofReceived = true
    this.owed = undefined
    this.decoder.stop()
    if (this._state !== ConnectionState.Closed) this._state = ConnectionState.Closed
    this._closeTransport = true
    this.releaseMessage()
  }

  /** Takes the events decoded so far. */
  eventsReceived(): Array<ConnectionEvent> {
    const events = this.events
    if (events.length === 0) return events
    this.events = NO_EVENTS.slice()
    return events
  }

  /** @internal FrameSink */
  onFrameHeader(h: FrameHeader): ProtocolError | undefined {
    const op = h.opcode
    this.frameOpcode = op
    this.frameFin = h.fin
    this.frameLength = h.length
    if (op >= 0x8) {
      this.controlLength = 0
      this.control ??= Buffer.allocUnsafe(125)
      return undefined
    }
    if (op === Opcode.Continuation) {
      if (this.msgOpcode === 0) return new ProtocolViolationError({ reason: "continuation frame without a message" })
      if (h.rsv1) return new ProtocolViolationError({ reason: "RSV1 set on a continuation frame" })
      if (++this.msgFragments > this.maxFragments) {
        return new PolicyViolationError({ reason: "too many fragments" })
      }
    } else {
      if (this.msgOpcode !== 0) return new ProtocolViolationError({ reason: "data frame inside a fragmented message" })
      this.msgOpcode = op
      this.msgCompressed = h.rsv1
      this.msgFragments = 1
      this.msgWireBytes = 0
      this.msgSize = 0
      if (op === Opcode.Text) this.utf8.reset()
    }
    this.msgWireBytes += h.length
    if (this.msgWireBytes > this.maxMessageSize) {
      return new MessageTooBigError({ reason: "message too big", limit: this.maxMessageSize })
    }
    return undefined
  }

  /** @internal FrameSink */
  onFramePayload(buf: Buffer, start: number, end: number): ProtocolError | undefined {
    if (this.frameOpcode >= 0x8) {
      buf.copy(this.control!, this.controlLength, start, end)
      this.controlLength += end - start
      return undefined
    }
    if (this.msgCompressed) {
      const out = this.compression!.decompress(
        buf.subarray(start, end),
        false,
        this.maxMessageSize - this.msgSize
      )
      if (!Buffer.isBuffer(out)) return out
      return this.append(out, 0, out.length)
    }
    return this.append(buf, start, end)
  }

  /** @internal FrameSink */
  onFrameEnd(): ProtocolError | undefined {
    const op = this.frameOpcode
    if (op >= 0x8) return this.onControl(op)
    if (!this.frameFin) return undefined
    if (this.msgCompressed) {
      const out = this.compression!.decompress(EMPTY, true, this.maxMessageSize - this.msgSize)
      if (!Buffer.isBuffer(out)) return out
      const err = this.append(out, 0, out.length)
      if (err !== undefined) return err
    }
    const data = this.msgBuf !== undefined
      ? this.msgBuf.subarray(0, this.msgSize)
      : this.msgView ?? EMPTY
    if (this.msgOpcode === Opcode.Text) {
      if (!this.utf8.complete) return new InvalidPayloadError({ reason: "text message ends inside a code point" })
      this.events.push({ _tag: "Text", data: data.toString("utf8") })
    } else {
      this.events.push({ _tag: "Binary", data })
    }
    this.releaseMessage()
    return undefined
  }

  private releaseMessage(): void {
    this.msgOpcode = 0
    this.msgView = undefined
    this.msgBuf = undefined
    this.msgSize = 0
  }

  /**
   * Adds message bytes. The first piece is kept as a view (no copy: a message in one frame
   * and one read is never copied); later pieces go into one buffer (see `messageRoom`).
   */
  private append(buf: Buffer, start: number, end: number): ProtocolError | undefined {
    const n = end - start
    if (n === 0) return undefined
    if (this.msgOpcode === Opcode.Text && !this.utf8.validate(buf, start, end)) {
      return new InvalidPayloadError({ reason: "invalid UTF-8 in a text message" })
    }
    if (this.msgSize === 0) {
      if (n > this.maxMessageSize) {
        return new MessageTooBigError({ reason: "message too big", limit: this.maxMessageSize })
      }
      this.msgView = buf.subarray(start, end)
      this.msgSize = n
      return undefined
    }
    const acc = this.messageRoom(n)
    if (!Buffer.isBuffer(acc)) return acc
    buf.copy(acc, this.msgSize, start, end)
    this.msgSize += n
    return undefined
  }

  /**
   * The message buffer, with room for `n` more bytes after `msgSize`. Sized from the frame
   * length for a message in one frame, growing geometrically up to the message limit for
   * fragmented ones; the first piece moves into it from its view.
   */
  private messageRoom(n: number): Buffer | ProtocolError {
    const size = this.msgSize + n
    if (size > this.maxMessageSize) {
      return new MessageTooBigError({ reason: "message too big", limit: this.maxMessageSize })
    }
    let acc = this.msgBuf
    if (acc === undefined || acc.length < size) {
      const wanted = this.msgFragments === 1 && !this.msgCompressed && this.frameFin
        ? this.frameLength
        : Math.max(size, acc === undefined ? 2 * size : 2 * acc.length)
      const next = Buffer.allocUnsafe(Math.min(Math.max(wanted, size), this.maxMessageSize))
      if (acc === undefined) this.msgView!.copy(next, 0)
      else acc.copy(next, 0, 0, this.msgSize)
      this.msgView = undefined
      this.msgBuf = acc = next
    }
    return acc
  }

  /**
   * @internal FrameSink: data-frame bytes that join a message already started are copied
   * anyway, so the decoder unmasks them straight into the message buffer.
   */
  payloadTarget(length: number): Uint8Array | ProtocolError | undefined {
    if (this.frameOpcode >= 0x8 || this.msgCompressed || this.msgSize === 0 || length === 0) return undefined
    const acc = this.messageRoom(length)
    return Buffer.isBuffer(acc) ? acc.subarray(this.msgSize, this.msgSize + length) : acc
  }

  /** @internal FrameSink */
  onFramePayloadCopied(length: number): ProtocolError | undefined {
    const start = this.msgSize
    if (this.msgOpcode === Opcode.Text && !this.utf8.validate(this.msgBuf!, start, start + length)) {
      return new InvalidPayloadError({ reason: "invalid UTF-8 in a text message" })
    }
    this.msgSize = start + length
    return undefined
  }

  private onControl(op: number): ProtocolError | undefined {
    const len = this.controlLength
    const control = this.control!
    if (op === Opcode.Ping) {
      const data = Buffer.from(control.subarray(0, len))
      if (this._state === ConnectionState.Open) this.writeFrame(Opcode.Pong, false, data)
      this.events.push({ _tag: "Ping", data })
      return undefined
    }
    if (op === Opcode.Pong) {
      this.events.push({ _tag: "Pong", data: Buffer.from(control.subarray(0, len)) })
      return undefined
    }
    // Close (RFC 6455 §5.5.1, §7.1.5, §7.4)
    let code = 1005
    let reason = ""
    if (len === 1) return new ProtocolViolationError({ reason: "close frame with a 1-byte payload" })
    if (len >= 2) {
      code = control.readUInt16BE(0)
      if (!isValidCloseCode(code)) return new ProtocolViolationError({ reason: `invalid close code ${code}` })
      const bytes = control.subarray(2, len)
      if (!isUtf8(bytes)) return new InvalidPayloadError({ reason: "close reason is not UTF-8" })
      reason = bytes.toString("utf8")
    }
    this._closeReceived = { code, reason }
    this.decoder.stop()
    this.releaseMessage()
    this.events.push({ _tag: "Close", code, reason })
    if (this._state === ConnectionState.Open) {
      // Echo the peer's code and reason (§5.5.1), as browsers show what the server sent back
      // in `CloseEvent.reason`; an empty Close is answered with an empty one.
      this.owed = { code: code === 1005 ? undefined : code, reason }
      if (!this.deferClose) this.sendOwedClose()
      return undefined
    }
    this._state = ConnectionState.Closed
    if (this.role === "server") this._closeTransport = true
    return undefined
  }

  /**
   * Fails the connection (§7.1.7): queues a Close with the error's code (when still OPEN),
   * discards all later input and asks for the transport to close.
   */
  fail(error: ProtocolError): void {
    if (this._failure !== undefined) return
    this._failure = error
    this.decoder.stop()
    this.releaseMessage()
    if (this._state === ConnectionState.Open && this.owed === undefined) {
      this.owed = { code: error.closeCode, reason: error.reason }
      if (!this.deferClose) this.sendOwedClose()
      return
    }
    this._state = ConnectionState.Closed
    this._closeTransport = true
  }

  // ---------------------------------------------------------------- output

  /**
   * Queues a text message. With permessage-deflate negotiated, it is compressed unless
   * `compress` is false or it is under the threshold.
   */
  sendText(text: string, compress = true): InvalidSendError | undefined {
    if (this._state !== ConnectionState.Open) return this.notOpen()
    const c = this.compression
    const length = Buffer.byteLength(text, "utf8")
    if (c !== undefined && compress && c.shouldCompress(length)) {
      this.writeFrame(Opcode.Text, true, c.compress(Buffer.from(text, "utf8")))
    } else if (length <= COPY_LIMIT && this.role === "server") {
      const hl = headerLength(length, false)
      const start = this.reserve(hl + length)
      const slab = slabs.slab
      const pos = writeHeader(slab, start, true, false, Opcode.Text, length, undefined)
      slab.write(text, pos, length, "utf8")
      this.advance(hl + length)
      this.outBytes += hl + length
    } else {
      this.writeFrame(Opcode.Text, false, Buffer.from(text, "utf8"))
    }
    return undefined
  }

  /**
   * Queues a binary message. Large payloads are not copied: do not modify `data` until
   * it has been written.
   */
  sendBinary(data: Uint8Array, compress = true): InvalidSendError | undefined {
    if (this._state !== ConnectionState.Open) return this.notOpen()
    const c = this.compression
    if (c !== undefined && compress && c.shouldCompress(data.length)) {
      this.writeFrame(Opcode.Binary, true, c.compress(data))
    } else {
      this.writeFrame(Opcode.Binary, false, data)
    }
    return undefined
  }

  /**
   * Whether this message is compressed off the event loop (`compressLater`) rather than by
   * `sendText` / `sendBinary`: compression agreed and wanted, and the hook offloads its size
   * (permessage-deflate's `offloadThreshold`; text is judged by its UTF-16 length, which is
   * at most its UTF-8 size).
   */
  offloads(data: string | Uint8Array, compress: boolean): boolean {
    const c = this.compression
    return compress && c !== undefined && c.compressOffloaded !== undefined && c.shouldOffload !== undefined &&
      this._state === ConnectionState.Open && c.shouldOffload(data.length)
  }

  /**
   * Starts compressing a message for which `offloads` said yes, and returns the bytes given to
   * the compressor. `done` gets the compressed payload; queue it with `sendCompressed`. Until
   * then the caller must hold back every later message, and the Close, of this connection:
   * they would overtake it.
   */
  compressLater(data: string | Uint8Array, done: (payload: Buffer) => void): Uint8Array {
    const input = typeof data === "string" ? Buffer.from(data, "utf8") : data
    this.compression!.compressOffloaded!(input, done)
    return input
  }

  /** Queues a message compressed by `compressLater` (a frame with RSV1). */
  sendCompressed(text: boolean, payload: Uint8Array): InvalidSendError | undefined {
    if (this._state !== ConnectionState.Open) return this.notOpen()
    this.writeFrame(text ? Opcode.Text : Opcode.Binary, true, payload)
    return undefined
  }

  /** Queues a Ping (payload at most 125 bytes). */
  sendPing(data: Uint8Array = EMPTY): InvalidSendError | undefined {
    return this.sendControl(Opcode.Ping, data)
  }

  /** Queues an unsolicited Pong (a heartbeat; pings are answered automatically). */
  sendPong(data: Uint8Array = EMPTY): InvalidSendError | undefined {
    return this.sendControl(Opcode.Pong, data)
  }

  private sendControl(op: number, data: Uint8Array): InvalidSendError | undefined {
    if (this._state !== ConnectionState.Open) return this.notOpen()
    if (data.length > 125) return new InvalidSendError({ kind: "ControlPayload", reason: "control frame payload over 125 bytes" })
    this.writeFrame(op, false, data)
    return undefined
  }

  /**
   * Starts the closing handshake (§7.1.2). The code must be one an endpoint may send and
   * the reason at most 123 bytes of UTF-8; otherwise nothing is sent.
   */
  sendClose(code = 1000, reason = ""): InvalidSendError | undefined {
    if (this.owed !== undefined) {
      this.sendOwedClose()
      return undefined
    }
    if (this._state !== ConnectionState.Open) return this.notOpen()
    const invalid = checkClose(code, reason)
    if (invalid !== undefined) return invalid
    this.queueClose(code, reason)
    this._state = ConnectionState.Closing
    return undefined
  }

  private queueClose(code: number | undefined, reason: string): void {
    if (code === undefined) {
      this._closeSent = { code: 1005, reason: "" }
      this.writeFrame(Opcode.Close, false, EMPTY)
      return
    }
    const text = truncateReason(reason)
    const payload = Buffer.allocUnsafe(2 + text.length)
    payload.writeUInt16BE(code, 0)
    text.copy(payload, 2)
    this._closeSent = { code, reason: text.toString("utf8") }
    this.writeFrame(Opcode.Close, false, payload)
  }

  private notOpen(): InvalidSendError {
    return new InvalidSendError({ kind: "NotOpen", reason: `connection is ${this._state}` })
  }

  /** Takes the bytes to write, in order, as one batch (write them with one cork/writev). */
  dataToSend(): Array<Uint8Array> {
    this.flushSegment()
    const out = this.out
    if (out.length === 0) return out
    this.out = []
    this.outBytes = 0
    return out
  }

  private writeFrame(op: number, rsv1: boolean, payload: Uint8Array): void {
    const length = payload.length
    const mask = this.role === "client" ? randomMask() : undefined
    const hl = headerLength(length, mask !== undefined)
    this.outBytes += hl + length
    if (length <= COPY_LIMIT) {
      const start = this.reserve(hl + length)
      const slab = slabs.slab
      const pos = writeHeader(slab, start, true, rsv1, op, length, mask)
      slab.set(payload, pos)
      if (mask !== undefined) applyMask(slab, pos, pos + length, mask, 0)
      this.advance(hl + length)
      return
    }
    // reserve first: it may replace the shared slab
    const start = this.reserve(hl)
    writeHeader(slabs.slab, start, true, rsv1, op, length, mask)
    this.advance(hl)
    this.flushSegment()
    if (mask === undefined) {
      this.out.push(payload)
    } else {
      const copy = Buffer.from(payload)
      applyMask(copy, 0, length, mask, 0)
      this.out.push(copy)
    }
  }

  /**
   * Makes room for `n` contiguous bytes in the shared slab and returns where they start.
   * The connection's pending run continues only if nobody else wrote in between.
   */
  private reserve(n: number): number {
    const s = slabs
    if (s.pos + n > s.slab.length) {
      s.slab = Buffer.allocUnsafe(n > SLAB_SIZE ? n : SLAB_SIZE)
      s.pos = 0
    }
    if (this.segSlab !== s.slab || this.segEnd !== s.pos) {
      this.flushSegment()
      this.segSlab = s.slab
      this.segStart = this.segEnd = s.pos
    }
    return s.pos
  }

  /** Commits `n` bytes written at the position `reserve` returned. */
  private advance(n: number): void {
    this.segEnd = slabs.pos += n
  }

  private flushSegment(): void {
    if (this.segEnd > this.segStart) {
      this.out.push(this.segSlab!.subarray(this.segStart, this.segEnd))
    }
    this.segSlab = undefined
    this.segStart = this.segEnd = 0
  }

  /** Frees compression contexts. Call when the transport is gone. */
  dispose(): void {
    this.decoder.stop()
    this.releaseMessage()
    this.compression?.close()
  }
}
