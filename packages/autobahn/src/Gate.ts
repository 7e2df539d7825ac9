/**
 * The report gate: reads an Autobahn `index.json` (written by kosoku, or by the
 * original `wstest -m fuzzingclient`), judges every case, counts verdicts by
 * section, and renders a markdown summary.
 *
 * A report passes when every expected case is present and every judged case has
 * `behavior` OK and `behaviorClose` OK. INFORMATIONAL (for either) is accepted
 * only on the cases the suite itself marks informational (see
 * {@link Cases.Suite.informational}); NON-STRICT, UNIMPLEMENTED, FAILED, ERROR,
 * UNCLEAN, WRONG CODE and anything else fail it.
 *
 * @since 0.1.0
 */
import { FileSystem, Path } from "@effect/platform"
import { Data, Effect, Either, ParseResult, Schema } from "effect"
import * as Cases from "./Cases.js"

/**
 * What a report covers: the server over ws:// or wss:// (kosoku as the fuzzing client), or
 * the client (kosoku as the fuzzing server).
 *
 * @since 0.1.0
 * @category models
 */
export type Transport = "ws" | "wss" | "client"

/**
 * The seed cases the summary always names, each on its transport.
 *
 * @since 0.1.0
 * @category constants
 */
export const SEED_CASES: ReadonlyArray<{ readonly transport: Transport; readonly id: string }> = [
  { transport: "ws", id: "7.1.1" },
  { transport: "ws", id: "7.5.1" },
  { transport: "ws", id: "5.20" },
  { transport: "ws", id: "2.9" },
  { transport: "wss", id: "7.1.1" },
  { transport: "client", id: "7.1.1" },
  { transport: "client", id: "5.20" },
  { transport: "client", id: "12.1.1" }
]

/**
 * One case's line in `index.json`. kosoku and wstest both write every field;
 * only the two verdicts are required here.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CaseEntry = Schema.Struct({
  behavior: Schema.String,
  behaviorClose: Schema.String,
  duration: Schema.optional(Schema.NullOr(Schema.Number)),
  remoteCloseCode: Schema.optional(Schema.NullOr(Schema.Number)),
  reportfile: Schema.optional(Schema.NullOr(Schema.String))
})

/**
 * @since 0.1.0
 * @category models
 */
export interface CaseEntry extends Schema.Schema.Type<typeof CaseEntry> {}

/**
 * `index.json`: `{ agent: { caseId: CaseEntry } }`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ReportIndex = Schema.Record({
  key: Schema.String,
  value: Schema.Record({ key: Schema.String, value: CaseEntry })
})

/**
 * @since 0.1.0
 * @category models
 */
export type ReportIndex = Schema.Schema.Type<typeof ReportIndex>

/**
 * A report directory that could not be read as an Autobahn report.
 *
 * @since 0.1.0
 * @category errors
 */
