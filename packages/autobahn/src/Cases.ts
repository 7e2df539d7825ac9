/**
 * The Autobahn case list and case selection.
 *
 * The conformance run has no exclusion list: every case of the suite, 1.* to
 * 13.*, runs and is judged on both transports. `-i`/`-x` narrow one ad-hoc run,
 * and the gate then expects and judges exactly the cases they select.
 *
 * The list of expected cases comes from the suite itself: `cases.json` at the
 * package root is generated from kosoku's case index (`kosoku.cases.CASES`) by
 * `scripts/generate-cases.py`; regenerate it with
 * `pnpm --filter @effect-websocket/autobahn run cases:generate` after changing the
 * pinned kosoku version.
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"

/**
 * The case list of one suite version.
 *
 * @since 0.1.0
 * @category models
 */
export interface Suite {
  /** Which suite the list was generated from, e.g. `kosoku 0.1.0`. */
  readonly name: string
  /** Every case id, in the suite's numeric order. */
  readonly cases: ReadonlyArray<string>
  /**
   * Cases whose behaviour the suite itself marks as left open by the spec: their
   * `behavior` and `behaviorClose` are INFORMATIONAL by construction.
   */
  readonly informational: ReadonlySet<string>
}

const loadSuite = (): Suite => {
  const file = new URL("../cases.json", import.meta.url)
  const json = JSON.parse(readFileSync(file, "utf8")) as {
    readonly suite: string
    readonly cases: ReadonlyArray<string>
    readonly informational: ReadonlyArray<string>
  }
  return { name: json.suite, cases: json.cases, informational: new Set(json.informational) }
}

/**
 * The suite the gate expects, read from the committed `cases.json`.
 *
 * @since 0.1.0
 * @category constants
 */
export const suite: Suite = loadSuite()

/**
 * Autobahn's section titles (sections 8 and 11 hold no case in the suite).
 *
 * @since 0.1.0
 * @category constants
 */
export const SECTION_TITLES: Readonly<Record<number, string>> = {
  1: "Framing",
  2: "Pings/Pongs",
  3: "Reserved Bits",
  4: "Opcodes",
  5: "Fragmentation",
  6: "UTF-8 Handling",
  7: "Close Handling",
  8: "Misc",
  9: "Limits/Performance",
  10: "Misc",
  11: "(none)",
  12: "Compression (payloads)",
  13: "Compression (parameters)"
}

/**
 * The top-level section of a case id: `6.4.3` → 6.
 *
 * @since 0.1.0
 * @category selection
 */
export const sectionOf = (id: string): number => Number.parseInt(id.split(".")[0] ?? "", 10)

/**
 * Orders case ids numerically by component (1.2.10 after 1.2.9).
 *
 * @since 0.1.0
 * @category selection
 */
export const compareCaseIds = (a: string, b: string): number => {
  const pa = a.split(".")
  const pb = b.split(".")
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = Number.parseInt(pa[i] ?? "-1", 10)
    const y = Number.parseInt(pb[i] ?? "-1", 10)
    if (x !== y) return (Number.isNaN(x) ? -1 : x) - (Number.isNaN(y) ? -1 : y)
  }
  return a < b ? -1 : a > b ? 1 : 0
}

const patternCache = new Map<string, RegExp>()

/**
 * Whether a case id matches a kosoku/wstest pattern: a case id, or a glob where
 * `*` stands for any run of characters (`9.*`, `6.4.*`, `*`).
 *
 * @since 0.1.0
 * @category selection
 */
export const matches = (pattern: string, id: string): boolean => {
  let re = patternCache.get(pattern)
  if (re === undefined) {
    const body = pattern.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")
    re = new RegExp(`^${body}$`)
    patternCache.set(pattern, re)
  }
  return re.test(id)
}

/**
 * Which cases a run selects and which the gate therefore expects. The default,
 * {@link wholeSuite}, is every case of the suite; `-i`/`-x` narrow an ad-hoc run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Selection {
  /** Patterns to run (`-i`); empty means the whole suite. */
  readonly include: ReadonlyArray<string>
  /** Patterns left out of this run (`-x`); printed as such. */
  readonly exclude: ReadonlyArray<string>
}

/**
 * The whole suite: every case, nothing left out. The selection of `pnpm autobahn`
 * and `pnpm autobahn:gate` when neither `-i` nor `-x` is given.
 *
 * @since 0.1.0
 * @category selection
 */
export const wholeSuite: Selection = { include: [], exclude: [] }

/**
 * Whether a case is left out by the selection's `-x` patterns.
 *
 * @since 0.1.0
 * @category selection
 */
export const isExcluded = (selection: Selection, id: string): boolean => selection.exclude.some((p) => matches(p, id))

/**
 * Whether a case is selected: included (or no include given) and not excluded.
 *
 * @since 0.1.0
 * @category selection
 */
export const isSelected = (selection: Selection, id: string): boolean =>
  (selection.include.length === 0 || selection.include.some((p) => matches(p, id))) && !isExcluded(selection, id)

/**
 * The case ids a run with this selection must produce, in suite order.
 *
 * @since 0.1.0
 * @category selection
 */
export const expectedCases = (selection: Selection, cases: ReadonlyArray<string> = suite.cases): Array<string> =>
  cases.filter((id) => isSelected(selection, id))

/**
 * The exclusions as one printable line. There is no standing exclusion list, so
 * it starts with `Exclusions: none`; an ad-hoc run adds what `-x` left out and
 * what `-i` limited it to, e.g.
 * `Exclusions: none; left out for this run (-x): 1.1.1; run limited to (-i): 1.*`.
 *
 * @since 0.1.0
 * @category selection
 */
export const describeExclusions = (selection: Selection): string => {
  const extra = selection.exclude.length === 0
    ? ""
    : `; left out for this run (-x): ${selection.exclude.join(", ")}`
  const only = selection.include.length === 0 ? "" : `; run limited to (-i): ${selection.include.join(", ")}`
  return `Exclusions: none${extra}${only}`
}
