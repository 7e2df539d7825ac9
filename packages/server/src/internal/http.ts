import { HandshakeError } from "@effect-websocket/protocol/Errors"
import { validateUpgrade } from "@effect-websocket/protocol/Handshake"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Fiber } from "effect"
import type { Scope } from "effect"
import * as http from "node:http"
import type * as net from "node:net"
import type { Duplex } from "node:stream"
import * as Metrics from "../Metrics.js"
import { makeForker } from "./fork.js"
import { NO_TAGS } from "./inbox.js"
import type { ConnectionPort } from "./port.js"
import type { HandlerOptions } from "./server.js"
import { Engine } from "./server.js"

const EMPTY = Buffer.alloc(0)
const noop = () => {}

// ---------------------------------------------------------------------------------------
// Bytes that arrived with the request head
// ---------------------------------------------------------------------------------------

/** Head bytes of upgrade requests, recorded by `recordHead`, taken by the route handler. */
const heads = new WeakMap<http.IncomingMessage, Buffer>()
const recording = new WeakSet<http.Server>()

/**
 * Makes `server` keep, for each upgrade request, the bytes that arrived after its head
 * (node:http hands them only to 'upgrade' listeners, as `head`). A conforming client sends
 * nothing before the 101 (RFC 6455 §4.1), so the route works without this; with it, frames a
 * client pipelines behind its request are not lost.
 */
export const recordHead = <S extends http.Server>(server: S): S => {
  if (recording.has(server)) return server
  recording.add(server)
  server.prependListener("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (head.length > 0) heads.set(req, head)
    // Alone, this listener would make node:http hand every upgrade to nobody.
    if (server.listenerCount("upgrade") === 1) socket.destroy()
  })
  return server
}

const takeHead = (req: http.IncomingMessage): Buffer => {
  const head = heads.get(req)
  if (head === undefined) return EMPTY
  heads.delete(req)
  return head
}

/** node:http removed its own listeners from an upgraded socket; an 'error' must not crash us. */
export const adopt = (socket: net.Socket): void => {
  socket.on("error", noop)
  socket.setTimeout(0)
  socket.setNoDelay(true)
}

// ---------------------------------------------------------------------------------------
// The route handler
// ---------------------------------------------------------------------------------------

/**
 * The engine of one route: it also remembers, per socket, the connection it opened and the
 * status it answered with (for the platform's logs and traces).
 */
class RouteEngine<Data, E, R, E2, R2> extends Engine<Data, E, R, E2, R2> {
  readonly connectionOf = new WeakMap<net.Socket, ConnectionPort>()
  readonly answered = new WeakMap<net.Socket, number>()

  constructor(options: HandlerOptions<Data, E, R, E2, R2>) {
    // no forker: it takes no raw sockets, and each connection is forked with its request fiber's runtime
    super(options, undefined)
  }

  override reject(
    socket: net.Socket,
    status: number,
    reason: string,
    headers?: Readonly<Record<string, string>> | undefined,
    body?: string | undefined
  ): void {
    this.answered.set(socket, status)
    super.reject(socket, status, reason, headers, body)
  }

  protected override opened(socket: net.Socket, ws: ConnectionPort): void {
    this.connectionOf.set(socket, ws)
    this.answered.set(socket, 101)
  }

  /**
   * The request's fiber was interrupted: the HTTP server is shutting down (its serve scope
   * interrupts every upgrade fiber), the peer went away, or a middleware gave up. Close with
   * 1001 and wait for the closing handshake, as the standalone server does at shutdown.
   */
  leave(socket: net.Socket, fiber: Fiber.RuntimeFiber<void>): Effect.Effect<void> {
    return Effect.suspend((): Effect.Effect<void> => {
      const ws = this.connectionOf.get(socket)
      if (ws === undefined) {
        // Still in the upgrade hook: nothing was written yet.
        socket.destroy()
        return Effect.asVoid(Fiber.interrupt(fiber))
      }
      ws.startClose(1001, "server shutting down")
      // The connection bounds itself against its peer: the close timeout cuts a transport whose
      // peer does not finish the closing handshake, and a handler still running then is
      // interrupted. The route's fiber ends when the connection's Scope has closed (its socket is
      // destroyed by then). As for any fiber, a handler that makes itself uninterruptible is
      // waited for: a timeout here could not cut that wait (this runs as an interruption
      // finalizer, uninterruptibly), and returning early would leave the handler running.
      return Effect.asVoid(Fiber.await(fiber))
    })
  }
}

