/**
 * Soak test: our WebSocketServer (echo, in a child process: soak/server.ts) under thousands
 * of churning client connections on 127.0.0.1, for a bounded time.
 *
 * Every connection sends sequence-numbered messages (text and binary, mostly small, some
 * 16 KiB) in bursts and checks that each echo comes back exactly once, in order, intact.
 * Connections live a few seconds, then close cleanly (most) or are cut abruptly
 * (socket.destroy or a TCP reset), and a new one takes their place.
 *
 * At the end: no message lost or duplicated on connections that closed cleanly, no
 * unexpected close, the server's open connections back to 0, its handles back to the
 * baseline, RSS and heap back near the baseline. Prints the figures; exits 1 when a check fails.
 *
 *   pnpm soak                          # 120 s, 2,000 connections
 *   pnpm soak --seconds 30 --connections 500 [--deflate]
 */
import { fork } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { performance } from "node:perf_hooks"
import { parseArgs } from "node:util"
import WebSocket from "ws"

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "120" },
    connections: { type: "string", default: "2000" },
    deflate: { type: "boolean", default: false }
  }
})
const seconds = Number(values.seconds)
const target = Math.floor(Number(values.connections))
if (!(seconds > 0) || !(target > 0)) {
  console.error("--seconds and --connections must be positive numbers")
  process.exit(2)
}

// ------------------------------------------------------------------------------ server child

interface Stats {
  readonly type: "stats"
  readonly connections: number
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
  readonly eventLoopUtilization: number
  readonly handles: Record<string, number>
  readonly totals: {
    readonly opened: number
    readonly messages: number
    readonly cleanCloses: number
    readonly abnormalCloses: number
    readonly failedCloses: number
  }
}

const here = dirname(fileURLToPath(import.meta.url))
const child: ChildProcess = fork(join(here, "server.ts"), values.deflate ? ["--deflate"] : [], {
  // SOAK_SERVER_ARGS adds node flags for the server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
  execArgv: ["--conditions=source", "--import", "tsx", "--expose-gc", ...(process.env["SOAK_SERVER_ARGS"]?.split(" ").filter(Boolean) ?? [])],
  stdio: ["ignore", "inherit", "inherit", "ipc"]
})
let childExited = false
child.on("exit", () => {
  childExited = true
})
process.on("exit", () => {
  if (!childExited) child.kill("SIGKILL")
})

let pending: Array<(s: Stats) => void> = []
const port = await new Promise<number>((resolve, reject) => {
  child.once("error", reject)
  child.once("exit", (code) => reject(new Error(`server exited with ${code}`)))
  child.on("message", (m: { type: string; port?: number }) => {
    if (m.type === "ready") resolve(m.port!)
    else if (m.type === "stats") {
      const p = pending
      pending = []
      for (const f of p) f(m as unknown as Stats)
    }
  })
})
const stats = (gc = false) =>
  new Promise<Stats>((resolve) => {
    pending.push(resolve)
    child.send({ type: "stats", gc })
  })
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const handleCounts = (): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1
  return out
}

// ------------------------------------------------------------------------------ load

const figures = {
  opened: 0,
  connectErrors: 0,
  cleanCloses: 0,
  abruptCloses: 0,
  unexpectedCloses: 0,
  sent: 0,
  received: 0,
  lost: 0,
  duplicates: 0,
  outOfOrder: 0,
  corrupt: 0,
  abandoned: 0,
  clientErrors: 0
}
const problems: Array<string> = []
const problem = (what: string) => {
  if (problems.length < 20) problems.push(what)
}

const rand = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))

/** The message `seq` of connection `id`: deterministic, so an echo can be checked byte for byte. */
const message = (id: number, seq: number): string | Buffer => {
  const big = seq % 20 === 7
  const binary = seq % 3 === 1
  const size = big ? 16 * 1024 : 8 + ((id * 31 + seq * 7) % 120)
  if (!binary) return `${id}:${seq}:`.padEnd(size, String.fromCharCode(97 + (seq % 26)))
  const b = Buffer.alloc(size, (id + seq) & 0xff)
  b.writeUInt32BE(id, 0)
  b.writeUInt32BE(seq, 4)
  return b
}
const seqOf = (data: Buffer, isBinary: boolean): number =>
  isBinary ? data.readUInt32BE(4) : Number(data.toString("latin1", 0, 40).split(":")[1])

let stopping = false
let nextId = 1
const live = new Set<WebSocket>()
const url = `ws://127.0.0.1:${port}`

