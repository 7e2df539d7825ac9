// Bun.serve websocket echo (uWebSockets underneath). Run with the `bun` binary.
import { exitWithParent, host, port } from "./common.mjs"

exitWithParent()
Bun.serve({
  hostname: host,
  port,
  fetch(req, server) {
    if (server.upgrade(req)) return undefined
    return new Response("websocket only", { status: 426 })
  },
  websocket: {
    perMessageDeflate: true,
    maxPayloadLength: 64 * 1024 * 1024,
    // `true` compresses only when the connection negotiated permessage-deflate.
    message(ws, message) {
      ws.send(message, true)
    }
  }
})
console.log(`listening ${port} pid=${process.pid}`)
