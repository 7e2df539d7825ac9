/**
 * `Cluster.primary` and `Cluster.runMain` in the test process itself: real `node:cluster`
 * workers (`fixtures/clusterWorker.mjs`, set with `cluster.setupPrimary`), forked, killed,
 * replaced and shut down. Every worker a test forks is gone at its end, pass or fail.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schedule, type Scope } from "effect"
import cluster, { type Worker } from "node:cluster"
import { fileURLToPath } from "node:url"
import * as Cluster from "../src/Cluster.js"
import { waitUntil, within } from "./utils.js"

const WORKER_SCRIPT = fileURLToPath(new URL("./fixtures/clusterWorker.mjs", import.meta.url))

/** Workers start slowly on a loaded machine. */
const READY = "20 seconds"

/** True while the process `pid` exists (`kill(pid, 0)` fails with ESRCH once it is gone and reaped). */
const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH"
  }
}

const hasExited = (w: Worker) => w.process.exitCode !== null || w.process.signalCode !== null

type Sigterm = "ignore" | { readonly delay: number }

interface Harness {
  /** Pass as `onWorker`: records the call and the Worker `cluster.fork` just made. */
  readonly onWorker: (pid: number, replacing: number | undefined) => void
  /** Every `onWorker` call, in order, with its time. */
  readonly started: Array<{ readonly pid: number; readonly replacing: number | undefined; readonly at: number }>
  /** Every Worker forked, in order (the one `onWorker` was called for). */
  readonly workers: Array<Worker>
  /** Worker exits seen by `cluster`'s "exit" event, in order, with their time. */
  readonly exits: Array<{ readonly pid: number | undefined; readonly at: number }>
  /** "start <pid> <replacing>" and "exit <pid>", in the order they happened. */
  readonly events: Array<string>
  /** Pids whose worker sent `{ ready }`. */
  readonly ready: Set<number>
  /** `error` events of the Workers. */
  readonly errors: Array<unknown>
  /** How many times the restart schedule was stepped (`driver.next`). */
  readonly steps: () => number
  /** `schedule`, counting its steps in `steps`. */
  readonly counted: (schedule: Schedule.Schedule<unknown, unknown>) => Schedule.Schedule<unknown, unknown>
  /** Waits until `n` workers said they are ready. */
  readonly waitReady: (n: number) => Effect.Effect<void, Error>
  /** Tells `worker` how to react to SIGTERM and waits for its acknowledgement. */
  readonly onSigterm: (worker: Worker, sigterm: Sigterm) => Effect.Effect<void, Error>
  /** Runs `Cluster.primary(options)` in a daemon fiber, interrupted at the end of the test. */
  readonly start: (options: Cluster.Options) => Effect.Effect<Fiber.RuntimeFiber<void>>
  /** The fibers `start` made that the end of the test must not wait for. */
}

/**
 * `cluster.setupPrimary({ exec: clusterWorker.mjs, ...settings })` for the scope, with recorders.
 * At its end: the primaries started are interrupted, every worker still running is SIGKILLed
 * and awaited, the previous cluster settings and listeners are restored. A worker started
 * after that, or beyond `limit` in the test (a mutant forking in a loop), is SIGKILLed as soon as
 * it is forked and `onWorker` throws, which ends the loop.
 */
