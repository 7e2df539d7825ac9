import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Cases from "../src/Cases.js"
import * as Gate from "../src/Gate.js"
import { AGENT, FIXTURES, fixtureIndex, passingCases, passingIndex, readJson } from "./reports.js"

const gate = (index: Gate.ReportIndex, options: Partial<Gate.GateOptions> = {}) =>
  Gate.evaluate(index, { label: "test", ...options })

const only = (report: Gate.GateReport): Gate.AgentVerdict => {
  assert.strictEqual(report.agents.length, 1)
  return report.agents[0]!
}

const row = (verdict: Gate.AgentVerdict, section: number): Gate.SectionRow =>
  verdict.sections.find((s) => s.section === section)!

const withEntries = (entries: Record<string, Gate.CaseEntry>): Gate.ReportIndex => ({
  [AGENT]: { ...passingCases(), ...entries }
})

const entry = (behavior: string, behaviorClose: string, remoteCloseCode: number | null = 1000): Gate.CaseEntry => ({
  behavior,
  behaviorClose,
  duration: 1,
  remoteCloseCode,
  reportfile: "x.json"
})

describe("index.json format (Autobahn's, as kosoku and wstest write it)", () => {
  it("decodes a kosoku-style index", () => {
    const decoded = Gate.decodeReportIndex(JSON.parse(JSON.stringify(passingIndex())))
    assert.isTrue(Either.isRight(decoded))
  })

  it("rejects JSON that is not an index", () => {
    assert.isTrue(Either.isLeft(Gate.decodeReportIndex({ agent: { "1.1.1": { behavior: 1 } } })))
    assert.isTrue(Either.isLeft(Gate.decodeReportIndex([1, 2, 3])))
  })

  it("accepts a wstest-style report for what its config ran, and counts the rest as missing", () => {
    const decoded = Gate.decodeReportIndex(readJson("wstest", "index.json"))
    assert.isTrue(Either.isRight(decoded))
    const index = Either.getOrThrow(decoded)
    const partial = gate(index, { selection: { include: ["2.*", "7.*"], exclude: [] } })
    assert.isTrue(partial.passed)
    assert.strictEqual(only(partial).agent, "effect-websocket")
    assert.strictEqual(only(partial).judged, 48)
    assert.strictEqual(row(only(partial), 7).behavior.INFORMATIONAL, 3)

    const full = gate(index)
    assert.isFalse(full.passed)
    assert.strictEqual(only(full).missing.length, 517 - 48)
    assert.deepStrictEqual(only(full).problems, [])
  })
})