const UPGRADE_REQUIRED = { "Upgrade": "websocket", "Sec-WebSocket-Version": "13" } as const

/** A request that is not a WebSocket upgrade: the HTTP answer the engine would have given. */
const refuse = (req: http.IncomingMessage): HttpServerResponse.HttpServerResponse => {
  const checked = validateUpgrade(req)
  const error = checked instanceof HandshakeError
    ? checked
    : new HandshakeError({ status: 426, reason: "this request cannot be upgraded", headers: UPGRADE_REQUIRED })
  Metrics.handshakesRejected.unsafeUpdate(1, NO_TAGS)
  return HttpServerResponse.text(error.reason, { status: error.status, headers: error.headers ?? {} })
}

export const handler = <Data, E, R, E2, R2>(
  options: HandlerOptions<Data, E, R, E2, R2>
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  never,
  HttpServerRequest.HttpServerRequest | Exclude<R, Scope.Scope> | R2
> => {
  const engine = new RouteEngine(options)
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const req = request.source
    if (!(req instanceof http.IncomingMessage)) {
      return Effect.succeed(
        HttpServerResponse.text("WebSocket upgrades need @effect/platform-node's NodeHttpServer", { status: 501 })
      )
    }
    // node:http sets `upgrade` when it hands the request to 'upgrade' listeners (the socket is
    // then ours); any other request is answered over HTTP.
    if ((req as { readonly upgrade?: boolean }).upgrade !== true) return Effect.succeed(refuse(req))
    const socket = req.socket
    adopt(socket)
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkDaemon(engine.upgrade(socket, req, takeHead(req)))
      yield* Effect.onInterrupt(Fiber.await(fiber), () => engine.leave(socket, fiber))
      // The socket is destroyed (the connection ran) or ended (a refusal was written), so the
      // platform writes nothing more on it; the status is for its logs and traces.
      // (499: the peer left while the hook ran, the platform's code for a client abort)
      return HttpServerResponse.empty({ status: engine.answered.get(socket) ?? 499 })
    })
  })
}

// ---------------------------------------------------------------------------------------
// A plain node:http / node:https server
// ---------------------------------------------------------------------------------------

/** `attach`'s `path` option as a predicate on the request target. */
export const pathMatcher = (path: string | ((url: string) => boolean) | undefined): (url: string) => boolean =>
  path === undefined
    ? () => true
    : typeof path === "function"
    ? path
    : (url: string) => {
      const q = url.indexOf("?")
      return (q < 0 ? url : url.slice(0, q)) === path
    }

export const attach = <Data, E, R, E2, R2>(
  server: http.Server,
  options: HandlerOptions<Data, E, R, E2, R2> & {
    readonly path?: string | ((url: string) => boolean) | undefined
  }
): Effect.Effect<{ readonly connections: Effect.Effect<number> }, never, Scope.Scope | Exclude<R, Scope.Scope> | R2> =>
  Effect.gen(function*() {
    const forker = yield* makeForker<Exclude<R, Scope.Scope> | R2>()
    const engine = new Engine<Data, E, R, E2, R2>(options, forker)
    const runFork = forker.run
    const matches = pathMatcher(options.path)
    const onUpgrade = (req: http.IncomingMessage, duplex: Duplex, head: Buffer) => {
      const socket = duplex as net.Socket
      if (!matches(req.url ?? "/")) {
        // Another 'upgrade' listener may serve it; alone, we answer.
        if (server.listenerCount("upgrade") === 1) engine.reject(socket, 404, "no WebSocket endpoint here")
        return
      }
      adopt(socket)
      runFork(engine.upgrade(socket, req, head))
    }
    server.on("upgrade", onUpgrade)
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        server.removeListener("upgrade", onUpgrade)
        return engine.shutdown()
      })
    )
    return { connections: Effect.sync(() => engine.openCount) }
  })
