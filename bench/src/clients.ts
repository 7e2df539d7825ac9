/**
 * Client scenarios of `pnpm bench`: one client process against one fast server (Bun's
 * `Bun.serve`, uWebSockets), the same closed loop for every client (`bench/clients/*.mjs`):
 * `conns` connections, `window` messages in flight on each, one new message per echo. The
 * client measures its own CPU (`process.cpuUsage`, every thread) over the measured interval;
 * the server is the same for everyone, so msg/s and client CPU µs/msg compare the clients.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { join } from "node:path"
import type { Pin } from "./report.js"
import { benchDir, repoRoot, servers } from "./servers.js"
import { onCpu } from "./spawn.js"

export interface ClientScenario {
  readonly name: string
  readonly title: string
  readonly size: number
  readonly kind: "text" | "binary"
  readonly conns: number
  readonly window: number
}

export const clientScenarios: ReadonlyArray<ClientScenario> = [
  { name: "client-small", title: "one client, 16 connections × 32 B text, 16 in flight each", size: 32, kind: "text", conns: 16, window: 16 },
  { name: "client-medium", title: "one client, 4 connections × 16 KiB binary, 4 in flight each", size: 16 * 1024, kind: "binary", conns: 4, window: 4 }
]

export const isClientScenario = (name: string): boolean => clientScenarios.some((s) => s.name === name)

interface ClientSpec {
  readonly name: string
  readonly description: string
  readonly argv: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
}

const clientFile = (name: string) => join(benchDir, "clients", name)

export const clients: ReadonlyArray<ClientSpec> = [
  {
    name: "ours",
    description: "@effect-websocket/client, ws.run + ws.unsafeSend (compiled dist/)",
    argv: [process.execPath, clientFile("ours.mjs")]
  },
  {
    name: "ws",
    description: "ws 8 client, WS_NO_BUFFER_UTIL=1",
    argv: [process.execPath, clientFile("ws.mjs")],
    env: { WS_NO_BUFFER_UTIL: "1" }
  },
  {
    name: "undici",
    description: "Node's built-in WebSocket (undici), --experimental-websocket",
    argv: [process.execPath, "--experimental-websocket", clientFile("undici.mjs")]
  }
]

export interface ClientResult {
  readonly client: string
  readonly scenario: string
  readonly run: number
  readonly msgPerSec: number
  readonly cpuUsPerMsg: number
  readonly error?: string
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo
      s.close(() => resolve(port))
    })
  })

/** `serverCpu` (`--pin`): the CPU Bun's server is pinned to; the client inherits the bench's own CPU. */
const startBun = async (serverCpu: string | undefined): Promise<{ port: number; proc: ChildProcess }> => {
  const bun = servers.find((s) => s.name === "bun")!
  const why = bun.unavailable?.()
  if (why !== undefined) throw new Error(`bun: ${why}`)
  const port = await freePort()
  const argv = onCpu(serverCpu, bun.command.map((a) => a.replaceAll("{port}", String(port))))
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: repoRoot, stdio: ["pipe", "pipe", "inherit"] })
  await new Promise<void>((resolve, reject) => {
    let out = ""
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      if (out.includes("listening")) resolve()
    })
    proc.once("exit", (code) => reject(new Error(`bun exited with ${code}`)))
    setTimeout(() => reject(new Error("bun did not start within 20 s")), 20_000).unref()
  })
  return { port, proc }
}

const runClient = (
  spec: ClientSpec,
  sc: ClientScenario,
  url: string,
  warmup: number,
  duration: number
): Promise<{ messages: number; seconds: number; cpuUs: number }> =>
  new Promise((resolve, reject) => {
    const args = [
      ...spec.argv.slice(1),
      "--url", url, "--size", String(sc.size), "--kind", sc.kind,
      "--conns", String(sc.conns), "--window", String(sc.window),
      "--warmup", String(warmup), "--duration", String(duration)
    ]
    const proc = spawn(spec.argv[0]!, args, {
      cwd: repoRoot,
      env: { ...process.env, ...spec.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    proc.stdout.on("data", (d: Buffer) => (out += d.toString()))
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()))
    const timer = setTimeout(() => proc.kill("SIGKILL"), (warmup + duration + 30) * 1000)
    proc.once("exit", (code) => {
      clearTimeout(timer)
      const line = out.trim().split("\n").pop() ?? ""
      try {
        resolve(JSON.parse(line))
      } catch {
        reject(new Error(`${spec.name} exited with ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`))
      }
    })
  })

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!
}

