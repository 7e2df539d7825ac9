// ws's client (WS_NO_BUFFER_UTIL=1 is set by the orchestrator, as a default install runs).
import WebSocket from "ws"
import { drive, options, payload } from "./common.mjs"

await drive((onEcho) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(options.url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 })
    ws.on("message", onEcho)
    ws.once("open", () => resolve(() => ws.send(payload)))
    ws.once("error", reject)
  })
)