export class ReportError extends Data.TaggedError("ReportError")<{
  readonly reason: "NotFound" | "Unreadable" | "BadFormat"
  readonly path: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.path}: ${this.detail}`
  }
}

/**
 * Decodes parsed JSON as a report index.
 *
 * @since 0.1.0
 * @category parsing
 */
export const decodeReportIndex = (json: unknown): Either.Either<ReportIndex, string> =>
  Either.mapLeft(
    Schema.decodeUnknownEither(ReportIndex)(json),
    (error) => ParseResult.TreeFormatter.formatErrorSync(error)
  )

/**
 * Why a case fails the gate; empty when it passes.
 *
 * @since 0.1.0
 * @category judging
 */
export const judgeCase = (
  id: string,
  entry: CaseEntry,
  informational: ReadonlySet<string> = Cases.suite.informational
): ReadonlyArray<string> => {
  const reasons: Array<string> = []
  const open = informational.has(id)
  if (entry.behavior !== "OK" && !(open && entry.behavior === "INFORMATIONAL")) {
    reasons.push(
      entry.behavior === "INFORMATIONAL"
        ? "behavior INFORMATIONAL on a case the suite does not mark informational"
        : `behavior ${entry.behavior}`
    )
  }
  if (entry.behaviorClose !== "OK" && !(open && entry.behaviorClose === "INFORMATIONAL")) {
    const code = entry.remoteCloseCode === null || entry.remoteCloseCode === undefined
      ? "no close code from the peer"
      : `peer sent ${entry.remoteCloseCode}`
    reasons.push(
      entry.behaviorClose === "INFORMATIONAL"
        ? "close INFORMATIONAL on a case the suite does not mark informational"
        : `close ${entry.behaviorClose} (${code})`
    )
  }
  return reasons
}

/**
 * Verdict columns of the summary table.
 *
 * @since 0.1.0
 * @category models
 */
export const BEHAVIOR_COLUMNS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "other"] as const

/**
 * Close-behaviour columns of the summary table.
 *
 * @since 0.1.0
 * @category models
 */
export const CLOSE_COLUMNS = ["OK", "INFORMATIONAL", "UNCLEAN", "WRONG CODE", "other"] as const

/**
 * @since 0.1.0
 * @category models
 */
export type BehaviorColumn = (typeof BEHAVIOR_COLUMNS)[number]

/**
 * @since 0.1.0
 * @category models
 */
export type CloseColumn = (typeof CLOSE_COLUMNS)[number]

/**
 * Counts for one top-level section (1..13) of one agent's report.
 *
 * @since 0.1.0
 * @category models
 */
export interface SectionRow {
  readonly section: number
  readonly title: string
  /** Cases of this section the selection expects. */
  readonly expected: number
  /** Cases of this section judged (present and not excluded). */
  readonly judged: number
  readonly behavior: Readonly<Record<BehaviorColumn, number>>
  readonly close: Readonly<Record<CloseColumn, number>>
  readonly missing: number
  /** Judged cases that fail the gate. */
  readonly failing: number
}

/**
 * A judged case that fails the gate.
 *
 * @since 0.1.0
 * @category models
 */
export interface CaseProblem {
  readonly id: string
  readonly entry: CaseEntry
  readonly reasons: ReadonlyArray<string>
}

/**
 * A seed case as found in the report (`entry` undefined when missing).
 *
 * @since 0.1.0
 * @category models
 */
export interface SeedResult {
  readonly id: string
  readonly transport: Transport | undefined
  readonly entry: CaseEntry | undefined
  readonly passed: boolean
}

/**
 * The verdict on one agent (testee) of a report.
 *
 * @since 0.1.0
 * @category models
 */
export interface AgentVerdict {
  readonly agent: string
  readonly judged: number
  readonly sections: ReadonlyArray<SectionRow>
  readonly problems: ReadonlyArray<CaseProblem>
  readonly missing: ReadonlyArray<string>
  /** Cases present in the report but outside the selection (excluded, or not included): listed, not judged. */
  readonly excludedPresent: ReadonlyArray<string>
  /** Cases not in the suite's case list: judged by the same rules, and listed. */
  readonly unknown: ReadonlyArray<string>
  readonly slowest: ReadonlyArray<{ readonly id: string; readonly entry: CaseEntry }>
  readonly seeds: ReadonlyArray<SeedResult>
  readonly passed: boolean
}

/**
 * The gate's verdict on one report directory.
 *
 * @since 0.1.0
 * @category models
 */
export interface GateReport {
  readonly label: string
  readonly transport: Transport | undefined
  readonly suite: string
  /** How many cases the suite holds. */
  readonly suiteSize: number
  /** The cases accepted as INFORMATIONAL. */
  readonly informational: ReadonlyArray<string>
  readonly selection: Cases.Selection
  readonly expected: ReadonlyArray<string>
  readonly notes: ReadonlyArray<string>
  readonly agents: ReadonlyArray<AgentVerdict>
  /** Report-level problems (no index.json, bad format, no agent). */
  readonly errors: ReadonlyArray<string>
  readonly passed: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface GateOptions {
  /** Shown as the summary's title, e.g. the report directory. */
  readonly label: string
  /** Defaults to {@link Cases.wholeSuite}. */
  readonly selection?: Cases.Selection | undefined
  /** Picks the seed cases to name; inferred from the directory name by {@link gateDirectory}. */
  readonly transport?: Transport | undefined
  /** Defaults to {@link Cases.suite}. */
  readonly suite?: Cases.Suite | undefined
  /** Extra lines printed under the title (the runner's notes on how the run went). */
  readonly notes?: ReadonlyArray<string> | undefined
}

const SLOWEST = 10
const SECTIONS = Array.from({ length: 13 }, (_, i) => i + 1)

const behaviorColumn = (behavior: string): BehaviorColumn =>
  (BEHAVIOR_COLUMNS as ReadonlyArray<string>).includes(behavior) ? behavior as BehaviorColumn : "other"

const closeColumn = (close: string): CloseColumn =>
  (CLOSE_COLUMNS as ReadonlyArray<string>).includes(close) ? close as CloseColumn : "other"

const zeros = <K extends string>(keys: ReadonlyArray<K>): Record<K, number> =>
  Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>

const seedsFor = (transport: Transport | undefined): ReadonlyArray<{ readonly id: string; readonly transport: Transport | undefined }> => {
  if (transport !== undefined) return SEED_CASES.filter((s) => s.transport === transport)
  const ids = [...new Set(SEED_CASES.map((s) => s.id))]
  return ids.map((id) => ({ id, transport: undefined }))
}

const evaluateAgent = (
  agent: string,
  cases: { readonly [id: string]: CaseEntry },
  expected: ReadonlyArray<string>,
  selection: Cases.Selection,
  suite: Cases.Suite,
  transport: Transport | undefined
): AgentVerdict => {
  const known = new Set(suite.cases)
  const present = Object.keys(cases).sort(Cases.compareCaseIds)
  const excludedPresent = present.filter((id) => !Cases.isSelected(selection, id))
  const judgedIds = present.filter((id) => Cases.isSelected(selection, id))
  const missing = expected.filter((id) => cases[id] === undefined)
  const unknown = judgedIds.filter((id) => !known.has(id))
  const problems: Array<CaseProblem> = []
  const rows = new Map<number, {
    expected: number
    judged: number
    behavior: Record<BehaviorColumn, number>
    close: Record<CloseColumn, number>
    missing: number
    failing: number
  }>()
  const row = (section: number) => {
    let r = rows.get(section)
    if (r === undefined) {
      r = { expected: 0, judged: 0, behavior: zeros(BEHAVIOR_COLUMNS), close: zeros(CLOSE_COLUMNS), missing: 0, failing: 0 }
      rows.set(section, r)
    }
    return r
  }
  for (const id of expected) row(Cases.sectionOf(id)).expected++
  for (const id of missing) row(Cases.sectionOf(id)).missing++
  for (const id of judgedIds) {
    const entry = cases[id]!
    const r = row(Cases.sectionOf(id))
    r.judged++
    r.behavior[behaviorColumn(entry.behavior)]++
    r.close[closeColumn(entry.behaviorClose)]++
    const reasons = judgeCase(id, entry, suite.informational)
    if (reasons.length > 0) {
      r.failing++
      problems.push({ id, entry, reasons })
    }
  }
  const extraSections = [...rows.keys()].filter((s) => !SECTIONS.includes(s)).sort((a, b) => a - b)
  const sections: Array<SectionRow> = [...SECTIONS, ...extraSections].map((section) => {
    const r = row(section)
    return { section, title: Cases.SECTION_TITLES[section] ?? "(unknown)", ...r }
  })
  const slowest = judgedIds
    .map((id) => ({ id, entry: cases[id]! }))
    .sort((a, b) => (b.entry.duration ?? 0) - (a.entry.duration ?? 0) || Cases.compareCaseIds(a.id, b.id))
    .slice(0, SLOWEST)
  // On an ad-hoc run, seed cases outside the -i/-x selection are not expected, so not named either.
  const seeds = seedsFor(transport).filter(({ id }) => Cases.isSelected(selection, id)).map(({ id, transport }): SeedResult => {
    const entry = cases[id]
    return { id, transport, entry, passed: entry !== undefined && judgeCase(id, entry, suite.informational).length === 0 }
  })
  return {
    agent,
    judged: judgedIds.length,
    sections,
    problems,
    missing,
    excludedPresent,
    unknown,
    slowest,
    seeds,
    passed: problems.length === 0 && missing.length === 0
  }
}

/**
 * Judges a decoded report index. Every agent in the index is judged on its own
 * and must pass.
 *
 * @since 0.1.0
 * @category judging
 */
export const evaluate = (index: ReportIndex, options: GateOptions): GateReport => {
  const head = reportHead(options)
  const suite = options.suite ?? Cases.suite
  const agents = Object.keys(index).sort().map((agent) =>
    evaluateAgent(agent, index[agent]!, head.expected, head.selection, suite, options.transport)
  )
  const errors = [
    ...(agents.length === 0 ? ["the report names no agent (no case ran)"] : []),
    ...(head.expected.length === 0 ? ["the selection names no case of the suite"] : [])
  ]
  return { ...head, agents, errors, passed: errors.length === 0 && agents.every((a) => a.passed) }
}

/** What every gate report says about its run, whatever the verdict. */
const reportHead = (options: GateOptions) => {
  const suite = options.suite ?? Cases.suite
  const selection = options.selection ?? Cases.wholeSuite
  return {
    label: options.label,
    transport: options.transport,
    suite: suite.name,
    suiteSize: suite.cases.length,
    informational: [...suite.informational].sort(Cases.compareCaseIds),
    selection,
    expected: Cases.expectedCases(selection, suite.cases),
    notes: options.notes ?? []
  }
}

/**
 * A report that could not be read at all: it fails the gate with that reason.
 *
 * @since 0.1.0
 * @category judging
 */
export const unreadable = (error: ReportError, options: GateOptions): GateReport => ({
  ...reportHead(options),
  agents: [],
  errors: [error.message],
  passed: false
})

// -----------------------------------------------------------------------------
// rendering
// -----------------------------------------------------------------------------

const LIST_LIMIT = 60

const listIds = (ids: ReadonlyArray<string>): string =>
  ids.length <= LIST_LIMIT
    ? ids.join(", ")
    : `${ids.slice(0, LIST_LIMIT).join(", ")}, ... and ${ids.length - LIST_LIMIT} more`

const cell = (n: number): string => (n === 0 ? "·" : String(n))

const ms = (entry: CaseEntry | undefined): string =>
  entry?.duration === null || entry?.duration === undefined ? "?" : `${entry.duration} ms`

const closeCode = (entry: CaseEntry | undefined): string =>
  entry?.remoteCloseCode === null || entry?.remoteCloseCode === undefined ? "—" : String(entry.remoteCloseCode)

const renderAgent = (report: GateReport, verdict: AgentVerdict): Array<string> => {
  const lines: Array<string> = []
  const verdictWord = verdict.passed ? "PASS" : "FAIL"
  lines.push(
    `## Agent \`${verdict.agent}\`: ${verdictWord}`,
    "",
    `${verdict.judged} cases judged; ${report.expected.length - verdict.missing.length} of ${report.expected.length} expected cases present; ` +
      `${verdict.problems.length} failing; ${verdict.missing.length} missing.`,
    ""
  )
  const bh = BEHAVIOR_COLUMNS.map((c) => (c === "INFORMATIONAL" ? "INFO" : c === "UNIMPLEMENTED" ? "UNIMPL" : c))
  const ch = CLOSE_COLUMNS.map((c) => `close ${c === "INFORMATIONAL" ? "INFO" : c}`)
  lines.push(
    `| Section | Expected | Judged | ${bh.join(" | ")} | ${ch.join(" | ")} | Missing | Failing |`,
    `|---|${"---:|".repeat(2 + bh.length + ch.length + 2)}`
  )
  const total = {
    expected: 0,
    judged: 0,
    behavior: zeros(BEHAVIOR_COLUMNS),
    close: zeros(CLOSE_COLUMNS),
    missing: 0,
    failing: 0
  }
  for (const s of verdict.sections) {
    total.expected += s.expected
    total.judged += s.judged
    total.missing += s.missing
    total.failing += s.failing
    for (const c of BEHAVIOR_COLUMNS) total.behavior[c] += s.behavior[c]
    for (const c of CLOSE_COLUMNS) total.close[c] += s.close[c]
    lines.push(
      `| ${s.section} ${s.title} | ${cell(s.expected)} | ${cell(s.judged)} | ${
        BEHAVIOR_COLUMNS.map((c) => cell(s.behavior[c])).join(" | ")
      } | ${CLOSE_COLUMNS.map((c) => cell(s.close[c])).join(" | ")} | ${cell(s.missing)} | ${cell(s.failing)} |`
    )
  }
  lines.push(
    `| **total** | ${total.expected} | ${total.judged} | ${BEHAVIOR_COLUMNS.map((c) => total.behavior[c]).join(" | ")} | ${
      CLOSE_COLUMNS.map((c) => total.close[c]).join(" | ")
    } | ${total.missing} | ${total.failing} |`,
    ""
  )
  if (verdict.seeds.length === 0) lines.push("Seed cases: none selected by this run's -i/-x.")
  else {
    lines.push("Seed cases:", "", "| Case | Transport | Behavior | Close | Peer close code | Duration |", "|---|---|---|---|---:|---:|")
  }
  for (const seed of verdict.seeds) {
    lines.push(
      `| ${seed.id} | ${seed.transport ?? "?"} | ${seed.entry?.behavior ?? "MISSING"} | ${seed.entry?.behaviorClose ?? "MISSING"} | ${
        closeCode(seed.entry)
      } | ${ms(seed.entry)} |`
    )
  }
  lines.push("", `Slowest ${verdict.slowest.length} cases:`, "", "| Case | Duration | Behavior | Close |", "|---|---:|---|---|")
  for (const { entry, id } of verdict.slowest) {
    lines.push(`| ${id} | ${ms(entry)} | ${entry.behavior} | ${entry.behaviorClose} |`)
  }
  lines.push("")
  if (verdict.problems.length > 0) {
    lines.push(`Failing cases (${verdict.problems.length}):`, "")
    for (const p of verdict.problems.slice(0, LIST_LIMIT)) {
      lines.push(`- ${p.id}: ${p.reasons.join("; ")}${p.entry.reportfile ? ` — ${p.entry.reportfile}` : ""}`)
    }
    if (verdict.problems.length > LIST_LIMIT) lines.push(`- ... and ${verdict.problems.length - LIST_LIMIT} more`)
    lines.push("")
  }
  if (verdict.missing.length > 0) lines.push(`Missing cases (${verdict.missing.length}): ${listIds(verdict.missing)}`, "")
  if (verdict.excludedPresent.length > 0) {
    lines.push(
      `Present but not selected, not judged (${verdict.excludedPresent.length}): ${listIds(verdict.excludedPresent)}`,
      ""
    )
  }
  if (verdict.unknown.length > 0) {
    lines.push(
      `Not in the ${report.suite} case list, judged by the same rules (${verdict.unknown.length}): ${
        listIds(verdict.unknown)
      }`,
      ""
    )
  }
  return lines
}

