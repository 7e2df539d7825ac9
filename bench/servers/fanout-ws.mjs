// Fan-out with ws: /sub connections go into a Set, what /pub sends is sent to each in a loop.
import { WebSocketServer } from "ws"
import { exitWithParent, host, port } from "./common.mjs"

exitWithParent()
const subscribers = new Set()
const wss = new WebSocketServer({ host, port, perMessageDeflate: false })
wss.on("connection", (ws, req) => {
  if (req.url === "/sub") {
    subscribers.add(ws)
    ws.on("close", () => subscribers.delete(ws))
  }
  ws.on("message", (data, isBinary) => {
    for (const s of subscribers) s.send(data, { binary: isBinary })
  })
})
wss.on("listening", () => console.log(`listening ${port} pid=${process.pid}`))
