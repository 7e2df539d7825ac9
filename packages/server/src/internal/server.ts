import { Connection } from "@effect-websocket/protocol/Connection"
import { HandshakeError, isProtocolError } from "@effect-websocket/protocol/Errors"
import type { RawRequest, UpgradeRequest } from "@effect-websocket/protocol/Handshake"
import { acceptResponse, rejectResponse, RequestParser, validateUpgrade } from "@effect-websocket/protocol/Handshake"
import { negotiate, PerMessageDeflate } from "@effect-websocket/protocol/PerMessageDeflate"
import { Cause, Context, Deferred, Effect, Exit, FiberId, FiberRef, FiberSet, Option, Runtime, Tracer } from "effect"
import type { Fiber } from "effect"
import type { Clock, Scope } from "effect"
import * as net from "node:net"
import * as tls from "node:tls"
import { InternalError, InvalidPayloadError, ServerError, UpgradeRejected } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import { NO_TAGS } from "./connection.js"
import type { CloseInfo, RequestInfo, WebSocket } from "../WebSocket.js"
import { WsConnection } from "./connection.js"
import type { Limits, Resolved } from "./options.js"
import { resolve } from "./options.js"

/** What an upgrade hook sees. */
export interface UpgradeInfo extends UpgradeRequest {
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
}

/** What an upgrade hook returns to accept a connection. */
export interface UpgradeAccept<Data> {
  readonly data: Data
  /** The subprotocol to select; must be one the client offered. */
  readonly protocol?: string | undefined
  /** Extra headers for the 101 response. */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

export interface HandlerOptions<Data, E, R, E2, R2> extends Limits {
  /** Runs for every accepted connection. */
  readonly handler: (socket: WebSocket<Data>) => Effect.Effect<unknown, E, R>
  /**
   * Runs before accepting: authenticate, check Origin, pick a subprotocol, or fail with
   * `UpgradeRejected` to answer with an HTTP status. Its `data` reaches the handler.
   */
  readonly onUpgrade?: ((request: UpgradeInfo) => Effect.Effect<UpgradeAccept<Data>, UpgradeRejected | E2, R2>) | undefined
  /** Subprotocols the server speaks, in preference order (when the hook picks none). */
  readonly protocols?: ReadonlyArray<string> | undefined
  /**
   * Run each handler in a `websocket.connection` span (attributes `websocket.id`,
   * `url.path`), the parent of the spans the handler makes; it ends with the handler.
   * Default true. Without it, a handshake costs about 30 µs less CPU (of 115 measured) and an open connection
   * about 1.3 KiB less memory (the span, its ids and its context).
   */
  readonly connectionSpan?: boolean | undefined
  /** permessage-deflate: off by default; `true` for the defaults, or options. */
  readonly perMessageDeflate?: boolean | import("@effect-websocket/protocol/PerMessageDeflate").PerMessageDeflateOptions | undefined
}

/** Turns a handler failure into the close code the connection ends with. */
export const closeCodeForHandlerFailure = (cause: Cause.Cause<unknown>): { code: number; reason: string } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value as { readonly _tag?: string }
    if (e && e._tag === "MessageDecodeError") return { code: 1007, reason: "message does not match the schema" }
  }
  return { code: 1011, reason: "internal error" }
}

/**
 * Effect's native tracer builds a span's trace and span ids one character at a time, and V8
 * keeps such a string as a chain of cons strings: ~24 of them, ~0.75 KB, per connection for
 * as long as it is open. Reading a character makes V8 flatten each chain in place.
 */
const flattenIds = (span: Tracer.Span): void => {
  span.traceId.charCodeAt(0)
  span.spanId.charCodeAt(0)
}

/**
 * The engine shared by the standalone server and the HTTP integrations: it takes sockets
 * whose request head was read (or reads it), runs the upgrade and the connection.
 */
export class Engine<Data, E, R, E2, R2> {
  readonly options: Resolved
  readonly connections = new Set<WsConnection<Data>>()
  /** Sockets still sending their upgrade request (destroyed at shutdown). */
  readonly pending = new Set<net.Socket>()
  shuttingDown = false

