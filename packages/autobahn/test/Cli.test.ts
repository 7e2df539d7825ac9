import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Cases from "../src/Cases.js"
import * as Gate from "../src/Gate.js"
import * as GateCli from "../src/GateCli.js"
import * as Kosoku from "../src/Kosoku.js"
import * as Runner from "../src/Runner.js"

const ok = <A>(e: Either.Either<A, string>): A => {
  if (Either.isLeft(e)) assert.fail(`expected options, got: ${e.left}`)
  return (e as Either.Right<string, A>).right
}

const left = <A>(e: Either.Either<A, string>): string => {
  if (Either.isRight(e)) assert.fail("expected a usage error")
  return (e as Either.Left<string, A>).left
}

describe("pnpm autobahn arguments", () => {
  it("defaults: both transports and the client run, the whole suite, the measured parallelism, the package testees", () => {
    const o = ok(Runner.parseArgs([], {}, "/repo"))
    assert.deepStrictEqual(o.transports, ["ws", "wss", "client"])
    assert.strictEqual(o.parallelism, Runner.DEFAULT_PARALLELISM)
    assert.strictEqual(o.concurrentTransports, Runner.DEFAULT_CONCURRENT_TRANSPORTS)
    assert.strictEqual(o.timeoutMinutes, Runner.DEFAULT_TIMEOUT_MINUTES)
    assert.deepStrictEqual(Runner.selectionOf(o), Cases.wholeSuite)
    assert.strictEqual(Cases.expectedCases(Runner.selectionOf(o)).length, 517)
    assert.strictEqual(o.reportsDir, "/repo/reports/autobahn")
    assert.deepStrictEqual(o.testee.slice(1), ["--conditions=source", "--import", "tsx", "/repo/packages/autobahn/src/bin/testee.ts"])
    assert.deepStrictEqual(o.clientTestee.slice(1), [
      "--conditions=source",
      "--import",
      "tsx",
      "/repo/packages/autobahn/src/bin/client-testee.ts"
    ])
    assert.deepStrictEqual(ok(Runner.parseArgs(["--only", "client"], {}, "/repo")).transports, ["client"])
  })

  it("reads repeatable -i/-x, --only, -p, --concurrent/--sequential and --timeout", () => {
    const o = ok(Runner.parseArgs(
      ["-i", "1.*", "--include=2.*", "-x", "2.9", "--only", "wss", "-p", "8", "--concurrent", "--timeout", "2.5"],
      {},
      "/repo"
    ))
    assert.deepStrictEqual(o.include, ["1.*", "2.*"])
    assert.deepStrictEqual(o.exclude, ["2.9"])
    assert.deepStrictEqual(Runner.selectionOf(o), { include: ["1.*", "2.*"], exclude: ["2.9"] })
    assert.deepStrictEqual(o.transports, ["wss"])
    assert.strictEqual(o.parallelism, 8)
    assert.isTrue(o.concurrentTransports)
    assert.strictEqual(o.timeoutMinutes, 2.5)
    assert.isFalse(ok(Runner.parseArgs(["--concurrent", "--sequential"], {}, "/repo")).concurrentTransports)
  })

  it("takes the testee from the environment, and nothing else", () => {
    const o = ok(Runner.parseArgs([], { AUTOBAHN_TESTEE: "node  /tmp/t.mjs", AUTOBAHN_WITH_COMPRESSION: "0" }, "/repo"))
    assert.deepStrictEqual(o.testee, ["node", "/tmp/t.mjs"])
    assert.deepStrictEqual(Runner.selectionOf(o), Cases.wholeSuite)
  })

  it("rejects bad values, and the retired --with-compression switch", () => {
    assert.include(left(Runner.parseArgs(["--only", "http"])), "ws, wss or client")
    assert.include(left(Runner.parseArgs(["-p", "0"])), "integer")
    assert.include(left(Runner.parseArgs(["--timeout", "0"])), "minutes")
    assert.include(left(Runner.parseArgs(["-i"])), "needs")
    assert.include(left(Runner.parseArgs(["--bogus"])), "unknown")
    assert.include(left(Runner.parseArgs(["--with-compression"])), "unknown")
    assert.strictEqual(left(Runner.parseArgs(["--help"])), "help")
  })

  it("says in its usage text that nothing is excluded", () => {
    assert.include(Runner.USAGE, "Exclusions: none")
    assert.notInclude(Runner.USAGE, "--with-compression")
  })

  it("counts every case it should have judged as failed when the run could not complete", () => {
    const whole = Runner.abortedTally(ok(Runner.parseArgs([], {}, "/repo")))
    const twelve = Cases.expectedCases({ include: ["12.*"], exclude: [] }).length
    assert.deepStrictEqual(whole, { passed: 0, failed: 3 * 517 + twelve, skipped: 0 })
    assert.strictEqual(Gate.tallyLine(whole), `autobahn: 0 passed, ${1551 + twelve} failed`)
    const noPolicy = Runner.abortedTally(ok(Runner.parseArgs(["--no-default-policy"], {}, "/repo")))
    assert.strictEqual(Gate.tallyLine(noPolicy), "autobahn: 0 passed, 1551 failed")
    const narrow = Runner.abortedTally(ok(Runner.parseArgs(["--only", "ws", "-i", "7.*"], {}, "/repo")))
    assert.strictEqual(Gate.tallyLine(narrow), "autobahn: 0 passed, 37 failed, 480 skipped")
  })
})

