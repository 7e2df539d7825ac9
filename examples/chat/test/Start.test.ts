/**
 * `pnpm start` on a port that is taken says so in one line, with how to pick another, and
 * exits with 1: no stack trace for a newcomer to read.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as net from "node:net"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

/** A listener holding a port (released with the scope). */
const holdPort = Effect.acquireRelease(
  Effect.async<net.Server>((resume) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
  })
)

/** Runs the chat's entry point with `env`; its exit code and output, or a failure after `ms`. */
const start = (env: Record<string, string>, ms: number) =>
  Effect.async<{ code: number | null; stdout: string; stderr: string }, Error>((resume) => {
    const child = spawn(process.execPath, ["--import", "tsx", "--conditions=source", main], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      resume(Effect.fail(new Error(`the chat did not exit within ${ms} ms; stdout: ${stdout} stderr: ${stderr}`)))
    }, ms)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, stdout, stderr }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("pnpm start", () => {
  it.scopedLive("a taken port: one line that names the port and how to pick another, exit code 1", () =>
    Effect.gen(function*() {
      const taken = yield* holdPort
      const port = (taken.address() as net.AddressInfo).port
      const { code, stderr, stdout } = yield* start({ PORT: String(port), HOST: "127.0.0.1" }, 60_000)
      assert.strictEqual(code, 1)
      assert.strictEqual(stdout, "")
      const lines = stderr.trim().split("\n")
      assert.strictEqual(lines.length, 1, stderr)
      assert.include(lines[0], `port ${port}`)
      assert.include(lines[0], "already in use")
      assert.include(lines[0], `PORT=${port + 1}`)
      assert.notInclude(stderr, "    at ")
    }), 90_000)
})
