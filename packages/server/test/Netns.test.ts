/**
 * The echo workload across a real network fault: the server and the client run in two
 * network namespaces joined by a veth pair (10.231.x.1/30 and 10.231.x.2/30, inside those
 * namespaces only), first over a degraded link (tc netem delay/loss/reordering when the
 * kernel has it; otherwise tbf queueing and iptables random loss, whichever exist), then
 * with 100% loss both ways (blackhole qdiscs) so that every client is half-open: the
 * server's keepalive must find out within interval + timeout and free the connections.
 *
 * Needs root, `ip` and `tc` (Debian: iproute2; iptables optional) and a kernel that allows
 * network namespaces. Without them it logs "SKIPPED: <reason>", writes the reason to
 * test-output/netns-skipped.txt and passes. The namespaces are deleted afterwards, also
 * when the test fails.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcessWithoutNullStreams } from "node:child_process"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const soak = fileURLToPath(new URL("../soak/", import.meta.url))
const skipFile = join(root, "test-output", "netns-skipped.txt")

const id = process.pid % 10_000
const SERVER_NS = `wsnt-s-${id}`
const CLIENT_NS = `wsnt-c-${id}`
const SERVER_DEV = `wsnt${id}s`
const CLIENT_DEV = `wsnt${id}c`
const subnet = `10.231.${process.pid % 250}`
const SERVER_IP = `${subnet}.1`
const CLIENT_IP = `${subnet}.2`

const KEEPALIVE_INTERVAL = 2_000
const KEEPALIVE_TIMEOUT = 500
/** Scheduling slack on a loaded 2-core machine (well under one interval). */
const SLACK = 1_000
const CONNECTIONS = 20

/** Runs a command; returns its error output on failure, undefined on success. */
const attempt = (cmd: string, args: ReadonlyArray<string>): string | undefined => {
  try {
    execFileSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"], timeout: 10_000 })
    return undefined
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string; code?: string }
    return err.code === "ENOENT" ? `${cmd}: not found` : (err.stderr?.toString().trim() || err.message)
  }
}
const inNs = (ns: string, cmd: string, ...args: Array<string>) => attempt("ip", ["netns", "exec", ns, cmd, ...args])
const must = (what: string, error: string | undefined) => {
  if (error !== undefined) throw new Error(`${what}: ${error}`)
}

/** Why this machine cannot run the test, or undefined when it can. */
const prerequisites = (): string | undefined => {
  if (process.platform !== "linux") return `not Linux (${process.platform})`
  if (process.getuid?.() !== 0) return "not root: network namespaces need CAP_NET_ADMIN"
  if (attempt("ip", ["-V"]) !== undefined) return "no `ip` binary (apt-get install -y iproute2)"
  if (attempt("tc", ["-V"]) !== undefined) return "no `tc` binary (apt-get install -y iproute2)"
  const probe = `wsnt-probe-${id}`
  const failed = attempt("ip", ["netns", "add", probe])
  if (failed !== undefined) return `\`ip netns add\` failed: ${failed}`
  attempt("ip", ["netns", "del", probe])
  return undefined
}

const teardown = () => {
  attempt("ip", ["netns", "del", SERVER_NS])
  attempt("ip", ["netns", "del", CLIENT_NS])
}

/** Two namespaces joined by a veth pair, deleted with the scope (and at process exit). */
const namespaces = Effect.acquireRelease(
  Effect.sync(() => {
    teardown() // leftovers of a killed run with the same pid
    process.once("exit", teardown)
    must("ip netns add", attempt("ip", ["netns", "add", SERVER_NS]))
    must("ip netns add", attempt("ip", ["netns", "add", CLIENT_NS]))
    must("veth", attempt("ip", ["link", "add", SERVER_DEV, "type", "veth", "peer", "name", CLIENT_DEV]))
    must("veth", attempt("ip", ["link", "set", SERVER_DEV, "netns", SERVER_NS]))
    must("veth", attempt("ip", ["link", "set", CLIENT_DEV, "netns", CLIENT_NS]))
    for (const [ns, dev, ip] of [[SERVER_NS, SERVER_DEV, SERVER_IP], [CLIENT_NS, CLIENT_DEV, CLIENT_IP]] as const) {
      must("address", attempt("ip", ["-n", ns, "addr", "add", `${ip}/30`, "dev", dev]))
      must("link up", attempt("ip", ["-n", ns, "link", "set", dev, "up"]))
      must("lo up", attempt("ip", ["-n", ns, "link", "set", "lo", "up"]))
    }
  }),
  () =>
    Effect.sync(() => {
      teardown()
      process.removeListener("exit", teardown)
    })
)