describe("the second run on the default permessage-deflate policy", () => {
  it("runs 12.* over ws:// against the testee with --deflate default, after a full run", () => {
    const run = Runner.defaultPolicyRun(ok(Runner.parseArgs([], {}, "/repo")))!
    assert.deepStrictEqual(run.include, ["12.*"])
    assert.deepStrictEqual(run.transports, ["ws"])
    assert.deepStrictEqual(run.testee.slice(-2), ["--deflate", "default"])
    assert.strictEqual(run.reportsDir, "/repo/reports/autobahn/default-policy")
    assert.isAbove(Cases.expectedCases(Runner.selectionOf(run)).length, 80)
  })

  it("runs only the 12.* cases the main selection holds, and none without ws:// or with --no-default-policy", () => {
    const narrow = Runner.defaultPolicyRun(ok(Runner.parseArgs(["-i", "12.1.*", "-i", "1.*", "-x", "12.1.3"], {}, "/repo")))!
    assert.deepStrictEqual(
      Cases.expectedCases(Runner.selectionOf(narrow)),
      Cases.expectedCases({ include: ["12.1.*"], exclude: ["12.1.3"] })
    )
    assert.isUndefined(Runner.defaultPolicyRun(ok(Runner.parseArgs(["-i", "13.*"], {}, "/repo"))))
    assert.isUndefined(Runner.defaultPolicyRun(ok(Runner.parseArgs(["--only", "wss"], {}, "/repo"))))
    assert.isUndefined(Runner.defaultPolicyRun(ok(Runner.parseArgs(["--no-default-policy"], {}, "/repo"))))
  })
})

describe("pnpm autobahn:gate arguments", () => {
  it("takes directories and the same selection flags", () => {
    const o = ok(GateCli.parseArgs(["reports/a", "-i", "7.*", "-x", "7.1.6", "--no-summary-file", "--transport", "wss"]))
    assert.strictEqual(o.dirs.length, 1)
    assert.isTrue(o.dirs[0]!.endsWith("/reports/a"))
    assert.deepStrictEqual(o.selection, { include: ["7.*"], exclude: ["7.1.6"] })
    assert.isFalse(o.writeSummary)
    assert.strictEqual(o.transport, "wss")
  })

  it("expects the whole suite by default, and no longer knows --with-compression", () => {
    const o = ok(GateCli.parseArgs(["d"]))
    assert.deepStrictEqual(o.selection, Cases.wholeSuite)
    assert.isTrue(o.writeSummary)
    assert.include(left(GateCli.parseArgs(["d", "--with-compression"])), "unknown option")
    assert.include(GateCli.USAGE, "Exclusions: none")
  })

  it("needs a directory", () => {
    assert.include(left(GateCli.parseArgs([])), "report directory")
  })
})

describe("kosoku command line", () => {
  it("passes selection, parallelism and the output directory", () => {
    assert.deepStrictEqual(
      Kosoku.cliArgs({ url: "ws://127.0.0.1:1", include: ["1.*"], exclude: ["1.1.2"], parallelism: 8, outDir: "out" }),
      ["-i", "1.*", "-x", "1.1.2", "-p", "8", "-o", "out", "ws://127.0.0.1:1"]
    )
    assert.deepStrictEqual(
      Kosoku.cliArgs({ url: "ws://127.0.0.1:1", include: [], exclude: [], parallelism: 4, outDir: "out" }),
      ["-p", "4", "-o", "out", "ws://127.0.0.1:1"]
    )
  })
})