const harness = (
  settings: Omit<Parameters<typeof cluster.setupPrimary>[0] & {}, "exec"> = {},
  limit = 8
): Effect.Effect<Harness, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const saved = cluster.settings
      cluster.setupPrimary({ ...settings, exec: WORKER_SCRIPT })
      const started: Harness["started"] = []
      const workers: Array<Worker> = []
      const exits: Harness["exits"] = []
      const events: Array<string> = []
      const ready = new Set<number>()
      const acks = new Map<number, number>()
      const errors: Array<unknown> = []
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      let steps = 0
      let closed = false
      const kill = (w: Worker) => {
        if (w.process.pid !== undefined && !hasExited(w)) w.process.kill("SIGKILL")
      }
      const onMessage = (w: Worker, message: unknown) => {
        const m = message as { ready?: number; ack?: unknown }
        if (typeof m?.ready === "number") ready.add(m.ready)
        if (m?.ack !== undefined && w.process.pid !== undefined) acks.set(w.process.pid, (acks.get(w.process.pid) ?? 0) + 1)
      }
      const onExit = (w: Worker) => {
        exits.push({ pid: w.process.pid, at: Date.now() })
        events.push(`exit ${w.process.pid}`)
      }
      cluster.on("message", onMessage)
      cluster.on("exit", onExit)
      const onWorker = (pid: number, replacing: number | undefined) => {
        // `cluster.fork` has just added the new Worker to `cluster.workers`, under the highest id.
        const newest = Object.values(cluster.workers ?? {}).reduce<Worker | undefined>(
          (a, w) => (w !== undefined && (a === undefined || w.id > a.id) ? w : a),
          undefined
        )
        if (newest !== undefined) {
          newest.on("error", (e) => errors.push(e))
          workers.push(newest)
        }
        started.push({ pid, replacing, at: Date.now() })
        events.push(`start ${pid} ${replacing}`)
        if (closed || started.length > limit) {
          if (newest !== undefined) kill(newest)
          throw new Error(closed ? "a worker was started after the test" : `more than ${limit} workers started`)
        }
      }
      const h: Harness = {
        onWorker,
        started,
        workers,
        exits,
        events,
        ready,
        errors,
        steps: () => steps,
        counted: (schedule) => schedule.pipe(Schedule.tapInput(() => Effect.sync(() => void steps++))),
        // `onWorker` is called at the fork, a worker's `ready` comes once node has started it
        waitReady: (n) =>
          waitUntil(() => started.length >= n, `${n} workers forked`, "3 seconds").pipe(
            Effect.zipRight(waitUntil(() => ready.size >= n, `${n} workers ready`, READY))
          ),
        onSigterm: (worker, sigterm) =>
          Effect.suspend(() => {
            const pid = worker.process.pid!
            const before = acks.get(pid) ?? 0
            worker.send({ sigterm })
            return waitUntil(() => (acks.get(pid) ?? 0) > before, `worker ${pid} acknowledging ${JSON.stringify(sigterm)}`)
          }),
        start: (options) =>
          Effect.forkDaemon(Cluster.primary(options)).pipe(Effect.tap((f) => Effect.sync(() => fibers.push(f))))
      }
      return { h, fibers, workers, saved, onMessage, onExit, kill, close: () => (closed = true) }
    }),
    // interruptible: a finalizer is not, and a timeout cannot stop an uninterruptible wait
    ({ close, fibers, kill, onExit, onMessage, saved, workers }) =>
      Effect.interruptible(Effect.gen(function*() {
        for (const f of fibers) yield* Fiber.interrupt(f).pipe(Effect.timeout("1 second"), Effect.ignore)
        close()
        for (const w of workers) kill(w)
        yield* waitUntil(() => workers.every(hasExited), "every worker of the test gone").pipe(Effect.ignore)
        cluster.removeListener("message", onMessage)
        cluster.removeListener("exit", onExit)
        // `setupPrimary` merges into the settings: the previous ones are put back whole
        ;(cluster as { settings: typeof saved }).settings = saved
      }))
  ).pipe(Effect.map(({ h }) => h))

const pids = (workers: ReadonlyArray<Worker>) => workers.map((w) => w.process.pid!)

/** Asserts that every worker has exited with `expected` and that its process is gone. */
const assertGone = (workers: ReadonlyArray<Worker>, expected: { code: number } | { signal: NodeJS.Signals }) => {
  for (const w of workers) {
    const pid = w.process.pid!
    assert.isFalse(isAlive(pid), `worker ${pid} still running after the shutdown`)
    if ("code" in expected) {
      assert.deepStrictEqual([w.process.exitCode, w.process.signalCode], [expected.code, null], `worker ${pid}'s exit`)
    } else {
      assert.strictEqual(w.process.signalCode, expected.signal, `worker ${pid}'s exit`)
    }
  }
}

/** Interrupts the primary (the end of its scope) and waits for its shutdown, at most `bound`. */
const shutdown = (fiber: Fiber.RuntimeFiber<void>, bound: Duration.DurationInput = "4 seconds") =>
  Fiber.interrupt(fiber).pipe(within(bound, "the primary's shutdown"), Effect.timed, Effect.map(([d]) => d))

