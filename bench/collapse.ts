/**
 * Do socket-sized reads alone put a process into back-to-back mark-compacts once Effect's modules
 * are loaded? Each probe (a child process, one at a time) receives `--messages` messages of
 * `--size` bytes as reads of `--batch` messages each: a fresh Buffer per read, as a socket's reads
 * bring them, cut into subarrays that a plain callback counts. One `setImmediate` between reads.
 * No WebSocket code, no Stream, no write path: the read pattern of `pnpm bench:handler`'s `fast`
 * form with nothing of the server left.
 *
 * Each probe runs in one of two kinds of process, alternating: `plain` (Node alone) and `effect` (the same
 * after importing `effect` and `@effect/platform-node`, whose modules take the heap from about 3 to
 * 26 MiB). The table gives, per probe, the mark-compacts `--trace-gc` printed and the CPU per
 * message; a probe of 3 × 60,000 messages that is not in the collapsed mode does 3 or 4.
 *
 *   pnpm bench:collapse [--runs 8] [--size 16384] [--batch 4] [--messages 60000] [--busy 2]
 *                       [--flags "--heap-growing-percent=300"]
 *
 * `--busy N` keeps N other processes spinning while the probes run (each ends by itself after 10
 * minutes at most, and is killed when the table is printed), as the load generator keeps the cores
 * busy in `pnpm bench`: on a quiet machine the mode is rare. `--flags` adds V8 flags to every probe.
 * What the collapsed mode is, and what V8 does in it, is in bench/README.md ("Back-to-back major
 * GCs at 1 MiB").
 */
import { spawn, spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { flag, median } from "./src/cli.js"

const size = Number(flag("size", "16384"))
const batch = Number(flag("batch", "4"))
const messages = Number(flag("messages", "60000"))

const probe = async (withEffect: boolean): Promise<void> => {
  if (withEffect) {
    await import("effect")
    await import("@effect/platform-node")
  }
  const template = Buffer.alloc(size * batch, 0x61)
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve))
  let bytes = 0
  const count = (m: Uint8Array) => void (bytes += m.byteLength)
  const reads = Math.ceil(messages / batch)
  const started = process.cpuUsage()
  for (let round = 0; round < 3; round++) {
    for (let r = 0; r < reads; r++) {
      const read = Buffer.from(template)
      for (let at = 0; at < read.length; at += size) count(read.subarray(at, at + size))
      await tick()
    }
  }
  const used = process.cpuUsage(started)
  if (bytes !== 3 * reads * batch * size) throw new Error(`counted ${bytes} bytes`)
  console.log(`probe-cpu-us-per-message ${((used.user + used.system) / (3 * reads * batch)).toFixed(2)}`)
}

type Kind = "plain" | "effect"
const kinds: ReadonlyArray<Kind> = ["plain", "effect"]

/** One probe in a child process: the mark-compacts `--trace-gc` printed, and the CPU per message. */
const runProbe = (kind: Kind, extra: ReadonlyArray<string>): { mc: number; us: number } => {
  const args = ["--size", String(size), "--batch", String(batch), "--messages", String(messages)]
  const self = fileURLToPath(import.meta.url)
  const child = spawnSync(process.execPath, ["--trace-gc", ...extra, "--import", "tsx", self, "--probe", kind, ...args], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024
  })
  const us = /probe-cpu-us-per-message (\S+)/.exec(child.stdout)?.[1]
  if (child.status !== 0 || us === undefined) throw new Error(`probe failed: ${child.stderr}`)
  return { mc: child.stdout.split("Mark-Compact").length - 1, us: Number(us) }
}

const main = () => {
  const runs = Number(flag("runs", "8"))
  const extra = flag("flags", "").split(" ").filter((f) => f !== "")
  const busy = Number(flag("busy", "0"))
  const rows = new Map(kinds.map((k) => [k, [] as Array<{ mc: number; us: number }>]))
  const spinners = Array.from({ length: busy }, () =>
    spawn(process.execPath, ["-e", "const end = Date.now() + 600_000; while (Date.now() < end) {}"], { stdio: "ignore" })
  )
  try {
    for (let run = 0; run < runs; run++) {
      for (const kind of run % 2 === 0 ? kinds : [...kinds].reverse()) rows.get(kind)!.push(runProbe(kind, extra))
    }
  } finally {
    for (const s of spinners) s.kill()
  }
  console.log(
    `${size} B messages, ${batch} per read, 3 × ${messages} per probe${busy > 0 ? `, ${busy} other processes spinning` : ""}${
      extra.length > 0 ? `, V8 flags ${extra.join(" ")}` : ""
    }\n`
  )
  console.log("| process | mark-compacts per probe | CPU µs per message per probe | median µs |")
  console.log("|---|---|---|---|")
  for (const [kind, xs] of rows) {
    const label = kind === "plain" ? "Node alone" : "with effect and @effect/platform-node loaded"
    console.log(
      `| ${label} | ${xs.map((x) => x.mc).join(", ")} | ${xs.map((x) => x.us.toFixed(2)).join(", ")} | ${
        median(xs.map((x) => x.us)).toFixed(2)
      } |`
    )
  }
}

const at = process.argv.indexOf("--probe")
if (at >= 0) await probe(process.argv[at + 1] === "effect")
else main()
