import { Connection } from "@effect-websocket/protocol/Connection"
import { HandshakeError } from "@effect-websocket/protocol/Errors"
import type { RawRequest, UpgradeRequest } from "@effect-websocket/protocol/Handshake"
import { acceptResponse, rejectResponse, RequestParser, validateUpgrade } from "@effect-websocket/protocol/Handshake"
import { negotiate, PerMessageDeflate } from "@effect-websocket/protocol/PerMessageDeflate"
import { Cause, Effect, Option } from "effect"
import type { Duplex } from "node:stream"
import type { Context, Scope } from "effect"
import * as net from "node:net"
import * as tls from "node:tls"
import { ServerError, UpgradeRejected } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import type { CloseInfo, RequestInfo, WebSocket } from "../WebSocket.js"
import { WsConnection } from "./connection.js"
import type { Owner } from "./connection.js"
import { NO_TAGS } from "./inbox.js"
import { Forker, makeForker } from "./fork.js"
import { CloseTimeouts } from "./lifecycle.js"
import type { ConnectionPort } from "./port.js"
import type { Limits, Resolved } from "./options.js"
import { resolve } from "./options.js"

/** What an upgrade hook sees. */
export interface UpgradeInfo extends UpgradeRequest {
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  /** `"h2"` for an HTTP/2 extended CONNECT (then `method` is CONNECT and `key` is empty). */
  readonly transport: "http/1.1" | "h2"
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
  /**
   * Runs for every accepted connection, with the connection's own `Scope` in its context:
   * what it acquires (`Effect.addFinalizer`, `Effect.acquireRelease`, subscriptions) is
   * released when the connection ends, by whatever path, in reverse order, once.
   */
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
   * `"auto"` (the default): when a tracer that records spans is installed (any tracer but
   * Effect's built-in one, e.g. `@effect/opentelemetry`'s) and tracing is on; `true`: always
   * (a span with the built-in tracer too, e.g. to read its ids in the handler); `false`: never.
   * The span costs about 6 KB of allocation per handshake and 0.9 KiB per open connection.
   */
  readonly connectionSpan?: boolean | "auto" | undefined
  /** permessage-deflate: off by default; `true` for the defaults, or options. */
  readonly perMessageDeflate?: boolean | import("@effect-websocket/protocol/PerMessageDeflate").PerMessageDeflateOptions | undefined
}

/**
 * The engine shared by the standalone server and the HTTP integrations: it takes sockets
 * whose request head was read (or reads it), runs the upgrade and the connection.
 */
export class Engine<Data, E, R, E2, R2> implements Owner {
  readonly options: Resolved
  /** Open connections (their deadlines are checked by the timer fiber); each leaves when its Scope closes. */
  readonly connections = new Set<ConnectionPort>()
  /** Sockets still sending their upgrade request (destroyed at shutdown). */
  readonly pending = new Set<net.Socket>()
  shuttingDown = false

  constructor(
    readonly handlerOptions: HandlerOptions<Data, E, R, E2, R2>,
    /** How raw sockets' upgrades are forked; none for an engine that takes no raw socket (an HTTP route's). */
    readonly forker: Forker<Exclude<R, Scope.Scope> | R2> | undefined
  ) {
    this.options = resolve(handlerOptions)
    this.closeTimeouts = new CloseTimeouts(this.options.closeTimeout)
  }

