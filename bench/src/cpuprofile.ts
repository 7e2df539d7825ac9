/**
 * Where a server's CPU goes, from a V8 `.cpuprofile` (`node --cpu-prof`): the self time of every
 * sample that falls in the given windows, grouped by who owns the code (Node's own modules, its
 * native bindings, Effect, our packages, `ws`, the garbage collector, ...).
 *
 * The windows are CLOCK_MONOTONIC microseconds (`process.hrtime.bigint() / 1000n` in any process on
 * the machine), the clock V8 stamps its samples with, so a window measured by the driving process
 * selects exactly the samples its load caused, without the server's start-up and warm-up.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"

interface CallFrame {
  readonly functionName: string
  readonly url: string
}
interface Profile {
  readonly nodes: ReadonlyArray<{ readonly id: number; readonly callFrame: CallFrame }>
  readonly startTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** A monotonic timestamp in microseconds, comparable with V8's sample times. */
export const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n)

/** The group a sampled function belongs to; `undefined` for idle time. */
export const owner = (frame: CallFrame): string | undefined => {
  const { functionName: name, url } = frame
  if (name === "(idle)") return undefined
  if (name === "(garbage collector)") return "GC"
  if (name === "(program)") return "V8 (unattributed)"
  if (url === "") return "native (syscalls, bindings)"
  if (url.startsWith("node:")) return "Node's modules"
  if (url.includes("/packages/protocol/")) return "our protocol package"
  if (url.includes("/packages/server/")) return "our server package"
  if (url.includes("/@effect/platform")) return "@effect/platform*"
  if (url.includes("/node_modules/effect/") || url.includes("/.pnpm/effect@")) return "effect"
  if (url.includes("/node_modules/ws/") || url.includes("/.pnpm/ws@")) return "ws"
  if (url.includes("/bench/servers/")) return "the bench server script"
  return "other"
}

/**
 * µs of CPU per unit by group: the samples inside `windows` ([from, to] in monotonic µs), their
 * time divided by `units`.
 */
export const attribute = (
  profile: Profile,
  windows: ReadonlyArray<readonly [number, number]>,
  units: number
): Map<string, number> => {
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]))
  const totals = new Map<string, number>()
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i]!
    t += delta
    if (!windows.some(([from, to]) => t >= from && t <= to)) continue
    const group = owner(frames.get(profile.samples[i]!)!)
    if (group === undefined) continue
    // a sample stands for the time since the previous one
    totals.set(group, (totals.get(group) ?? 0) + delta)
  }
  for (const [group, micros] of totals) totals.set(group, micros / units)
  return totals
}

/** The one `.cpuprofile` a process wrote into `dir` (`--cpu-prof-dir`). */
export const readProfile = (dir: string): Profile => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))
  if (files.length !== 1) throw new Error(`expected one .cpuprofile in ${dir}, found ${files.length}`)
  return JSON.parse(readFileSync(join(dir, files[0]!), "utf8")) as Profile
}
