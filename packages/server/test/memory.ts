/**
 * For unit tests of a connection's parts without a socket: an in-memory transport that keeps
 * what the server writes, a parser for the server's (unmasked) frames, and a `WsConnection` on
 * such a transport with a real protocol core.
 */
import { Connection } from "@effect-websocket/protocol/Connection"
import { Effect } from "effect"
import { Duplex } from "node:stream"
import { WsConnection } from "../src/internal/connection.js"
import type { Owner } from "../src/internal/connection.js"
import { CloseTimeouts } from "../src/internal/lifecycle.js"
import type { Resolved } from "../src/internal/options.js"
import { within } from "./utils.js"

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
  private waiters: Array<() => void> = []
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.chunks.push(Buffer.from(chunk))
    callback()
    const waiting = this.waiters
    this.waiters = []
    for (const w of waiting) w()
  }
  /** The frames written so far. */
  frames(): Array<Frame> {
    return parseFrames(Buffer.concat(this.chunks))
  }
  /** Completes once what was written satisfies `predicate` (at most 2 s, naming `what`). */
  writtenUntil(predicate: (frames: Array<Frame>) => boolean, what: string): Effect.Effect<void, Error> {
    return Effect.async<void>((resume) => {
      const check = () => {
        if (predicate(this.frames())) resume(Effect.void)
        else this.waiters.push(check)
      }
      check()
    }).pipe(within("2 seconds", what))
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

/**
 * Ends a memory connection at the end of a test's Scope: its transport destroyed, its handler
 * interrupted, then waits until the connection was released (5 s at most).
 */
export const releaseConnection = <Data>(
  { transport, ws }: { readonly transport: Duplex; readonly ws: WsConnection<Data> }
): Effect.Effect<void> =>
  Effect.gen(function*() {
    transport.destroy()
    yield* ws.transportClosed
    ws.interruptHandler()
    yield* ws.released
  }).pipe(within("5 seconds", "the connection released"), Effect.orDie)