  /** The close-timeout fiber: it runs while a close is under way on one of the connections. */
  readonly closeTimeouts: CloseTimeouts

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
    const forker = this.forker
    if (forker === undefined) throw new Error("this engine does not accept raw sockets")
    if (this.handlerOptions.onUpgrade === undefined) {
      const info = this.validate(socket, raw)
      if (info !== undefined) this.accept(socket, info, { data: undefined as Data }, rest, forker)
      return
    }
    forker.run(this.upgrade(socket, raw, rest, false))
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
  ): Effect.Effect<void, never, Exclude<R, Scope.Scope> | R2> {
    return Effect.suspend(() => {
      const info = this.validate(socket, raw)
      if (info === undefined) return Effect.void
      return this.decide(
        { ...info, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, transport: "http/1.1" },
        (status, reason, headers, body) => this.reject(socket, status, reason, headers, body),
        (accept, forker) => {
          const ws = this.accept(socket, info, accept, rest, forker)
          // the route's fiber lasts as long as the connection (until its Scope closed)
          return ws !== undefined && wait ? ws.released : Effect.void
        }
      )
    })
  }

  /**
   * Runs the upgrade hook (when there is one) on a valid request: a refusal or a failure is
   * answered with `refuse`, an acceptance goes to `accepted` with the hook's runtime.
   */
  decide(
    info: UpgradeInfo,
    refuse: (status: number, reason: string, headers?: Readonly<Record<string, string>>, body?: string) => void,
    accepted: (accept: UpgradeAccept<Data>, forker: Forker<Exclude<R, Scope.Scope>>) => Effect.Effect<void>
  ): Effect.Effect<void, never, Exclude<R, Scope.Scope> | R2> {
    const hook = this.handlerOptions.onUpgrade
    const decided: Effect.Effect<UpgradeAccept<Data>, UpgradeRejected | E2, R2> = hook !== undefined
      ? hook(info)
      : Effect.succeed({ data: undefined as Data })
    return Effect.matchCauseEffect(decided, {
      onFailure: (cause) => {
        const f = Cause.failureOption(cause)
        if (Option.isSome(f) && f.value instanceof UpgradeRejected) {
          refuse(f.value.status, "rejected", f.value.headers, f.value.body ?? "")
          return Effect.void
        }
        refuse(500, "upgrade hook failed")
        return Effect.logWarning("WebSocket upgrade hook failed", cause)
      },
      onSuccess: (accept) =>
        Effect.flatMap(Effect.runtime<Exclude<R, Scope.Scope>>(), (runtime) => accepted(accept, Forker.of(runtime)))
    })
  }

  /** Negotiates, writes the 101 and starts the connection (synchronously). */
  private accept(
    socket: net.Socket,
    request: UpgradeRequest,
    accept: UpgradeAccept<Data>,
    rest: Uint8Array,
    forker: Forker<Exclude<R, Scope.Scope>>
  ): ConnectionPort | undefined {
    if (this.shuttingDown || socket.destroyed) {
      socket.destroy()
      return undefined
    }
    const agreed = this.agree(request, accept)
    if (typeof agreed === "string") {
      this.reject(socket, 500, agreed)
      return undefined
    }
    const requestInfo = new ConnectionRequest(request.url, request.headers, socket, "http/1.1")
    socket.write(acceptResponse({ key: request.key, protocol: agreed.protocol, extensions: agreed.extensions, headers: accept.headers }))
    const ws = this.open(socket, requestInfo, agreed, accept.data, rest, forker)
    this.opened(socket, ws)
    return ws
  }

  /**
   * Starts a connection on a transport whose handshake was answered (a socket after its 101,
   * an HTTP/2 stream after its 200): its fiber (Scope, reader, handler, close) and its place in
   * the deadline checks, which it leaves when its Scope closes (`released`).
   */
  open(
    transport: Duplex,
    request: RequestInfo,
    agreed: Agreed,
    data: Data,
    rest: Uint8Array,
    forker: Forker<Exclude<R, Scope.Scope>>
  ): ConnectionPort {
    const ws = new WsConnection<Data>({
      transport,
      core: agreed.core,
      options: this.options,
      request,
      protocol: agreed.protocol,
      extensions: agreed.extensions,
      deflate: agreed.compression?.params,
      data,
      owner: this
    }, rest)
    this.startConnection(ws, forker)
    return ws
  }

  /**
   * The subprotocol and the permessage-deflate parameters agreed for a request, and the
   * connection's protocol core; a reason when the hook selected a subprotocol not offered.
   */
  agree(request: UpgradeRequest, accept: UpgradeAccept<Data>): Agreed | string {
    let protocol = accept.protocol
    if (protocol !== undefined && !request.protocols.includes(protocol)) {
      return "the upgrade hook selected a subprotocol the client did not offer"
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
    return { protocol, extensions, compression, core }
  }

  /** A connection was accepted on this socket (the HTTP route keeps track of it). */
  protected opened(_socket: net.Socket, _ws: ConnectionPort): void {}

  /**
   * Starts the connection's fiber (its Scope, reader, handler and close) and registers it for
   * the deadline checks; it leaves the registry when its Scope closes (`released`).
   */
  private startConnection(
    ws: WsConnection<Data>,
    forker: Forker<Exclude<R, Scope.Scope>>
  ): void {
    const connections = this.connections
    connections.add(ws)
    this.openCount++
    Metrics.connectionsOpen.unsafeUpdate(this.openCount, NO_TAGS)
    Metrics.connectionsTotal.unsafeUpdate(1, NO_TAGS)
    if (!this.timersRunning) {
      this.timersRunning = true
      forker.run(this.timers)
    }
    ws.start(this.handlerOptions.handler, this.handlerOptions.connectionSpan ?? "auto", forker)
  }

  /** Connections whose transport is open (a handler may outlive its transport by the close timeout). */
  openCount = 0

  /** A connection's transport closed. */
  transportClosed(_port: ConnectionPort): void {
    this.openCount--
    Metrics.connectionsOpen.unsafeUpdate(this.openCount, NO_TAGS)
  }

  /** A connection's Scope closed. */
  released(port: ConnectionPort): void {
    this.connections.delete(port)
  }

  private timersRunning = false

  /**
   * Granularity of the deadlines: a quarter of the shortest timeout, between 10 ms and 1 s (1 s
   * when neither keepalive nor an idle timeout is on: the sweep also ends reader fibers that
   * have waited `READER_LINGER` without a read).
   */
  private get tick(): number {
    const o = this.options
    const shortest = Math.min(
      o.keepaliveInterval > 0 ? Math.min(o.keepaliveInterval, o.keepaliveTimeout) : Infinity,
      o.idleTimeout > 0 ? o.idleTimeout : Infinity
    )
    return Math.max(10, Math.min(1000, Math.floor(shortest / 4)))
  }

  /** One fiber for every connection's deadlines (and idle readers); it ends when no connection is open. */
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
   * Graceful shutdown: no new upgrades (503), 1001 to every open connection, their closing
   * handshakes, then the handlers still running are interrupted.
   *
   * Every wait here is bounded by the connections themselves, not by a timeout: this runs as a
   * Layer's finalizer, uninterruptibly, where `Effect.timeout` cannot cut what it waits for. Each
   * connection's close deadline (armed by `startClose`) cuts a peer that does not finish the
   * closing handshake within `closeTimeout`; after that a handler can only hold shutdown by
   * making itself uninterruptible, and is then waited for, as Effect waits for any such fiber.
   */
  shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.shuttingDown = true
      for (const socket of this.pending) socket.destroy()
      const open = [...this.connections]
      for (const ws of open) ws.startClose(1001, "server shutting down")
      return Effect.forEach(open, (ws) => ws.transportClosed, { concurrency: "unbounded", discard: true }).pipe(
        Effect.zipRight(Effect.suspend(() => {
          // every transport has closed; the handlers still running are interrupted, and every
          // connection's Scope has closed (its finalizers ran) before the server is gone
          const left = [...this.connections]
          for (const ws of left) ws.interruptHandler()
          return Effect.forEach(left, (ws) => ws.released, { concurrency: "unbounded", discard: true })
        }))
      )
    })
  }
}

