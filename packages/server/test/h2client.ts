/**
 * An RFC 8441 client by hand on Node's http2 client: one session (TCP+TLS), WebSockets as
 * extended CONNECT streams of it, frames masked by `craftFrame`, every byte received recorded.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as http2 from "node:http2"
import type { ServerFrame } from "./utils.js"
import { craftFrame, splitServerFrames } from "./utils.js"


/** A session once the server's SETTINGS arrived (with `enableConnectProtocol`, asserted by callers). */
export const h2Session = (
  port: number,
  ca: string,
  options: { readonly waitSettings?: boolean } = {}
): Effect.Effect<http2.ClientHttp2Session, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<http2.ClientHttp2Session, Error>((resume) => {
      const session = http2.connect(`https://127.0.0.1:${port}`, { ca })
      session.on("error", () => {})
      if (options.waitSettings === false) {
        resume(Effect.succeed(session))
        return
      }
      session.once("remoteSettings", () => resume(Effect.succeed(session)))
      session.once("close", () => resume(Effect.fail(new Error("session closed before SETTINGS"))))
    }),
    (session) => Effect.sync(() => session.destroy())
  )

export interface H2WebSocket {
  readonly stream: http2.ClientHttp2Stream
  readonly status: number
  readonly headers: http2.IncomingHttpHeaders
  /** Every byte received on the stream after the response headers (for small exchanges). */
  readonly received: () => Buffer
  /** The complete frames received so far. */
  readonly frames: () => Array<ServerFrame>
  /** Writes a masked frame. */
  readonly send: (opcode: number, payload?: Buffer | string, fin?: boolean) => void
  /** Waits until `pred` holds for the frames received (checked on every chunk and at the end). */
  readonly until: (pred: (frames: Array<ServerFrame>) => boolean) => Effect.Effect<Array<ServerFrame>>
  /** The peer ended its side (END_STREAM). */
  readonly ended: () => boolean
  /** Completes when the stream is closed, with its RST_STREAM code (0 when none or NO_ERROR). */
  readonly closed: Effect.Effect<number>
}

/** The header block of an extended CONNECT for a WebSocket (RFC 8441 §5). */
export const connectHeaders = (
  port: number,
  extra: Record<string, string | undefined> = {}
): http2.OutgoingHttpHeaders => {
  const headers: http2.OutgoingHttpHeaders = {
    ":method": "CONNECT",
    ":protocol": "websocket",
    ":scheme": "https",
    ":path": "/ws",
    ":authority": `127.0.0.1:${port}`,
    "sec-websocket-version": "13"
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete headers[k]
    else headers[k] = v
  }
  return headers
}

/** Opens a stream with these headers and waits for its response (any status). */
export const h2Open = (
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders
): Effect.Effect<H2WebSocket, Error> =>
  Effect.async<H2WebSocket, Error>((resume) => {
    const stream = session.request(headers, { endStream: false })
    const chunks: Array<Buffer> = []
    let joined: Buffer | undefined
    // frames parsed as they arrive (linear however large the stream gets)
    const frames: Array<ServerFrame> = []
    let pending: Buffer = Buffer.alloc(0)
    let ended = false
    let closedCode: number | undefined
    let waiters: Array<() => void> = []
    const notify = () => {
      const w = waiters
      waiters = []
      for (const f of w) f()
    }
    const received = () => {
      if (joined === undefined || joined.length !== chunks.reduce((n, c) => n + c.length, 0)) {
        joined = Buffer.concat(chunks)
      }
      return joined
    }
    stream.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      const split = splitServerFrames(pending)
      for (const f of split.frames) frames.push(f)
      pending = pending.subarray(split.used)
      notify()
    })
    stream.on("end", () => {
      ended = true
      notify()
    })
    stream.on("error", () => {})
    stream.on("close", () => {
      closedCode = stream.rstCode ?? 0
      notify()
    })
    const until = (pred: (frames: Array<ServerFrame>) => boolean) =>
      Effect.async<Array<ServerFrame>>((done) => {
        const check = () => {
          if (pred(frames) || closedCode !== undefined) done(Effect.succeed(frames))
          else waiters.push(check)
        }
        check()
      })
    stream.once("response", (h) =>
      resume(Effect.succeed({
        stream,
        status: Number(h[":status"]),
        headers: h,
        received,
        frames: () => frames,
        send: (opcode, payload, fin) => {
          stream.write(craftFrame({ opcode, payload: payload ?? Buffer.alloc(0), fin: fin ?? true }))
        },
        until,
        ended: () => ended,
        closed: Effect.async<number>((done) => {
          const check = () => {
            if (closedCode !== undefined) done(Effect.succeed(closedCode))
            else waiters.push(check)
          }
          check()
        })
      })))
    stream.once("close", () => resume(Effect.fail(new Error(`stream closed without a response (${stream.rstCode})`))))
  })
