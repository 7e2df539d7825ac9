// Fan-out with Bun.serve: /sub connections subscribe to one topic, what /pub sends is
// server.publish'ed to it (uWebSockets topics). Run with the `bun` binary.
import { exitWithParent, host, port } from "./common.mjs"

exitWithParent()
const server = Bun.serve({
  hostname: host,
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname
    if (server.upgrade(req, { data: { path } })) return undefined
    return new Response("websocket only", { status: 426 })
  },
  websocket: {
    maxPayloadLength: 1024 * 1024,
    open(ws) {
      if (ws.data.path === "/sub") ws.subscribe("t")
    },
    message(_ws, message) {
      server.publish("t", message)
    }
  }
})
console.log(`listening ${port} pid=${process.pid}`)