describe("Cluster.primary", { timeout: 60_000 }, () => {
  it.scopedLive("forks `workers` workers; at the scope's end SIGTERMs each, waits for every exit, restarts none", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const fiber = yield* h.start({
        workers: 3,
        restart: h.counted(Schedule.spaced("50 millis")),
        shutdownTimeout: "10 seconds",
        onWorker: h.onWorker
      })
      yield* h.waitReady(3)
      assert.strictEqual(h.started.length, 3, "onWorker once per worker")
      assert.deepStrictEqual(h.started.map((s) => s.replacing), [undefined, undefined, undefined])
      assert.deepStrictEqual(h.started.map((s) => s.pid), pids(h.workers), "onWorker gets each worker's pid")
      assert.deepStrictEqual([...h.ready].sort(), pids(h.workers).sort())
      assert.strictEqual(new Set(pids(h.workers)).size, 3)
      for (const pid of pids(h.workers)) assert.isTrue(isAlive(pid))
      assert.isNull(fiber.unsafePoll(), "the primary runs until interrupted")

      yield* shutdown(fiber)
      // SIGTERM (the workers exit with code 0 on it), every exit awaited before the shutdown ends
      assertGone(h.workers, { code: 0 })
      // exits while stopping are not restarts: not even a step of the schedule
      yield* Effect.sleep("100 millis")
      assert.strictEqual(h.steps(), 0, "the restart schedule was stepped during the shutdown")
      assert.strictEqual(h.started.length, 3, "a worker was started during the shutdown")
    }))

  it.scopedLive("an 'error' of a running worker (its IPC channel, say) is not its end: it is replaced only when it exits", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const fiber = yield* h.start({ workers: 1, restart: h.counted(Schedule.spaced("50 millis")), onWorker: h.onWorker })
      yield* h.waitReady(1)
      const [a] = h.workers as [Worker]
      a.emit("error", Object.assign(new Error("channel closed"), { code: "ERR_IPC_CHANNEL_CLOSED" }))
      yield* Effect.yieldNow()
      assert.strictEqual(h.steps(), 0, "a restart was scheduled for a worker that is still running")
      assert.isTrue(isAlive(a.process.pid!))
      a.process.kill("SIGKILL")
      yield* waitUntil(() => h.started.length >= 2, "the replacement after the exit")
      assert.deepStrictEqual(h.events.slice(1), [`exit ${a.process.pid}`, `start ${h.started[1]!.pid} ${a.process.pid}`])
      yield* h.waitReady(2)
      yield* shutdown(fiber)
    }))

  it.scopedLive("a worker that exits unexpectedly is replaced after the restart schedule's delay", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const fiber = yield* h.start({
        workers: 2,
        restart: h.counted(Schedule.spaced("50 millis")),
        onWorker: h.onWorker
      })
      yield* h.waitReady(2)
      const [a, b] = h.workers as [Worker, Worker]
      a.process.kill("SIGKILL")
      yield* waitUntil(() => h.started.length >= 3, "the crashed worker's replacement")
      const c = h.workers[2]!
      assert.deepStrictEqual(h.started[2]!.replacing, a.process.pid, "onWorker(new pid, the replaced pid)")
      assert.strictEqual(h.started[2]!.pid, c.process.pid)
      assert.notInclude([a.process.pid, b.process.pid], c.process.pid)
      assert.deepStrictEqual(h.events.slice(2), [`exit ${a.process.pid}`, `start ${c.process.pid} ${a.process.pid}`])
      assert.isAtLeast(h.started[2]!.at - h.exits[0]!.at, 40, "replaced after the schedule's 50 ms")
      assert.strictEqual(h.steps(), 1)
      yield* h.waitReady(3)

      // the replacement is replaced in turn, under its own pid
      c.process.kill("SIGKILL")
      yield* waitUntil(() => h.started.length >= 4, "the replacement's replacement")
      assert.strictEqual(h.started[3]!.replacing, c.process.pid)
      assert.strictEqual(h.steps(), 2)
      yield* h.waitReady(4)

      yield* shutdown(fiber)
      assertGone([b, h.workers[3]!], { code: 0 })
      assert.isFalse(isAlive(a.process.pid!))
      assert.isFalse(isAlive(c.process.pid!))
      assert.strictEqual(h.started.length, 4)
    }))

  it.scopedLive("the default restart schedule: the first replacement ~100 ms after the exit, the next ~200 ms", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const fiber = yield* h.start({ workers: 1, onWorker: h.onWorker })
      yield* h.waitReady(1)
      h.workers[0]!.process.kill("SIGKILL")
      yield* waitUntil(() => h.started.length >= 2, "a replacement (default schedule)", "5 seconds")
      const first = h.started[1]!.at - h.exits[0]!.at
      assert.strictEqual(h.started[1]!.replacing, h.workers[0]!.process.pid)
      yield* h.waitReady(2)
      h.workers[1]!.process.kill("SIGKILL")
      yield* waitUntil(() => h.started.length >= 3, "a second replacement (default schedule)", "5 seconds")
      const second = h.started[2]!.at - h.exits[1]!.at
      assert.strictEqual(h.started[2]!.replacing, h.workers[1]!.process.pid)
      assert.isAtLeast(first, 90, "not replaced at once")
      assert.isBelow(first, 2_000)
      assert.isAtLeast(second, 180, "the delay doubles")
      assert.isBelow(second, 3_000)
      yield* h.waitReady(3)
      yield* shutdown(fiber)
      assertGone([h.workers[2]!], { code: 0 })
    }))

  it.scopedLive("a worker still running after shutdownTimeout is SIGKILLed, then the shutdown completes", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const fiber = yield* h.start({
        workers: 2,
        restart: h.counted(Schedule.spaced("50 millis")),
        shutdownTimeout: "300 millis",
        onWorker: h.onWorker
      })
      yield* h.waitReady(2)
      const [stubborn, polite] = h.workers as [Worker, Worker]
      yield* h.onSigterm(stubborn, "ignore")
      const elapsed = yield* shutdown(fiber, "5 seconds")
      assertGone([polite], { code: 0 })
      assertGone([stubborn], { signal: "SIGKILL" })
      assert.isAtLeast(Duration.toMillis(elapsed), 280, "killed after the timeout, not before")
      assert.strictEqual(h.steps(), 0)
      assert.strictEqual(h.started.length, 2)
    }))

  it.scopedLive("the shutdown ends only when the last worker has exited", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const fiber = yield* h.start({
        workers: 2,
        restart: h.counted(Schedule.spaced("50 millis")),
        shutdownTimeout: "10 seconds",
        onWorker: h.onWorker
      })
      yield* h.waitReady(2)
      const [slow, fast] = h.workers as [Worker, Worker]
      yield* h.onSigterm(slow, { delay: 400 })
      yield* shutdown(fiber)
      assertGone([fast, slow], { code: 0 })
      assert.deepStrictEqual(h.events.slice(2), [`exit ${fast.process.pid}`, `exit ${slow.process.pid}`])
      assert.strictEqual(h.steps(), 0)
    }))

  it.scopedLive("with no live worker the shutdown completes at once, and a pending restart forks nothing", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const fiber = yield* h.start({
        workers: 1,
        restart: h.counted(Schedule.spaced("400 millis")),
        shutdownTimeout: "10 seconds",
        onWorker: h.onWorker
      })
      yield* h.waitReady(1)
      h.workers[0]!.process.kill("SIGKILL")
      yield* waitUntil(() => h.exits.length === 1 && h.steps() === 1, "the crash and its restart's schedule step")
      yield* shutdown(fiber, "2 seconds")
      // the restart's 400 ms delay ends after the shutdown: it must not fork
      yield* Effect.sleep("800 millis")
      assert.strictEqual(h.started.length, 1, "a worker was started after the shutdown")
    }))

  it.scopedLive("a worker whose process could not be spawned: pid -1, replaced after the restart delay, and the shutdown does not wait for it", () =>
    Effect.gen(function*() {
      const h = yield* harness({ cwd: "/nonexistent-cluster-test-dir" })
      const fiber = yield* h.start({
        workers: 1,
        restart: Schedule.spaced("100 millis"),
        shutdownTimeout: "10 seconds",
        onWorker: h.onWorker
      })
      yield* waitUntil(() => h.started.length >= 2, "the replacement of the worker that could not be spawned")
      assert.deepStrictEqual(h.started.slice(0, 2).map((s) => [s.pid, s.replacing]), [[-1, undefined], [-1, -1]])
      assert.strictEqual((h.errors[0] as NodeJS.ErrnoException).code, "ENOENT")
      // no process to wait for: the shutdown ends long before its 10 s timeout
      yield* shutdown(fiber, "2 seconds")
    }))
})

