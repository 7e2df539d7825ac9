// Node's built-in WebSocket (undici), behind --experimental-websocket on Node 20.
import { drive, options, payload } from "./common.mjs"

await drive((onEcho) =>
  new Promise((resolve, reject) => {
    const ws = new globalThis.WebSocket(options.url)
    ws.binaryType = "arraybuffer"
    ws.onmessage = onEcho
    ws.onopen = () => resolve(() => ws.send(payload))
    ws.onerror = reject
  })
)
