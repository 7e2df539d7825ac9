import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as Proc from "../src/internal/process.js"

const node = (source: string): [string, Array<string>] => [process.execPath, ["-e", source]]

const options = (overrides: Partial<Proc.ServiceOptions> = {}): Proc.ServiceOptions => ({
  name: "test service",
  ready: /^listening ws:\/\/127\.0\.0\.1:(\d+)$/,
  readyTimeoutMs: 10_000,
  stopTimeoutMs: 5_000,
  ...overrides
})

describe("testee processes", () => {
  it.live("waits for the listening line, and stops the process with SIGTERM when the scope closes", () =>
    Effect.gen(function*() {
      let stopped: Proc.StopReport | undefined
      const [cmd, args] = node(`
        console.log("starting")
        setTimeout(() => console.log("listening ws://127.0.0.1:4242"), 50)
        process.on("SIGTERM", () => process.exit(0))
        setInterval(() => {}, 1000)`)
      const line = yield* Effect.scoped(
        Proc.service(cmd, args, options({ onStopped: (r) => (stopped = r) })).pipe(Effect.map((s) => s.readyLine))
      )
      assert.strictEqual(line, "listening ws://127.0.0.1:4242")
      assert.deepStrictEqual(stopped, { name: "test service", code: 0, signal: null, killed: false, exitedEarly: false })
    }))

  it.live("kills a process that ignores SIGTERM after the stop timeout", () =>
    Effect.gen(function*() {
      let stopped: Proc.StopReport | undefined
      const [cmd, args] = node(`
        process.on("SIGTERM", () => {})
        console.log("listening ws://127.0.0.1:1")
        setInterval(() => {}, 1000)`)
      yield* Effect.scoped(Proc.service(cmd, args, options({ stopTimeoutMs: 200, onStopped: (r) => (stopped = r) })))
      assert.isTrue(stopped?.killed)
      assert.strictEqual(stopped?.signal, "SIGKILL")
    }))

  it.live("fails with the last output when the process exits before it is ready", () =>
    Effect.gen(function*() {
      const [cmd, args] = node(`console.error("cannot bind"); process.exit(3)`)
      const exit = yield* Effect.exit(Effect.scoped(Proc.service(cmd, args, options())))
      assert.isTrue(Exit.isFailure(exit))
      const message = Exit.isFailure(exit) ? String(exit.cause) : ""
      assert.include(message, "code 3")
      assert.include(message, "cannot bind")
    }))

  it.live("fails when no ready line comes in time, and still stops the process", () =>
    Effect.gen(function*() {
      let stopped: Proc.StopReport | undefined
      const [cmd, args] = node(`console.log("listening on something else"); setInterval(() => {}, 1000)`)
      const exit = yield* Effect.exit(
        Effect.scoped(Proc.service(cmd, args, options({ readyTimeoutMs: 300, onStopped: (r) => (stopped = r) })))
      )
      assert.isTrue(Exit.isFailure(exit))
      assert.include(Exit.isFailure(exit) ? String(exit.cause) : "", "no line matching")
      assert.strictEqual(stopped?.signal, "SIGTERM")
    }))

  it.live("runs a command to completion without stdin", () =>
    Effect.gen(function*() {
      const [cmd, args] = node(`process.stdin.on("data", () => {}); process.stdin.on("end", () => { console.log("stdin closed"); process.exit(5) })`)
      const lines: Array<string> = []
      const result = yield* Proc.run(cmd, args, { onLine: (l) => lines.push(l) })
      assert.strictEqual(result.code, 5)
      assert.deepStrictEqual(lines, ["stdin closed"])
    }))
})
