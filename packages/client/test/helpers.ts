import { acceptKey } from "@effect-websocket/protocol/Handshake"
import { WebSocketServer } from "@effect-websocket/server"
import type { WebSocket as Ws } from "@effect-websocket/server/WebSocket"
import { Effect, Stream } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import { WebSocketServer as WsServer } from "ws"
import type { ServerOptions as WsServerOptions } from "ws"

export const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

/** This project's server, echoing, on 127.0.0.1:0. */
export const ourServer = (options: Partial<WebSocketServer.Options<undefined, unknown, never>> = {}) =>
  WebSocketServer.make({ host: "127.0.0.1", port: 0, handler: echo, ...options }).pipe(
    Effect.map((s) => s.url),
    Effect.orDie
  )

/** `ws`'s server (an independent implementation), echoing text as text and binary as binary. */
export const wsServer = (options: WsServerOptions = {}): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: WsServer; url: string }>((resume) => {
      const server = new WsServer({ host: "127.0.0.1", port: 0, ...options })
      server.on("connection", (ws) => {
        ws.on("message", (data, isBinary) => ws.send(isBinary ? data : data.toString(), { binary: isBinary }))
      })
      server.once("listening", () => {
        const { port } = server.address() as Net.AddressInfo
        resume(Effect.succeed({ server, url: `ws://127.0.0.1:${port}` }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        for (const c of server.clients) c.terminate()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((s) => s.url))

/**
 * A raw TCP server: `onConnection` gets each socket and the upgrade request head once it has
 * arrived (the bytes up to CRLF CRLF, latin1).
 */
export const rawServer = (
  onRequest: (socket: Net.Socket, head: string, key: string) => void
): Effect.Effect<{ port: number; sockets: Array<Net.Socket> }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: Net.Server; port: number; sockets: Array<Net.Socket> }>((resume) => {
      const sockets: Array<Net.Socket> = []
      const server = Net.createServer((socket) => {
        sockets.push(socket)
        socket.on("error", () => {})
        let head = ""
        const onData = (chunk: Buffer) => {
          head += chunk.toString("latin1")
          const end = head.indexOf("\r\n\r\n")
          if (end === -1) return
          socket.off("data", onData)
          const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? ""
          onRequest(socket, head.slice(0, end + 4), key)
        }
        socket.on("data", onData)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, port: (server.address() as Net.AddressInfo).port, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  )

/** The 101 response a correct server sends for `key`, with extra header lines. */
export const accept101 = (key: string, extra: ReadonlyArray<string> = []): string =>
  ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
    `Sec-WebSocket-Accept: ${acceptKey(key)}`, ...extra, "", ""].join("\r\n")

/**
 * A small HTTP proxy that understands only CONNECT (RFC 9110 §9.3.6): it records each
 * request head, answers `status` (200 pipes both ways to the target, anything else refuses).
 */
export const connectProxy = (
  options: { readonly status?: number; readonly requireAuth?: string } = {}
): Effect.Effect<{ url: string; requests: Array<string> }, never, Scope.Scope> => {
  const requests: Array<string> = []
  return Effect.map(
    rawServer((socket, head) => {
      requests.push(head)
      const [, authority] = /^CONNECT (\S+) HTTP\/1\.1\r\n/.exec(head) ?? []
      const auth = /proxy-authorization: *([^\r]+)/i.exec(head)?.[1]
      const status = options.requireAuth !== undefined && auth !== options.requireAuth ? 407 : options.status ?? 200
      if (authority === undefined || status !== 200) {
        socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Length: 0\r\n\r\n`)
        return
      }
      const colon = authority.lastIndexOf(":")
      const upstream = Net.connect(Number(authority.slice(colon + 1)), authority.slice(0, colon).replace(/^\[|\]$/g, ""))
      upstream.on("error", () => socket.destroy())
      socket.on("error", () => upstream.destroy())
      upstream.once("connect", () => {
        socket.write("HTTP/1.1 200 Connection Established\r\n\r\n")
        socket.pipe(upstream)
        upstream.pipe(socket)
      })
    }),
    ({ port }) => ({ url: `http://127.0.0.1:${port}`, requests })
  )
}

/** A self-signed certificate for 127.0.0.1 / localhost, made now (selfsigned, P-256), for a server by default. */
export const certificate = (
  name = "127.0.0.1",
  usage: { serverAuth?: boolean; clientAuth?: boolean } = { serverAuth: true }
): Effect.Effect<{ cert: string; key: string }> =>
  Effect.promise(async () => {
    const selfsigned = await import("selfsigned")
    const now = new Date()
    const pems = await selfsigned.generate([{ name: "commonName", value: name }], {
      keyType: "ec",
      curve: "P-256",
      algorithm: "sha256",
      notBeforeDate: new Date(now.getTime() - 60_000),
      notAfterDate: new Date(now.getTime() + 24 * 3600_000),
      extensions: [
        { name: "basicConstraints", cA: true },
        { name: "keyUsage", digitalSignature: true, keyCertSign: true },
        { name: "extKeyUsage", ...usage },
        { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }] }
      ]
    })
    return { cert: pems.cert, key: pems.private }
  })
