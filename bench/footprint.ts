/**
 * What a WebSocket server adds to a process at rest: RSS of an echo server that listens with no
 * connection, against an Effect program with @effect/platform-node loaded and no server
 * (`servers/baseline.mjs`). Each round starts every process in turn (one at a time, so they do not
 * compete), lets it settle, reads its RSS (/proc, the process and its descendants) and stops it;
 * medians over the rounds. Memory per connection is `pnpm bench`'s idle scenarios.
 *
 *   pnpm bench:footprint [--servers ours-fast,ours-stream,ws] [--rounds 5] [--settle 3000]
 *
 * Servers are those of `pnpm bench` (`bench/src/servers.ts`), run from their built `dist/`
 * (`pnpm build` first). Linux only (/proc).
 */
import { setTimeout as sleep } from "node:timers/promises"
import { processTree, treeRssBytes } from "./src/proc.js"
import { benchDir, servers } from "./src/servers.js"
import { flag, median } from "./src/cli.js"
import { startListening } from "./src/spawn.js"
import { join } from "node:path"

const BASELINE = "effect + platform-node"

/** The registry's servers that are Effect programs (the baseline is theirs; `ws` and Bun are listed for scale). */
const isEffectProgram = (name: string): boolean =>
  name.startsWith("ours") || name.startsWith("base-") || name === "effect-platform"

const main = async (): Promise<void> => {
  const names = flag("servers", "ours-fast,ours-stream,ws").split(",")
  const rounds = Number(flag("rounds", "5"))
  const settle = Number(flag("settle", "3000"))
  const commands = new Map<string, { readonly command: ReadonlyArray<string>; readonly env?: Readonly<Record<string, string>> }>([
    [BASELINE, { command: [process.execPath, join(benchDir, "servers", "baseline.mjs"), "--port", "{port}"] }]
  ])
  for (const name of names) {
    const spec = servers.find((s) => s.name === name)
    if (spec === undefined) throw new Error(`no server named ${name} (see bench/src/servers.ts)`)
    const why = spec.unavailable?.()
    if (why !== undefined) throw new Error(`${name}: ${why}`)
    commands.set(name, spec)
  }
  const samples = new Map<string, Array<number>>([...commands.keys()].map((k) => [k, []]))
  let port = 19_800 + Math.floor(Math.random() * 500)
  for (let r = 0; r < rounds; r++) {
    for (const [name, { command, env }] of commands) {
      const p = port++
      const child = await startListening(name, command.map((a) => a.replaceAll("{port}", String(p))), {
        ...env,
        BENCH_PORT: String(p)
      })
      await sleep(settle)
      samples.get(name)!.push(treeRssBytes(processTree(child.pid!)) / 2 ** 20)
      child.kill()
      await new Promise((resolve) => child.once("exit", resolve))
    }
  }
  const base = samples.get(BASELINE)!
  console.log(`RSS at rest (MiB), median of ${rounds} rounds, ${settle} ms after \`listening\`; "adds" (Effect servers): minus ${BASELINE}, round by round`)
  for (const [name, xs] of samples) {
    const adds = !isEffectProgram(name) ? "" : `   adds ${median(xs.map((x, i) => x - base[i]!)).toFixed(1).padStart(6)}`
    console.log(`  ${name.padEnd(24)} ${median(xs).toFixed(1).padStart(6)}${adds}   rounds: ${xs.map((x) => x.toFixed(1)).join(" ")}`)
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e instanceof Error ? e.message : e)
    process.exit(1)
  }
)