  constructor(
    readonly handlerOptions: HandlerOptions<Data, E, R, E2, R2>,
    readonly runFork: <A, EX>(effect: Effect.Effect<A, EX, R | R2>) => Fiber.RuntimeFiber<A, EX>
  ) {
    this.options = resolve(handlerOptions)
  }

  /** A raw socket fresh from accept: read the request head, then upgrade. */
  acceptSocket(socket: net.Socket): void {
    socket.setNoDelay(true)
    if (this.shuttingDown) {
      socket.destroy()
      return
    }
    const parser = new RequestParser({
      maxHeaderBytes: this.options.maxHeaderBytes,
      maxHeaders: this.options.maxHeaders
    })
    let done = false
    const timer = setTimeout(() => {
      if (done) return
      done = true
      cleanup()
      socket.destroy()
    }, this.options.handshakeTimeout)
    this.pending.add(socket)
    const cleanup = () => {
      this.pending.delete(socket)
      clearTimeout(timer)
      socket.removeListener("data", onData)
      socket.removeListener("close", onClose)
    }
    const onClose = () => {
      if (done) return
      done = true
      cleanup()
    }
    const onData = (chunk: Buffer) => {
      if (done) return
      const result = parser.push(chunk)
      if (result === undefined) return
      done = true
      cleanup()
      socket.pause()
      if (result instanceof HandshakeError) {
        this.reject(socket, result.status, result.reason, result.headers)
        return
      }
      this.handle(socket, result.request, result.rest)
    }
    // errors (ECONNRESET, ...) are followed by 'close'; this listener stays for the socket's life
    socket.on("error", noop)
    socket.on("data", onData)
    socket.on("close", onClose)
  }

  /**
   * The standalone path: with no upgrade hook the upgrade is synchronous (no fiber until the
   * handler's); with a hook, one fiber runs the hook and then accepts.
   */
  handle(socket: net.Socket, raw: RawRequest | UpgradeRequestLike, rest: Uint8Array): void {
    if (this.handlerOptions.onUpgrade === undefined) {
      const info = this.validate(socket, raw)
      if (info !== undefined) this.accept(socket, info, { data: undefined as Data }, rest, this.runFork)
      return
    }
    this.runFork(this.upgrade(socket, raw, rest, false))
  }

  /** Answers with a complete HTTP error response and closes; nothing after it is read. */
  reject(
    socket: net.Socket,
    status: number,
    reason: string,
    headers?: Readonly<Record<string, string>> | undefined,
    body?: string | undefined
  ): void {
    Metrics.handshakesRejected.unsafeUpdate(1, NO_TAGS)
    socket.removeAllListeners("data")
    socket.on("error", noop)
    socket.pause()
    socket.end(rejectResponse({ status, reason, headers, body }))
    // a peer that never reads its response is cut after the close timeout (the timer goes
    // with the socket, so that a rejected socket is not kept alive for the whole timeout)
    const timer = setTimeout(() => socket.destroy(), this.options.closeTimeout).unref()
    socket.once("close", () => clearTimeout(timer))
  }

  private validate(socket: net.Socket, raw: RawRequest | UpgradeRequestLike): UpgradeRequest | undefined {
    if (this.shuttingDown) {
      this.reject(socket, 503, "server is shutting down")
      return undefined
    }
    const request = validateUpgrade(raw)
    if (request instanceof HandshakeError) {
      this.reject(socket, request.status, request.reason, request.headers)
      return undefined
    }
    return request
  }

