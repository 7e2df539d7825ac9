/**
 * The WebSocket server as an Effect service: `make` (scoped) and `layer`.
 *
 * ```ts
 * import { WebSocketServer } from "@effect-websocket/server"
 * import { Effect, Layer, Stream } from "effect"
 *
 * const EchoServer = WebSocketServer.layer({
 *   port: 8080,
 *   handler: (ws) => Stream.runForEach(ws.messages, (message) => ws.send(message))
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import type * as http2 from "node:http2"
import type * as tls from "node:tls"
import type { ServerError } from "./Errors.js"
import type { HandlerOptions, UpgradeAccept, UpgradeInfo } from "./internal/server.js"
import { listenHttp2 } from "./internal/h2.js"
import { listen } from "./internal/server.js"
import { defaults } from "./internal/options.js"

export type {
  /** @since 0.1.0 @category models */
  HandlerOptions,
  /** @since 0.1.0 @category models */
  UpgradeAccept,
  /** @since 0.1.0 @category models */
  UpgradeInfo
}
export type {
  /** @since 0.1.0 @category models */
  Limits
} from "./internal/options.js"

/**
 * The documented defaults of every limit and timeout (see the README's table).
 *
 * @since 0.1.0
 * @category defaults
 */
export const Defaults = defaults

/**
 * Options of a standalone server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<Data, E, R, E2 = never, R2 = never> extends HandlerOptions<Data, E, R, E2, R2> {
  /** Default "127.0.0.1". */
  readonly host?: string | undefined
  /** Default 0: any free port (read it back from `address`). */
  readonly port?: number | undefined
  /** Serve wss:// with these `node:tls` options (key, cert, ...). */
  readonly tls?: tls.TlsOptions | undefined
  readonly backlog?: number | undefined
  /**
   * Serve HTTP/2 as well (needs `tls`): ALPN offers `h2` and `http/1.1` on the one port, and
   * an HTTP/2 client opens WebSockets as streams of one connection with extended CONNECT
   * (RFC 8441, advertised with `SETTINGS_ENABLE_CONNECT_PROTOCOL`); HTTP/1.1 clients upgrade
   * as before. Default false. See the README's section on HTTP/2.
   */
  readonly http2?: boolean | undefined
  /**
   * HTTP/2 settings to advertise (`enableConnectProtocol` is always on). Default
   * `initialWindowSize` 1 MiB: what one WebSocket may send ahead of its handler.
   */
  readonly http2Settings?: http2.Settings | undefined
  /** HTTP/2 receive window of a whole connection, shared by its WebSockets (bytes). Default 16 MiB. */
  readonly http2ConnectionWindow?: number | undefined
}

/**
 * A running server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly address: { readonly host: string; readonly port: number }
  /** `ws://host:port` or `wss://host:port`. */
  readonly url: string
  /** Connections currently open. */
  readonly connections: Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class WebSocketServer extends Context.Tag("@effect-websocket/server/WebSocketServer")<
  WebSocketServer,
  Service
>() {}

/**
 * Starts a server in the current scope. Closing the scope shuts it down gracefully: no
 * new connections, 1001 to every open one, up to the close timeout for their closing
 * handshakes, then the rest is destroyed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <Data = undefined, E = never, R = never, E2 = never, R2 = never>(
  options: Options<Data, E, R, E2, R2>
): Effect.Effect<Service, ServerError, Scope.Scope | Exclude<R, Scope.Scope> | R2> =>
  Effect.map(options.http2 === true ? listenHttp2(options) : listen(options), ({ address, engine, secure }) => {
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address
    return {
      address: { host: address.address, port: address.port },
      url: `${secure ? "wss" : "ws"}://${host}:${address.port}`,
      connections: Effect.sync(() => engine.openCount)
    }
  })

/**
 * The server as a Layer; its requirements are the handler's and the hook's.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Data = undefined, E = never, R = never, E2 = never, R2 = never>(
  options: Options<Data, E, R, E2, R2>
): Layer.Layer<WebSocketServer, ServerError, Exclude<R, Scope.Scope> | R2> =>
  Layer.scoped(WebSocketServer, make(options))
