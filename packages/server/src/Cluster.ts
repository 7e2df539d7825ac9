/**
 * Every core busy: N worker processes behind one port (`node:cluster`), each running the same
 * program (typically `Layer.launch` of the application's Layer with `Broadcast.layerRedis`, so
 * that topics and presence span the workers).
 *
 * ```ts
 * Cluster.runMain(Layer.launch(App), { workers: 2 })
 * ```
 *
 * - The primary forks the workers and restarts one that exits unexpectedly (a crash, SIGKILL)
 *   after the `restart` schedule's delay; the listening socket is the primary's, so the port
 *   stays open while a worker is replaced.
 * - SIGINT or SIGTERM to the primary stops the restarts and sends SIGTERM to every worker:
 *   each releases its program (the WebSocket server sends 1001 to every connection and waits
 *   for the closing handshakes), then the primary exits. A worker still running after
 *   `shutdownTimeout` is killed.
 * - With `workers: 1` (or fewer) the program runs in this process, no cluster.
 *
 * @since 0.1.0
 */
import { NodeRuntime } from "@effect/platform-node"
import { Duration, Effect, Schedule } from "effect"
import cluster, { type Worker } from "node:cluster"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly workers: number
  /** Delays between restarts of crashed workers. Default: exponential from 100 ms, at most 5 s. */
  readonly restart?: Schedule.Schedule<unknown, unknown> | undefined
  /** How long the primary waits for its workers at shutdown before killing them. Default 10 s. */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
  /** Called in the primary for every worker started (`replacing`: the pid of the one it replaces). */
  readonly onWorker?: ((pid: number, replacing: number | undefined) => void) | undefined
}

/**
 * The primary's part: forks, restarts, and shuts the workers down when interrupted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const primary = (options: Options): Effect.Effect<void> =>
  Effect.gen(function*() {
    const driver = yield* Schedule.driver(
      options.restart ?? Schedule.exponential("100 millis", 2).pipe(Schedule.union(Schedule.spaced("5 seconds")))
    )
    const live = new Set<Worker>()
    let stopping = false
    /** Set by the shutdown: called once the last live worker is gone. */
    let drained: (() => void) | undefined
    const fork = (replacing: number | undefined) => {
      const worker = cluster.fork()
      live.add(worker)
      const pid = worker.process.pid ?? -1
      options.onWorker?.(pid, replacing)
      let done = false
      const gone = () => {
        if (done) return
        done = true
        live.delete(worker)
        if (!stopping) restart(pid)
        else if (live.size === 0) drained?.()
      }
      worker.once("exit", gone)
      // A process that could not be spawned (ENOENT, EAGAIN, ...) has no pid and never emits
      // "exit": its "error" is its end. Other errors (the IPC channel's) are followed by "exit".
      worker.on("error", () => {
        if (worker.process.pid === undefined) gone()
      })
    }
    const restart = (pid: number) =>
      Effect.runFork(
        Effect.flatMap(Effect.orElse(driver.next(undefined), () => Effect.void), () =>
          Effect.sync(() => {
            if (!stopping) fork(pid)
          }))
      )
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        for (let i = 0; i < options.workers; i++) fork(undefined)
      }),
      () =>
        Effect.async<void>((resume) => {
          stopping = true
          if (live.size === 0) return resume(Effect.void)
          const timer = setTimeout(() => {
            for (const w of live) w.process.kill("SIGKILL")
          }, Duration.toMillis(Duration.decode(options.shutdownTimeout ?? "10 seconds")))
          drained = () => {
            clearTimeout(timer)
            resume(Effect.void)
          }
          for (const w of live) w.process.kill("SIGTERM")
        })
    )
    return yield* Effect.never
  }).pipe(Effect.scoped)

/**
 * Runs `program` in `options.workers` worker processes behind one port (or in this process
 * when `workers` is 1 or less), with `NodeRuntime.runMain` in each: SIGINT/SIGTERM end it
 * gracefully.
 *
 * @since 0.1.0
 * @category running
 */
export const runMain = <E>(program: Effect.Effect<unknown, E>, options: Options): void => {
  if (options.workers <= 1 || cluster.isWorker) NodeRuntime.runMain(program)
  else NodeRuntime.runMain(primary(options))
}
