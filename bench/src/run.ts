/**
 * The benchmark orchestrator: for every scenario, run every server (alternating the order between
 * runs), drive it with the load generator threads, and write results/<timestamp>.json, RESULTS.md
 * and the chart.
 *
 *   pnpm bench                      every available server and scenario, 3 runs
 *   pnpm bench:quick                1 run, shorter intervals
 *   pnpm bench --servers ws,bun --scenarios small,latency --runs 1 --threads 1
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { type EventLoopUtilization, performance } from "node:perf_hooks"
import { parseArgs } from "node:util"
import { Worker } from "node:worker_threads"
import type { FromMain, GeneratorConfig, ToMain } from "./loadgen.js"
import { cpuSeconds, machineBusySeconds, processTree, treeCpuSeconds, treeRssBytes } from "./proc.js"
import { type Machine, type Pin, renderMarkdown, renderSvg, type Report, type RunResult, scenarioTables, summarize } from "./report.js"
import { onCpu } from "./spawn.js"
import { clients, clientScenarios, isClientScenario, runClientScenarios } from "./clients.js"
import { type Scenario, scenarios as allScenarios } from "./scenarios.js"
import { benchDir, defaultServers, repoRoot, type ServerSpec, servers as allServers } from "./servers.js"
import {
  C_CLIENT_CLOSED_FIRST,
  C_DROPPED,
  C_ERRORS,
  C_LEN_MISMATCH,
  C_MSGS,
  C_UNEXPECTED_CLOSE,
  C_VERIFY_FAIL,
  C_VERIFY_OK,
  COUNTERS,
  HIST_BUCKETS,
  makePayload,
  OP_BINARY,
  OP_TEXT,
  quantile,
  SHARED_WORDS
} from "./wire.js"

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

const USAGE = `usage: pnpm bench [--quick] [--servers a,b] [--scenarios x,y] [--runs N] [--warmup S] [--duration S]
                  [--threads N] [--pin] [--no-write] [--list]
  --quick        1 run, 0.5 s warm-up + 1.5 s measured (default: 3 runs, 1 s + 2 s)
  --servers      comma-separated server names (default: every available server)
  --scenarios    comma-separated scenario names (default: all)
  --threads      load-generator threads (default 1: the machine has 2 cores for server and generator)
  --pin          each server on CPU 0, this process (the generator threads, and the clients of the
                 client scenarios) on CPU 1: how the issue's figures were taken (needs taskset)
  --no-write     print the tables only (no results/*.json, RESULTS.md or chart)
  --list         list servers and scenarios
  --render FILE  rewrite RESULTS.md and the chart from a results/*.json file, without running anything
  --replace-in FILE [--why TEXT]
                 write this run's scenarios into FILE (a results/*.json) in place of its runs of them,
                 then rewrite RESULTS.md from it: a scenario run again after a fix, said so in RESULTS.md`

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    servers: { type: "string" },
    scenarios: { type: "string" },
    runs: { type: "string" },
    warmup: { type: "string" },
    duration: { type: "string" },
    threads: { type: "string" },
    pin: { type: "boolean", default: false },
    "no-write": { type: "boolean", default: false },
    render: { type: "string" },
    "replace-in": { type: "string" },
    why: { type: "string" },
    list: { type: "boolean", default: false },
    help: { type: "boolean", default: false }
  },
  allowPositionals: false
})

if (args.help) {
  console.log(USAGE)
  process.exit(0)
}
if (args.render !== undefined) {
  const report = JSON.parse(readFileSync(args.render, "utf8")) as Report
  writeFileSync(join(benchDir, "RESULTS.md"), renderMarkdown(report))
  mkdirSync(join(benchDir, "results"), { recursive: true })
  writeFileSync(join(benchDir, "results", "chart.svg"), renderSvg(report))
  copyFileSync(join(benchDir, "results", "chart.svg"), join(benchDir, "chart.svg"))
  console.log(`rewrote bench/RESULTS.md, bench/results/chart.svg and bench/chart.svg from ${args.render}`)
  process.exit(0)
}
if (args.list) {
  console.log("servers:")
  for (const s of allServers) {
    const why = s.unavailable?.()
    console.log(`  ${s.name.padEnd(20)} ${s.description}${why === undefined ? "" : `  [unavailable: ${why}]`}`)
  }
  console.log("scenarios:")
  for (const s of allScenarios) console.log(`  ${s.name.padEnd(20)} ${s.title}`)
  for (const s of clientScenarios) console.log(`  ${s.name.padEnd(20)} ${s.title} (clients: ${clients.map((c) => c.name).join(", ")}; server: bun)`)
  process.exit(0)
}

const pickList = <T extends { readonly name: string }>(all: ReadonlyArray<T>, wanted: string | undefined, what: string, fallback: ReadonlyArray<T>) => {
  if (wanted === undefined) return [...fallback]
  const names = wanted.split(",").map((s) => s.trim()).filter((s) => s.length > 0)
  const unknown = names.filter((n) => !all.some((x) => x.name === n))
  if (unknown.length > 0) {
    console.error(`unknown ${what}: ${unknown.join(", ")} (known: ${all.map((x) => x.name).join(", ")})`)
    process.exit(2)
  }
  return names.map((n) => all.find((x) => x.name === n)!)
}
const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v))

const quick = args.quick
const requested = pickList(allServers, args.servers, "servers", defaultServers())
const skipped = requested.flatMap((s) => {
  const reason = s.unavailable?.()
  return reason === undefined ? [] : [{ name: s.name, reason }]
})
const selectedServers = requested.filter((s) => s.unavailable?.() === undefined)
// client-* scenarios (bench/src/clients.ts) compare clients against one server; the rest compare servers
const scenarioNames = args.scenarios?.split(",").map((n) => n.trim()).filter((n) => n.length > 0)
const clientScenarioNames = scenarioNames === undefined
  ? clientScenarios.map((s) => s.name)
  : scenarioNames.filter(isClientScenario)
const serverScenarioNames = scenarioNames?.filter((n) => !isClientScenario(n))
const selectedScenarios = serverScenarioNames !== undefined && serverScenarioNames.length === 0
  ? []
  : pickList(allScenarios, serverScenarioNames?.join(","), "scenarios", allScenarios)
const runs = num(args.runs, quick ? 1 : 3)
const warmupSec = num(args.warmup, quick ? 0.5 : 1)
const measureSec = num(args.duration, quick ? 1.5 : 2)
/** A scenario's warm-up: `--warmup`, or its own minimum when that is longer (not in `--quick` mode). */
const warmupOf = (sc: Scenario): number => (quick ? warmupSec : Math.max(warmupSec, sc.minWarmupSec ?? 0))
/** A scenario's runs: `--runs` when given, else the default or the scenario's own minimum, whichever is more (not in `--quick` mode). */
const runsOf = (sc: Scenario): number => (quick || args.runs !== undefined ? runs : Math.max(runs, sc.minRuns ?? 0))
const threads = Math.max(1, num(args.threads, 1))
const write = !args["no-write"]

