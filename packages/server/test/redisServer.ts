/**
 * A real redis-server for tests: Debian's `redis-server` (`apt-get install redis-server`; `.ci/run`
 * installs it), on a free port of 127.0.0.1 with its own data directory, no persistence, stopped
 * with the scope. By hand: `redis-server --port 6390 --bind 127.0.0.1 --dir /tmp/r --save "" --appendonly no`.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createClient } from "redis"

export const redisAvailable = (() => {
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

/** A port that was free a moment ago. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

const pingOnce = (port: number, password: string | undefined): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    let data = ""
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.on("error", () => done(false))
    socket.on("connect", () => socket.write((password !== undefined ? `AUTH ${password}\r\n` : "") + "PING\r\n"))
    socket.on("data", (d) => {
      data += d.toString()
      if (data.includes("+PONG")) done(true)
    })
  })

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly pid: () => number
  /** SIGKILL, then start again on the same port (empty: nothing is persisted). */
  readonly kill: Effect.Effect<void>
  readonly start: Effect.Effect<void>
  /** SIGSTOP / SIGCONT: a server that keeps its sockets open and answers nothing. */
  readonly freeze: Effect.Effect<void>
  readonly thaw: Effect.Effect<void>
  /** One command through a fresh node-redis client. */
  readonly command: (args: Array<string>) => Effect.Effect<unknown>
}

export const startRedis = (options: { readonly password?: string } = {}): Effect.Effect<RedisServer, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = mkdtempSync(join(tmpdir(), "ews-redis-"))
    const port = yield* Effect.promise(freePort)
    let child: ChildProcess | undefined
    const exited = new WeakSet<ChildProcess>()
    const args = [
      "--port", String(port), "--bind", "127.0.0.1", "--dir", dir,
      "--save", "", "--appendonly", "no", "--loglevel", "warning",
      ...(options.password !== undefined ? ["--requirepass", options.password] : [])
    ]
    const start = Effect.gen(function*() {
      const c = spawn("redis-server", args, { stdio: "ignore" })
      c.once("exit", () => exited.add(c))
      child = c
      for (let i = 0; i < 200; i++) {
        if (yield* Effect.promise(() => pingOnce(port, options.password))) return
        if (exited.has(c)) break
        yield* Effect.sleep(25)
      }
      return yield* Effect.fail(new Error(`redis-server did not start on ${port}`))
    })
    const stop = Effect.async<void>((resume) => {
      const c = child
      if (c === undefined || exited.has(c)) return resume(Effect.void)
      c.once("exit", () => resume(Effect.void))
      c.kill("SIGCONT")
      c.kill("SIGKILL")
    })
    yield* Effect.acquireRelease(start, () =>
      Effect.zipRight(stop, Effect.sync(() => rmSync(dir, { recursive: true, force: true }))))
    const url = options.password !== undefined
      ? `redis://:${options.password}@127.0.0.1:${port}`
      : `redis://127.0.0.1:${port}`
    return {
      port,
      url,
      pid: () => child?.pid ?? -1,
      kill: stop,
      start: Effect.orDie(start),
      freeze: Effect.sync(() => void child?.kill("SIGSTOP")),
      thaw: Effect.sync(() => void child?.kill("SIGCONT")),
      command: (cmd) =>
        Effect.promise(async () => {
          const client = createClient({ url, socket: { reconnectStrategy: false } })
          client.on("error", () => {})
          await client.connect()
          try {
            return await client.sendCommand(cmd)
          } finally {
            client.destroy()
          }
        })
    }
  })