describe("verdicts", () => {
  it("passes a report where every expected case is OK (INFORMATIONAL only where the suite says so)", () => {
    const report = gate(passingIndex())
    assert.isTrue(report.passed)
    const verdict = only(report)
    assert.strictEqual(verdict.judged, 517)
    const total = verdict.sections.reduce((n, s) => n + s.judged, 0)
    assert.strictEqual(total, 517)
    assert.strictEqual(row(verdict, 7).behavior.INFORMATIONAL, 3)
    assert.strictEqual(row(verdict, 7).close.INFORMATIONAL, 3)
    assert.strictEqual(row(verdict, 6).behavior.OK, 145)
    assert.strictEqual(row(verdict, 12).behavior.OK, 90)
    assert.strictEqual(row(verdict, 13).close.OK, 126)
  })

  it("fails NON-STRICT (real 6.4.x entries from a ws run)", () => {
    const verdict = only(gate(fixtureIndex("non-strict")))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.problems.map((p) => p.id), ["6.4.1", "6.4.2", "6.4.3", "6.4.4"])
    assert.include(verdict.problems[0]!.reasons[0], "NON-STRICT")
    assert.strictEqual(row(verdict, 6).behavior["NON-STRICT"], 4)
    assert.strictEqual(row(verdict, 6).failing, 4)
  })

  it("fails an UNCLEAN close", () => {
    const verdict = only(gate(fixtureIndex("unclean")))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.problems.map((p) => p.id), ["7.1.1", "7.1.2"])
    assert.strictEqual(row(verdict, 7).close.UNCLEAN, 2)
    assert.include(verdict.problems[0]!.reasons.join(), "close UNCLEAN (no close code from the peer)")
  })

  it("fails WRONG CODE, FAILED BY CLIENT, FAILED, UNIMPLEMENTED and kosoku's ERROR", () => {
    const verdict = only(gate(withEntries({
      "7.9.1": entry("OK", "WRONG CODE", 1000),
      "2.1": entry("OK", "FAILED BY CLIENT"),
      "1.1.1": entry("FAILED", "OK"),
      "4.1.1": entry("UNIMPLEMENTED", "OK"),
      "5.1": entry("ERROR", "FAILED", null)
    })))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.problems.map((p) => p.id), ["1.1.1", "2.1", "4.1.1", "5.1", "7.9.1"])
    assert.strictEqual(row(verdict, 7).close["WRONG CODE"], 1)
    assert.strictEqual(row(verdict, 2).close.other, 1)
    assert.strictEqual(row(verdict, 5).behavior.other, 1)
    assert.strictEqual(row(verdict, 4).behavior.UNIMPLEMENTED, 1)
    assert.include(verdict.problems.find((p) => p.id === "7.9.1")!.reasons.join(), "peer sent 1000")
  })

  it("accepts INFORMATIONAL only on 7.1.6, 7.13.1 and 7.13.2", () => {
    assert.deepStrictEqual([...Cases.suite.informational].sort(), ["7.1.6", "7.13.1", "7.13.2"])
    assert.deepStrictEqual(Gate.judgeCase("7.13.2", entry("INFORMATIONAL", "INFORMATIONAL")), [])
    assert.deepStrictEqual(Gate.judgeCase("7.1.6", entry("OK", "OK")), [])
    const elsewhere = Gate.judgeCase("7.1.1", entry("INFORMATIONAL", "INFORMATIONAL"))
    assert.strictEqual(elsewhere.length, 2)
    assert.include(elsewhere[0], "does not mark informational")
    // A non-strict verdict stays a failure on an informational case too.
    assert.strictEqual(Gate.judgeCase("7.1.6", entry("NON-STRICT", "INFORMATIONAL")).length, 1)
    assert.isFalse(gate(withEntries({ "7.5.1": entry("OK", "INFORMATIONAL") })).passed)
  })

  it("judges every agent of a multi-agent index", () => {
    const index = { a: passingCases(), b: { ...passingCases(), "3.1": entry("NON-STRICT", "OK") } }
    const report = gate(index)
    assert.isFalse(report.passed)
    assert.deepStrictEqual(report.agents.map((a) => a.passed), [true, false])
  })

  it("fails an index with no agent", () => {
    const report = gate({})
    assert.isFalse(report.passed)
    assert.include(report.errors.join(), "no agent")
  })
})