  /**
   * Validates, runs the hook, writes the 101 and starts the connection. With `wait` (the
   * HTTP route's fiber), the Effect lasts until the connection's socket is closed.
   */
  upgrade(
    socket: net.Socket,
    raw: RawRequest | UpgradeRequestLike,
    rest: Uint8Array,
    wait = true
  ): Effect.Effect<void, never, R | R2> {
    return Effect.suspend(() => {
      const info = this.validate(socket, raw)
      if (info === undefined) return Effect.void
      const hook = this.handlerOptions.onUpgrade
      const decided: Effect.Effect<UpgradeAccept<Data>, UpgradeRejected | E2, R2> = hook !== undefined
        ? hook({ ...info, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort })
        : Effect.succeed({ data: undefined as Data })
      return Effect.matchCauseEffect(decided, {
        onFailure: (cause) => {
          const f = Cause.failureOption(cause)
          if (Option.isSome(f) && f.value instanceof UpgradeRejected) {
            this.reject(socket, f.value.status, "rejected", f.value.headers, f.value.body ?? "")
            return Effect.void
          }
          this.reject(socket, 500, "upgrade hook failed")
          return Effect.logWarning("WebSocket upgrade hook failed", cause)
        },
        onSuccess: (accept) =>
          Effect.flatMap(Effect.runtime<R>(), (runtime) => {
            const ws = this.accept(socket, info, accept, rest, Runtime.runFork(runtime))
            return ws !== undefined && wait ? Deferred.await(ws.transportDeferred) : Effect.void
          })
      })
    })
  }

  /** Negotiates, writes the 101 and starts the connection (synchronously). */
  private accept(
    socket: net.Socket,
    request: UpgradeRequest,
    accept: UpgradeAccept<Data>,
    rest: Uint8Array,
    runFork: <A, EX>(effect: Effect.Effect<A, EX, R>) => Fiber.RuntimeFiber<A, EX>
  ): WsConnection<Data> | undefined {
    if (this.shuttingDown || socket.destroyed) {
      socket.destroy()
      return undefined
    }
    let protocol = accept.protocol
    if (protocol !== undefined && !request.protocols.includes(protocol)) {
      this.reject(socket, 500, "the upgrade hook selected a subprotocol the client did not offer")
      return undefined
    }
    if (protocol === undefined && this.handlerOptions.protocols !== undefined) {
      protocol = this.handlerOptions.protocols.find((p) => request.protocols.includes(p))
    }
    let compression: PerMessageDeflate | undefined
    let extensions: string | undefined
    const pmd = this.options.perMessageDeflate
    if (pmd !== undefined && request.extensions.length > 0) {
      const agreed = negotiate(request.extensions, pmd)
      if (agreed !== undefined) {
        compression = new PerMessageDeflate(agreed.params, pmd, "server", Metrics.deflateMeter)
        extensions = agreed.response
      }
    }
    const core = new Connection({
      role: "server",
      maxMessageSize: this.options.maxMessageSize,
      maxFrameSize: this.options.maxFrameSize,
      maxFragments: this.options.maxFragments,
      compression,
      deferClose: true
    })
    const requestInfo = new ConnectionRequest(request.url, request.headers, socket)
    socket.write(acceptResponse({ key: request.key, protocol, extensions, headers: accept.headers }))
    const ws = new WsConnection<Data>(
      socket,
      core,
      this.options,
      requestInfo,
      protocol,
      extensions,
      compression?.params,
      accept.data
    )
    this.startConnection(ws, rest, runFork)
    return ws
  }

