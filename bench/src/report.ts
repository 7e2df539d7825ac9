/**
 * Results: the per-run record, medians, the Markdown report and the SVG chart (drawn here, no
 * external service).
 */
import type { Scenario } from "./scenarios.js"

/** One measured run of one server in one scenario. `null` means "not applicable" or "not measured". */
export interface RunResult {
  readonly server: string
  readonly scenario: string
  readonly run: number
  readonly ok: boolean
  readonly error: string | null
  /** Length of the measured interval, seconds. */
  readonly seconds: number | null
  /** Units of work in the interval: messages, handshakes, or connections (idle). */
  readonly units: number | null
  readonly perSec: number | null
  readonly p50Ms: number | null
  readonly p99Ms: number | null
  /** Server CPU (utime + stime) per unit, microseconds. */
  readonly cpuUsPerUnit: number | null
  /** Server CPU over the interval, in cores (1 = one core busy all the time). */
  readonly serverCores: number | null
  readonly serverRssMiB: number | null
  /** Load scenarios: server RSS at the end of the measured interval minus its RSS at rest before the load began. */
  readonly rssGrowthMiB: number | null
  /** The whole generator process (all threads), in cores. */
  readonly genCores: number | null
  /** The busiest generator thread, in cores. */
  readonly genThreadMax: number | null
  /** Everything else on the machine during the interval, in cores (other processes, the kernel's softirq work). */
  readonly otherCores: number | null
  /** Who ran out of CPU: "gen", "server", "gen+server", "cpu" (both cores full), or "". */
  readonly bound: string
  readonly conns: number | null
  readonly rssBeforeMiB: number | null
  readonly rssAfterMiB: number | null
  readonly rssPerConnKiB: number | null
  readonly connectPerSec: number | null
  readonly errors: number
  readonly lenMismatch: number
  readonly verifyOk: number
  readonly verifyFail: number
  readonly unexpectedClose: number
  readonly dropped: number
  readonly clientClosedFirst: number
}

export type Summary = Omit<RunResult, "run" | "error"> & {
  readonly runs: number
  readonly failures: ReadonlyArray<string>
  /** Slowest and fastest run's units per second (the table shows the median). */
  readonly perSecRange: readonly [number, number] | null
}

export interface Machine {
  readonly nproc: number
  readonly cpuModel: string
  readonly node: string
  readonly kernel: string
  readonly versions: Readonly<Record<string, string>>
}

/** `--pin`: each server on CPU `server`; the bench, its generator threads and client processes on CPU `rest`. */
export interface Pin {
  readonly server: string
  readonly rest: string
}

export interface Report {
  readonly startedAt: string
  readonly finishedAt: string
  readonly command: string
  readonly mode: "quick" | "full"
  readonly warmupSec: number
  readonly measureSec: number
  readonly runs: number
  readonly generatorThreads: number
  /** `--pin`: the CPU the servers ran on, and the one the generator (and the rest) ran on. */
  readonly pinned?: Pin
  /** Cores busy with other processes during one second before the first run. */
  readonly backgroundCores: number
  /** /proc/loadavg (1, 5, 15 min) before the first run. */
  readonly loadavg: string
  readonly machine: Machine
  readonly servers: ReadonlyArray<{ readonly name: string; readonly description: string }>
  readonly skipped: ReadonlyArray<{ readonly name: string; readonly reason: string }>
  readonly scenarios: ReadonlyArray<Scenario>
  readonly results: ReadonlyArray<RunResult>
  readonly summary: ReadonlyArray<Summary>
  /** Scenarios run again later (`--replace-in`) and written over this report's runs of them. */
  readonly reruns?: ReadonlyArray<{ readonly scenarios: ReadonlyArray<string>; readonly finishedAt: string; readonly command: string; readonly why?: string }>
}

const median = (xs: ReadonlyArray<number>): number | null => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

