/**
 * Builds report indexes for the gate tests: a passing one from the suite's
 * case list, and fixtures applied on top of it.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Cases from "../src/Cases.js"
import type * as Gate from "../src/Gate.js"

export const FIXTURES = fileURLToPath(new URL("./fixtures", import.meta.url))

export const AGENT = "fixture-agent"

/** Every selected case OK/OK; the suite's informational cases INFORMATIONAL, as kosoku reports them. */
export const passingCases = (
  selection: Cases.Selection = Cases.wholeSuite
): Record<string, Gate.CaseEntry> =>
  Object.fromEntries(
    Cases.expectedCases(selection).map((id, i) => {
      const info = Cases.suite.informational.has(id)
      return [id, {
        behavior: info ? "INFORMATIONAL" : "OK",
        behaviorClose: info ? "INFORMATIONAL" : "OK",
        duration: (i * 37) % 50,
        remoteCloseCode: 1000,
        reportfile: `fixture_agent_case_${id.replaceAll(".", "_")}.json`
      }]
    })
  )

export const passingIndex = (selection?: Cases.Selection): Gate.ReportIndex => ({ [AGENT]: passingCases(selection) })

interface Overlay {
  readonly set?: Record<string, Gate.CaseEntry>
  readonly remove?: ReadonlyArray<string>
}

/** The passing index with `fixtures/<name>/overlay.json` applied. */
export const fixtureIndex = (name: string): Gate.ReportIndex => {
  const overlay = JSON.parse(readFileSync(join(FIXTURES, name, "overlay.json"), "utf8")) as Overlay
  const cases = { ...passingCases(), ...overlay.set }
  for (const id of overlay.remove ?? []) delete cases[id]
  return { [AGENT]: cases }
}

export const readJson = (...parts: Array<string>): unknown => JSON.parse(readFileSync(join(FIXTURES, ...parts), "utf8"))
