/**
 * The WebSocket client: the protocol core in the client role (masking, the
 * `Sec-WebSocket-Accept` check, client-side permessage-deflate) behind the same handle the
 * server's handler gets.
 *
 * ```ts
 * import { WebSocketClient } from "@effect-websocket/client"
 * import { Effect, Stream } from "effect"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ws = yield* WebSocketClient.connect("wss://example.com/chat", { protocols: ["chat"] })
 *   yield* ws.send("hello")
 *   yield* Stream.runForEach(Stream.take(ws.messages, 1), (m) => Effect.log(m))
 * })) // the Scope closes: Close 1000, and the socket is destroyed after the close timeout
 * ```
 *
 * @since 0.1.0
 */
import { Connection } from "@effect-websocket/protocol/Connection"
import { HandshakeResponseError } from "@effect-websocket/protocol/Errors"
import { generateKey, upgradeRequest, validateResponse } from "@effect-websocket/protocol/Handshake"
import { acceptResponse, EXTENSION_NAME, PerMessageDeflate } from "@effect-websocket/protocol/PerMessageDeflate"
import type { WebSocket } from "@effect-websocket/server/WebSocket"
import { Duration, Effect } from "effect"
import type { Scope } from "effect"
import type { ConnectionError } from "./Errors.js"
import { HandshakeTimeoutError, InvalidOptionsError } from "./Errors.js"
import type { ResponseInfo } from "./internal/connection.js"
import { ClientConnection } from "./internal/connection.js"
import type { ConnectOptions } from "./internal/options.js"
import { parseTarget, resolveOptions } from "./internal/options.js"
import type { Reconnecting, ReconnectOptions } from "./internal/reconnecting.js"
import * as internalReconnecting from "./internal/reconnecting.js"
import { open } from "./internal/transport.js"

export type {
  /** @since 0.1.0 @category models */
  ConnectOptions,
  /** @since 0.1.0 @category models */
  ProxyOptions,
  /** @since 0.1.0 @category models */
  TlsOptions
} from "./internal/options.js"
export type {
  /** @since 0.1.0 @category models */
  ResponseInfo
} from "./internal/connection.js"
export type {
  /** @since 0.1.0 @category models */
  Reconnecting,
  /** @since 0.1.0 @category models */
  ReconnectOptions,
  /** @since 0.1.0 @category models */
  ReconnectState
} from "./internal/reconnecting.js"

/**
 * An open client connection: the server handler's `WebSocket` handle (`messages`, `run`,
 * `send`, `ping`, `close`, `closed`, ...) plus the server's upgrade response. `request`
 * describes the request we sent (`url`, `headers`) and the server's address.
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSocketConnection extends WebSocket<undefined> {
  readonly response: ResponseInfo
}

/**
 * Opens a connection for the life of the Scope. When the Scope closes, a connection still
 * open is closed with 1000 and, if the server does not close TCP within `closeTimeout`, the
 * socket is destroyed. Fails with a typed error for each way opening can fail (see
 * `Errors.ConnectionError`); `handshakeTimeout` bounds everything up to the 101 response.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (
  url: string | URL,
  options: ConnectOptions = {}
): Effect.Effect<WebSocketConnection, ConnectionError, Scope.Scope> =>
  Effect.suspend(() => {
    const o = resolveOptions(options)
    if (o instanceof InvalidOptionsError) return Effect.fail(o)
    const target = parseTarget(url)
    if (target instanceof InvalidOptionsError) return Effect.fail(target)
    const key = generateKey()
    let request: Uint8Array
    try {
      request = upgradeRequest({
        host: target.hostHeader,
        path: target.path,
        key,
        protocols: o.protocols,
        extensions: o.deflateOffer,
        headers: o.headers
      })
    } catch (e) {
      return Effect.fail(new InvalidOptionsError({ detail: e instanceof Error ? e.message : String(e) }))
    }
    const handshake = open(target, o, request).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(o.handshakeTimeout),
        onTimeout: () => new HandshakeTimeoutError({ timeout: o.handshakeTimeout })
      })
    )
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(handshake), (opened) => {
        const { response, rest, socket } = opened
        const accepted = validateResponse(response, {
          key,
          protocols: o.protocols,
          extensions: o.deflateOffer === undefined ? [] : [EXTENSION_NAME]
        })
        if (accepted instanceof HandshakeResponseError) {
          socket.destroy()
          return Effect.fail(accepted)
        }
        let compression: PerMessageDeflate | undefined = undefined
        const deflate = accepted.extensions[0]
        if (deflate !== undefined) {
          const params = acceptResponse(deflate, o.perMessageDeflate)
          if (params instanceof HandshakeResponseError) {
            socket.destroy()
            return Effect.fail(params)
          }
          compression = new PerMessageDeflate(params, o.perMessageDeflate, "client")
        }
        const core = new Connection({
          role: "client",
          maxMessageSize: o.maxMessageSize,
          maxFrameSize: o.maxFrameSize,
          maxFragments: o.maxFragments,
          compression,
          deferClose: true
        })
        const requestHeaders: Record<string, string> = {}
        for (const [name, value] of Object.entries(o.headers)) requestHeaders[name.toLowerCase()] = value
        const conn = new ClientConnection(
          socket,
          core,
          o,
          {
            url: target.href,
            headers: requestHeaders,
            transport: "http/1.1",
            get remoteAddress() {
              return socket.remoteAddress
            },
            get remotePort() {
              return socket.remotePort
            }
          },
          { status: response.status, headers: response.headers },
          accepted.protocol,
          accepted.extensionsHeader,
          compression?.params
        )
        // Frames that came with the response are read on the next turn of the event loop,
        // once the caller had the chance to start consuming: a Close among them is then
        // answered after the messages before it, as on later reads.
        setImmediate(() => {
          if (conn.isTransportClosed) return
          if (rest.length > 0) conn.onData(Buffer.from(rest))
          socket.resume()
        })
        return Effect.as(Effect.addFinalizer(() => shutdown(conn)), conn as WebSocketConnection)
      })
    )
  })

/** Close 1000 if still open, then wait for TCP to close (the close timeout destroys it). */
const shutdown = (conn: ClientConnection): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (conn.isTransportClosed) return Effect.void
    conn.startClose(1000, "")
    return conn.transportClosedEffect
  })

/**
 * The default reconnection policy: exponential backoff from 100 ms with jitter, at most 30 s
 * apart, forever, reset after a minute without a retry.
 *
 * @since 0.1.0
 * @category reconnection
 */
export const defaultReconnectSchedule = internalReconnecting.defaultSchedule

/**
 * A logical connection kept across drops: connects (and reconnects, after a failed attempt
 * or a drop, as `schedule` says), runs `onConnect` on every new connection, then sends what
 * was buffered while disconnected (at most `bufferSize` messages; `send` fails with
 * `BufferFullError` beyond), and delivers the messages of every connection on one Stream.
 * `states` shows Connecting → Open → Disconnected → Connecting ... → Closed. When the
 * Scope closes, the open connection is closed with 1000.
 *
 * @since 0.1.0
 * @category reconnection
 */
export const reconnecting = <E = never, R = never>(
  url: string | URL,
  options: ReconnectOptions<WebSocketConnection, E, R> = {}
): Effect.Effect<Reconnecting<WebSocketConnection>, never, Scope.Scope | R> =>
  internalReconnecting.make(connect(url, options), options)