/**
 * The summary of one report as markdown (printed as is, and written to
 * `SUMMARY.md`).
 *
 * @since 0.1.0
 * @category rendering
 */
export const renderMarkdown = (report: GateReport): string => {
  const lines: Array<string> = [
    `# Autobahn gate: ${report.label}: ${report.passed ? "PASS" : "FAIL"}`,
    "",
    `Suite: ${report.suite}; ${report.expected.length} cases expected${
      report.transport === undefined ? "" : ` on ${report.transport}`
    }.`,
    "",
    Cases.describeExclusions(report.selection) + ".",
    "",
    `Accepted: behavior OK and close OK; INFORMATIONAL only on ${
      report.informational.join(", ")
    } (informational by the suite's own definition).`,
    ""
  ]
  for (const note of report.notes) lines.push(`- ${note}`)
  if (report.notes.length > 0) lines.push("")
  for (const error of report.errors) lines.push(`**Error:** ${error}`, "")
  for (const verdict of report.agents) lines.push(...renderAgent(report, verdict))
  return lines.join("\n").replace(/\n+$/, "") + "\n"
}

/**
 * One closing block over several reports: the exclusions line
 * (`Exclusions: none`, plus any `-i`/`-x` of an ad-hoc run), each report's
 * verdict, the seed cases across all of them, any run problems, the verdict
 * (PASS only when every report passes and there is no run problem), and last
 * the plain line `autobahn: N passed, M failed` (with `, K skipped` appended
 * only when `-i`/`-x` left cases out).
 *
 * @since 0.1.0
 * @category rendering
 */
