/**
 * Starts the chat on PORT (default 8080) and HOST (default 127.0.0.1) and prints its URL.
 *
 * - `pnpm start`: one process, rooms in memory (`Broadcast.layerLocal`).
 * - `REDIS_URL=redis://127.0.0.1:6379 WORKERS=2 pnpm start`: WORKERS processes behind one port
 *   (`node:cluster`), rooms and presence on Redis (`Broadcast.layerRedis`); a crashed worker
 *   is restarted.
 *
 * - `HTTP2=1`: HTTPS with HTTP/2 (and HTTP/1.1 for older clients) and a self-signed certificate
 *   for localhost made at start: the page and its WebSocket then share one TLS connection
 *   (RFC 8441). The browser asks to accept the certificate once.
 *
 * Ctrl-C stops it gracefully: every WebSocket gets a 1001 Close first.
 */
import { HttpServer } from "@effect/platform"
import { Cluster } from "@effect-websocket/server"
import { Cause, Console, Effect, Layer, Option } from "effect"
import cluster from "node:cluster"
import { localhostCertificate } from "./Certificate.js"
import { ChatServer, makeHttp2Server, TopicsLocal, TopicsRedis } from "./Chat.js"

const port = Number(process.env["PORT"] ?? 8080)
const host = process.env["HOST"] ?? "127.0.0.1"
const redisUrl = process.env["REDIS_URL"]
const workers = Number(process.env["WORKERS"] ?? 1)
const useHttp2 = process.env["HTTP2"] === "1"

const PrintUrl = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) => {
    const { port } = server.address as HttpServer.TcpAddress
    const where = cluster.isWorker ? ` (worker ${process.pid}, rooms on Redis)` : redisUrl ? " (rooms on Redis)" : ""
    const scheme = useHttp2 ? "https" : "http"
    const name = host === "127.0.0.1" && useHttp2 ? "localhost" : host.includes(":") ? `[${host}]` : host
    return Console.log(`Chat: open ${scheme}://${name}:${port}/?name=ada in two tabs${where}`)
  })
)

const topics = redisUrl !== undefined && redisUrl !== "" ? TopicsRedis(redisUrl) : TopicsLocal
if (workers > 1 && topics === TopicsLocal) {
  console.error("WORKERS > 1 needs REDIS_URL: rooms in memory would not span the workers")
  process.exit(2)
}

/** The listen error's code (EADDRINUSE, EACCES, ...), wherever the platform wrapped it. */
const listenErrorCode = (cause: Cause.Cause<unknown>): string | undefined => {
  let e: unknown = Option.getOrUndefined(Cause.failureOption(cause))
  for (let depth = 0; depth < 4 && e !== null && typeof e === "object"; depth++) {
    const code = (e as { readonly code?: unknown }).code
    if (typeof code === "string") return code
    e = (e as { readonly cause?: unknown }).cause
  }
  return undefined
}

const Main = Layer.unwrapEffect(Effect.gen(function*() {
  const http2 = useHttp2 ? makeHttp2Server(yield* Effect.promise(localhostCertificate)) : undefined
  return PrintUrl.pipe(Layer.provideMerge(ChatServer({ port, host, http2 }, topics)))
}))

const chat = Layer.launch(Main).pipe(
  Effect.catchAllCause((cause) => {
    const code = listenErrorCode(cause)
    if (code !== "EADDRINUSE" && code !== "EACCES") return Effect.failCause(cause)
    const why = code === "EADDRINUSE" ? "is already in use" : "may not be used by this user"
    // one line, no stack trace: the fix is a different port
    return Effect.zipRight(
      Console.error(`Chat: port ${port} on ${host} ${why}; pick another one, e.g. PORT=${port + 1} pnpm start`),
      Effect.sync(() => process.exit(1))
    )
  })
)

Cluster.runMain(chat, {
  workers,
  onWorker: (pid, replacing) =>
    console.log(replacing === undefined ? `worker ${pid} started` : `worker ${pid} started (replaces ${replacing})`)
})
