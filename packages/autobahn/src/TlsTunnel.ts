/**
 * A client-side TLS tunnel for the wss run.
 *
 * kosoku 0.1.0 only speaks `ws://` (it rejects a `wss://` URL: "invalid url
 * scheme"). So the wss run points kosoku at a plain TCP listener on 127.0.0.1,
 * and for every accepted connection the tunnel opens a TLS connection to the
 * wss testee (trusting only the run's own certificate) and pipes both ways. The
 * testee really speaks TLS; kosoku sees a byte-faithful plain stream.
 *
 * Faithful means the close-behaviour verdicts stay truthful:
 * - bytes flow in order with backpressure, Nagle off on both legs;
 * - half-close: a FIN from one side becomes `end()` (TLS close_notify + FIN, or
 *   a FIN) on the other, and the other direction keeps flowing;
 * - resets: an RST or any error on one side resets the other
 *   (`resetAndDestroy`), so an abortive close stays abortive;
 * - a failed TLS handshake resets the client's connection.
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as tls from "node:tls"
import { Data, Effect } from "effect"
import type { Scope } from "effect"

/**
 * @since 0.1.0
 * @category errors
 */
export class TunnelError extends Data.TaggedError("TunnelError")<{
  readonly detail: string
}> {
  override get message(): string {
    return `TLS tunnel: ${this.detail}`
  }
}

/**
 * A running tunnel.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsTunnel {
  /** The plain TCP port the tunnel listens on (127.0.0.1). */
  readonly port: number
  /** Connections accepted so far. */
  readonly accepted: () => number
  /** TLS handshakes that failed so far. */
  readonly handshakeFailures: () => number
  /** Client connections still open. */
  readonly open: () => number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TlsTunnelOptions {
  /** Where the wss testee listens. */
  readonly targetHost: string
  readonly targetPort: number
  /** The PEM certificate(s) to trust; nothing else is trusted. */
  readonly ca: string
  /** Port to listen on, default 0 (any). */
  readonly listenPort?: number | undefined
}

const reset = (socket: net.Socket): void => {
  if (socket.destroyed) return
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}

const pipeConnection = (
  client: net.Socket,
  options: TlsTunnelOptions,
  onHandshakeFailure: () => void
): net.Socket => {
  client.setNoDelay(true)
  client.pause()
  // The raw TCP leg is ours so that it can be reset (a TLSSocket cannot be), and
  // the TLSSocket wrapping it inherits its allowHalfOpen.
  const raw = net.connect({ host: options.targetHost, port: options.targetPort, allowHalfOpen: true })
  raw.setNoDelay(true)
  const secure = tls.connect({
    socket: raw,
    host: options.targetHost,
    ca: options.ca,
    rejectUnauthorized: true
  })
  let established = false

  secure.once("secureConnect", () => {
    established = true
    client.pipe(secure) // ends `secure` (close_notify + FIN) when the client sends FIN
    secure.pipe(client) // ends `client` (FIN) when the testee ends
    client.resume()
  })

  client.on("error", () => {
    reset(raw)
    secure.destroy()
  })
  secure.on("error", () => {
    if (!established) onHandshakeFailure()
    reset(client)
    reset(raw)
  })
  raw.on("error", () => {
    reset(client)
  })
  return raw
}

/**
 * Starts a tunnel for the life of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: TlsTunnelOptions): Effect.Effect<TlsTunnel, TunnelError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<
      { readonly server: net.Server; readonly sockets: Map<net.Socket, net.Socket>; readonly tunnel: TlsTunnel },
      TunnelError
    >((resume) => {
      let accepted = 0
      let failures = 0
      // Client leg → testee leg, for every connection still open.
      const sockets = new Map<net.Socket, net.Socket>()
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
        accepted++
        const raw = pipeConnection(client, options, () => failures++)
        sockets.set(client, raw)
        client.once("close", () => sockets.delete(client))
      })
      server.once("error", (e) => resume(Effect.fail(new TunnelError({ detail: e.message }))))
      server.listen(options.listenPort ?? 0, "127.0.0.1", () => {
        const address = server.address() as net.AddressInfo
        resume(
          Effect.succeed({
            server,
            sockets,
            tunnel: {
              port: address.port,
              accepted: () => accepted,
              handshakeFailures: () => failures,
              open: () => sockets.size
            }
          })
        )
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const [client, raw] of sockets) {
          client.destroy()
          raw.destroy()
        }
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ tunnel }) => tunnel))
