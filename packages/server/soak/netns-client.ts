/**
 * Client side of the network-fault test (test/Netns.test.ts), run inside a network
 * namespace with `ip netns exec`: opens `--connections` WebSockets to `--url`, spaced
 * `--spacing` ms apart, and sends sequence-numbered messages every `--every` ms on each,
 * checking that every echo comes back once, in order, intact.
 *
 * stdin commands: "checkpoint" (stop sending, wait for every echo, report, resume),
 * "stop". stdout, one JSON object per line:
 *   {"event":"open","connections":N}
 *   {"event":"checkpoint","sent":N,"received":N,"duplicates":N,"outOfOrder":N,"corrupt":N,"complete":bool}
 *   {"event":"error","message":"..."}
 */
import { createInterface } from "node:readline"
import { parseArgs } from "node:util"
import WebSocket from "ws"

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    connections: { type: "string", default: "20" },
    spacing: { type: "string", default: "50" },
    every: { type: "string", default: "50" }
  }
})
const say = (o: object) => process.stdout.write(JSON.stringify(o) + "\n")
const n = Number(values.connections)
const every = Number(values.every)

const figures = { sent: 0, received: 0, duplicates: 0, outOfOrder: 0, corrupt: 0 }
const payload = (id: number, seq: number) => `${id}:${seq}:`.padEnd(20 + ((id * 7 + seq) % 200), "z")

interface Conn {
  readonly ws: WebSocket
  sent: number
  expected: number
}
const conns: Array<Conn> = []
let sending = true

for (let id = 0; id < n; id++) {
  const ws = new WebSocket(values.url!, { perMessageDeflate: false })
  const c: Conn = { ws, sent: 0, expected: 0 }
  ws.on("message", (data: Buffer) => {
    figures.received++
    const text = data.toString("utf8")
    const seq = Number(text.split(":")[1])
    if (seq < c.expected) figures.duplicates++
    else if (seq > c.expected) {
      figures.outOfOrder++
      c.expected = seq + 1
    } else {
      if (text !== payload(id, seq)) figures.corrupt++
      c.expected++
    }
  })
  ws.on("error", (e) => say({ event: "error", message: `${id}: ${e.message}` }))
  conns.push(c)
  await new Promise<void>((resolve) => {
    ws.once("open", () => resolve())
    ws.once("error", () => resolve())
  })
  await new Promise((r) => setTimeout(r, Number(values.spacing)))
}
say({ event: "open", connections: conns.filter((c) => c.ws.readyState === WebSocket.OPEN).length })

const tick = setInterval(() => {
  if (!sending) return
  for (const [id, c] of conns.entries()) {
    if (c.ws.readyState !== WebSocket.OPEN) continue
    c.ws.send(payload(id, c.sent++))
    figures.sent++
  }
}, every)

const checkpoint = async () => {
  sending = false
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline && conns.some((c) => c.expected < c.sent)) await new Promise((r) => setTimeout(r, 20))
  say({ event: "checkpoint", ...figures, complete: conns.every((c) => c.expected === c.sent) })
  sending = true
}

const lines = createInterface({ input: process.stdin })
lines.on("line", (line) => {
  if (line === "checkpoint") void checkpoint()
  else if (line === "stop") stop()
})
lines.on("close", () => stop())
const stop = () => {
  clearInterval(tick)
  for (const c of conns) c.ws.terminate()
  process.exit(0)
}
