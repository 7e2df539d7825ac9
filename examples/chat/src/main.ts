/**
 * Starts the chat on PORT (default 8080) and HOST (default 127.0.0.1) and prints its URL.
 * Ctrl-C stops it gracefully: every WebSocket gets a 1001 Close first.
 */
import { HttpServer } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer } from "effect"
import { ChatServer } from "./Chat.js"

const port = Number(process.env["PORT"] ?? 8080)
const host = process.env["HOST"] ?? "127.0.0.1"

const PrintUrl = Layer.effectDiscard(
  Effect.flatMap(HttpServer.HttpServer, (server) => {
    const { port } = server.address as HttpServer.TcpAddress
    return Console.log(`Chat: open http://${host.includes(":") ? `[${host}]` : host}:${port}/?name=ada in two tabs`)
  })
)

NodeRuntime.runMain(Layer.launch(PrintUrl.pipe(Layer.provideMerge(ChatServer({ port, host })))))
