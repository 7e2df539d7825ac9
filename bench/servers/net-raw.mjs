// The ceiling: node:net that answers the upgrade and then echoes every read verbatim, no framing at all
// (the client's masked frames come back as they were sent; the load generator accepts masked frames).
// When the first read after the upgrade starts with a Close frame (the handshake scenario), it is echoed
// and the TCP connection ended, as a server would; later reads are never looked at.
//
// --effect (`net-effect`): the same, plus the least Effect a connection can cost, with Effect and
// @effect/platform-node loaded as in our server: each upgraded socket gets one fiber, forked from
// the runtime, that waits in `Effect.async` until the socket closes. No Scope, no reader, writer
// or close-timeout fiber, no metric, no span (`Effect.scoped` alone would add its context patches
// to every connection): a floor under what a connection's Effect costs a handshake.
import { createHash } from "node:crypto"
import * as net from "node:net"
import { exitWithParent, host, port } from "./common.mjs"

exitWithParent()
const connectionFiber = process.argv.includes("--effect") ? await (async () => {
  const { Effect, Runtime } = await import("effect")
  await import("@effect/platform-node")
  const fork = Runtime.runFork(Runtime.defaultRuntime)
  return (socket) => fork(Effect.async((resume) => void socket.once("close", () => resume(Effect.void))))
})() : undefined
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const server = net.createServer({ noDelay: true }, (socket) => {
  let head = ""
  socket.on("error", () => {})
  const onHead = (chunk) => {
    head += chunk.toString("latin1")
    const end = head.indexOf("\r\n\r\n")
    if (end < 0) return
    const key = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? ""
    const deflate = /sec-websocket-extensions:[^\r]*permessage-deflate/i.test(head)
    const accept = createHash("sha1").update(key + GUID).digest("base64")
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        (deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n" : "") +
        "\r\n"
    )
    socket.off("data", onHead)
    socket.on("data", onFirst)
    connectionFiber?.(socket)
    const rest = Buffer.from(head.slice(end + 4), "latin1")
    if (rest.length > 0) onFirst(rest)
  }
  const onData = (chunk) => {
    socket.write(chunk)
  }
  const onFirst = (chunk) => {
    socket.off("data", onFirst)
    socket.on("data", onData)
    socket.write(chunk)
    if (chunk[0] === 0x88) socket.end()
  }
  socket.on("data", onHead)
})
server.listen(port, host, () => console.log(`listening ${port} pid=${process.pid}`))
