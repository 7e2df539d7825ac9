/**
 * For unit tests of a connection's parts without a socket: an in-memory transport that keeps
 * what the server writes, a parser for the server's (unmasked) frames, and a `WsConnection` on
 * such a transport with a real protocol core.
 */
import { Connection } from "@effect-websocket/protocol/Connection"
import { Duplex } from "node:stream"
import { WsConnection } from "../src/internal/connection.js"
import type { Owner } from "../src/internal/connection.js"
import { CloseTimeouts } from "../src/internal/lifecycle.js"
import type { Resolved } from "../src/internal/options.js"

export interface Frame {
  readonly op: number
  readonly rsv1: boolean
  readonly payload: Buffer
}

/** Parses the server's (unmasked) frames. */
export const parseFrames = (bytes: Buffer): Array<Frame> => {
  const frames: Array<Frame> = []
  let i = 0
  while (i < bytes.length) {
    const b0 = bytes[i]!
    let len = bytes[i + 1]! & 0x7f
    let p = i + 2
    if (len === 126) {
      len = bytes.readUInt16BE(p)
      p += 2
    } else if (len === 127) {
      len = Number(bytes.readBigUInt64BE(p))
      p += 8
    }
    frames.push({ op: b0 & 0x0f, rsv1: (b0 & 0x40) !== 0, payload: bytes.subarray(p, p + len) })
    i = p + len
  }
  return frames
}

/** A transport that takes every write at once and keeps the bytes; it reads only what is emitted. */
export class MemoryTransport extends Duplex {
  chunks: Array<Buffer> = []
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.chunks.push(Buffer.from(chunk))
    callback()
  }
  /** The frames written so far. */
  frames(): Array<Frame> {
    return parseFrames(Buffer.concat(this.chunks))
  }
}

/**
 * A connection (not started) on `transport` with a real protocol core: no subprotocol, no
 * extension, an owner that ignores what it is told unless `owner` says otherwise.
 */
export const memoryConnection = (
  transport: Duplex,
  options: Resolved,
  owner: Partial<Owner> = {},
  rest: Uint8Array = new Uint8Array(0)
): WsConnection<undefined> =>
  new WsConnection<undefined>({
    transport,
    core: new Connection({ role: "server", maxMessageSize: options.maxMessageSize, deferClose: true }),
    options,
    request: { url: "/", headers: {}, remoteAddress: undefined, remotePort: undefined, transport: "http/1.1" },
    protocol: undefined,
    extensions: undefined,
    deflate: undefined,
    data: undefined,
    owner: {
      closeTimeouts: owner.closeTimeouts ?? new CloseTimeouts(options.closeTimeout),
      transportClosed: owner.transportClosed ?? (() => {}),
      released: owner.released ?? (() => {})
    }
  }, rest)
