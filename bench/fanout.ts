/**
 * Fan-out benchmark: 1 publisher, N subscribers (default 1,000) on one topic, 32 B text
 * messages, W publishes in flight (default 8; the window is paced by the copies one
 * subscriber receives). Reports deliveries per second, the server's CPU time per delivery
 * (user + system of the server process and its children, from /proc) and end-to-end latency
 * (publisher send → subscriber receive, sampled on 50 subscribers).
 *
 *   pnpm bench:fanout                                  # ours, ws, bun (local)
 *   pnpm bench:fanout --servers ours-redis-1,ours-redis-2   # on a redis-server it starts
 *   pnpm bench:fanout --duration 5 --subscribers 1000 --inflight 8 --runs 3
 *
 * Each run updates its servers' rows in bench/FANOUT.md (`--no-write`: print only).
 *
 * Servers: `ours` (Broadcast.layerLocal), `ws` (a loop over the clients, plain JavaScript
 * masking as a default install runs), `bun` (server.publish), `ours-redis-1` / `ours-redis-2`
 * (Broadcast.layerRedis "pubsub" with 1 or 2 worker processes behind one port).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import { loadavg, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1]! : fallback
}
const SUBSCRIBERS = Number(arg("subscribers", "1000"))
const INFLIGHT = Number(arg("inflight", "8"))
const DURATION = Number(arg("duration", "5"))
const WARMUP = Number(arg("warmup", "1"))
const RUNS = Number(arg("runs", "1"))
const SIZE = 32
const FRAME = 2 + SIZE
const SAMPLED = 50

const bunBinary = () => {
  try {
    const require = createRequire(join(here, "package.json"))
    return join(dirname(require.resolve("bun/package.json")), "bin", "bun.exe")
  } catch {
    return "bun"
  }
}

interface ServerSpec {
  readonly name: string
  readonly command: (port: number) => Array<string>
  readonly env?: Record<string, string>
  readonly redis?: boolean
}

const tsxNode = (file: string) => (port: number) => [process.execPath, "--conditions=source", "--import", "tsx", join(here, "servers", file), "--port", String(port)]

const servers: Array<ServerSpec> = [
  { name: "ours", command: tsxNode("fanout-ours.ts") },
  { name: "ws", command: (port) => [process.execPath, join(here, "servers", "fanout-ws.mjs"), "--port", String(port)], env: { WS_NO_BUFFER_UTIL: "1" } },
  { name: "bun", command: (port) => [bunBinary(), join(here, "servers", "fanout-bun.mjs"), "--port", String(port)] },
  { name: "ours-redis-1", command: tsxNode("fanout-ours.ts"), env: { WORKERS: "1" }, redis: true },
  { name: "ours-redis-2", command: tsxNode("fanout-ours.ts"), env: { WORKERS: "2" }, redis: true }
]

const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const startProcess = (argv: Array<string>, env: Record<string, string>, ready: RegExp): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "inherit"] })
    let out = ""
    const timer = setTimeout(() => reject(new Error(`${argv.join(" ")} did not start`)), 120_000)
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      if (ready.test(out)) {
        clearTimeout(timer)
        resolve(child)
      }
    })
    child.once("exit", (code) => reject(new Error(`${argv[0]} exited with ${code}`)))
  })

/** CPU seconds (user + system) of a process and its descendants. */
const cpuOf = (pid: number): number => {
  let total = 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    total += (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
  let children: Array<number> = []
  try {
    children = execFileSync("pgrep", ["-P", String(pid)]).toString().trim().split("\n").filter(Boolean).map(Number)
  } catch {
    // none
  }
  for (const c of children) total += cpuOf(c)
  return total
}

const upgrade = (port: number, path: string): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.setNoDelay(true)
    let head = ""
    const onData = (d: Buffer) => {
      head += d.toString("latin1")
      const end = head.indexOf("\r\n\r\n")
      if (end < 0) return
      socket.off("data", onData)
      if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(head.split("\r\n")[0]))
      const rest = Buffer.from(head.slice(end + 4), "latin1")
      if (rest.length > 0) socket.unshift(rest)
      resolve(socket)
    }
    socket.on("data", onData)
    socket.once("error", reject)
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`
    )
  })

/** A masked text frame carrying the send time (ms, performance.now()), padded to SIZE bytes. */
const publishFrame = (): Buffer => {
  const payload = Buffer.from(performance.now().toFixed(3).padEnd(SIZE, " "), "latin1")
  const frame = Buffer.allocUnsafe(6 + SIZE)
  frame[0] = 0x81
  frame[1] = 0x80 | SIZE
  frame.writeUInt32BE(0x01020304, 2)
  for (let i = 0; i < SIZE; i++) frame[6 + i] = payload[i]! ^ frame[2 + (i & 3)]!
  return frame
}

interface Result {
  readonly deliveries: number
  readonly perSecond: number
  readonly cpuPerDeliveryUs: number
  readonly p50: number
  readonly p99: number
}

const measure = async (port: number, serverPid: number): Promise<Result> => {
  const subs: Array<net.Socket> = []
  for (let i = 0; i < SUBSCRIBERS; i += 50) {
    subs.push(...await Promise.all(Array.from({ length: Math.min(50, SUBSCRIBERS - i) }, () => upgrade(port, "/sub"))))
  }
  await sleep(500)
  const publisher = await upgrade(port, "/pub")
  publisher.on("data", () => {})
  let bytes = 0
  let measuring = false
  const latencies: Array<number> = []
  let stopped = false
  const send = () => {
    if (!stopped) publisher.write(publishFrame())
  }
  subs.forEach((s, i) => {
    let pending: Buffer | undefined
    s.on("data", (d: Buffer) => {
      bytes += d.length
      if (i !== 0 && i >= SAMPLED) return
      const now = performance.now()
      let b = pending === undefined ? d : Buffer.concat([pending, d])
      let frames = 0
      while (b.length >= FRAME) {
        if (measuring && i < SAMPLED) latencies.push(now - Number(b.toString("latin1", 2, FRAME).trim()))
        b = b.subarray(FRAME)
        frames++
      }
      pending = b.length > 0 ? Buffer.from(b) : undefined
      if (i === 0) for (let k = 0; k < frames; k++) send()
    })
  })
  for (let k = 0; k < INFLIGHT; k++) send()
  await sleep(WARMUP * 1000)
  measuring = true
  const bytes0 = bytes
  const cpu0 = cpuOf(serverPid)
  const t0 = performance.now()
  await sleep(DURATION * 1000)
  const elapsed = (performance.now() - t0) / 1000
  const cpu = cpuOf(serverPid) - cpu0
  const deliveries = (bytes - bytes0) / FRAME
  measuring = false
  stopped = true
  publisher.destroy()
  for (const s of subs) s.destroy()
  latencies.sort((a, b) => a - b)
  const pct = (p: number) => latencies.length === 0 ? NaN : latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!
  return {
    deliveries,
    perSecond: deliveries / elapsed,
    cpuPerDeliveryUs: (cpu / deliveries) * 1e6,
    p50: pct(0.5),
    p99: pct(0.99)
  }
}

const startRedis = async () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-redis-"))
  const port = await freePort()
  const child = await startProcess(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no", "--loglevel", "notice"],
    {},
    /Ready to accept connections/
  )
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => {
      child.kill("SIGKILL")
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const RESULTS = join(here, "FANOUT.md")
const ROW = /^\| (\S+) \|/

/** Rewrites FANOUT.md: this run's rows replace those of the same servers, others stay. */
const writeResults = (rows: Map<string, string>) => {
  const old = existsSync(RESULTS) ? readFileSync(RESULTS, "utf8").split("\n") : []
  const kept = new Map<string, string>()
  for (const line of old) {
    const m = ROW.exec(line)
    if (m !== null && servers.some((s) => s.name === m[1])) kept.set(m[1]!, line)
  }
  for (const [name, row] of rows) kept.set(name, row)
  const ordered = servers.filter((s) => kept.has(s.name)).map((s) => kept.get(s.name)!)
  writeFileSync(
    RESULTS,
    `# Fan-out results

