/**
 * WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream becomes a connection of the
 * engine, with the same handle, limits, hook and shutdown as an HTTP/1.1 upgrade. The stream
 * is the connection's transport (a Duplex): HTTP/2 flow control is its backpressure.
 */
import { HandshakeError } from "@effect-websocket/protocol/Errors"
import { extendedConnectResponse, validateExtendedConnect, validateUpgrade } from "@effect-websocket/protocol/Handshake"
import { Effect } from "effect"
import type { Scope } from "effect"
import type * as http from "node:http"
import * as http2 from "node:http2"
import type * as net from "node:net"
import { ServerError } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import type { Forker, RunFork } from "./fork.js"
import { makeForker } from "./fork.js"
import { NO_TAGS } from "./inbox.js"
import type { HandlerOptions } from "./server.js"
import { adopt, pathMatcher } from "./http.js"
import { bind, ConnectionRequest, Engine } from "./server.js"
import type { listen } from "./server.js"

const EMPTY = new Uint8Array(0)
const noop = () => {}
const { NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants

/**
 * Answers a stream with an HTTP status and ends it; a client still sending is told to stop
 * with RST_STREAM(NO_ERROR) (RFC 9113 §8.1). Nothing else on the session is touched.
 */
export const refuseStream = (
  stream: http2.ServerHttp2Stream,
  status: number,
  reason: string,
  headers?: Readonly<Record<string, string>> | undefined,
  body?: string | undefined
): void => {
  Metrics.handshakesRejected.unsafeUpdate(1, NO_TAGS)
  if (stream.destroyed || stream.headersSent) return
  const fields: Record<string, string | number> = { ":status": status, "content-type": "text/plain; charset=utf-8" }
  if (headers !== undefined) for (const name of Object.keys(headers)) fields[name.toLowerCase()] = headers[name]
  stream.on("error", noop)
  try {
    stream.respond(fields)
  } catch {
    // a hook's header that HTTP/2 forbids (Connection, Upgrade, ...): the status alone
    stream.respond({ ":status": status })
  }
  stream.end(body ?? reason)
  stream.close(NGHTTP2_NO_ERROR)
}

/**
 * Validates an extended CONNECT (RFC 8441 §4-5), runs the upgrade hook, answers `:status`
 * 200 and starts the connection on the stream; a refusal is answered with its status.
 */
export const acceptStream = <Data, E, R, E2, R2>(
  engine: Engine<Data, E, R, E2, R2>,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders
): Effect.Effect<void, never, Exclude<R, Scope.Scope> | R2> =>
  Effect.suspend(() => {
    if (engine.shuttingDown) {
      refuseStream(stream, 503, "server is shutting down")
      return Effect.void
    }
    const request = validateExtendedConnect(headers)
    if (request instanceof HandshakeError) {
      refuseStream(stream, request.status, request.reason, request.headers)
      return Effect.void
    }
    // the session's socket: the peer's address (the Proxy Node hands out answers these reads)
    const socket = stream.session!.socket as net.Socket
    return engine.decide(
      { ...request, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, transport: "h2" },
      (status, reason, fields, body) => refuseStream(stream, status, reason, fields, body),
      (accept, forker: Forker<Exclude<R, Scope.Scope>>) =>
        Effect.sync(() => {
          if (engine.shuttingDown || stream.destroyed) {
            if (!stream.destroyed) stream.close(NGHTTP2_REFUSED_STREAM)
            return
          }
          const agreed = engine.agree(request, accept)
          if (typeof agreed === "string") {
            refuseStream(stream, 500, agreed)
            return
          }
          const { extensions, protocol } = agreed
          stream.respond(extendedConnectResponse({ protocol, extensions, headers: accept.headers }))
          // The connection ends the stream once the closing handshake is over or it failed (its
          // `end()`); then the stream is closed at once with RST_STREAM(NO_ERROR) if the peer keeps
          // its side open, as the server closes TCP first over HTTP/1.1 (RFC 6455 §7.1.1).
          stream.once("finish", closeStream)
          const info = new ConnectionRequest(request.url, request.headers, socket, "h2")
          engine.open(stream, info, agreed, accept.data, EMPTY, forker)
        })
    )
  })

function closeStream(this: http2.ServerHttp2Stream): void {
  if (!this.closed) this.close(NGHTTP2_NO_ERROR)
}

/**
 * Serves extended CONNECTs of an HTTP/2 server with an engine until the returned function is
 * called. With the compatibility API in use (a 'request' listener, as `@effect/platform-node`
 * adds), Node hands CONNECTs to 'connect' and answers them with 405 when nobody listens; else
 * they come as plain streams.
 */
export const serveStreams = <Data, E, R, E2, R2>(
  server: http2.Http2SecureServer | http2.Http2Server,
  engine: Engine<Data, E, R, E2, R2>,
  matches: (url: string) => boolean,
  runFork: RunFork<Exclude<R, Scope.Scope> | R2>
): () => void => {
  const dispatch = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, others: number): void => {
    if (headers[":method"] !== "CONNECT") {
      // a request for another handler; alone, we answer it as a WebSocket endpoint would
      if (others === 0) runFork(acceptStream(engine, stream, headers))
      return
    }
    const path = headers[":path"]
    if (headers[":protocol"] !== undefined && typeof path === "string" && !matches(path)) {
      if (others === 0) refuseStream(stream, 404, "no WebSocket endpoint here")
      return
    }
    runFork(acceptStream(engine, stream, headers))
  }
  const onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    if (server.listenerCount("request") > 0) return // the compatibility API emits 'connect'
    dispatch(stream, headers, server.listenerCount("stream") - 1)
  }
  const onConnect = (request: http2.Http2ServerRequest) => {
    dispatch(request.stream, request.headers, server.listenerCount("connect") - 1)
  }
  server.on("stream", onStream)
  server.on("connect", onConnect)
  return () => {
    server.removeListener("stream", onStream)
    server.removeListener("connect", onConnect)
  }
}

