/**
 * Interop with `@effect/platform`: a connection as a `Socket.Socket`, and this server as a
 * `SocketServer.SocketServer`, so code written against
 * `NodeSocketServer.layerWebSocket` (`Socket.toChannel`, RPC over sockets, ...) runs on it
 * unchanged.
 *
 * @since 0.1.0
 */
import * as Socket from "@effect/platform/Socket"
import * as SocketServer from "@effect/platform/SocketServer"
import { isProtocolError } from "@effect-websocket/protocol/Errors"
import { Context, Deferred, Effect, Layer, Scope } from "effect"
import type { ProtocolError } from "./Errors.js"
import type { WebSocket } from "./WebSocket.js"
import type { Options } from "./WebSocketServer.js"
import { make as makeServer } from "./WebSocketServer.js"

const encoder = new TextEncoder()

/** Close codes that end `run` without an error, as in @effect/platform's default. */
const isCleanCode = (code: number) => code === 1000 || code === 1006

/**
 * A connection as an `@effect/platform` `Socket.Socket`. `run` delivers binary data (text is
 * UTF-8 encoded), `runRaw` delivers text as strings; both end on a clean close and fail with
 * `SocketCloseError` carrying the code otherwise. The writer sends strings as text, bytes as
 * binary, and a `Socket.CloseEvent` as a Close frame.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toSocket = (ws: WebSocket<any>): Socket.Socket => {
  const toSocketError = (e: ProtocolError) =>
    new Socket.SocketCloseError({ reason: "Close", code: e.closeCode, closeReason: e.reason })
  const runRaw = <_, E, R>(handler: (_: string | Uint8Array) => Effect.Effect<_, E, R> | void) =>
    ws.run(handler).pipe(
      Effect.mapError((e): Socket.SocketError | E => isProtocolError(e) ? toSocketError(e) : e as E),
      Effect.zipRight(Effect.flatMap(ws.closed.pipe(Effect.orElseSucceed(() => ({ code: 1006, reason: "" }))), (info) =>
        isCleanCode(info.code)
          ? Effect.void
          : Effect.fail(new Socket.SocketCloseError({ reason: "Close", code: info.code, closeReason: info.reason }))))
    )
  const writer = Effect.succeed((chunk: Uint8Array | string | Socket.CloseEvent) =>
    Socket.isCloseEvent(chunk)
      ? Effect.asVoid(ws.close(chunk.code, chunk.reason ?? "").pipe(Effect.orDie))
      : ws.send(chunk).pipe(
        Effect.mapError((cause) => new Socket.SocketGenericError({ reason: "Write", cause }))
      )
  )
  return {
    [Socket.TypeId]: Socket.TypeId,
    runRaw: (handler, options) =>
      Effect.zipRight(options?.onOpen ?? Effect.void, runRaw(handler)),
    run: (handler, options) =>
      Effect.zipRight(
        options?.onOpen ?? Effect.void,
        runRaw((data) => handler(typeof data === "string" ? encoder.encode(data) : data))
      ),
    writer
  } as Socket.Socket
}

/**
 * This server as `@effect/platform`'s `SocketServer`: every accepted connection is passed to
 * the handler given to `run` as a `Socket.Socket`. Connections that arrive before `run` is
 * called wait for it (up to their handshake's close timeout).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSocketServer = (
  options: Omit<Options<undefined, never, never>, "handler">
): Layer.Layer<SocketServer.SocketServer, SocketServer.SocketServerError> =>
  Layer.scoped(SocketServer.SocketServer, makeSocketServer(options))

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeSocketServer = (
  options: Omit<Options<undefined, never, never>, "handler">
): Effect.Effect<SocketServer.SocketServer["Type"], SocketServer.SocketServerError, Scope.Scope> =>
  Effect.gen(function*() {
    type Handler = (socket: Socket.Socket) => Effect.Effect<unknown, unknown, never>
    let current = yield* Deferred.make<Handler>()
    const server = yield* makeServer({
      ...options,
      handler: (ws) => Effect.flatMap(Deferred.await(current), (handler) => handler(toSocket(ws)))
    }).pipe(Effect.mapError((cause) => new SocketServer.SocketServerError({ reason: "Open", cause })))
    const run = <R, E, _>(handler: (socket: Socket.Socket) => Effect.Effect<_, E, R>) =>
      Effect.gen(function*() {
        // The caller's services, under the connection's own (its Scope wins over the caller's).
        const context = Context.omit(Scope.Scope)(yield* Effect.context<R>()) as Context.Context<R>
        const h: Handler = (socket) =>
          handler(socket).pipe(
            Effect.catchAllCause((cause) => Effect.logDebug("socket handler failed", cause)),
            Effect.mapInputContext((own: Context.Context<never>) => Context.merge(context, own))
          )
        yield* Deferred.succeed(current, h)
        return yield* Effect.never.pipe(
          Effect.ensuring(Effect.gen(function*() {
            current = yield* Deferred.make<Handler>()
          }))
        )
      })
    return SocketServer.SocketServer.of({
      address: { _tag: "TcpAddress", hostname: server.address.host, port: server.address.port },
      run
    })
  })