/**
 * `NodeRuntime.runMain` listens to SIGINT/SIGTERM while its program runs and calls
 * `process.exit` after a signal or a failure: `process.exit` is replaced for the test, and the
 * "signal" is a call of the SIGINT listener runMain added (not `process.emit`, which would reach
 * any other listener of the test process).
 */
const runMainHarness = Effect.acquireRelease(
  Effect.sync(() => {
    const exit = process.exit
    const exitCalls: Array<number | string | null | undefined> = []
    process.exit = ((code?: number | string | null) => void exitCalls.push(code)) as typeof process.exit
    const before = process.listeners("SIGINT")
    const added = () => process.listeners("SIGINT").filter((l) => !before.includes(l))
    return { exit, exitCalls, added }
  }),
  ({ added, exit, exitCalls }) =>
    Effect.interruptible(Effect.gen(function*() {
      const n = exitCalls.length
      const pending = added()
      for (const l of pending) (l as () => void)()
      if (pending.length > 0) yield* waitUntil(() => exitCalls.length > n, "runMain's exit").pipe(Effect.ignore)
      process.exit = exit
    }))
).pipe(Effect.map(({ added, exitCalls }) => ({ added, exitCalls })))

/** Calls `f` from a macrotask of its own, outside the test's fiber (as a program's main module would). */
const outsideFiber = (f: () => void) =>
  Effect.async<void>((resume) => void setImmediate(() => {
    f()
    resume(Effect.void)
  }))

