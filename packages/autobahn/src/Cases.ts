/**
 * The Autobahn case list, the one exclusion list, and case selection.
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
 * The only cases the conformance run leaves out. Every summary prints this list.
 * 12.* and 13.* are the permessage-deflate (RFC 7692) cases, excluded until the
 * server negotiates compression. `--with-compression` (or
 * `AUTOBAHN_WITH_COMPRESSION=1`) runs and judges them anyway.
 *
 * @since 0.1.0
 * @category exclusions
 */
export const EXCLUSIONS: ReadonlyArray<string> = ["12.*", "13.*"]

/**
 * Why {@link EXCLUSIONS} holds what it holds; printed next to it.
 *
 * @since 0.1.0
 * @category exclusions
 */
export const EXCLUSIONS_REASON = "permessage-deflate cases, until the server negotiates compression"

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
 * Which cases a run selects and which the gate therefore expects.
 *
 * @since 0.1.0
 * @category models
 */
export interface Selection {
  /** Patterns to run; empty means the whole suite. */
  readonly include: ReadonlyArray<string>
  /** Extra patterns the user removed for this run (printed as such). */
  readonly exclude: ReadonlyArray<string>
  /** The standing exclusion list in force: {@link EXCLUSIONS}, or none with compression on. */
  readonly exclusions: ReadonlyArray<string>
}

/**
 * The default selection: the whole suite minus {@link EXCLUSIONS}.
 *
 * @since 0.1.0
 * @category selection
 */
export const defaultSelection: Selection = { include: [], exclude: [], exclusions: EXCLUSIONS }

/**
 * Whether a case is left out of the selection, by the standing exclusions or
 * the user's own `--exclude` patterns.
 *
 * @since 0.1.0
 * @category selection
 */
export const isExcluded = (selection: Selection, id: string): boolean =>
  selection.exclusions.some((p) => matches(p, id)) || selection.exclude.some((p) => matches(p, id))

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
 * The exclusion list as one printable line, e.g.
 * `Exclusions: 12.*, 13.* (permessage-deflate cases, ...)`.
 *
 * @since 0.1.0
 * @category selection
 */
export const describeExclusions = (selection: Selection): string => {
  const standing = selection.exclusions.length === 0
    ? "Exclusions: none (compression cases included)"
    : `Exclusions: ${selection.exclusions.join(", ")} (${
      sameList(selection.exclusions, EXCLUSIONS) ? EXCLUSIONS_REASON : "custom list"
    })`
  const extra = selection.exclude.length === 0 ? "" : `; also excluded for this run: ${selection.exclude.join(", ")}`
  const only = selection.include.length === 0 ? "" : `; run limited to: ${selection.include.join(", ")}`
  return standing + extra + only
}

const sameList = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i])