export const renderOverall = (
  reports: ReadonlyArray<GateReport>,
  runProblems: ReadonlyArray<string> = []
): string => {
  const lines: Array<string> = ["# Autobahn gate: overall", ""]
  const selections = [...new Set(reports.map((r) => Cases.describeExclusions(r.selection)))]
  for (const s of selections) lines.push(s + ".", "")
  for (const r of reports) {
    const counts = r.agents.map((a) =>
      `${a.agent}: ${a.judged - a.problems.length}/${r.expected.length} passing, ${a.problems.length} failing, ${a.missing.length} missing`
    )
    lines.push(`- ${r.label}: **${r.passed ? "PASS" : "FAIL"}** (${[...r.errors, ...counts].join("; ")})`)
  }
  lines.push("", "Seed cases:", "")
  if (reports.every((r) => r.agents.every((a) => a.seeds.length === 0))) lines.push("- none selected by this run's -i/-x")
  for (const r of reports) {
    for (const a of r.agents) {
      for (const s of a.seeds) {
        lines.push(
          `- ${s.id} on ${s.transport ?? r.label}: ${s.entry?.behavior ?? "MISSING"} / close ${s.entry?.behaviorClose ?? "MISSING"}, ` +
            `peer close code ${closeCode(s.entry)}, ${ms(s.entry)}`
        )
      }
    }
  }
  if (runProblems.length > 0) {
    lines.push("", "Run problems:", "")
    for (const p of runProblems) lines.push(`- ${p}`)
  }
  const passed = reports.length > 0 && reports.every((r) => r.passed) && runProblems.length === 0
  const t = tally(reports)
  lines.push("", `Verdict: ${passed ? "PASS" : "FAIL"}`, tallyLine(t))
  return lines.join("\n") + "\n"
}

