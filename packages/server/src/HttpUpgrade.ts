/**
 * WebSocket endpoints inside an HTTP application, on the same port as its other routes.
 *
 * With `@effect/platform` on `NodeHttpServer`, a route:
 *
 * ```ts
 * import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
 * import { NodeHttpServer } from "@effect/platform-node"
 * import { HttpUpgrade } from "@effect-websocket/server"
 * import { Layer, Stream } from "effect"
 * import { createServer } from "node:http"
 *
 * const App = HttpRouter.empty.pipe(
 *   HttpRouter.get("/", HttpServerResponse.text("hello")),
 *   HttpRouter.get("/ws", HttpUpgrade.handler({
 *     perMessageDeflate: true,
 *     handler: (ws) => Stream.runForEach(ws.messages, (m) => ws.send(m))
 *   })),
 *   HttpServer.serve()
 * )
 * const Main = App.pipe(Layer.provide(NodeHttpServer.layer(createServer, { port: 8080 })))
 * ```
 *
 * The route takes the socket from node:http's 'upgrade' event and answers the handshake
 * itself, with this package's engine (its limits, permessage-deflate, upgrade hook and typed
 * `data`); the platform's own WebSocket support (`HttpServerRequest.upgrade`, built on `ws`)
 * is not involved. A request to the route that is not an upgrade gets an HTTP answer (426
 * with `Upgrade: websocket`, or 405 for another method); a refused upgrade gets its status.
 * node:http has parsed the request head, so its own limits apply to it (`headersTimeout`,
 * `maxHeaderSize`) rather than the options `handshakeTimeout`, `maxHeaderBytes` and
 * `maxHeaders`; every other limit and timeout applies as in the standalone server.
 *
 * Shutdown: releasing the server's Layer interrupts every request fiber, including those
 * holding WebSocket connections; each of them then closes its connection with 1001, waits for
 * the closing handshake (up to the close timeout) and only then lets the HTTP server close.
 * One Layer release stops HTTP and WebSockets together.
 *
 * For applications that own a `node:http` / `node:https` server, `attach` listens on its
 * 'upgrade' event for the lifetime of a scope.
 *
 * HTTP/2: on a `node:http2` secure server made with `allowHTTP1: true` and
 * `settings: { enableConnectProtocol: true }` (given to `NodeHttpServer.layer`), pages are
 * served over HTTP/2 and HTTP/1.1 alike; the route above keeps serving HTTP/1.1 upgrades, and
 * `attachHttp2(server, { path: "/ws", ...sameOptions })` serves the WebSockets that HTTP/2
 * clients open as extended CONNECT streams (RFC 8441) of the connection the page came on:
 *
 * ```ts
 * const server = http2.createSecureServer({ key, cert, allowHTTP1: true, settings: { enableConnectProtocol: true } })
 * const Http2Sockets = Layer.scopedDiscard(HttpUpgrade.attachHttp2(server, { path: "/ws", ...socketOptions }))
 * const Main = App.pipe(
 *   Layer.provide(Http2Sockets),
 *   Layer.provide(NodeHttpServer.layer(() => server as unknown as http.Server, { port: 8443 }))
 * )
 * ```
 *
 * Browsers use HTTP/2 only over TLS, so this is for `https:` pages; plain-text HTTP/2 (h2c)
 * and HTTP/3 are not served (see the README).
 *
 * @since 0.1.0
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type { Effect, Scope } from "effect"
import type * as http from "node:http"
import type * as http2 from "node:http2"
import * as h2 from "./internal/h2.js"
import * as internal from "./internal/http.js"
import type { HandlerOptions } from "./internal/server.js"

export type {
  /** @since 0.1.0 @category models */
  HandlerOptions
}

/**
 * A route handler that upgrades the request with these options. Its requirements are the
 * handler's (`R`) and the upgrade hook's (`R2`); it never fails: a handler failure closes the
 * connection (1011, or 1007 for a message that does not match its schema) and is logged. The
 * request's fiber lives as long as the connection; the response it ends with (status 101, or
 * the refusal's status) is not written, it is what the platform's logger and tracer report.
 *
 * Every call makes a new engine: create the handler once per route.
 *
 * @since 0.1.0
 * @category constructors
 */
export const handler: <Data = undefined, E = never, R = never, E2 = never, R2 = never>(
  options: HandlerOptions<Data, E, R, E2, R2>
) => Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  HttpServerRequest.HttpServerRequest | Exclude<R, Scope.Scope> | R2
> =
  internal.handler

/**
 * Returns the same server, made to keep the bytes a client sent right behind its upgrade
 * request (node:http gives them only to 'upgrade' listeners) for `handler`. RFC 6455 §4.1
 * makes a client wait for the 101 before it sends frames, so browsers and libraries never
 * do; use it when clients that pipeline must be served too:
 * `NodeHttpServer.layer(() => HttpUpgrade.recordHead(createServer()), { port })`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const recordHead: <S extends http.Server>(server: S) => S = internal.recordHead

/**
 * Options of `attach`.
 *
 * @since 0.1.0
 * @category models
 */
export interface AttachOptions<Data, E, R, E2 = never, R2 = never> extends HandlerOptions<Data, E, R, E2, R2> {
  /**
   * Which upgrade requests are ours: a path (compared with the request target before `?`), or
   * a predicate on the request target. Default: all of them. A request that is not ours is
   * left to the server's other 'upgrade' listeners; when there are none it gets a 404.
   */
  readonly path?: string | ((url: string) => boolean) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Attached {
  /** Connections currently open. */
  readonly connections: Effect.Effect<number>
}

/**
 * Serves WebSocket upgrades of a `node:http` or `node:https` server (any `http.Server`) for
 * the lifetime of the current scope. Closing the scope removes the listener, closes every
 * connection with 1001 and waits up to the close timeout for their closing handshakes
 * before it destroys the rest. The server itself (listen, close) stays the caller's. As with
 * `handler`, node:http's own limits apply to the request head.
 *
 * @since 0.1.0
 * @category constructors
 */
export const attach: <Data = undefined, E = never, R = never, E2 = never, R2 = never>(
  server: http.Server,
  options: AttachOptions<Data, E, R, E2, R2>
) => Effect.Effect<Attached, never, Scope.Scope | Exclude<R, Scope.Scope> | R2> = internal.attach

/**
 * Serves WebSockets over HTTP/2 (RFC 8441 extended CONNECT) on a `node:http2` server for the
 * lifetime of the current scope: the server must advertise `enableConnectProtocol` in its
 * settings. A CONNECT for another path gets a 404 when nobody else listens for it; any other
 * request is left to the server's other listeners. It works with and without the
 * compatibility API (`@effect/platform-node`'s `NodeHttpServer` uses it). Closing the scope
 * closes every connection it opened with 1001, as `attach` does; the server stays the
 * caller's.
 *
 * @since 0.1.0
 * @category constructors
 */
export const attachHttp2: <Data = undefined, E = never, R = never, E2 = never, R2 = never>(
  server: http2.Http2SecureServer | http2.Http2Server,
  options: AttachOptions<Data, E, R, E2, R2>
) => Effect.Effect<Attached, never, Scope.Scope | Exclude<R, Scope.Scope> | R2> = h2.attachHttp2