const numericKeys = [
  "seconds",
  "units",
  "perSec",
  "p50Ms",
  "p99Ms",
  "cpuUsPerUnit",
  "serverCores",
  "serverRssMiB",
  "rssGrowthMiB",
  "genCores",
  "genThreadMax",
  "otherCores",
  "conns",
  "rssBeforeMiB",
  "rssAfterMiB",
  "rssPerConnKiB",
  "connectPerSec"
] as const
const countKeys = ["errors", "lenMismatch", "verifyOk", "verifyFail", "unexpectedClose", "dropped", "clientClosedFirst"] as const

/** Median of every metric over the successful runs (each metric on its own), counters summed. */
export const summarize = (results: ReadonlyArray<RunResult>): Array<Summary> => {
  const groups = new Map<string, Array<RunResult>>()
  for (const r of results) {
    const k = `${r.scenario}\u0000${r.server}`
    const g = groups.get(k)
    if (g === undefined) groups.set(k, [r])
    else g.push(r)
  }
  const out: Array<Summary> = []
  for (const group of groups.values()) {
    const ok = group.filter((r) => r.ok)
    const s: Record<string, unknown> = {
      server: group[0].server,
      scenario: group[0].scenario,
      ok: ok.length > 0,
      runs: ok.length,
      failures: group.filter((r) => !r.ok).map((r) => r.error ?? "failed")
    }
    for (const k of numericKeys) {
      s[k] = median(ok.map((r) => r[k]).filter((v): v is number => v !== null && Number.isFinite(v)))
    }
    for (const k of countKeys) s[k] = group.reduce((a, r) => a + r[k], 0)
    const rates = ok.map((r) => r.perSec).filter((v): v is number => v !== null && Number.isFinite(v))
    s.perSecRange = rates.length > 1 ? [Math.min(...rates), Math.max(...rates)] : null
    const bounds = ok.map((r) => r.bound)
    s.bound = bounds.sort((a, b) => bounds.filter((x) => x === b).length - bounds.filter((x) => x === a).length)[0] ?? ""
    out.push(s as unknown as Summary)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

export const fmt = (v: number | null | undefined, digits = 0): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–"
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(2)}M`
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(1)}k`
  return v.toFixed(digits)
}
const fmtSig = (v: number | null | undefined): string => {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–"
  if (v >= 100) return v.toFixed(0)
  if (v >= 10) return v.toFixed(1)
  if (v >= 1) return v.toFixed(2)
  return v.toFixed(3)
}
const pct = (v: number | null | undefined): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : `${Math.round(v * 100)}%`
const ratio = (v: number | null | undefined, base: number | null | undefined): string =>
  v === null || v === undefined || base === null || base === undefined || !(base > 0) || !Number.isFinite(v)
    ? "–"
    : `${(v / base).toFixed(2)}×`

type Row = ReadonlyArray<string>
const table = (head: Row, rows: ReadonlyArray<Row>): string =>
  [
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ].join("\n")

const BASE_A = "ws"
const BASE_B = "effect-platform"

/** Slowest-to-fastest run ratio from which a row notes the spread of its runs. */
const SPREAD_NOTE = 1.5

const notes = (s: Summary): string => {
  const n: Array<string> = []
  if (!s.ok) n.push(`failed: ${s.failures[0] ?? ""}`)
  else if (s.failures.length > 0) n.push(`${s.failures.length} run(s) failed`)
  if (s.errors > 0) n.push(`${s.errors} errors`)
  if (s.lenMismatch > 0) n.push(`${s.lenMismatch} length mismatches`)
  if (s.verifyFail > 0) n.push(`${s.verifyFail} bad replies`)
  if (s.unexpectedClose > 0) n.push(`${s.unexpectedClose} closed by server`)
  if (s.dropped > 0) n.push(`${s.dropped} not sent (backlog full)`)
  if (s.clientClosedFirst > 0) n.push(`${s.clientClosedFirst} never closed TCP`)
  // runs that disagree this much are in different regimes (e.g. back-to-back major GCs), not noise
  const range = s.perSecRange
  if (range !== null && range[0] > 0 && range[1] / range[0] >= SPREAD_NOTE) {
    n.push(`runs spread ${fmt(range[0])}–${fmt(range[1])}/s`)
  }
  return n.join("; ")
}

