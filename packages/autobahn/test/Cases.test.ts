import { assert, describe, it } from "@effect/vitest"
import * as Cases from "../src/Cases.js"

describe("the suite's case list (cases.json, generated from kosoku's case index)", () => {
  it("holds the 517 cases of kosoku 0.1.0, unique and in numeric order", () => {
    const ids = Cases.suite.cases
    assert.strictEqual(Cases.suite.name, "kosoku 0.1.0")
    assert.strictEqual(ids.length, 517)
    assert.strictEqual(new Set(ids).size, ids.length)
    assert.deepStrictEqual([...ids].sort(Cases.compareCaseIds), [...ids])
    assert.strictEqual(ids[0], "1.1.1")
    assert.strictEqual(ids[ids.length - 1], "13.7.18")
    const sections = [...new Set(ids.map(Cases.sectionOf))]
    assert.deepStrictEqual(sections, [1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13])
  })

  it("marks exactly the cases whose code sets INFORMATIONAL, all of them in the list", () => {
    assert.deepStrictEqual([...Cases.suite.informational].sort(Cases.compareCaseIds), ["7.1.6", "7.13.1", "7.13.2"])
    for (const id of Cases.suite.informational) assert.include(Cases.suite.cases, id)
  })

  it("holds the seed cases", () => {
    for (const id of ["7.1.1", "7.5.1", "5.20", "2.9"]) assert.include(Cases.suite.cases, id)
  })
})

describe("patterns", () => {
  it("matches ids and * globs the way kosoku's -i/-x do", () => {
    assert.isTrue(Cases.matches("1.*", "1.1.1"))
    assert.isFalse(Cases.matches("1.*", "10.1.1"))
    assert.isTrue(Cases.matches("9.*", "9.7.1"))
    assert.isTrue(Cases.matches("6.4.*", "6.4.3"))
    assert.isFalse(Cases.matches("6.4.*", "6.40.3"))
    assert.isTrue(Cases.matches("*", "13.7.18"))
    assert.isTrue(Cases.matches("5.20", "5.20"))
    assert.isFalse(Cases.matches("5.2", "5.20"))
  })

  it("orders ids by component", () => {
    assert.isBelow(Cases.compareCaseIds("1.2.9", "1.2.10"), 0)
    assert.isBelow(Cases.compareCaseIds("9.8.6", "10.1.1"), 0)
    assert.isAbove(Cases.compareCaseIds("7.13.1", "7.9.1"), 0)
    assert.strictEqual(Cases.compareCaseIds("2.9", "2.9"), 0)
  })
})

describe("selection: no exclusion list", () => {
  it("expects every case of the suite, 12.* and 13.* included, when nothing narrows the run", () => {
    assert.deepStrictEqual(Cases.wholeSuite, { include: [], exclude: [] })
    const expected = Cases.expectedCases(Cases.wholeSuite)
    assert.deepStrictEqual(expected, [...Cases.suite.cases])
    assert.strictEqual(expected.filter((id) => Cases.sectionOf(id) === 12).length, 90)
    assert.strictEqual(expected.filter((id) => Cases.sectionOf(id) === 13).length, 126)
  })

  it("narrows an ad-hoc run to what -i selects minus what -x removes", () => {
    const selection: Cases.Selection = { include: ["7.*", "12.1.1"], exclude: ["7.13.*"] }
    const expected = Cases.expectedCases(selection)
    assert.strictEqual(expected.length, 37 - 2 + 1)
    assert.strictEqual(expected.at(-1), "12.1.1")
    assert.isTrue(Cases.isExcluded(selection, "7.13.2"))
    assert.isFalse(Cases.isSelected(selection, "7.13.2"))
    assert.isFalse(Cases.isSelected(selection, "1.1.1"))
    assert.strictEqual(Cases.expectedCases({ include: [], exclude: ["12.*", "13.*"] }).length, 517 - 90 - 126)
  })

  it("describes the exclusions in one line that starts with \"Exclusions: none\"", () => {
    assert.strictEqual(Cases.describeExclusions(Cases.wholeSuite), "Exclusions: none")
    assert.strictEqual(
      Cases.describeExclusions({ include: ["1.*"], exclude: ["1.1.1"] }),
      "Exclusions: none; left out for this run (-x): 1.1.1; run limited to (-i): 1.*"
    )
  })
})
