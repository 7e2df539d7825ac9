/**
 * Handshake CPU, servers side by side in interleaved rounds. `pnpm bench`'s handshake scenario
 * runs one server after another, and on a small VM the machine's speed drifts between them by
 * more than the differences this is for (single runs of the same server range over ±25%). Here
 * every server runs at once, pinned to one CPU, and a client pinned to another drives a round of
 * handshakes against each in turn; the server's CPU time over its round is its sample. Each
 * round's ratio to the first server is taken within that round, so a drift shared by all servers
 * cancels out; the medians of the samples and of those ratios are printed.
 *
 * A handshake: connect, send the upgrade request, on the 101 send a masked Close, wait for the
 * server to close TCP (concurrently, `--concurrency` loops).
 *
 *   pnpm bench:handshakes [--servers ws,ours-fast] [--rounds 10] [--per-round 4000] [--warmup 8000]
 *                         [--profile <dir>]
 *
 * `--profile <dir>` runs every Node server under `--cpu-prof` (profiles in <dir>/<server>/) and then
 * prints where each one's CPU per handshake went, by owner of the code (Node's modules, native
 * bindings, GC, Effect, our packages, ws), from the samples taken during its measured rounds only.
 * The profiler costs CPU of its own, so compare these figures with each other, not with a run
 * without it.
 *
 * Servers are those of `pnpm bench` (`bench/src/servers.ts`; `BENCH_BASELINE` adds `base-fast`),
 * run from their built `dist/` (`pnpm build` first). Linux only (/proc); taskset pins when present.
 */
import { execFileSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { once } from "node:events"
import * as net from "node:net"
import { availableParallelism } from "node:os"
import { join } from "node:path"
import { attribute, monotonicMicros, readProfile } from "./src/cpuprofile.js"
import { cpuSeconds } from "./src/proc.js"
import { servers } from "./src/servers.js"
import { flag, median } from "./src/cli.js"
import { startListening } from "./src/spawn.js"
import { closeFrame, upgradeRequest } from "./src/wire.js"

/** The client: `n` handshakes on `port`, `concurrency` at a time; prints nothing. */
const client = async (port: number, n: number, concurrency: number): Promise<void> => {
  const request = upgradeRequest("127.0.0.1", port, false)
  const close = closeFrame()
  let started = 0
  let failed = 0
  const one = () =>
    new Promise<void>((resolve) => {
      const socket = net.connect(port, "127.0.0.1")
      let upgraded = false
      socket.on("connect", () => socket.write(request))
      socket.on("data", () => {
        if (upgraded) return
        upgraded = true
        socket.write(close)
      })
      socket.on("error", () => {
        failed++
      })
      socket.on("close", () => resolve())
    })
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (started < n) {
      started++
      await one()
    }
  }))
  if (failed > n / 100) throw new Error(`${failed} of ${n} handshakes failed on port ${port}`)
}