const open = (): void => {
  if (stopping) return
  const id = nextId++
  const ws = new WebSocket(url, { perMessageDeflate: values.deflate })
  let sent = 0
  let expected = 0
  let closing: "clean" | "abrupt" | undefined
  let opened = false
  let timer: ReturnType<typeof setTimeout> | undefined
  live.add(ws)

  const burst = () => {
    timer = undefined
    if (ws.readyState !== WebSocket.OPEN || closing !== undefined) return
    const k = rand(1, 5)
    for (let i = 0; i < k; i++) {
      ws.send(message(id, sent++))
      figures.sent++
    }
  }
  const end = () => {
    timer = undefined
    if (ws.readyState !== WebSocket.OPEN) return
    if (Math.random() < 0.12) {
      closing = "abrupt"
      // sometimes in the middle of a burst, sometimes a reset instead of a FIN
      if (Math.random() < 0.5) burst()
      const socket = (ws as unknown as { _socket?: { resetAndDestroy?: () => void } })._socket
      if (Math.random() < 0.5 && socket?.resetAndDestroy) socket.resetAndDestroy()
      else ws.terminate()
    } else {
      closing = "clean"
      if (Math.random() < 0.3) burst() // messages in flight when the Close goes out
      ws.close(1000, "bye")
    }
  }

  ws.on("open", () => {
    opened = true
    figures.opened++
    burst()
    setTimeout(end, rand(5_000, 30_000))
  })
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    figures.received++
    const seq = seqOf(data, isBinary)
    if (seq < expected) figures.duplicates++
    else if (seq > expected) {
      figures.outOfOrder++
      problem(`connection ${id}: expected #${expected}, got #${seq}`)
      expected = seq + 1
    } else {
      const want = message(id, seq)
      const same = typeof want === "string" ? !isBinary && data.toString("utf8") === want : isBinary && want.equals(data)
      if (!same) {
        figures.corrupt++
        problem(`connection ${id}: message #${seq} corrupted`)
      }
      expected++
    }
    // next burst once every message of this one came back
    if (expected === sent && timer === undefined && closing === undefined) timer = setTimeout(burst, rand(100, 1_000))
  })
  ws.on("error", (e) => {
    if (!opened && !stopping) {
      figures.connectErrors++
      problem(`connection ${id}: ${e.message}`)
    } else if (opened && closing !== "abrupt") {
      // the client failed the connection: what the server sent broke a protocol rule
      figures.clientErrors++
      problem(`connection ${id}: the client failed the connection: ${e.message}`)
    }
  })
  ws.on("close", (code: number) => {
    live.delete(ws)
    if (timer !== undefined) clearTimeout(timer)
    if (!opened) {
      // a connect error, counted above (or a connection abandoned at the end)
    } else if (closing === "abrupt") figures.abruptCloses++
    else if (closing === "clean" || (stopping && code === 1000)) {
      if (code !== 1000) {
        figures.unexpectedCloses++
        problem(`connection ${id}: clean close answered with ${code}`)
      } else {
        figures.cleanCloses++
        // the server answers every message received before our Close, before its own Close
        if (expected !== sent) {
          figures.lost += sent - expected
          problem(`connection ${id}: ${sent - expected} of ${sent} messages never came back`)
        }
      }
    } else {
      figures.unexpectedCloses++
      problem(`connection ${id}: closed by the server with ${code}`)
    }
    if (!stopping) setTimeout(open, rand(0, 200))
  })
}

