/**
 * A real redis-server for tests: Debian's `redis-server` (`apt-get install redis-server`; `.ci/run`
 * installs it), on a free port of 127.0.0.1 with its own data directory, no persistence, stopped
 * with the scope (`durable`: an append-only file fsynced on every write instead). By hand: `redis-server --port 6390 --bind 127.0.0.1 --dir /tmp/r --save "" --appendonly no`.
 */
import { Effect, Layer } from "effect"
import * as Broadcast from "../src/Broadcast.js"
import type * as BroadcastRedis from "../src/BroadcastRedis.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
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

export const startRedis = (
  options: {
    readonly password?: string
    /** Append-only file fsynced on every write: a killed server comes back with its streams. */
    readonly durable?: boolean
  } = {}
): Effect.Effect<RedisServer, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = mkdtempSync(join(tmpdir(), "ews-redis-"))
    const port = yield* Effect.promise(freePort)
    let child: ChildProcess | undefined
    const exited = new WeakSet<ChildProcess>()
    const args = [
      "--port", String(port), "--bind", "127.0.0.1", "--dir", dir,
      "--save", "", "--loglevel", "warning",
      ...(options.durable === true ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
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

export interface ServerProcess {
  readonly port: number
  readonly url: string
  /** JSON lines the process printed after its port (backend events). */
  readonly events: Array<
    { readonly _tag: string; readonly topic?: string; readonly missed?: number; readonly worker?: number; readonly replacing?: number | null; readonly port?: number }
  >
  readonly alive: () => boolean
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
}

const fixture = new URL("./fixtures/topicsServer.ts", import.meta.url).pathname

/** `fixtures/topicsServer.ts` in a child process on Redis; killed with the scope. */
export const serverProcess = (
  env: Record<string, string>
): Effect.Effect<ServerProcess, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ child: ChildProcess; port: number; events: ServerProcess["events"] }, Error>((resume) => {
      const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", fixture], {
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "inherit"]
      })
      const events: ServerProcess["events"] = []
      let buffer = ""
      let port: number | undefined
      child.stdout!.on("data", (d: Buffer) => {
        buffer += d.toString()
        let nl: number
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl)
          buffer = buffer.slice(nl + 1)
          try {
            const value = JSON.parse(line)
            if (port === undefined && typeof value.port === "number") {
              port = value.port
              resume(Effect.succeed({ child, port: port!, events }))
            } else events.push(value)
          } catch {
            // a log line
          }
        }
      })
      child.once("exit", (code) => {
        if (port === undefined) resume(Effect.fail(new Error(`server process exited with ${code}`)))
      })
    }),
    ({ child, events }) =>
      Effect.async<void>((resume) => {
        // Workers of a cluster fixture too, whatever happened to their primary.
        const workers = () => {
          for (const e of events) {
            if (typeof e.worker === "number") {
              try {
                process.kill(e.worker, "SIGKILL")
              } catch {
                // gone
              }
            }
          }
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          workers()
          return resume(Effect.void)
        }
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
        child.once("exit", () => {
          clearTimeout(timer)
          workers()
          resume(Effect.void)
        })
        child.kill("SIGTERM")
      })
  ).pipe(
    Effect.timeoutFail({ duration: "90 seconds", onTimeout: () => new Error("server process did not start") }),
    Effect.map(({ child, events, port }) => ({
      port,
      url: `ws://127.0.0.1:${port}`,
      events,
      alive: () => child.exitCode === null && child.signalCode === null,
      kill: (signal: NodeJS.Signals) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill(signal)
        })
    }))
  )

/** The Topics service on Redis, built in the current scope. */
export const redisTopics = (
  options: BroadcastRedis.Options & Broadcast.Options
): Effect.Effect<Broadcast.Service, Broadcast.BackendError, Scope.Scope> =>
  Effect.flatMap(Layer.build(Broadcast.layerRedis(options)), (ctx) => Effect.succeed(ctx.unsafeMap.get(Broadcast.Topics.key) as Broadcast.Service))

/**
 * A server whose clients subscribe to the topic of their path (`/room?since=..&name=..`) and
 * publish every text they send to it.
 */
export const serve = (topics: Broadcast.Service) =>
  WebSocketServer.make({
    handler: (ws) =>
      Effect.gen(function*() {
        const url = new URL(ws.request.url, "http://x")
        const topic = url.pathname.slice(1)
        yield* topics.subscribe(topic, ws, {
          since: url.searchParams.get("since") ?? undefined,
          presence: url.searchParams.get("name") ?? undefined
        })
        yield* ws.run((m) => topics.publish(topic, m))
      })
  })