const hasTaskset = (): boolean => {
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const main = async (): Promise<void> => {
  if (process.argv[2] === "--client") {
    const [port, n, concurrency] = process.argv.slice(3).map(Number)
    await client(port!, n!, concurrency!)
    return
  }
  const names = flag("servers", process.env.BENCH_BASELINE ? "ws,base-fast,ours-fast" : "ws,ours-fast").split(",")
  const rounds = Number(flag("rounds", "10"))
  const perRound = Number(flag("per-round", "4000"))
  const warmup = Number(flag("warmup", "8000"))
  const concurrency = Number(flag("concurrency", "32"))
  const pin = hasTaskset() && availableParallelism() >= 2
  const serverCpu = String(availableParallelism() - 1)
  const pinned = (cpu: string, argv: ReadonlyArray<string>) => (pin ? ["taskset", "-c", cpu, ...argv] : [...argv])

  const profileDir = flag("profile", "")
  const started: Array<{
    name: string
    port: number
    child: ChildProcess
    samples: Array<number>
    windows: Array<readonly [number, number]>
    profiled: boolean
  }> = []
  const stopAll = () => {
    for (const s of started) s.child.kill()
  }
  process.on("exit", stopAll)
  let port = 19_300 + Math.floor(Math.random() * 500)
  for (const name of names) {
    const spec = servers.find((s) => s.name === name)
    if (spec === undefined) throw new Error(`no server named ${name} (see bench/src/servers.ts)`)
    const why = spec.unavailable?.()
    if (why !== undefined) throw new Error(`${name}: ${why}`)
    const p = port++
    const command = spec.command.map((a) => a.replaceAll("{port}", String(p)))
    const profiled = profileDir !== "" && command[0] === process.execPath
    if (profiled) command.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${join(profileDir, name)}`)
    const child = await startListening(name, pinned(serverCpu, command), { ...spec.env, BENCH_PORT: String(p) })
    started.push({ name, port: p, child, samples: [], windows: [], profiled })
  }
  const drive = (p: number, n: number) => {
    const argv = pinned("0", [process.execPath, ...process.execArgv, process.argv[1]!])
    execFileSync(argv[0]!, [...argv.slice(1), "--client", String(p), String(n), String(concurrency)], { stdio: "inherit" })
  }
  console.log(
    `${names.join(", ")}: ${warmup} handshakes of warm-up each, then ${rounds} rounds of ${perRound} per server` +
      (pin ? ` (servers on CPU ${serverCpu}, client on CPU 0)` : " (not pinned)")
  )
  for (const s of started) drive(s.port, warmup)
  for (let r = 0; r < rounds; r++) {
    for (const s of started) {
      const pid = s.child.pid!
      const before = cpuSeconds(pid)
      const from = monotonicMicros()
      drive(s.port, perRound)
      s.windows.push([from, monotonicMicros()])
      s.samples.push(((cpuSeconds(pid) - before) * 1e6) / perRound)
    }
  }
  const first = started[0]!
  console.log(`server CPU per handshake (µs), median of ${rounds} rounds; ratio: median over rounds of the round's ratio to ${first.name}`)
  for (const s of started) {
    const ratios = s.samples.map((x, i) => x / first.samples[i]!)
    console.log(
      `  ${s.name.padEnd(18)} ${median(s.samples).toFixed(0).padStart(5)} µs   ${median(ratios).toFixed(2)}× ${first.name}` +
        `   rounds: ${s.samples.map((x) => x.toFixed(0)).join(" ")}`
    )
  }
  stopAll()
  const profiled = started.filter((s) => s.profiled)
  if (profiled.length === 0) return
  // the profile is written as the process exits (SIGTERM makes the bench servers exit)
  await Promise.all(profiled.map((s) => s.child.exitCode !== null ? undefined : once(s.child, "exit")))
  const tables = profiled.map((s) => attribute(readProfile(join(profileDir, s.name)), s.windows, rounds * perRound))
  const groups = [...new Set(tables.flatMap((t) => [...t.keys()]))]
    .sort((a, b) => Math.max(...tables.map((t) => t.get(b) ?? 0)) - Math.max(...tables.map((t) => t.get(a) ?? 0)))
  const cell = (x: number) => x.toFixed(1).padStart(14)
  console.log(`\nprofiled CPU per handshake (µs), samples of the measured rounds only; profiles in ${profileDir}`)
  console.log(`  ${"".padEnd(30)}${profiled.map((s) => s.name.padStart(14)).join("")}`)
  for (const g of groups) console.log(`  ${g.padEnd(30)}${tables.map((t) => cell(t.get(g) ?? 0)).join("")}`)
  console.log(`  ${"total".padEnd(30)}${tables.map((t) => cell([...t.values()].reduce((a, b) => a + b, 0))).join("")}`)
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e instanceof Error ? e.message : e)
    process.exit(1)
  }
)