/** Degrades both directions with what this kernel offers; returns what was applied. */
const degrade = (): Array<string> => {
  const applied: Array<string> = []
  for (const [ns, dev] of [[SERVER_NS, SERVER_DEV], [CLIENT_NS, CLIENT_DEV]] as const) {
    const netem = inNs(ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "20ms", "5ms", "loss", "1%", "reorder", "5%", "50%")
    if (netem === undefined) {
      applied.push(`${dev}: netem delay 20ms±5ms, loss 1%, reorder 5%`)
      continue
    }
    const missing = `netem unavailable (${netem})`
    if (inNs(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "2mbit", "burst", "8kb", "latency", "100ms") === undefined) {
      applied.push(`${dev}: tbf 2 mbit/s (queueing delay, tail drop); ${missing}`)
    }
    if (inNs(ns, "iptables", "-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.02", "-j", "DROP") === undefined) {
      applied.push(`${dev}: iptables random loss 2%`)
    }
  }
  return applied
}

/** 100% loss both ways: every packet on both veth ends is dropped. */
const blackhole = () => {
  for (const [ns, dev] of [[SERVER_NS, SERVER_DEV], [CLIENT_NS, CLIENT_DEV]] as const) {
    must("blackhole", inNs(ns, "tc", "qdisc", "replace", "dev", dev, "root", "blackhole"))
  }
}

interface Helper {
  readonly process: ChildProcessWithoutNullStreams
  readonly send: (line: string) => void
  /** Waits for the first line (after `from`) matching `pred`. */
  readonly next: <A extends { event: string }>(pred: (o: A) => boolean, timeoutMs: number) => Effect.Effect<A, Error>
  readonly lines: Array<{ event: string }>
}

/** Runs a helper script inside a namespace, scoped. */
const helper = (ns: string, script: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Helper => {
      const child = spawn(
        "ip",
        ["netns", "exec", ns, process.execPath, "--conditions=source", "--import", "tsx", join(soak, script), ...args],
        { cwd: root, stdio: ["pipe", "pipe", "pipe"] }
      )
      const lines: Array<{ event: string }> = []
      let waiters: Array<() => void> = []
      createInterface({ input: child.stdout }).on("line", (line) => {
        try {
          lines.push(JSON.parse(line))
        } catch {
          lines.push({ event: "text", text: line } as { event: string })
        }
        const w = waiters
        waiters = []
        for (const f of w) f()
      })
      child.stderr.on("data", (d: Buffer) => process.stderr.write(`[${script}] ${d}`))
      const next = <A extends { event: string }>(pred: (o: A) => boolean, timeoutMs: number) =>
        Effect.async<A, Error>((resume) => {
          let seen = 0
          const check = () => {
            for (; seen < lines.length; seen++) {
              if (pred(lines[seen] as A)) return resume(Effect.succeed(lines[seen] as A))
            }
            waiters.push(check)
          }
          check()
        }).pipe(
          Effect.timeoutFail({
            duration: timeoutMs,
            onTimeout: () => new Error(`${script}: no expected line within ${timeoutMs} ms; got ${JSON.stringify(lines.slice(-5))}`)
          })
        )
      return { process: child, send: (line) => void child.stdin.write(line + "\n"), next, lines }
    }),
    (h) =>
      Effect.sync(() => {
        h.process.stdin.end()
        h.process.kill("SIGKILL")
      })
  )

