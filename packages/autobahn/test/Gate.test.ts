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
    const partial = gate(index, { selection: { ...Cases.defaultSelection, include: ["2.*", "7.*"] } })
    assert.isTrue(partial.passed)
    assert.strictEqual(only(partial).agent, "effect-websocket")
    assert.strictEqual(only(partial).judged, 48)
    assert.strictEqual(row(only(partial), 7).behavior.INFORMATIONAL, 3)

    const full = gate(index)
    assert.isFalse(full.passed)
    assert.strictEqual(only(full).missing.length, 301 - 48)
    assert.deepStrictEqual(only(full).problems, [])
  })
})

describe("verdicts", () => {
  it("passes a report where every expected case is OK (INFORMATIONAL only where the suite says so)", () => {
    const report = gate(passingIndex())
    assert.isTrue(report.passed)
    const verdict = only(report)
    assert.strictEqual(verdict.judged, 301)
    const total = verdict.sections.reduce((n, s) => n + s.judged, 0)
    assert.strictEqual(total, 301)
    assert.strictEqual(row(verdict, 7).behavior.INFORMATIONAL, 3)
    assert.strictEqual(row(verdict, 7).close.INFORMATIONAL, 3)
    assert.strictEqual(row(verdict, 6).behavior.OK, 145)
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

describe("expected cases and the exclusion list", () => {
  it("fails when an expected case is missing", () => {
    const verdict = only(gate(fixtureIndex("missing-case")))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.missing, ["5.20"])
    assert.strictEqual(row(verdict, 5).missing, 1)
    assert.deepStrictEqual(verdict.problems, [])
  })

  it("honours the exclusion list: 12.*/13.* are neither expected nor judged, and listed when present", () => {
    const index = withEntries({ "12.1.1": entry("UNIMPLEMENTED", "OK"), "13.7.18": entry("UNIMPLEMENTED", "OK") })
    const report = gate(index)
    assert.isTrue(report.passed)
    assert.strictEqual(report.expected.length, 301)
    assert.deepStrictEqual(only(report).excludedPresent, ["12.1.1", "13.7.18"])
    assert.include(Gate.renderMarkdown(report), "Present but not selected, not judged (2): 12.1.1, 13.7.18")
  })

  it("judges and expects the compression cases when the exclusion list is off", () => {
    const selection: Cases.Selection = { ...Cases.defaultSelection, exclusions: [] }
    const index = withEntries({ "12.1.1": entry("UNIMPLEMENTED", "OK") })
    const verdict = only(gate(index, { selection }))
    assert.isFalse(verdict.passed)
    assert.deepStrictEqual(verdict.problems.map((p) => p.id), ["12.1.1"])
    assert.strictEqual(verdict.missing.length, 517 - 302)
    assert.isTrue(gate(passingIndex(selection), { selection }).passed)
  })

  it("judges only the selected cases when the run was limited with --include", () => {
    const index = fixtureIndex("non-strict")
    const selection: Cases.Selection = { ...Cases.defaultSelection, include: ["7.*"] }
    const verdict = only(gate(index, { selection }))
    assert.isTrue(verdict.passed)
    assert.strictEqual(verdict.judged, 37)
    assert.include(verdict.excludedPresent, "6.4.1")
  })

  it("fails a selection that names no case", () => {
    const report = gate(passingIndex(), { selection: { ...Cases.defaultSelection, include: ["99.*"] } })
    assert.isFalse(report.passed)
    assert.include(report.errors.join(), "names no case")
  })

  it("prints the exclusion list on every summary", () => {
    const excluded = Gate.renderMarkdown(gate(passingIndex()))
    assert.include(excluded, "Exclusions: 12.*, 13.* (permessage-deflate cases")
    const none = Gate.renderMarkdown(gate(passingIndex(), { selection: { ...Cases.defaultSelection, exclusions: [] } }))
    assert.include(none, "Exclusions: none")
    assert.include(Gate.renderOverall([gate(passingIndex())]), "Exclusions: 12.*, 13.*")
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

  it("ends the overall block with the verdict and a plain passed/failed/skipped line", () => {
    const reports = [
      gate(passingIndex(), { transport: "ws" }),
      gate(fixtureIndex("non-strict"), { transport: "wss" }),
      gate(fixtureIndex("missing-case")),
      gate({})
    ]
    assert.deepStrictEqual(Gate.tally(reports), {
      passed: 301 + 297 + 300,
      failed: 4 + 1 + 301,
      skipped: 3 * (517 - 301)
    })
    const lines = Gate.renderOverall(reports).trimEnd().split("\n")
    assert.strictEqual(lines.at(-2), "Verdict: FAIL")
    assert.strictEqual(lines.at(-1), "autobahn: 898 passed, 306 failed, 648 skipped")
    assert.strictEqual(Gate.renderOverall([gate(passingIndex())]).trimEnd().split("\n").at(-2), "Verdict: PASS")
    assert.include(Gate.renderOverall([gate(passingIndex())], ["the ws testee did not exit cleanly on SIGTERM"]), "Verdict: FAIL")
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
    }).pipe(Effect.provide(NodeContext.layer)))
})