describe("Cluster.runMain", { timeout: 60_000 }, () => {
  it.scopedLive("workers: 1 (or 0) runs the program in this process and does not exit after its success", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      for (const workers of [1, 0]) {
        const r = yield* runMainHarness
        let ran: number | undefined
        // asynchronous: NodeRuntime.runMain adds its signal listeners after observing the fiber,
        // and a fiber done at once (a synchronous program) would leave them behind
        const program = Effect.sleep("10 millis").pipe(Effect.andThen(() => void (ran = process.pid)))
        yield* outsideFiber(() => Cluster.runMain(program, { workers, onWorker: h.onWorker }))
        yield* waitUntil(() => ran !== undefined, `the program run (workers: ${workers})`, "5 seconds")
        yield* waitUntil(() => r.added().length === 0, "runMain's end (its SIGINT listener removed)", "5 seconds")
        assert.strictEqual(ran, process.pid)
        assert.deepStrictEqual(r.exitCalls, [])
        assert.strictEqual(h.started.length, 0, "no worker forked")
      }
    }))

  it.scopedLive("workers: 2 runs the primary: the workers are forked, SIGINT stops them, then the process exits 0", () =>
    Effect.gen(function*() {
      const h = yield* harness()
      const r = yield* runMainHarness
      let ran = false
      const program = Effect.sleep("10 millis").pipe(Effect.andThen(() => void (ran = true)))
      yield* outsideFiber(() =>
        Cluster.runMain(program, {
          workers: 2,
          restart: h.counted(Schedule.spaced("50 millis")),
          shutdownTimeout: "5 seconds",
          onWorker: h.onWorker
        })
      )
      yield* h.waitReady(2)
      assert.isFalse(ran, "the program ran in the primary")
      assert.strictEqual(h.started.length, 2)
      const [onSigint] = r.added()
      assert.isDefined(onSigint, "runMain listens to SIGINT")
      ;(onSigint as () => void)()
      yield* waitUntil(() => r.exitCalls.length > 0, "runMain's process.exit after SIGINT", "10 seconds")
      assert.deepStrictEqual(r.exitCalls, [0])
      assertGone(h.workers, { code: 0 })
      assert.strictEqual(h.steps(), 0)
      assert.isFalse(ran)
    }))
})