/** The per-scenario tables (shared by the console and RESULTS.md). */
export const scenarioTables = (report: Pick<Report, "scenarios" | "summary">): Array<{ scenario: Scenario; markdown: string }> => {
  const out: Array<{ scenario: Scenario; markdown: string }> = []
  for (const sc of report.scenarios) {
    const rows = report.summary.filter((s) => s.scenario === sc.name)
    if (rows.length === 0) continue
    const a = rows.find((s) => s.server === BASE_A)
    const b = rows.find((s) => s.server === BASE_B)
    let md: string
    if (sc.mode === "idle") {
      md = table(
        ["server", "conns", "RSS before MiB", "RSS after MiB", "KiB / conn", `× ${BASE_A}`, `× ${BASE_B}`, "connects/s", "CPU µs/connect", "notes"],
        rows.map((s) => [
          s.server,
          fmt(s.conns),
          fmtSig(s.rssBeforeMiB),
          fmtSig(s.rssAfterMiB),
          fmtSig(s.rssPerConnKiB),
          ratio(s.rssPerConnKiB, a?.rssPerConnKiB),
          ratio(s.rssPerConnKiB, b?.rssPerConnKiB),
          fmt(s.connectPerSec),
          fmtSig(s.cpuUsPerUnit),
          notes(s)
        ])
      )
    } else {
      const unit = sc.unit === "handshake" ? "handshake" : "msg"
      md = table(
        [
          "server",
          sc.mode === "rate" ? `achieved ${unit}/s` : `${unit}/s`,
          `× ${BASE_A}`,
          `× ${BASE_B}`,
          "p50 ms",
          "p99 ms",
          `CPU µs/${unit}`,
          `× ${BASE_A}`,
          `× ${BASE_B}`,
          "server CPU",
          "RSS MiB",
          "RSS growth MiB",
          "gen CPU",
          "others",
          "bound",
          "notes"
        ],
        rows.map((s) => [
          s.server,
          fmt(s.perSec),
          ratio(s.perSec, a?.perSec),
          ratio(s.perSec, b?.perSec),
          fmtSig(s.p50Ms),
          fmtSig(s.p99Ms),
          fmtSig(s.cpuUsPerUnit),
          ratio(s.cpuUsPerUnit, a?.cpuUsPerUnit),
          ratio(s.cpuUsPerUnit, b?.cpuUsPerUnit),
          pct(s.serverCores),
          fmtSig(s.serverRssMiB),
          fmtSig(s.rssGrowthMiB),
          pct(s.genThreadMax),
          pct(s.otherCores),
          s.bound || "–",
          notes(s)
        ])
      )
    }
    if (sc.minRuns !== undefined) md += "\n\n" + spreadTable(rows)
    out.push({ scenario: sc, markdown: md })
  }
  return out
}

/** The server whose median the slowest runs of a many-run scenario are held against. */
const SPREAD_BASE = "ws-bufferutil"

/** For a scenario run many times: each server's slowest and fastest run against its own median and the reference's. */
const spreadTable = (rows: ReadonlyArray<Summary>): string => {
  const ref = rows.find((s) => s.server === SPREAD_BASE)?.perSec
  return table(
    ["server", "runs", "slowest msg/s", "median", "fastest", "slowest ÷ median", `slowest ÷ ${SPREAD_BASE} median`],
    rows.map((s) => [
      s.server,
      String(s.runs),
      fmt(s.perSecRange?.[0] ?? s.perSec),
      fmt(s.perSec),
      fmt(s.perSecRange?.[1] ?? s.perSec),
      ratio(s.perSecRange?.[0] ?? s.perSec, s.perSec),
      ratio(s.perSecRange?.[0] ?? s.perSec, ref)
    ])
  )
}