Written by \`pnpm bench:fanout\` (\`bench/fanout.ts\`): 1 publisher, ${SUBSCRIBERS.toLocaleString("en-US")} subscribers on one
topic, ${SIZE} B text messages, ${INFLIGHT} publishes in flight, a raw-socket generator in one process. Server CPU is
user + system time of the server process and its children (the workers), not Redis's. Each row says when it was
measured and the machine's load average then (2 cores shared: read the CPU per delivery rather than the rate,
which the generator bounds when the machine is busy).

| server | deliveries/s | CPU µs/delivery | latency p50 ms | latency p99 ms | runs | measured |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
${ordered.join("\n")}
`
  )
}

const main = async () => {
  const wanted = arg("servers", "ours,ws,bun").split(",")
  const rows = new Map<string, string>()
  console.log(`fanout: ${SUBSCRIBERS} subscribers, 1 topic, ${SIZE} B text, ${INFLIGHT} in flight, ${WARMUP} s + ${DURATION} s, ${RUNS} run(s)`)
  console.log("server            deliveries/s   CPU µs/delivery   latency p50 ms   p99 ms")
  for (const spec of servers.filter((s) => wanted.includes(s.name))) {
    const results: Array<Result> = []
    for (let run = 0; run < RUNS; run++) {
      const redis = spec.redis === true ? await startRedis() : undefined
      const port = await freePort()
      const env = { ...spec.env, ...(redis !== undefined ? { REDIS_URL: redis.url } : {}) }
      const child = await startProcess(spec.command(port), env, /listening/)
      if (spec.env?.["WORKERS"] === "2") await sleep(15_000) // the second worker starts listening too
      try {
        results.push(await measure(port, child.pid!))
      } finally {
        child.kill("SIGTERM")
        await sleep(300)
        child.kill("SIGKILL")
        redis?.stop()
      }
    }
    results.sort((a, b) => a.perSecond - b.perSecond)
    const r = results[Math.floor(results.length / 2)]!
    rows.set(
      spec.name,
      `| ${spec.name} | ${Math.round(r.perSecond).toLocaleString("en-US")} | ${r.cpuPerDeliveryUs.toFixed(2)} | ${
        r.p50.toFixed(1)
      } | ${r.p99.toFixed(1)} | ${RUNS} | ${new Date().toISOString().slice(0, 16)} UTC, load ${loadavg()[0]!.toFixed(1)} |`
    )
    console.log(
      `${spec.name.padEnd(16)} ${Math.round(r.perSecond).toLocaleString("en-US").padStart(14)} ${r.cpuPerDeliveryUs.toFixed(2).padStart(17)} ${r.p50.toFixed(2).padStart(16)} ${r.p99.toFixed(2).padStart(8)}`
    )
  }
  if (!process.argv.includes("--no-write")) writeResults(rows)
}

main().then(() => process.exit(0), (e) => {
  console.error(e)
  process.exit(1)
})