const noop = () => {}

/** What `Engine.agree` settled for a connection. */
export interface Agreed {
  readonly protocol: string | undefined
  readonly extensions: string | undefined
  readonly compression: PerMessageDeflate | undefined
  readonly core: Connection
}

const SOCKET: unique symbol = Symbol("effect-websocket/socket")

/**
 * A connection's request. The peer's address is read from the socket on first use (a
 * `getpeername` call per handshake otherwise; Node keeps the answer once read): read it
 * while the connection is open, or in the upgrade hook, whose `UpgradeInfo` carries it.
 */
export class ConnectionRequest implements RequestInfo {
  readonly [SOCKET]: net.Socket
  constructor(
    readonly url: string,
    readonly headers: Readonly<Record<string, string>>,
    socket: net.Socket,
    readonly transport: "http/1.1" | "h2"
  ) {
    this[SOCKET] = socket
  }
  get remoteAddress(): string | undefined {
    return this[SOCKET].remoteAddress
  }
  get remotePort(): number | undefined {
    return this[SOCKET].remotePort
  }
  toJSON(): RequestInfo {
    return {
      url: this.url,
      headers: this.headers,
      remoteAddress: this.remoteAddress,
      remotePort: this.remotePort,
      transport: this.transport
    }
  }
}

/** A request head already parsed elsewhere (node:http). */
export interface UpgradeRequestLike {
  readonly method?: string | undefined
  readonly url?: string | undefined
  readonly httpVersion: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

/** Listens on `options`' host and port (default 127.0.0.1, any free port). */
export const bind = (
  server: net.Server,
  options: { readonly host?: string | undefined; readonly port?: number | undefined; readonly backlog?: number | undefined }
): Effect.Effect<void, ServerError> =>
  Effect.async<void, ServerError>((resume) => {
    const onError = (cause: unknown) => resume(Effect.fail(new ServerError({ reason: "Listen", cause })))
    server.once("error", onError)
    server.listen({ port: options.port ?? 0, host: options.host ?? "127.0.0.1", backlog: options.backlog ?? 511 }, () => {
      server.removeListener("error", onError)
      server.on("error", () => {})
      resume(Effect.void)
    })
  })

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
  Scope.Scope | Exclude<R, Scope.Scope> | R2
> =>
  Effect.gen(function*() {
    const forker = yield* makeForker<Exclude<R, Scope.Scope> | R2>()
    const engine = new Engine<Data, E, R, E2, R2>(options, forker)
    const secure = options.tls !== undefined
    const server: net.Server = secure
      ? yield* Effect.try({
        try: () => tls.createServer({ ...options.tls, handshakeTimeout: engine.options.handshakeTimeout }),
        catch: (cause) => new ServerError({ reason: "Tls", cause })
      })
      : net.createServer({ noDelay: true })
    server.on(secure ? "secureConnection" : "connection", (socket: net.Socket) => engine.acceptSocket(socket))
    server.on("tlsClientError", (_err: unknown, socket: net.Socket) => socket.destroy())
    yield* bind(server, options)
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