/** Runs the selected client scenarios (each run against a fresh Bun server); prints and writes the table. */
export const runClientScenarios = async (
  names: ReadonlyArray<string>,
  o: {
    readonly runs: number
    readonly warmupSec: number
    readonly measureSec: number
    readonly write: boolean
    readonly pin?: Pin | undefined
  }
): Promise<ReadonlyArray<ClientResult>> => {
  const selected = clientScenarios.filter((s) => names.includes(s.name))
  const results: Array<ClientResult> = []
  const loadBefore = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
  for (const sc of selected) {
    console.log(`\n== ${sc.name}: ${sc.title} (server: bun)`)
    for (let run = 0; run < o.runs; run++) {
      const order = clients.map((_, i) => clients[(i + run) % clients.length]!)
      for (const spec of order) {
        const { port, proc } = await startBun(o.pin?.server)
        let r: ClientResult
        try {
          const m = await runClient(spec, sc, `ws://127.0.0.1:${port}/`, o.warmupSec, o.measureSec)
          r = { client: spec.name, scenario: sc.name, run, msgPerSec: m.messages / m.seconds, cpuUsPerMsg: m.cpuUs / Math.max(1, m.messages) }
        } catch (e) {
          r = { client: spec.name, scenario: sc.name, run, msgPerSec: 0, cpuUsPerMsg: 0, error: String(e) }
        } finally {
          proc.kill("SIGKILL")
        }
        results.push(r)
        console.log(
          `  ${o.runs > 1 ? `run ${run + 1} ` : ""}${spec.name.padEnd(8)} ${
            r.error ?? `${Math.round(r.msgPerSec).toLocaleString("en-US")} msg/s, client CPU ${r.cpuUsPerMsg.toFixed(2)} µs/msg`
          }`
        )
      }
    }
  }
  const lines = [
    "# Client benchmarks",
    "",
    "One client process against Bun's server (`bench/servers/bun.mjs`), median of " + o.runs + " run(s), " + o.warmupSec +
    " s warm-up + " + o.measureSec + " s measured: `pnpm bench --scenarios " + selected.map((s) => s.name).join(",") + "`. " +
    "Load average before the run: " + loadBefore + " (2 cores)" +
    (o.pin === undefined ? "" : `; the server pinned to CPU ${o.pin.server}, the client to CPU ${o.pin.rest}`) +
    ". msg/s depends on the CPU the client and the server " +
    "were given; client CPU µs/msg (its user + system time over the measured interval, per echoed message) does not, " +
    "and is the figure to compare on a shared machine.",
    ""
  ]
  for (const sc of selected) {
    lines.push(`## ${sc.name}: ${sc.title}`, "", "| client | msg/s | client CPU µs/msg | vs ws (msg/s) |", "|---|---:|---:|---:|")
    const ws = median(results.filter((r) => r.scenario === sc.name && r.client === "ws" && !r.error).map((r) => r.msgPerSec))
    for (const spec of clients) {
      const rs = results.filter((r) => r.scenario === sc.name && r.client === spec.name && !r.error)
      const rate = median(rs.map((r) => r.msgPerSec))
      lines.push(
        `| ${spec.name} | ${Math.round(rate).toLocaleString("en-US")} | ${median(rs.map((r) => r.cpuUsPerMsg)).toFixed(2)} | ${
          (rate / ws).toFixed(2)
        }× |`
      )
    }
    lines.push("")
  }
  const markdown = lines.join("\n")
  console.log("\n" + markdown)
  if (o.write) {
    mkdirSync(join(benchDir, "results"), { recursive: true })
    const stamp = new Date().toISOString().replace(/[:.]/g, "-")
    writeFileSync(join(benchDir, "results", `clients-${stamp}.json`), JSON.stringify(results, null, 2) + "\n")
    writeFileSync(join(benchDir, "RESULTS-client.md"), markdown)
    console.log("wrote bench/results/clients-*.json and bench/RESULTS-client.md")
  }
  return results
}
