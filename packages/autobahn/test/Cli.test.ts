import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Cases from "../src/Cases.js"
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
  it("defaults: both transports, the standing exclusions, the measured parallelism, the package testee", () => {
    const o = ok(Runner.parseArgs([], {}, "/repo"))
    assert.deepStrictEqual(o.transports, ["ws", "wss"])
    assert.strictEqual(o.parallelism, Runner.DEFAULT_PARALLELISM)
    assert.isFalse(o.withCompression)
    assert.deepStrictEqual(Runner.selectionOf(o).exclusions, Cases.EXCLUSIONS)
    assert.strictEqual(o.reportsDir, "/repo/reports/autobahn")
    assert.deepStrictEqual(o.testee.slice(1), ["--conditions=source", "--import", "tsx", "/repo/packages/autobahn/src/bin/testee.ts"])
  })

  it("reads repeatable -i/-x, --only, -p and --with-compression", () => {
    const o = ok(Runner.parseArgs(["-i", "1.*", "--include=2.*", "-x", "2.9", "--only", "wss", "-p", "4", "--with-compression"], {}, "/repo"))
    assert.deepStrictEqual(o.include, ["1.*", "2.*"])
    assert.deepStrictEqual(o.exclude, ["2.9"])
    assert.deepStrictEqual(o.transports, ["wss"])
    assert.strictEqual(o.parallelism, 4)
    assert.deepStrictEqual(Runner.selectionOf(o).exclusions, [])
  })

  it("takes the compression switch and the testee from the environment", () => {
    const o = ok(Runner.parseArgs([], { AUTOBAHN_WITH_COMPRESSION: "1", AUTOBAHN_TESTEE: "node  /tmp/t.mjs" }, "/repo"))
    assert.isTrue(o.withCompression)
    assert.strictEqual(o.parallelism, Runner.DEFAULT_PARALLELISM_WITH_COMPRESSION)
    assert.deepStrictEqual(o.testee, ["node", "/tmp/t.mjs"])
  })

  it("rejects bad values", () => {
    assert.include(left(Runner.parseArgs(["--only", "http"])), "ws or wss")
    assert.include(left(Runner.parseArgs(["-p", "0"])), "integer")
    assert.include(left(Runner.parseArgs(["-i"])), "needs")
    assert.include(left(Runner.parseArgs(["--bogus"])), "unknown")
    assert.strictEqual(left(Runner.parseArgs(["--help"])), "help")
  })
})

describe("pnpm autobahn:gate arguments", () => {
  it("takes directories and the same selection flags", () => {
    const o = ok(GateCli.parseArgs(["reports/a", "-i", "7.*", "--no-summary-file", "--transport", "wss"], {}))
    assert.strictEqual(o.dirs.length, 1)
    assert.isTrue(o.dirs[0]!.endsWith("/reports/a"))
    assert.deepStrictEqual(o.selection, { include: ["7.*"], exclude: [], exclusions: Cases.EXCLUSIONS })
    assert.isFalse(o.writeSummary)
    assert.strictEqual(o.transport, "wss")
    assert.deepStrictEqual(ok(GateCli.parseArgs(["d", "--with-compression"], {})).selection.exclusions, [])
  })

  it("needs a directory", () => {
    assert.include(left(GateCli.parseArgs([], {})), "report directory")
  })
})

describe("kosoku command line", () => {
  it("passes selection, parallelism and the output directory", () => {
    assert.deepStrictEqual(
      Kosoku.cliArgs({ url: "ws://127.0.0.1:1", include: ["1.*"], exclude: ["12.*", "13.*"], parallelism: 8, outDir: "out" }),
      ["-i", "1.*", "-x", "12.*", "-x", "13.*", "-p", "8", "-o", "out", "ws://127.0.0.1:1"]
    )
  })
})