  /**
   * The connection's life. Its scope (the handler runs in it) and socket are released when
   * the socket closes; the handler fiber is the only fiber it owns. Deadlines (close
   * timeout, keepalive, idle) are checked by the engine's timer fiber, which runs while
   * connections are open.
   */
  startConnection(
    ws: WsConnection<Data>,
    rest: Uint8Array,
    runFork: <A, EX>(effect: Effect.Effect<A, EX, R>) => Fiber.RuntimeFiber<A, EX>
  ): void {
    const connections = this.connections
    connections.add(ws)
    Metrics.connectionsOpen.unsafeUpdate(connections.size, NO_TAGS)
    Metrics.connectionsTotal.unsafeUpdate(1, NO_TAGS)
    if (!this.timersRunning) {
      this.timersRunning = true
      runFork(this.timers)
    }
    const fiber = runFork(
      this.handlerOptions.connectionSpan === false ? this.handlerOptions.handler(ws) : this.withSpan(ws)
    )
    ws.fiber = fiber
    ws.owner = this
    fiber.addObserver((exit) => this.onHandlerExit(ws, exit, runFork))
    if (rest.length > 0) ws.onData(Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength))
    ws.socket.resume()
  }

  /**
   * The handler inside the connection's span. The span is put in the fiber's context for
   * good (the fiber ends with the handler) and ended by the fiber's observer, so an idle
   * connection's fiber keeps no frames for it (`Effect.withSpan` would keep several).
   */
  private withSpan(ws: WsConnection<Data>): Effect.Effect<unknown, E, R> {
    return Effect.flatMap(
      Effect.makeSpan("websocket.connection", {
        attributes: { "websocket.id": ws.id, "url.path": ws.request.url },
        captureStackTrace: false
      }),
      (span) =>
        Effect.clockWith((clock) => {
          flattenIds(span)
          ws.span = span
          this.clock = clock
          return Effect.zipRight(
            FiberRef.update(FiberRef.currentContext, Context.add(Tracer.ParentSpan, span)),
            this.handlerOptions.handler(ws)
          )
        })
    )
  }

  /** The socket closed: bookkeeping, and the close timeout for a handler still finishing. */
  transportClosed(ws: WsConnection<Data>): void {
    const connections = this.connections
    connections.delete(ws)
    Metrics.connectionsOpen.unsafeUpdate(connections.size, NO_TAGS)
    // The handler may still be finishing (logging `closed`, ...): it gets the close timeout.
    const fiber = ws.fiber
    if (fiber !== undefined && fiber.unsafePoll() === null) {
      // cleared when the handler ends: a pending timer would keep the finished fiber (its refs,
      // context and span) alive for the whole timeout, ~1.3 KB per connection under churn
      const timer = setTimeout(() => fiber.unsafeInterruptAsFork(FiberId.none), this.options.closeTimeout).unref()
      fiber.addObserver(() => clearTimeout(timer))
    }
  }

  private onHandlerExit(
    ws: WsConnection<Data>,
    exit: Exit.Exit<unknown, E>,
    runFork: <A, EX>(effect: Effect.Effect<A, EX, R>) => Fiber.RuntimeFiber<A, EX>
  ): void {
    ws.fiber = undefined
    const span = ws.span
    if (span !== undefined) {
      ws.span = undefined
      if (span.status._tag === "Started") {
        span.end(span.status.startTime === BigInt(0) ? BigInt(0) : this.clock!.unsafeCurrentTimeNanos(), exit)
      }
    }
    if (Exit.isSuccess(exit)) {
      ws.startClose(1000, "")
      return
    }
    if (Cause.isInterruptedOnly(exit.cause)) {
      ws.startClose(1001, "")
      return
    }
    const failure = Cause.failureOption(exit.cause)
    const error = Option.isSome(failure) ? failure.value as { readonly _tag?: string } : undefined
    // The stream's own protocol error, or a send after the peer left: already closing.
    if (
      error !== undefined &&
      (isProtocolError(error) && ws.core.failure !== undefined || error._tag === "WebSocketClosedError")
    ) {
      return
    }
    const { code, reason } = closeCodeForHandlerFailure(exit.cause)
    if (code === 1007) {
      ws.terminate(new InvalidPayloadError({ reason }))
      return
    }
    ws.terminate(new InternalError({ reason: "internal error", cause: exit.cause }))
    runFork(Effect.logError("WebSocket handler failed", exit.cause))
  }

  private timersRunning = false
  /** The Clock of the handlers' fibers (spans end on the clock they started on). */
  private clock: Clock.Clock | undefined = undefined

  /** Granularity of the deadlines: a quarter of the shortest timeout, between 10 ms and 1 s. */
  private get tick(): number {
    const o = this.options
    const shortest = Math.min(
      o.closeTimeout,
      o.keepaliveInterval > 0 ? Math.min(o.keepaliveInterval, o.keepaliveTimeout) : Infinity,
      o.idleTimeout > 0 ? o.idleTimeout : Infinity
    )
    return Math.max(10, Math.min(1000, Math.floor(shortest / 4)))
  }

  /** One fiber for every connection's deadlines; it ends when no connection is open. */
  private readonly timers: Effect.Effect<void> = Effect.suspend(() => {
    const loop: Effect.Effect<void> = Effect.suspend(() => {
      if (this.connections.size === 0) {
        this.timersRunning = false
        return Effect.void
      }
      return Effect.zipRight(
        Effect.sleep(this.tick),
        Effect.suspend(() => {
          const now = Date.now()
          for (const ws of this.connections) ws.checkDeadlines(now)
          return loop
        })
      )
    })
    return Effect.onExit(loop, () => Effect.sync(() => {
      this.timersRunning = false
    }))
  })

  /**
   * Graceful shutdown: no new upgrades (503), 1001 to every open connection, up to the close
   * timeout for their handshakes, then whatever is left is destroyed.
   */
  shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.shuttingDown = true
      for (const socket of this.pending) socket.destroy()
      const open = [...this.connections]
      for (const ws of open) ws.startClose(1001, "server shutting down")
      return Effect.forEach(open, (ws) => Deferred.await(ws.transportDeferred), { concurrency: "unbounded", discard: true }).pipe(
        Effect.timeout(this.options.closeTimeout),
        Effect.ignore,
        Effect.tap(() =>
          Effect.sync(() => {
            for (const ws of this.connections) ws.destroy()
          })
        )
      )
    })
  }
}