describe("network faults between two namespaces (veth, tc)", () => {
  it.scopedLive(
    "echoes survive a degraded link; a half-open peer is freed by keepalive within interval + timeout",
    () =>
      Effect.gen(function*() {
        const skip = prerequisites()
        if (skip !== undefined) {
          console.log(`SKIPPED: ${skip}`)
          mkdirSync(join(root, "test-output"), { recursive: true })
          writeFileSync(skipFile, `SKIPPED: ${skip}\n`)
          return
        }
        rmSync(skipFile, { force: true })

        yield* namespaces
        const applied = degrade()
        console.log(`netns: ${SERVER_NS} (${SERVER_IP}) <-> ${CLIENT_NS} (${CLIENT_IP}); ${applied.join("; ") || "no impairment available"}`)

        const server = yield* helper(SERVER_NS, "netns-server.ts", [
          "--host", SERVER_IP,
          "--keepaliveInterval", String(KEEPALIVE_INTERVAL),
          "--keepaliveTimeout", String(KEEPALIVE_TIMEOUT)
        ])
        const { port } = yield* server.next<{ event: string; port: number }>((o) => o.event === "ready", 20_000)
        const client = yield* helper(CLIENT_NS, "netns-client.ts", [
          "--url", `ws://${SERVER_IP}:${port}`,
          "--connections", String(CONNECTIONS),
          // open the connections spread over one keepalive interval, so their timers are out of phase
          "--spacing", String(Math.floor(KEEPALIVE_INTERVAL / CONNECTIONS)),
          "--every", "50"
        ])
        const open = yield* client.next<{ event: string; connections: number }>((o) => o.event === "open", 30_000)
        assert.strictEqual(open.connections, CONNECTIONS, JSON.stringify({ client: client.lines.slice(0, 5), server: server.lines.slice(0, 5) }))

        // 1. the degraded link: every message comes back once, in order, intact
        yield* Effect.sleep(3_000)
        client.send("checkpoint")
        const cp = yield* client.next<
          { event: string; sent: number; received: number; duplicates: number; outOfOrder: number; corrupt: number; complete: boolean }
        >((o) => o.event === "checkpoint", 40_000)
        assert.isAbove(cp.sent, CONNECTIONS * 10)
        assert.isTrue(cp.complete, JSON.stringify(cp))
        assert.strictEqual(cp.received, cp.sent)
        assert.deepStrictEqual([cp.duplicates, cp.outOfOrder, cp.corrupt], [0, 0, 0])
        // keepalive kept every connection: none closed so far
        assert.isFalse(server.lines.some((o) => o.event === "closed"))

        // 2. traffic flows again, then 100% loss: every client is half-open
        yield* Effect.sleep(1_500)
        const cut = Date.now()
        blackhole()
        const closes: Array<{ at: number; code: number; wasClean: boolean }> = []
        for (let i = 0; i < CONNECTIONS; i++) {
          const seen = new Set(closes)
          closes.push(
            yield* server.next<{ event: string; at: number; code: number; wasClean: boolean }>(
              (o) => o.event === "closed" && !seen.has(o as never),
              KEEPALIVE_INTERVAL * 2 + KEEPALIVE_TIMEOUT + 10_000
            )
          )
        }
        const latencies = closes.map((c) => c.at - cut).sort((a, b) => a - b)
        console.log(`netns: keepalive freed ${closes.length} half-open connections ${latencies[0]}..${latencies.at(-1)} ms after the cut`)
        assert.isTrue(closes.every((c) => !c.wasClean && c.code === 1006), JSON.stringify(closes))
        // the last message before the cut was at most 50 ms + one RTT earlier: the first
        // ping goes out `interval` after it, the drop `timeout` after that
        assert.isAtMost(latencies.at(-1)!, KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + SLACK, `latencies ${latencies.join(", ")}`)
        server.send("stats")
        const stats = yield* server.next<{ event: string; connections: number }>((o) => o.event === "stats", 5_000)
        assert.strictEqual(stats.connections, 0)
      }),
    120_000
  )

  it("the namespaces are gone afterwards", () => {
    const list = (() => {
      try {
        return execFileSync("ip", ["netns", "list"], { stdio: ["ignore", "pipe", "ignore"] }).toString()
      } catch {
        return ""
      }
    })()
    assert.notInclude(list, SERVER_NS)
    assert.notInclude(list, CLIENT_NS)
  })
})