export const renderMarkdown = (report: Report): string => {
  const m = report.machine
  const lines: Array<string> = []
  lines.push("# Benchmark results", "")
  lines.push(
    `Generated by \`${report.command}\` on ${report.finishedAt.slice(0, 16).replace("T", " ")} UTC ` +
      `(${report.mode} mode: ${report.warmupSec} s warm-up + ${report.measureSec} s measured per run, ` +
      `${report.runs === 1 ? "1 run" : `median of ${report.runs} runs, servers alternating`}, ` +
      `${report.generatorThreads} generator thread${report.generatorThreads === 1 ? "" : "s"}` +
      (report.pinned === undefined
        ? ", server and generator unpinned"
        : `, each server pinned to CPU ${report.pinned.server} and the generator to CPU ${report.pinned.rest}`) +
      "). " +
      "This file is rewritten by every run; raw numbers are in `bench/results/<timestamp>.json`.",
    ""
  )
  for (const r of report.reruns ?? []) {
    lines.push(
      `Scenario${r.scenarios.length === 1 ? "" : "s"} ${r.scenarios.map((n) => `\`${n}\``).join(", ")} run again with ` +
        `\`${r.command}\` on ${r.finishedAt.slice(0, 16).replace("T", " ")} UTC, in place of this run's` +
        (r.why === undefined ? "." : `: ${r.why}.`),
      ""
    )
  }
  lines.push(
    `Machine: ${m.nproc} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}; ` +
      Object.entries(m.versions)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ") +
      ".",
    ""
  )
  lines.push(
    `Background load before the first run: ${report.backgroundCores.toFixed(2)} of ${m.nproc} cores busy with other processes ` +
      `(load average ${report.loadavg}).` +
      (report.backgroundCores > 0.25
        ? " **Other processes were using the CPU: treat the throughput and latency figures as rough; CPU per message holds up better.**"
        : ""),
    ""
  )
  const others = report.results.map((r) => r.otherCores).filter((v): v is number => v !== null && Number.isFinite(v))
  const othersMedian = median(others)
  if (othersMedian !== null) {
    lines.push(
      `During the measured intervals other processes used a median of ${othersMedian.toFixed(2)} cores ` +
        `(max ${Math.max(...others).toFixed(2)}; the \`others\` column).` +
        (othersMedian > 0.25 && report.backgroundCores <= 0.25
          ? " **The machine was shared during the runs: treat throughput and latency as rough; CPU per message holds up better.**"
          : ""),
      ""
    )
  }
  lines.push(
    "Server and load generator share the same cores. `gen CPU` is the busiest generator thread (100% = one core), " +
      "`others` is what every other process on the machine used meanwhile (in cores). `bound` says who ran out of CPU: " +
      "`gen` (the generator thread used ≥ 90% of a core: the server's throughput is a lower bound), `server` (the server used " +
      "≥ 90% of a core), `cpu` (server, generator and others together used ≥ 90% of all cores). " +
      "Throughput ratios: higher is better; CPU ratios: lower is better. " +
      "CPU µs/msg is the server's utime + stime (all its threads) over the measured interval divided by the messages echoed. " +
      "See README.md for how each number is obtained.",
    ""
  )
  lines.push("![throughput and CPU per message, per server and scenario](chart.svg)", "")
  lines.push("## Servers", "")
  for (const s of report.servers) lines.push(`- \`${s.name}\`: ${s.description}`)
  for (const s of report.skipped) lines.push(`- \`${s.name}\`: skipped (${s.reason})`)
  lines.push("")
  for (const { markdown, scenario } of scenarioTables(report)) {
    lines.push(`## ${scenario.name}: ${scenario.title}`, "", scenario.description, "", markdown, "")
  }
  return lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// SVG chart: one small horizontal bar chart per (scenario, metric).
// ---------------------------------------------------------------------------------------------

const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

interface Panel {
  readonly title: string
  readonly values: ReadonlyArray<{ readonly server: string; readonly value: number | null }>
  readonly format: (v: number) => string
}