/**
 * Case counts over several reports, per agent: passed (judged and passing),
 * failed (failing or missing; every expected case of an unreadable report) and
 * skipped (suite cases outside the selection of an ad-hoc `-i`/`-x` run; 0 on a
 * full run).
 *
 * @since 0.1.0
 * @category rendering
 */
export const tally = (
  reports: ReadonlyArray<GateReport>
): { readonly passed: number; readonly failed: number; readonly skipped: number } => {
  let passed = 0
  let failed = 0
  let skipped = 0
  for (const r of reports) {
    if (r.agents.length === 0) {
      failed += r.expected.length
      skipped += r.suiteSize - r.expected.length
      continue
    }
    for (const a of r.agents) {
      passed += a.judged - a.problems.length
      failed += a.problems.length + a.missing.length
      skipped += r.suiteSize - r.expected.length
    }
  }
  return { passed, failed, skipped }
}

/**
 * The last line of every run, for people and CI logs alike:
 * `autobahn: N passed, M failed`, with `, K skipped` only when K > 0.
 *
 * @since 0.1.0
 * @category rendering
 */
export const tallyLine = (t: { readonly passed: number; readonly failed: number; readonly skipped: number }): string =>
  `autobahn: ${t.passed} passed, ${t.failed} failed${t.skipped > 0 ? `, ${t.skipped} skipped` : ""}`