/**
 * HTTP/2 receive windows of the standalone server: per stream (one WebSocket) 1 MiB, like the
 * inbox high-water mark, and 16 MiB for the connection all its WebSockets share. Node's 64 KiB
 * defaults hold a 16 KiB echo load on 64 streams of one connection to a few hundred messages
 * per second.
 */
const DEFAULT_STREAM_WINDOW = 1024 * 1024
const DEFAULT_CONNECTION_WINDOW = 16 * 1024 * 1024

const UPGRADE_REQUIRED = { "Upgrade": "websocket", "Sec-WebSocket-Version": "13" } as const

/**
 * The standalone server over HTTP/2: one TLS port, ALPN `h2` and `http/1.1`. HTTP/2 clients
 * open WebSockets with extended CONNECT (any number per connection), HTTP/1.1 clients with the
 * classic upgrade; any other request gets the status the handshake rules give (426 over
 * HTTP/1.1, 405 over HTTP/2).
 */
export const listenHttp2 = <Data, E, R, E2, R2>(
  options: Parameters<typeof listen<Data, E, R, E2, R2>>[0] & {
    readonly http2Settings?: http2.Settings | undefined
    readonly http2ConnectionWindow?: number | undefined
  }
): ReturnType<typeof listen<Data, E, R, E2, R2>> =>
  Effect.gen(function*() {
    if (options.tls === undefined) {
      return yield* new ServerError({
        reason: "Tls",
        cause: new TypeError("http2 needs tls: browsers speak HTTP/2 only over TLS")
      })
    }
    const forker = yield* makeForker<Exclude<R, Scope.Scope> | R2>()
    const engine = new Engine<Data, E, R, E2, R2>(options, forker)
    const runFork = forker.run
    const server = yield* Effect.try({
      try: () =>
        http2.createSecureServer({
          ...options.tls,
          handshakeTimeout: engine.options.handshakeTimeout,
          allowHTTP1: true,
          settings: { initialWindowSize: DEFAULT_STREAM_WINDOW, ...options.http2Settings, enableConnectProtocol: true }
        }),
      catch: (cause) => new ServerError({ reason: "Tls", cause })
    })
    const sessions = new Set<http2.ServerHttp2Session>()
    server.on("session", (session: http2.ServerHttp2Session) => {
      session.setLocalWindowSize(options.http2ConnectionWindow ?? DEFAULT_CONNECTION_WINDOW)
      sessions.add(session)
      session.on("error", noop)
      // a connection without streams for handshakeTimeout is closed (GOAWAY), as a TCP
      // connection that sends no upgrade request is
      let streams = 0
      let idle: NodeJS.Timeout | undefined
      const arm = () => {
        idle = setTimeout(() => session.close(), engine.options.handshakeTimeout).unref()
      }
      session.on("stream", (stream: http2.ServerHttp2Stream) => {
        if (streams++ === 0) clearTimeout(idle)
        stream.once("close", () => {
          if (--streams === 0 && !session.closed) arm()
        })
      })
      session.once("close", () => {
        clearTimeout(idle)
        sessions.delete(session)
      })
      arm()
    })
    // HTTP/1.1 on the same port: upgrades as in the standalone server, other requests refused
    server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      adopt(socket)
      runFork(engine.upgrade(socket, req, head, false))
    })
    server.on("request", (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse) => {
      if (req.httpVersionMajor >= 2) {
        runFork(acceptStream(engine, (req as http2.Http2ServerRequest).stream, req.headers))
        return
      }
      const checked = validateUpgrade(req as http.IncomingMessage)
      const error = checked instanceof HandshakeError
        ? checked
        : new HandshakeError({ status: 426, reason: "this request cannot be upgraded", headers: UPGRADE_REQUIRED })
      Metrics.handshakesRejected.unsafeUpdate(1, NO_TAGS)
      res.writeHead(error.status, { ...error.headers, "content-type": "text/plain; charset=utf-8" }).end(error.reason)
    })
    server.on("tlsClientError", (_err: unknown, socket: net.Socket) => socket.destroy())
    serveStreams(server, engine, () => true, runFork)
    yield* bind(server, options)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Effect.sync(() => server.close())
        // 1001 to every WebSocket, their closing handshakes, then GOAWAY on every session
        yield* engine.shutdown()
        yield* Effect.sync(() => {
          for (const session of sessions) session.close()
        })
      })
    )
    return { engine, address: server.address() as net.AddressInfo, secure: true }
  })

/**
 * Serves the extended CONNECTs of an HTTP/2 server whose `path` matches, for the lifetime of
 * the scope (see `HttpUpgrade.attachHttp2`).
 */
export const attachHttp2 = <Data, E, R, E2, R2>(
  server: http2.Http2SecureServer | http2.Http2Server,
  options: HandlerOptions<Data, E, R, E2, R2> & { readonly path?: string | ((url: string) => boolean) | undefined }
): Effect.Effect<{ readonly connections: Effect.Effect<number> }, never, Scope.Scope | Exclude<R, Scope.Scope> | R2> =>
  Effect.gen(function*() {
    const forker = yield* makeForker<Exclude<R, Scope.Scope> | R2>()
    const engine = new Engine<Data, E, R, E2, R2>(options, forker)
    const runFork = forker.run
    const stop = serveStreams(server, engine, pathMatcher(options.path), runFork)
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        stop()
        return engine.shutdown()
      })
    )
    return { connections: Effect.sync(() => engine.openCount) }
  })
