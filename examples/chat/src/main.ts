/**
 * Starts the chat on PORT (default 8080) and HOST (default 127.0.0.1) and prints its URL.
 * Ctrl-C stops it gracefully: every WebSocket gets a 1001 Close first.
 */
import { HttpServer } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Layer, Option } from "effect"
import { ChatServer } from "./Chat.js"

const port = Number(process.env["PORT"] ?? 8080)
const host = process.env["HOST"] ?? "127.0.0.1"

const PrintUrl = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) => {
    const { port } = server.address as HttpServer.TcpAddress
    return Console.log(`Chat: open http://${host.includes(":") ? `[${host}]` : host}:${port}/?name=ada in two tabs`)
  })
)

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

const main = Layer.launch(PrintUrl.pipe(Layer.provideMerge(ChatServer({ port, host })))).pipe(
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

NodeRuntime.runMain(main)