// -----------------------------------------------------------------------------
// report directories
// -----------------------------------------------------------------------------

/**
 * Reads and decodes `<dir>/index.json`.
 *
 * @since 0.1.0
 * @category reading
 */
export const readReportIndex = (
  dir: string
): Effect.Effect<ReportIndex, ReportError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const file = path.join(dir, "index.json")
    const exists = yield* fs.exists(file).pipe(Effect.orElseSucceed(() => false))
    if (!exists) {
      return yield* new ReportError({ reason: "NotFound", path: file, detail: "no index.json (did the run produce a report?)" })
    }
    const text = yield* fs.readFileString(file).pipe(
      Effect.mapError((e) => new ReportError({ reason: "Unreadable", path: file, detail: e.message }))
    )
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) => new ReportError({ reason: "BadFormat", path: file, detail: `not JSON: ${String(e)}` })
    })
    return yield* Either.match(decodeReportIndex(json), {
      onLeft: (detail) =>
        Effect.fail(new ReportError({ reason: "BadFormat", path: file, detail: `not an Autobahn index: ${detail}` })),
      onRight: Effect.succeed
    })
  })

/**
 * The transport a report directory holds, from its name (`.../ws`, `.../wss`, `.../client`).
 *
 * @since 0.1.0
 * @category reading
 */
export const transportOfDirectory = (dir: string): Transport | undefined => {
  const base = dir.replace(/[\\/]+$/, "").split(/[\\/]/).pop()
  return base === "ws" || base === "wss" || base === "client" ? base : undefined
}

/**
 * Gates one report directory and, unless `writeSummary` is false, writes the
 * markdown summary to `<dir>/SUMMARY.md`. A missing or malformed index is a
 * failing report, not an error.
 *
 * @since 0.1.0
 * @category reading
 */
export const gateDirectory = (
  dir: string,
  options: Partial<GateOptions> & { readonly writeSummary?: boolean | undefined } = {}
): Effect.Effect<GateReport, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const gateOptions: GateOptions = {
      label: options.label ?? dir,
      selection: options.selection,
      transport: options.transport ?? transportOfDirectory(dir),
      suite: options.suite,
      notes: options.notes
    }
    const report = yield* readReportIndex(dir).pipe(
      Effect.match({
        onFailure: (error) => unreadable(error, gateOptions),
        onSuccess: (index) => evaluate(index, gateOptions)
      })
    )
    if (options.writeSummary !== false) {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      yield* fs.makeDirectory(dir, { recursive: true }).pipe(
        Effect.zipRight(fs.writeFileString(path.join(dir, "SUMMARY.md"), renderMarkdown(report))),
        Effect.catchAll((e) => Effect.logWarning(`could not write ${path.join(dir, "SUMMARY.md")}: ${e.message}`))
      )
    }
    return report
  })
