// `ws` echo server. Run with WS_NO_BUFFER_UTIL=1 for the plain-JavaScript masking path.
import { WebSocketServer } from "ws"
import { exitWithParent, host, port } from "./common.mjs"

exitWithParent()
const wss = new WebSocketServer({ host, port, perMessageDeflate: true, maxPayload: 64 * 1024 * 1024 })
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }))
  ws.on("error", () => {})
})
wss.on("listening", () => console.log(`listening ${port} pid=${process.pid}`))