export const renderSvg = (report: Report): string => {
  const serverNames = [...new Set(report.summary.map((s) => s.server))]
  const color = (name: string) => PALETTE[serverNames.indexOf(name) % PALETTE.length]
  const panels: Array<Panel> = []
  const pick = (sc: string, f: (s: Summary) => number | null) =>
    serverNames.map((server) => {
      const s = report.summary.find((x) => x.scenario === sc && x.server === server)
      return { server, value: s === undefined || !s.ok ? null : f(s) }
    })
  for (const sc of report.scenarios) {
    if (!report.summary.some((s) => s.scenario === sc.name)) continue
    if (sc.mode === "window" || sc.mode === "handshake") {
      const unit = sc.unit === "handshake" ? "handshakes/s" : "msg/s"
      panels.push({ title: `${sc.name}: ${unit} (higher is better)`, values: pick(sc.name, (s) => s.perSec), format: (v) => fmt(v) })
    }
    if (sc.mode === "rate") {
      panels.push({ title: `${sc.name}: p99 ms at ${fmt(sc.rate)} msg/s (lower)`, values: pick(sc.name, (s) => s.p99Ms), format: fmtSig })
    }
    if (sc.mode !== "idle") {
      const unit = sc.unit === "handshake" ? "handshake" : "msg"
      panels.push({
        title: `${sc.name}: server CPU µs/${unit} (lower)`,
        values: pick(sc.name, (s) => s.cpuUsPerUnit),
        format: fmtSig
      })
    } else {
      panels.push({ title: `${sc.name}: server KiB/conn (lower)`, values: pick(sc.name, (s) => s.rssPerConnKiB), format: fmtSig })
    }
  }
  const cols = 4
  const labelW = 130
  const barW = 150
  const valueW = 50
  const panelW = labelW + barW + valueW + 20
  const rowH = 17
  const panelH = 34 + serverNames.length * rowH + 12
  const top = 58
  const rowsOfPanels = Math.ceil(panels.length / cols)
  const width = cols * panelW + 20
  const height = top + rowsOfPanels * panelH + 24
  const out: Array<string> = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`
  )
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`)
  const m = report.machine
  out.push(
    `<text x="10" y="20" font-size="15" font-weight="bold">WebSocket echo: throughput and server CPU per unit of work</text>`,
    `<text x="10" y="38" fill="#555">${esc(
      `${m.nproc} × ${m.cpuModel}, Node ${m.node}, ${report.mode} mode (${report.warmupSec} s + ${report.measureSec} s, ${report.runs} run${report.runs === 1 ? "" : "s"}), ${report.finishedAt.slice(0, 10)}; server and generator share the cores; background load ${report.backgroundCores.toFixed(1)} cores`
    )}</text>`
  )
  panels.forEach((p, i) => {
    const x0 = 10 + (i % cols) * panelW
    const y0 = top + Math.floor(i / cols) * panelH
    const max = Math.max(0, ...p.values.map((v) => (v.value !== null && Number.isFinite(v.value) ? v.value : 0)))
    out.push(`<g transform="translate(${x0},${y0})">`)
    out.push(`<rect x="0" y="0" width="${panelW - 10}" height="${panelH - 8}" fill="#f7f7f7" stroke="#ddd"/>`)
    out.push(`<text x="8" y="18" font-weight="bold">${esc(p.title)}</text>`)
    p.values.forEach((v, j) => {
      const y = 30 + j * rowH
      out.push(`<text x="${labelW}" y="${y + 11}" text-anchor="end">${esc(v.server)}</text>`)
      if (v.value === null || !Number.isFinite(v.value)) {
        out.push(`<text x="${labelW + 6}" y="${y + 11}" fill="#999">n/a</text>`)
        return
      }
      const w = max > 0 ? Math.max(1, (v.value / max) * barW) : 1
      out.push(`<rect x="${labelW + 6}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 5}" fill="${color(v.server)}"/>`)
      out.push(`<text x="${(labelW + 10 + w).toFixed(1)}" y="${y + 11}">${esc(p.format(v.value))}</text>`)
    })
    out.push(`</g>`)
  })
  out.push(`</svg>`)
  return out.join("\n") + "\n"
}
