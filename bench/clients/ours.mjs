// @effect-websocket/client, from the package's compiled output, in its callback form
// (ws.run + ws.unsafeSend: no Effect per message), as ours-fast is on the server side.
import { WebSocketClient } from "@effect-websocket/client"
import { Effect, Scope } from "effect"
import { drive, options, payload } from "./common.mjs"

const scope = Effect.runSync(Scope.make())
await drive(async (onEcho) => {
  const ws = await Effect.runPromise(
    Scope.extend(WebSocketClient.connect(options.url, { maxMessageSize: 64 * 1024 * 1024, keepaliveInterval: 0 }), scope)
  )
  Effect.runFork(ws.run(() => void onEcho()))
  return () => void ws.unsafeSend(payload)
})