describe("expected cases: the whole suite, no exclusion list", () => {
  it("fails when an expected case is missing", () => {
    const verdict = only(gate(fixtureIndex("missing-case")))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.missing, ["5.20"])
    assert.strictEqual(row(verdict, 5).missing, 1)
    assert.deepStrictEqual(verdict.problems, [])
  })

  it("expects 12.* and 13.*: a report without the compression cases fails with all 216 missing", () => {
    const withoutCompression = Object.fromEntries(
      Object.entries(passingCases()).filter(([id]) => Cases.sectionOf(id) < 12)
    )
    const verdict = only(gate({ [AGENT]: withoutCompression }))
    assert.isFalse(verdict.passed)
    assert.strictEqual(verdict.missing.length, 90 + 126)
    assert.strictEqual(row(verdict, 12).missing, 90)
    assert.strictEqual(row(verdict, 13).missing, 126)
    assert.include(Gate.renderMarkdown(gate({ [AGENT]: withoutCompression })), "Missing cases (216): 12.1.1, 12.1.2")
  })

  it("judges the compression cases: a server that declines permessage-deflate fails 12.* and 13.* (real kosoku entries)", () => {
    const verdict = only(gate(fixtureIndex("no-deflate")))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.problems.map((p) => p.id), ["12.1.1", "12.5.18", "13.1.1", "13.7.18"])
    assert.strictEqual(row(verdict, 12).behavior.UNIMPLEMENTED, 2)
    assert.strictEqual(row(verdict, 13).behavior.UNIMPLEMENTED, 2)
    assert.strictEqual(row(verdict, 13).failing, 2)
    assert.include(verdict.problems[0]!.reasons.join(), "behavior UNIMPLEMENTED")
  })

  it("fails a compression case that ran out of its own time limit (real kosoku entry)", () => {
    const verdict = only(gate(fixtureIndex("case-timeout")))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.problems.map((p) => p.id), ["12.2.1"])
    assert.include(verdict.problems[0]!.reasons.join(), "behavior FAILED")
    assert.strictEqual(row(verdict, 12).behavior.FAILED, 1)
  })

  it("judges only what -x leaves in on an ad-hoc run, and lists the rest when present", () => {
    const selection: Cases.Selection = { include: [], exclude: ["12.*", "13.*"] }
    const report = gate(withEntries({ "12.1.1": entry("UNIMPLEMENTED", "OK") }), { selection })
    assert.isTrue(report.passed)
    assert.strictEqual(report.expected.length, 517 - 216)
    assert.strictEqual(only(report).excludedPresent.length, 216)
    assert.include(Gate.renderMarkdown(report), "Present but not selected, not judged (216): 12.1.1, 12.1.2")
  })

  it("judges only the selected cases when the run was limited with --include", () => {
    const index = fixtureIndex("non-strict")
    const selection: Cases.Selection = { include: ["7.*"], exclude: [] }
    const verdict = only(gate(index, { selection }))
    assert.isTrue(verdict.passed)
    assert.strictEqual(verdict.judged, 37)
    assert.include(verdict.excludedPresent, "6.4.1")
    // Seed cases outside the selection are not named (5.20 and 2.9 are not in 7.*).
    const ws = only(gate(index, { selection, transport: "ws" }))
    assert.deepStrictEqual(ws.seeds.map((s) => s.id), ["7.1.1", "7.5.1"])
    const none = gate(passingIndex(), { selection: { include: ["1.*"], exclude: [] }, transport: "ws" })
    assert.deepStrictEqual(only(none).seeds, [])
    assert.include(Gate.renderMarkdown(none), "Seed cases: none selected by this run's -i/-x.")
    assert.include(Gate.renderOverall([none]), "- none selected by this run's -i/-x")
  })

  it("fails a selection that names no case", () => {
    const report = gate(passingIndex(), { selection: { include: ["99.*"], exclude: [] } })
    assert.isFalse(report.passed)
    assert.include(report.errors.join(), "names no case")
  })

  it("prints \"Exclusions: none\" on every summary, with what -i/-x did on an ad-hoc run", () => {
    const whole = Gate.renderMarkdown(gate(passingIndex()))
    assert.include(whole, "\nExclusions: none.\n")
    assert.include(whole, "517 cases expected")
    assert.include(Gate.renderOverall([gate(passingIndex())]), "\nExclusions: none.\n")
    const adHoc = Gate.renderMarkdown(gate(passingIndex(), { selection: { include: ["6.*"], exclude: ["6.4.*"] } }))
    assert.include(adHoc, "Exclusions: none; left out for this run (-x): 6.4.*; run limited to (-i): 6.*.")
  })

  it("names cases the suite does not know and still judges them", () => {
    const verdict = only(gate(withEntries({ "99.1": entry("FAILED", "OK") })))
    assert.deepStrictEqual(verdict.unknown, ["99.1"])
    assert.deepStrictEqual(verdict.problems.map((p) => p.id), ["99.1"])
  })
})

