/**
 * Linux /proc readers: CPU time (utime + stime, all threads of a process) and resident memory.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"

let clockTicks: number | undefined
/** USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100 on practically every Linux). */
export const clkTck = (): number => {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

const statFields = (path: string): Array<string> | undefined => {
  try {
    const text = readFileSync(path, "latin1")
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    return text.slice(text.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}

/** CPU seconds (user + system) used so far by a process (every thread), or by one thread with `tid`. */
export const cpuSeconds = (pid: number, tid?: number): number => {
  const f = statFields(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`)
  if (f === undefined) return Number.NaN
  // After the name: state(3) ppid(4) ... utime(14) stime(15), so index = field - 3.
  return (Number(f[11]) + Number(f[12])) / clkTck()
}

export const parentPid = (pid: number): number => {
  const f = statFields(`/proc/${pid}/stat`)
  return f === undefined ? -1 : Number(f[1])
}

/** Resident set size in bytes (VmRSS), NaN when the process is gone. */
export const rssBytes = (pid: number): number => {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "latin1"))
    return m === null ? Number.NaN : Number(m[1]) * 1024
  } catch {
    return Number.NaN
  }
}

/** `pid` and all of its descendants (a server started through a wrapper such as the tsx CLI). */
export const processTree = (pid: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    const ppid = parentPid(Number(name))
    if (ppid <= 0) continue
    const list = children.get(ppid)
    if (list === undefined) children.set(ppid, [Number(name)])
    else list.push(Number(name))
  }
  const out: Array<number> = []
  const queue = [pid]
  while (queue.length > 0) {
    const p = queue.shift()!
    out.push(p)
    for (const c of children.get(p) ?? []) queue.push(c)
  }
  return out
}

export const treeCpuSeconds = (pids: ReadonlyArray<number>): number => {
  let sum = 0
  for (const p of pids) {
    const s = cpuSeconds(p)
    if (!Number.isNaN(s)) sum += s
  }
  return sum
}

export const treeRssBytes = (pids: ReadonlyArray<number>): number => {
  let sum = 0
  for (const p of pids) {
    const r = rssBytes(p)
    if (!Number.isNaN(r)) sum += r
  }
  return sum
}

/** CPU seconds spent busy by the whole machine so far (every core; /proc/stat minus idle and iowait). */
export const machineBusySeconds = (): number => {
  try {
    const line = readFileSync("/proc/stat", "latin1").split("\n", 1)[0]
    const f = line.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / clkTck()
  } catch {
    return Number.NaN
  }
}