const noop = () => {}

const SOCKET: unique symbol = Symbol("effect-websocket/socket")

/**
 * A connection's request. The peer's address is read from the socket on first use (a
 * `getpeername` call per handshake otherwise; Node keeps the answer once read): read it
 * while the connection is open, or in the upgrade hook, whose `UpgradeInfo` carries it.
 */
class ConnectionRequest implements RequestInfo {
  readonly [SOCKET]: net.Socket
  constructor(readonly url: string, readonly headers: Readonly<Record<string, string>>, socket: net.Socket) {
    this[SOCKET] = socket
  }
  get remoteAddress(): string | undefined {
    return this[SOCKET].remoteAddress
  }
  get remotePort(): number | undefined {
    return this[SOCKET].remotePort
  }
  toJSON(): RequestInfo {
    return { url: this.url, headers: this.headers, remoteAddress: this.remoteAddress, remotePort: this.remotePort }
  }
}

/** A request head already parsed elsewhere (node:http). */
export interface UpgradeRequestLike {
  readonly method?: string | undefined
  readonly url?: string | undefined
  readonly httpVersion: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

/** The standalone server: a TCP or TLS listener feeding an engine. */
export const listen = <Data, E, R, E2, R2>(
  options: HandlerOptions<Data, E, R, E2, R2> & {
    readonly host?: string | undefined
    readonly port?: number | undefined
    readonly tls?: tls.TlsOptions | undefined
    readonly backlog?: number | undefined
  }
): Effect.Effect<
  { readonly engine: Engine<Data, E, R, E2, R2>; readonly address: net.AddressInfo; readonly secure: boolean },
  ServerError,
  Scope.Scope | R | R2
> =>
  Effect.gen(function*() {
    const runFork = yield* FiberSet.makeRuntime<R | R2>()
    const engine = new Engine<Data, E, R, E2, R2>(options, runFork as any)
    const secure = options.tls !== undefined
    const server: net.Server = secure
      ? yield* Effect.try({
        try: () => tls.createServer({ ...options.tls, handshakeTimeout: engine.options.handshakeTimeout }),
        catch: (cause) => new ServerError({ reason: "Tls", cause })
      })
      : net.createServer({ noDelay: true })
    server.on(secure ? "secureConnection" : "connection", (socket: net.Socket) => engine.acceptSocket(socket))
    server.on("tlsClientError", (_err: unknown, socket: net.Socket) => socket.destroy())
    yield* Effect.async<void, ServerError>((resume) => {
      const onError = (cause: unknown) => resume(Effect.fail(new ServerError({ reason: "Listen", cause })))
      server.once("error", onError)
      server.listen({ port: options.port ?? 0, host: options.host ?? "127.0.0.1", backlog: options.backlog ?? 511 }, () => {
        server.removeListener("error", onError)
        resume(Effect.void)
      })
    })
    server.on("error", () => {})
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // stop accepting; close() itself waits for open sockets, which the engine closes next
        yield* Effect.sync(() => server.close())
        yield* engine.shutdown()
      })
    )
    const address = server.address() as net.AddressInfo
    return { engine, address, secure }
  })

export type { CloseInfo, Context }