describe("summary", () => {
  it("names the seed cases of its transport", () => {
    const ws = only(gate(passingIndex(), { transport: "ws" }))
    assert.deepStrictEqual(ws.seeds.map((s) => s.id), ["7.1.1", "7.5.1", "5.20", "2.9"])
    assert.isTrue(ws.seeds.every((s) => s.passed))
    const wss = only(gate(passingIndex(), { transport: "wss" }))
    assert.deepStrictEqual(wss.seeds.map((s) => `${s.id} ${s.transport}`), ["7.1.1 wss"])
    const client = only(gate(passingIndex(), { transport: "client" }))
    assert.deepStrictEqual(client.seeds.map((s) => `${s.id} ${s.transport}`), ["7.1.1 client", "5.20 client", "12.1.1 client"])
    const missing = only(gate(fixtureIndex("missing-case"), { transport: "ws" }))
    const seed = missing.seeds.find((s) => s.id === "5.20")!
    assert.isUndefined(seed.entry)
    assert.isFalse(seed.passed)
    assert.include(Gate.renderMarkdown(gate(fixtureIndex("missing-case"), { transport: "ws" })), "| 5.20 | ws | MISSING |")
  })

  it("lists the ten slowest cases, slowest first", () => {
    const verdict = only(gate(withEntries({ "9.1.6": { ...entry("OK", "OK"), duration: 5000 } })))
    assert.strictEqual(verdict.slowest.length, 10)
    assert.strictEqual(verdict.slowest[0]!.id, "9.1.6")
    const durations = verdict.slowest.map((s) => s.entry.duration ?? 0)
    assert.deepStrictEqual(durations, [...durations].sort((a, b) => b - a))
  })

  it("ends the overall block with the verdict and a plain \"autobahn: N passed, M failed\" line", () => {
    const reports = [
      gate(passingIndex(), { transport: "ws" }),
      gate(fixtureIndex("non-strict"), { transport: "wss" }),
      gate(fixtureIndex("missing-case")),
      gate({})
    ]
    assert.deepStrictEqual(Gate.tally(reports), { passed: 517 + 513 + 516, failed: 4 + 1 + 517, skipped: 0 })
    const lines = Gate.renderOverall(reports).trimEnd().split("\n")
    assert.strictEqual(lines.at(-2), "Verdict: FAIL")
    assert.strictEqual(lines.at(-1), "autobahn: 1546 passed, 522 failed")
    const pass = Gate.renderOverall([gate(passingIndex(), { transport: "ws" }), gate(passingIndex(), { transport: "wss" })])
    assert.deepStrictEqual(pass.trimEnd().split("\n").slice(-2), ["Verdict: PASS", "autobahn: 1034 passed, 0 failed"])
    assert.include(Gate.renderOverall([gate(passingIndex())], ["the ws testee did not exit cleanly on SIGTERM"]), "Verdict: FAIL")
  })

  it("adds the skipped count to that line only when -i/-x left cases out", () => {
    const selection: Cases.Selection = { include: ["7.*"], exclude: [] }
    const report = gate(passingIndex(), { selection })
    assert.deepStrictEqual(Gate.tally([report]), { passed: 37, failed: 0, skipped: 480 })
    assert.strictEqual(Gate.renderOverall([report]).trimEnd().split("\n").at(-1), "autobahn: 37 passed, 0 failed, 480 skipped")
    // A report with no agent (kosoku wrote nothing) fails every selected case and still skips the rest.
    assert.deepStrictEqual(Gate.tally([gate({}, { selection })]), { passed: 0, failed: 37, skipped: 480 })
  })

  it("has a row per section 1..13 and a PASS/FAIL title", () => {
    const text = Gate.renderMarkdown(gate(fixtureIndex("non-strict"), { label: "ws (reports/autobahn/ws)" }))
    assert.include(text, "# Autobahn gate: ws (reports/autobahn/ws): FAIL")
    for (let s = 1; s <= 13; s++) assert.match(text, new RegExp(`^\\| ${s} `, "m"))
    assert.include(text, "- 6.4.1: behavior NON-STRICT")
  })
})

describe("report directories", () => {
  const tempReport = (index: unknown, name = "ws"): string => {
    const dir = join(mkdtempSync(join(tmpdir(), "gate-test-")), name)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, "index.json"), JSON.stringify(index))
    return dir
  }

  it.effect("gates a directory, infers the transport from its name and writes SUMMARY.md", () =>
    Effect.gen(function*() {
      const dir = tempReport(fixtureIndex("non-strict"), "wss")
      const report = yield* Gate.gateDirectory(dir)
      assert.isFalse(report.passed)
      assert.strictEqual(report.transport, "wss")
      const summary = readFileSync(join(dir, "SUMMARY.md"), "utf8")
      assert.strictEqual(summary, Gate.renderMarkdown(report))
      assert.include(summary, "| 7.1.1 | wss |")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("fails a directory without index.json, and one with a malformed index", () =>
    Effect.gen(function*() {
      const empty = mkdtempSync(join(tmpdir(), "gate-test-"))
      const none = yield* Gate.gateDirectory(empty, { writeSummary: false })
      assert.isFalse(none.passed)
      assert.include(none.errors.join(), "no index.json")
      const bad = yield* Gate.gateDirectory(tempReport({ agent: [] }), { writeSummary: false })
      assert.isFalse(bad.passed)
      assert.include(bad.errors.join(), "not an Autobahn index")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("passes the generated passing report and the fixture directory layout resolves", () =>
    Effect.gen(function*() {
      const report = yield* Gate.gateDirectory(tempReport(passingIndex()), { writeSummary: false })
      assert.isTrue(report.passed)
      assert.strictEqual(Gate.transportOfDirectory(join(FIXTURES, "wstest")), undefined)
      assert.strictEqual(Gate.transportOfDirectory("reports/autobahn/ws/"), "ws")
      assert.strictEqual(Gate.transportOfDirectory("reports/autobahn/client"), "client")
    }).pipe(Effect.provide(NodeContext.layer)))
})