// ------------------------------------------------------------------------------ run

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`
const clientHandlesBefore = handleCounts()
await sleep(300)
const baseline = await stats(true)
console.log(
  `soak: ${target} connections for ${seconds} s against ${url}${values.deflate ? " (permessage-deflate)" : ""}; ` +
    `server RSS ${mib(baseline.rss)}, heap ${mib(baseline.heapUsed)}`
)

const start = Date.now()
// ramp up in steps of 100 so the accept backlog is not the test
for (let i = 0; i < target; i += 100) {
  for (let j = i; j < Math.min(target, i + 100); j++) open()
  await sleep(50)
}
let peakRss = baseline.rss
let peakConnections = 0
let peakClientOpen = 0
let lastPrint = Date.now()
let clientElu = performance.eventLoopUtilization()
let maxServerElu = 0
while (Date.now() - start < seconds * 1000) {
  await sleep(1_000)
  const s = await stats()
  peakRss = Math.max(peakRss, s.rss)
  peakConnections = Math.max(peakConnections, s.connections)
  maxServerElu = Math.max(maxServerElu, s.eventLoopUtilization)
  let openNow = 0
  for (const ws of live) if (ws.readyState === WebSocket.OPEN) openNow++
  peakClientOpen = Math.max(peakClientOpen, openNow)
  if (Date.now() - lastPrint >= 10_000) {
    lastPrint = Date.now()
    const now = performance.eventLoopUtilization()
    const clientBusy = performance.eventLoopUtilization(now, clientElu).utilization
    clientElu = now
    console.log(
      `  ${Math.round((Date.now() - start) / 1000)} s: ${s.connections} open, ${figures.opened} opened, ` +
        `${figures.sent} sent, ${figures.received} echoed, server RSS ${mib(s.rss)}, ` +
        `event loop busy: server ${Math.round(s.eventLoopUtilization * 100)}%, client ${Math.round(clientBusy * 100)}%`
    )
  }
}

// wind down: every remaining connection closes cleanly
stopping = true
for (const ws of live) {
  if (ws.readyState === WebSocket.OPEN) ws.close(1000, "end of soak")
  else if (ws.readyState === WebSocket.CONNECTING) {
    figures.abandoned++
    ws.terminate()
  }
}
const windDown = Date.now()
while (live.size > 0 && Date.now() - windDown < 30_000) await sleep(100)
let after = await stats()
while (after.connections > 0 && Date.now() - windDown < 45_000) {
  await sleep(200)
  after = await stats()
}
await sleep(500)
after = await stats(true)
const clientHandlesAfter = handleCounts()

// ------------------------------------------------------------------------------ verdict

const checks: Array<[string, boolean]> = [
  ["every client connection ended", live.size === 0],
  ["no connection failed to open", figures.connectErrors === 0],
  ["no message lost on clean closes", figures.lost === 0],
  ["no message duplicated", figures.duplicates === 0],
  ["no message out of order", figures.outOfOrder === 0],
  ["no message corrupted", figures.corrupt === 0],
  ["no unexpected close", figures.unexpectedCloses === 0],
  ["no protocol error seen by the clients", figures.clientErrors === 0],
  ["churn happened (clean and abrupt closes, replaced by new connections)",
    figures.cleanCloses > 0 && figures.abruptCloses > 0 && figures.opened > peakClientOpen],
  ["server open connections back to 0", after.connections === 0],
  ["server TCP handles back to the baseline", (after.handles["TCPSocketWrap"] ?? 0) <= (baseline.handles["TCPSocketWrap"] ?? 0)],
  ["server timers back to the baseline (+2)", (after.handles["Timeout"] ?? 0) <= (baseline.handles["Timeout"] ?? 0) + 2],
  ["client TCP handles back to the baseline", (clientHandlesAfter["TCPSocketWrap"] ?? 0) <= (clientHandlesBefore["TCPSocketWrap"] ?? 0)],
  ["server heap back near the baseline (+32 MiB)", after.heapUsed <= baseline.heapUsed + 32 * 1024 * 1024],
  // the heap is the leak detector; RSS keeps what the allocator holds on to, so it must
  // give back at least half of its growth (or stay within 96 MiB of the baseline)
  [
    "server RSS back near the baseline (+96 MiB, or half the growth returned)",
    after.rss - baseline.rss <= Math.max(96 * 1024 * 1024, (peakRss - baseline.rss) / 2)
  ]
]

child.send({ type: "stop" })
await new Promise<void>((r) => (childExited ? r() : child.once("exit", () => r())))

console.log(`
connections opened      ${figures.opened} (server accepted ${after.totals.opened}; peak open: ${peakClientOpen} client side, ${peakConnections} server side, target ${target})
closes                  ${figures.cleanCloses} clean, ${figures.abruptCloses} abrupt, ${figures.unexpectedCloses} unexpected, ${figures.connectErrors} failed to open, ${figures.abandoned} abandoned while opening at the end
server saw              ${after.totals.cleanCloses} clean, ${after.totals.abnormalCloses} abnormal, ${after.totals.failedCloses} failed closes
messages                ${figures.sent} sent, ${figures.received} echoed (server handled ${after.totals.messages})
losses                  ${figures.lost} (on clean closes)
duplicates              ${figures.duplicates}, out of order ${figures.outOfOrder}, corrupt ${figures.corrupt}
server RSS              before ${mib(baseline.rss)}, peak ${mib(peakRss)}, after ${mib(after.rss)}
server heap             before ${mib(baseline.heapUsed)}, after ${mib(after.heapUsed)}; external ${mib(baseline.external)} -> ${mib(after.external)}
server event loop       busiest second ${Math.round(maxServerElu * 100)}%
server handles          before ${JSON.stringify(baseline.handles)}
                        after  ${JSON.stringify(after.handles)}
client TCP handles      before ${clientHandlesBefore["TCPSocketWrap"] ?? 0}, after ${clientHandlesAfter["TCPSocketWrap"] ?? 0}
`)
for (const p of problems) console.log(`  ! ${p}`)
if (peakClientOpen < target * 0.9) {
  console.log(`  note: the load reached ${peakClientOpen} concurrent connections, not ${target} (CPU-bound client or server)`)
}
let failed = 0
for (const [name, ok] of checks) {
  console.log(`${ok ? "ok  " : "FAIL"}  ${name}`)
  if (!ok) failed++
}
console.log(`\n${checks.length - failed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
