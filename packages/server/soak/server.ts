/**
 * The soak test's server: our WebSocketServer with an echo handler, in its own process so
 * that its RSS and handles are measured apart from the load generator. Driven over IPC by
 * `run.ts`: it answers "stats" (after a GC when asked) and shuts down on "stop".
 */
import { Effect, Exit, Scope, Stream } from "effect"
import { performance } from "node:perf_hooks"
import * as WebSocketServer from "../src/WebSocketServer.js"

interface Request {
  readonly type: "stats" | "stop"
  readonly gc?: boolean
}

const deflate = process.argv.includes("--deflate")
const totals = { opened: 0, messages: 0, cleanCloses: 0, abnormalCloses: 0, failedCloses: 0 }

const handles = (): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1
  return out
}

const main = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const server = yield* WebSocketServer.make({
    backlog: 4096,
    keepaliveInterval: 5_000,
    keepaliveTimeout: 5_000,
    closeTimeout: 2_000,
    perMessageDeflate: deflate,
    handler: (ws) =>
      Effect.gen(function*() {
        totals.opened++
        yield* Effect.forkDaemon(
          Effect.exit(ws.closed).pipe(
            Effect.flatMap((exit) =>
              Effect.sync(() => {
                if (Exit.isFailure(exit)) totals.failedCloses++
                else if (exit.value.wasClean) totals.cleanCloses++
                else totals.abnormalCloses++
              })
            )
          )
        )
        yield* Stream.runForEach(ws.messages, (m) => {
          totals.messages++
          return ws.send(m)
        })
      })
  }).pipe(Scope.extend(scope))

  let elu = performance.eventLoopUtilization()
  const stats = (gc: boolean) =>
    Effect.gen(function*() {
      if (gc && typeof globalThis.gc === "function") {
        for (let i = 0; i < 3; i++) {
          globalThis.gc()
          yield* Effect.sleep(50)
        }
      }
      const mem = process.memoryUsage()
      const now = performance.eventLoopUtilization()
      const busy = performance.eventLoopUtilization(now, elu).utilization
      elu = now
      return {
        type: "stats" as const,
        connections: yield* server.connections,
        rss: mem.rss,
        heapUsed: mem.heapUsed,
        external: mem.external,
        arrayBuffers: mem.arrayBuffers,
        eventLoopUtilization: busy,
        handles: handles(),
        totals: { ...totals }
      }
    })

  process.send!({ type: "ready", port: server.address.port })
  yield* Effect.async<void>((resume) => {
    process.on("message", (req: Request) => {
      if (req.type === "stats") {
        Effect.runPromise(stats(req.gc === true)).then((s) => process.send!(s))
      } else if (req.type === "stop") {
        resume(Effect.void)
      }
    })
    process.on("disconnect", () => resume(Effect.void))
  })
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromise(main).then(
  () => process.exit(0),
  (e) => {
    console.error("soak server failed", e)
    process.exit(1)
  }
)
