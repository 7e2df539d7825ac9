/**
 * What quiet connections keep of what they received: `--conns` clients of a server whose handler
 * is `Stream.runForEach(ws.messages, ws.send)` each send one binary message of `--size` bytes, get
 * its echo and stay open without a word. After `--quiet` ms (the deadline sweep's tick is 1 s with
 * the default options) and a full collection, the growth of the process's ArrayBuffer memory
 * since before the first connection, per connection, is what the connections still hold.
 *
 *   pnpm bench:retention [--conns 200] [--size 262144] [--quiet 1500] [--from <checkout>]
 *
 * `--from` loads the server from another checkout's sources (a `git worktree` at an earlier
 * commit, with its dependencies installed), for a before/after in one sitting.
 */
import type * as EffectModule from "effect"
import { createRequire } from "node:module"
import { join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import WebSocket from "ws"
import type * as WebSocketServerModule from "../packages/server/src/WebSocketServer.js"
import { flag } from "./src/cli.js"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const conns = Number(flag("conns", "200"))
const size = Number(flag("size", String(256 * 1024)))
const quiet = Number(flag("quiet", "1500"))
const from = resolve(flag("from", join(import.meta.dirname, "..")))
const { make } = (await import(join(from, "packages/server/src/WebSocketServer.ts"))) as typeof WebSocketServerModule
// the handler's Effect is the one that checkout's server runs on
const effectEntry = createRequire(join(from, "packages/server/package.json")).resolve("effect")
const { Effect, Stream } = (await import(pathToFileURL(effectEntry).href)) as typeof EffectModule

const once = (ws: WebSocket, event: "open" | "message") =>
  Effect.async<void>((resume) => void ws.once(event, () => resume(Effect.void)))

const program = Effect.gen(function*() {
  const server = yield* make({ handler: (ws) => Stream.runForEach(ws.messages, ws.send) })
  gc()
  const before = process.memoryUsage().arrayBuffers
  const clients: Array<WebSocket> = []
  yield* Effect.addFinalizer(() => Effect.sync(() => clients.forEach((c) => c.terminate())))
  for (let i = 0; i < conns; i++) {
    const client = new WebSocket(server.url)
    clients.push(client)
    yield* once(client, "open")
    client.send(Buffer.alloc(size, 1))
    yield* once(client, "message")
  }
  yield* Effect.sleep(quiet)
  gc()
  yield* Effect.sleep(0)
  gc()
  const grown = process.memoryUsage().arrayBuffers - before
  console.log(
    `${from}: ${conns} quiet connections, one ${size}-byte echo each, ${quiet} ms later: ArrayBuffer memory ` +
      `${grown >= 0 ? "+" : ""}${(grown / 2 ** 20).toFixed(1)} MiB (${(grown / conns / 1024).toFixed(1)} KiB per connection)`
  )
})

await Effect.runPromise(Effect.scoped(program))
