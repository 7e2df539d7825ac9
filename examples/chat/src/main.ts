/**
 * Starts the chat on PORT (default 8080) and HOST (default 127.0.0.1) and prints its URL.
 * Ctrl-C stops it gracefully: every WebSocket gets a 1001 Close first.
 *
 * HTTP2=1 serves it over HTTPS with HTTP/2 (and HTTP/1.1 for older clients) with a
 * self-signed certificate for localhost made at start: the page and its WebSocket then share
 * one TLS connection (RFC 8441). The browser asks to accept the certificate once.
 */
import { HttpServer } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer } from "effect"
import { localhostCertificate } from "./Certificate.js"
import { ChatServer, makeHttp2Server } from "./Chat.js"

const port = Number(process.env["PORT"] ?? 8080)
const host = process.env["HOST"] ?? "127.0.0.1"
const useHttp2 = process.env["HTTP2"] === "1"

const PrintUrl = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) => {
    const { port } = server.address as HttpServer.TcpAddress
    const scheme = useHttp2 ? "https" : "http"
    const name = host === "127.0.0.1" && useHttp2 ? "localhost" : host.includes(":") ? `[${host}]` : host
    return Console.log(`Chat: open ${scheme}://${name}:${port}/?name=ada in two tabs`)
  })
)

const Main = Layer.unwrapEffect(Effect.gen(function*() {
  const http2 = useHttp2 ? makeHttp2Server(yield* Effect.promise(localhostCertificate)) : undefined
  return PrintUrl.pipe(Layer.provideMerge(ChatServer({ port, host, http2 })))
}))

NodeRuntime.runMain(Layer.launch(Main))