/**
 * `--pin`: the CPU each server runs on, and the one this process and everything it starts besides
 * the servers are moved to. Unpinned, server and generator share both cores and the scheduler
 * moves them: a server then gets part of the second core at times, and each run a different part.
 */
const pin: Pin | undefined = args.pin === true ? { server: "0", rest: "1" } : undefined
if (pin !== undefined) {
  if (cpus().length < 2) {
    console.error("--pin needs 2 CPUs: one for the server, one for the generator")
    process.exit(2)
  }
  // -a: every thread this process has now; the generator threads started later inherit it
  execFileSync("taskset", ["-a", "-p", "-c", pin.rest, String(process.pid)], { stdio: "ignore" })
}
/** Connections are spread over these local addresses (all on loopback). */
const SOURCE_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 1}`)
const HOST = "127.0.0.1"

// ---------------------------------------------------------------------------------------------
// Server processes: started detached (own process group), killed on every exit path.
// ---------------------------------------------------------------------------------------------

interface RunningServer {
  readonly spec: ServerSpec
  readonly port: number
  readonly proc: ChildProcess
  readonly pid: number
  pids: Array<number>
  readonly output: Array<string>
  readonly exited: Promise<void>
  hasExited: boolean
}

const live = new Set<RunningServer>()

const killGroup = (s: RunningServer, signal: NodeJS.Signals) => {
  try {
    process.kill(-s.pid, signal)
  } catch {
    try {
      process.kill(s.pid, signal)
    } catch {
      // already gone
    }
  }
}

const killAllNow = () => {
  for (const s of live) killGroup(s, "SIGKILL")
  live.clear()
}

process.on("exit", killAllNow)
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping servers`)
    killAllNow()
    process.exit(130)
  })
}
process.on("uncaughtException", (e) => {
  console.error(e)
  killAllNow()
  process.exit(1)
})
process.on("unhandledRejection", (e) => {
  console.error(e)
  killAllNow()
  process.exit(1)
})

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const withTimeout = <A>(p: Promise<A>, ms: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms)
    p.then(
      (a) => {
        clearTimeout(t)
        resolve(a)
      },
      (e) => {
        clearTimeout(t)
        reject(e)
      }
    )
  })

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer()
    s.on("error", reject)
    s.listen(0, HOST, () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })

/**
 * A self-signed certificate for 127.0.0.1 (PEM files), made with openssl on first use for the
 * `tls` and `h2` scenarios and removed when the orchestrator exits.
 */
let certificate: { readonly key: string; readonly cert: string } | undefined
const certificateFiles = () => {
  if (certificate !== undefined) return certificate
  const dir = mkdtempSync(join(tmpdir(), "bench-cert-"))
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }))
  const key = join(dir, "key.pem")
  const cert = join(dir, "cert.pem")
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"
  ], { stdio: "ignore" })
  return (certificate = { key, cert })
}

/** The environment that makes a server serve a scenario's transport (see `ServerSpec.transports`). */
const transportEnv = (sc: Scenario): Record<string, string> => {
  if (sc.transport === "tcp") return {}
  const { cert, key } = certificateFiles()
  return { BENCH_TLS_KEY: key, BENCH_TLS_CERT: cert, ...(sc.transport === "h2" ? { BENCH_HTTP2: "1" } : {}) }
}

const startServer = async (spec: ServerSpec, sc: Scenario): Promise<RunningServer> => {
  const port = await freePort()
  const argv = onCpu(pin?.server, spec.command.map((a) => a.replaceAll("{port}", String(port))))
  const proc = spawn(argv[0]!, argv.slice(1), {
    cwd: repoRoot,
    env: { ...process.env, ...spec.env, ...transportEnv(sc), BENCH_PORT: String(port) },
    stdio: ["pipe", "pipe", "pipe"],
    detached: true
  })
  if (proc.pid === undefined) {
    await new Promise((r) => proc.once("error", r))
    throw new Error(`${spec.name}: could not start ${argv[0]}`)
  }
  const output: Array<string> = []
  let resolveExit!: () => void
  const s: RunningServer = {
    spec,
    port,
    proc,
    pid: proc.pid,
    pids: [proc.pid],
    output,
    exited: new Promise<void>((r) => (resolveExit = r)),
    hasExited: false
  }
  live.add(s)
  proc.on("exit", () => {
    s.hasExited = true
    live.delete(s)
    resolveExit()
  })
  proc.on("error", () => {})
  proc.stdin!.on("error", () => {})
  let listening = false
  let onListening: () => void = () => {}
  const onLine = (text: string) => {
    for (const line of text.split("\n")) {
      if (line.length === 0) continue
      output.push(line)
      if (output.length > 30) output.shift()
      if (!listening && /\blistening\b/.test(line)) {
        listening = true
        onListening()
      }
    }
  }
  // BENCH_SERVER_LOG: every server's output appended to a file (what V8 prints for --trace-gc)
  const log = process.env.BENCH_SERVER_LOG
  const onData = log === undefined ? onLine : (text: string) => {
    appendFileSync(log, text)
    onLine(text)
  }
  proc.stdout!.setEncoding("utf8").on("data", onData)
  proc.stderr!.setEncoding("utf8").on("data", onData)
  try {
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        onListening = resolve
        s.exited.then(() => reject(new Error(`${spec.name} exited before listening:\n${output.join("\n")}`)))
      }),
      30_000,
      `${spec.name} start`
    )
  } catch (e) {
    await stopServer(s)
    throw e
  }
  s.pids = processTree(s.pid)
  return s
}

const stopServer = async (s: RunningServer) => {
  if (s.hasExited) return
  s.proc.stdin?.end()
  killGroup(s, "SIGTERM")
  await Promise.race([s.exited, sleep(2000)])
  if (!s.hasExited) {
    killGroup(s, "SIGKILL")
    await Promise.race([s.exited, sleep(2000)])
  }
  live.delete(s)
}

// ---------------------------------------------------------------------------------------------
// Load generator threads
// ---------------------------------------------------------------------------------------------

interface Generator {
  readonly workers: ReadonlyArray<Worker>
  readonly views: ReadonlyArray<Uint32Array>
  readonly tids: ReadonlyArray<number>
  readonly open: number
  readonly failed: number
  readonly firstError: string | undefined
  readonly stop: () => Promise<void>
}

const split = (total: number, parts: number, i: number) => Math.floor(total / parts) + (i < total % parts ? 1 : 0)

const startGenerator = async (sc: Scenario, port: number): Promise<Generator> => {
  const payload = makePayload(sc.payload, sc.size)
  const n = sc.mode === "handshake" ? Math.min(threads, sc.concurrency) : Math.max(1, Math.min(threads, sc.conns))
  const workers: Array<Worker> = []
  const views: Array<Uint32Array> = []
  const tids: Array<number> = []
  const readies: Array<Promise<Extract<ToMain, { type: "ready" }>>> = []
  const stoppeds: Array<Promise<void>> = []
  for (let i = 0; i < n; i++) {
    const shared = new SharedArrayBuffer(SHARED_WORDS * 4)
    const conns = split(sc.conns, n, i)
    const cfg: GeneratorConfig = {
      mode: sc.mode,
      index: i,
      host: HOST,
      port,
      sourceAddresses: SOURCE_ADDRESSES,
      conns,
      window: sc.window,
      opcode: sc.payload === "binary" ? OP_BINARY : OP_TEXT,
      payload,
      deflate: sc.deflate,
      transport: sc.transport,
      rate: sc.conns > 0 ? (sc.rate * conns) / sc.conns : 0,
      concurrency: sc.mode === "handshake" ? split(sc.concurrency, n, i) : Math.max(1, sc.concurrency || conns),
      shared
    }
    const w = new Worker(new URL("./loadgen-entry.mjs", import.meta.url), { workerData: cfg })
    workers.push(w)
    views.push(new Uint32Array(shared))
    tids.push(-1)
    let fatal: (e: Error) => void = () => {}
    readies.push(
      new Promise((resolve, reject) => {
        fatal = reject
        w.on("message", (m: ToMain) => {
          if (m.type === "ready") resolve(m)
          else if (m.type === "tid") tids[i] = m.tid
          else if (m.type === "fatal") reject(new Error(`generator: ${m.message}`))
        })
      })
    )
    w.on("error", (e) => fatal(e))
    stoppeds.push(
      new Promise((resolve) => {
        w.on("message", (m: ToMain) => m.type === "stopped" && resolve())
        w.on("exit", () => resolve())
      })
    )
  }
  const stop = async () => {
    for (const w of workers) w.postMessage({ type: "stop" } satisfies FromMain)
    await Promise.race([Promise.all(stoppeds), sleep(3000)])
    await Promise.all(workers.map((w) => w.terminate()))
  }
  try {
    const timeout = sc.mode === "idle" ? 30_000 + sc.conns * 15 : 30_000
    const r = await withTimeout(Promise.all(readies), timeout, "connecting")
    return {
      workers,
      views,
      tids,
      open: r.reduce((a, x) => a + x.open, 0),
      failed: r.reduce((a, x) => a + x.failed, 0),
      firstError: r.find((x) => x.firstError !== undefined)?.firstError,
      stop
    }
  } catch (e) {
    await stop()
    throw e
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots of the server and the generator at the edges of the measured interval
// ---------------------------------------------------------------------------------------------

interface Snapshot {
  readonly t: number
  readonly serverCpu: number
  readonly threadCpu: ReadonlyArray<number>
  readonly procCpu: number
  readonly machineBusy: number
  readonly counters: ReadonlyArray<number>
  readonly hist: Float64Array
  readonly elu: ReadonlyArray<EventLoopUtilization>
}

const snapshot = (server: RunningServer, gen: Generator): Snapshot => {
  const t = performance.now()
  const serverCpu = treeCpuSeconds(server.pids)
  const threadCpu = gen.tids.map((tid) => (tid > 0 ? cpuSeconds(process.pid, tid) : Number.NaN))
  const u = process.cpuUsage()
  const machineBusy = machineBusySeconds()
  const counters = Array.from({ length: COUNTERS }, (_, k) => gen.views.reduce((a, v) => a + v[k], 0))
  const hist = new Float64Array(HIST_BUCKETS)
  for (const v of gen.views) for (let b = 0; b < HIST_BUCKETS; b++) hist[b] += v[COUNTERS + b]
  return {
    t,
    serverCpu,
    threadCpu,
    procCpu: (u.user + u.system) / 1e6,
    machineBusy,
    counters,
    hist,
    elu: gen.workers.map((w) => w.performance.eventLoopUtilization())
  }
}

const MiB = 1024 * 1024

const emptyResult = (server: string, scenario: string, run: number): RunResult => ({
  server,
  scenario,
  run,
  ok: false,
  error: null,
  seconds: null,
  units: null,
  perSec: null,
  p50Ms: null,
  p99Ms: null,
  cpuUsPerUnit: null,
  serverCores: null,
  serverRssMiB: null,
  rssGrowthMiB: null,
  genCores: null,
  genThreadMax: null,
  otherCores: null,
  bound: "",
  conns: null,
  rssBeforeMiB: null,
  rssAfterMiB: null,
  rssPerConnKiB: null,
  connectPerSec: null,
  errors: 0,
  lenMismatch: 0,
  verifyOk: 0,
  verifyFail: 0,
  unexpectedClose: 0,
  dropped: 0,
  clientClosedFirst: 0
})

const nproc = cpus().length

const boundOf = (serverCores: number, genMax: number, genCores: number, otherCores: number): string => {
  const gen = genMax >= 0.9
  const srv = serverCores >= 0.9
  if (gen && srv) return "gen+server"
  if (gen) return "gen"
  if (srv) return "server"
  if (serverCores + genCores + otherCores >= 0.9 * nproc) return "cpu"
  return ""
}

const counterFields = (c: ReadonlyArray<number>) => ({
  errors: c[C_ERRORS],
  lenMismatch: c[C_LEN_MISMATCH],
  verifyOk: c[C_VERIFY_OK],
  verifyFail: c[C_VERIFY_FAIL],
  unexpectedClose: c[C_UNEXPECTED_CLOSE],
  dropped: c[C_DROPPED],
  clientClosedFirst: c[C_CLIENT_CLOSED_FIRST]
})

const runOne = async (spec: ServerSpec, sc: Scenario, run: number): Promise<RunResult> => {
  const base = emptyResult(spec.name, sc.name, run)
  if (sc.deflate && spec.deflate === false) return { ...base, error: "server does not support permessage-deflate" }
  if (sc.transport !== "tcp" && !(spec.transports ?? []).includes(sc.transport)) {
    return { ...base, error: `server does not serve ${sc.transport === "h2" ? "WebSockets over HTTP/2" : "wss://"}` }
  }
  const server = await startServer(spec, sc)
  let gen: Generator | undefined
  try {
    if (sc.mode === "idle") {
      await sleep(300)
      const rssBefore = treeRssBytes(server.pids)
      const t0 = performance.now()
      const cpu0 = treeCpuSeconds(server.pids)
      gen = await startGenerator(sc, server.port)
      const connectSec = (performance.now() - t0) / 1000
      const connectCpu = treeCpuSeconds(server.pids) - cpu0
      await sleep(1000)
      const rssAfter = treeRssBytes(server.pids)
      const c = Array.from({ length: COUNTERS }, (_, k) => gen!.views.reduce((a, v) => a + v[k], 0))
      return {
        ...base,
        ...counterFields(c),
        ok: gen.open > 0,
        error: gen.open === 0 ? (gen.firstError ?? "no connection opened") : null,
        seconds: connectSec,
        units: gen.open,
        conns: gen.open,
        errors: c[C_ERRORS] + gen.failed,
        rssBeforeMiB: rssBefore / MiB,
        rssAfterMiB: rssAfter / MiB,
        serverRssMiB: rssAfter / MiB,
        rssPerConnKiB: gen.open > 0 ? (rssAfter - rssBefore) / 1024 / gen.open : null,
        connectPerSec: gen.open / connectSec,
        cpuUsPerUnit: gen.open > 0 ? (connectCpu * 1e6) / gen.open : null
      }
    }
    await sleep(300)
    const rssAtRest = treeRssBytes(server.pids)
    gen = await startGenerator(sc, server.port)
    if (gen.open === 0 && sc.mode !== "handshake") {
      return { ...base, error: gen.firstError ?? "no connection opened", errors: gen.failed }
    }
    await sleep(warmupOf(sc) * 1000)
    const a = snapshot(server, gen)
    await sleep(measureSec * 1000)
    const b = snapshot(server, gen)
    const rss = treeRssBytes(server.pids)
    const seconds = (b.t - a.t) / 1000
    const units = b.counters[C_MSGS] - a.counters[C_MSGS]
    const hist = b.hist.map((v, i) => v - a.hist[i])
    const serverCpu = b.serverCpu - a.serverCpu
    const serverCores = serverCpu / seconds
    const genCores = (b.procCpu - a.procCpu) / seconds
    const threadCores = b.threadCpu.map((v, i) => (v - a.threadCpu[i]) / seconds)
    const eluCores = gen.workers.map((w, i) => w.performance.eventLoopUtilization(b.elu[i], a.elu[i]).utilization)
    const genThreadMax = Math.max(...threadCores.map((v, i) => (Number.isFinite(v) ? v : eluCores[i])))
    // Errors and checks count over the whole run (the first reply of each connection, checked byte for
    // byte, arrives during warm-up); messages, CPU and latency over the measured interval only.
    const counters = b.counters
    const ok = units > 0
    return {
      ...base,
      ...counterFields(counters),
      ok,
      error: ok ? null : (gen.firstError ?? "no message echoed in the measured interval"),
      seconds,
      units,
      perSec: units / seconds,
      p50Ms: quantile(hist, 0.5) / 1000,
      p99Ms: quantile(hist, 0.99) / 1000,
      cpuUsPerUnit: units > 0 ? (serverCpu * 1e6) / units : null,
      serverCores,
      serverRssMiB: rss / MiB,
      rssGrowthMiB: (rss - rssAtRest) / MiB,
      genCores,
      genThreadMax,
      otherCores: Math.max(0, (b.machineBusy - a.machineBusy) / seconds - serverCores - genCores),
      bound: boundOf(serverCores, genThreadMax, genCores, Math.max(0, (b.machineBusy - a.machineBusy) / seconds - serverCores - genCores)),
      errors: counters[C_ERRORS] + gen.failed
    }
  } finally {
    // Server first: it would otherwise spend CPU on thousands of closes nobody measures.
    await stopServer(server)
    if (gen !== undefined) await gen.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// Machine description
// ---------------------------------------------------------------------------------------------

const machine = (): Machine => {
  const req = createRequire(join(benchDir, "package.json"))
  const version = (pkg: string) => {
    try {
      return (JSON.parse(readFileSync(req.resolve(`${pkg}/package.json`), "utf8")) as { version: string }).version
    } catch {
      return "not installed"
    }
  }
  const versions: Record<string, string> = {
    ws: version("ws"),
    bufferutil: version("bufferutil"),
    "@effect/platform-node": version("@effect/platform-node"),
    effect: version("effect")
  }
  const bun = allServers.find((s) => s.name === "bun")
  if (bun !== undefined && bun.unavailable?.() === undefined) {
    try {
      versions.bun = execFileSync(bun.command[0], ["--version"], { encoding: "utf8" }).trim()
    } catch {
      versions.bun = "not runnable"
    }
  }
  let kernel = ""
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()
  } catch {
    kernel = process.platform
  }
  return { nproc, cpuModel: cpus()[0]?.model ?? "unknown", node: process.version, kernel, versions }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/** The soft RLIMIT_NOFILE of this process (servers inherit it). */
const openFileLimit = (): number => {
  try {
    const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync("/proc/self/limits", "utf8"))
    return m === null ? Number.POSITIVE_INFINITY : m[1] === "unlimited" ? Number.POSITIVE_INFINITY : Number(m[1])
  } catch {
    return Number.POSITIVE_INFINITY
  }
}

const fmtRow = (r: RunResult) => {
  if (!r.ok) return `FAILED: ${r.error}`
  if (r.conns !== null) {
    return `${r.conns} conns, ${r.rssPerConnKiB?.toFixed(1)} KiB/conn (RSS ${r.rssBeforeMiB?.toFixed(1)} → ${r.rssAfterMiB?.toFixed(1)} MiB), ${Math.round(r.connectPerSec ?? 0)} connects/s`
  }
  return (
    `${Math.round(r.perSec ?? 0)}/s, p50 ${r.p50Ms?.toFixed(2)} ms, p99 ${r.p99Ms?.toFixed(2)} ms, ` +
    `server ${r.cpuUsPerUnit?.toFixed(2)} µs/unit (${Math.round((r.serverCores ?? 0) * 100)}% CPU, ${r.serverRssMiB?.toFixed(0)} MiB), ` +
    `gen ${Math.round((r.genThreadMax ?? 0) * 100)}%${r.bound ? ` [${r.bound}-bound]` : ""}` +
    (r.errors + r.lenMismatch + r.verifyFail + r.unexpectedClose + r.dropped + r.clientClosedFirst > 0
      ? ` errors=${r.errors} lenMismatch=${r.lenMismatch} badReplies=${r.verifyFail} closedByServer=${r.unexpectedClose} dropped=${r.dropped} neverClosedTcp=${r.clientClosedFirst}`
      : "") +
    ` verified=${r.verifyOk}`
  )
}

/** `--replace-in`: the older report with this run's scenarios in place of its own runs of them. */
const replaceIn = (file: string, fresh: Report): Report => {
  const old = JSON.parse(readFileSync(file, "utf8")) as Report
  const names = new Set(fresh.scenarios.map((s) => s.name))
  const scenarios = [...old.scenarios.map((s) => fresh.scenarios.find((f) => f.name === s.name) ?? s)]
  for (const s of fresh.scenarios) if (!scenarios.some((x) => x.name === s.name)) scenarios.push(s)
  const servers = [...old.servers]
  for (const s of fresh.servers) if (!servers.some((x) => x.name === s.name)) servers.push(s)
  const results = [...old.results.filter((r) => !names.has(r.scenario)), ...fresh.results]
  return {
    ...old,
    servers,
    scenarios,
    results,
    summary: summarize(results),
    reruns: [
      ...(old.reruns ?? []),
      { scenarios: [...names], finishedAt: fresh.finishedAt, command: fresh.command, ...(args.why === undefined ? {} : { why: args.why }) }
    ]
  }
}

const clientOptions = { runs, warmupSec, measureSec, write, pin }

const main = async () => {
  if (selectedScenarios.length === 0) {
    await runClientScenarios(clientScenarioNames, clientOptions)
    return
  }
  if (selectedServers.length === 0) {
    console.error("no server to run" + (skipped.length > 0 ? `: ${skipped.map((s) => `${s.name} (${s.reason})`).join(", ")}` : ""))
    process.exit(2)
  }
  const startedAt = new Date().toISOString()
  const perServer = selectedScenarios.reduce(
    (a, sc) => a + runsOf(sc) * (sc.mode === "idle" ? 4 + sc.conns / 2000 : warmupOf(sc) + measureSec + 2),
    0
  )
  console.log(
    `servers: ${selectedServers.map((s) => s.name).join(", ")}${skipped.length > 0 ? `  (skipped: ${skipped.map((s) => `${s.name}: ${s.reason}`).join("; ")})` : ""}\n` +
      `scenarios: ${selectedScenarios.map((s) => s.name).join(", ")}\n` +
      `${runs} run(s), ${warmupSec} s warm-up + ${measureSec} s measured, ${threads} generator thread(s); ` +
      `about ${Math.ceil((perServer * selectedServers.length) / 60)} min`
  )
  // What the rest of the machine is doing before we start (other processes share these cores).
  const busy0 = machineBusySeconds()
  await sleep(1000)
  const backgroundCores = machineBusySeconds() - busy0
  const loadavg = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")
  console.log(
    `background load before starting: ${backgroundCores.toFixed(2)} cores busy, load average ${loadavg}` +
      (backgroundCores > 0.25 ? "  (WARNING: other processes are using the CPU; numbers will be noisy)" : "")
  )
  const maxConns = Math.max(0, ...selectedScenarios.map((sc) => sc.conns))
  const fdLimit = openFileLimit()
  if (fdLimit < maxConns + 500) {
    console.log(`WARNING: the open-file limit is ${fdLimit}; ${maxConns} connections need more (run through bench/run.sh, which raises it)`)
  }
  const results: Array<RunResult> = []
  for (const sc of selectedScenarios) {
    console.log(`\n== ${sc.name}: ${sc.title}`)
    const scRuns = runsOf(sc)
    for (let run = 0; run < scRuns; run++) {
      const order = selectedServers.map((_, i) => selectedServers[(i + run) % selectedServers.length])
      for (const spec of order) {
        let r: RunResult
        try {
          r = await runOne(spec, sc, run)
        } catch (e) {
          r = { ...emptyResult(spec.name, sc.name, run), error: e instanceof Error ? e.message : String(e) }
        }
        results.push(r)
        console.log(`  ${scRuns > 1 ? `run ${run + 1} ` : ""}${spec.name.padEnd(18)} ${fmtRow(r)}`)
      }
    }
  }
  // the command as typed, less `--why`'s text (RESULTS.md gives that on its own)
  const argv = process.argv.slice(2).filter((a, i, all) => a !== "--why" && all[i - 1] !== "--why")
  const fresh: Report = {
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `pnpm bench${argv.length > 0 ? " " + argv.join(" ") : ""}`.replace(
      "pnpm bench --quick",
      "pnpm bench:quick"
    ),
    mode: quick ? "quick" : "full",
    warmupSec,
    measureSec,
    runs,
    generatorThreads: threads,
    ...(pin === undefined ? {} : { pinned: pin }),
    backgroundCores,
    loadavg,
    machine: machine(),
    servers: selectedServers.map((s) => ({ name: s.name, description: s.description })),
    skipped,
    scenarios: selectedScenarios,
    results,
    summary: summarize(results)
  }
  const report = args["replace-in"] === undefined ? fresh : replaceIn(args["replace-in"], fresh)
  console.log("")
  for (const { markdown, scenario } of scenarioTables(report)) console.log(`${scenario.name}: ${scenario.title}\n${markdown}\n`)
  if (write) {
    const dir = join(benchDir, "results")
    mkdirSync(dir, { recursive: true })
    const file = join(dir, `${startedAt.replace(/[:.]/g, "-")}.json`)
    writeFileSync(file, JSON.stringify(report, null, 2) + "\n")
    writeFileSync(join(benchDir, "RESULTS.md"), renderMarkdown(report))
    writeFileSync(join(dir, "chart.svg"), renderSvg(report))
    copyFileSync(join(dir, "chart.svg"), join(benchDir, "chart.svg"))
    console.log(`wrote ${file}, bench/RESULTS.md, bench/results/chart.svg and bench/chart.svg`)
  }
  if (clientScenarioNames.length > 0) await runClientScenarios(clientScenarioNames, clientOptions)
}

main().then(
  () => {
    killAllNow()
    process.exit(0)
  },
  (e) => {
    console.error(e)
    killAllNow()
    process.exit(1)
  }
)
