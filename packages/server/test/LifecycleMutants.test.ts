/**
 * A connection's close bookkeeping (`Lifecycle`) and the engine's close-timeout fiber
 * (`CloseTimeouts`): who is reported as having initiated a close the core sent on its own, the
 * handler's grace deadline (armed only for a handler still running), a pending
 * `ping` ended by the transport's close, which ping times the keepalive timeout, the exact bounds
 * of the keepalive and idle deadlines, and the close-timeout fiber's due time, sleep, count of
 * armed deadlines, queue compaction and an interrupted sleep.
 * Each test pins down surviving mutants of a StrykerJS run over `src/internal/lifecycle.ts`.
 */
import { Connection } from "@effect-websocket/protocol/Connection"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, FiberRef, HashSet, Runtime, Schedule } from "effect"
import type { Scope } from "effect"
import { WebSocketClosedError } from "../src/Errors.js"
import { Forker } from "../src/internal/fork.js"
import { CloseTimeouts, Lifecycle } from "../src/internal/lifecycle.js"
import type { LifecycleHost } from "../src/internal/lifecycle.js"
import { resolve } from "../src/internal/options.js"
import type { Limits } from "../src/internal/options.js"
import type { WebSocket } from "../src/WebSocket.js"
import { memoryConnection, MemoryTransport, releaseConnection } from "./memory.js"
import { waitUntil, within } from "./utils.js"

const PING = 0x9

// ------------------------------------------------------------------ Lifecycle on a stub host

/** A host whose close-timeout fiber only counts what is armed. */
const stubHost = (limits: Limits, handlerRunning: boolean) => {
  const armed: Array<unknown> = []
  const host = {
    core: undefined as unknown as Connection,
    options: resolve(limits),
    closeTimeouts: {
      arm: (life: Lifecycle) => {
        const d = { at: 0, life }
        armed.push(d)
        return d
      },
      disarm: () => {}
    } as unknown as CloseTimeouts,
    runFork: () => undefined,
    destroy: () => {},
    interruptHandler: () => false,
    handlerRunning
  } satisfies LifecycleHost
  return { host, armed }
}

/** A protocol core as `transportClosed` reads it. */
const stubCore = (closeSent: unknown) =>
  ({
    failure: undefined,
    closeSent,
    closeOutcome: () => ({ code: 1000, reason: "", wasClean: true })
  }) as unknown as Connection

describe("Lifecycle.transportClosed", () => {
  it.effect("a Close the core sent with no initiator recorded makes the close ours", () =>
    Effect.gen(function*() {
      const { host } = stubHost({}, false)
      const life = new Lifecycle(host)
      life.transportClosed(stubCore({ code: 1000, reason: "" }))
      const info = yield* Deferred.await(life.closedDeferred)
      assert.strictEqual(info.initiatedBy, "local")
    }))

  it.effect("the handler's grace deadline is armed only for a handler still running", () =>
    Effect.sync(() => {
      const done = stubHost({}, false)
      new Lifecycle(done.host).transportClosed(stubCore(undefined))
      assert.strictEqual(done.armed.length, 0, "a finished handler needs no grace")
      const running = stubHost({}, true)
      new Lifecycle(running.host).transportClosed(stubCore(undefined))
      assert.strictEqual(running.armed.length, 1, "a running handler gets the close timeout")
    }))
})

describe("Lifecycle.deadline bounds", () => {
  const at = (limits: Limits, set: (life: Lifecycle) => void) => {
    const life = new Lifecycle(stubHost({ idleTimeout: 0, ...limits }, true).host)
    set(life)
    return (now: number) => life.deadline(now)
  }

  // each deadline falls due exactly at its limit, not a ms before
  const cases: ReadonlyArray<
    readonly [name: string, limits: Limits, set: (life: Lifecycle) => void, due: number, verdict: "cut" | "ping" | "idle"]
  > = [
    ["keepalive timeout: cut keepaliveTimeout after the outstanding ping (no second ping before)", { keepaliveInterval: 100, keepaliveTimeout: 50 }, (l) => Object.assign(l, { pingOutstandingSince: 1_000, lastSeen: 0 }), 1_050, "cut"],
    ["keepalive interval: ping keepaliveInterval after the peer was last seen", { keepaliveInterval: 100, keepaliveTimeout: 50 }, (l) => Object.assign(l, { lastSeen: 1_000 }), 1_100, "ping"],
    ["idle timeout: idle idleTimeout after the last activity", { keepaliveInterval: 0, idleTimeout: 100 }, (l) => Object.assign(l, { lastActivity: 1_000 }), 1_100, "idle"]
  ]
  for (const [name, limits, set, due, verdict] of cases) {
    it.effect(name, () =>
      Effect.sync(() => {
        const d = at(limits, set)
        assert.strictEqual(d(due - 1), "none", "a ms before")
        assert.strictEqual(d(due), verdict)
      }))
  }
})

// ------------------------------------------------------------------ a connection on a memory transport

const quiet = Runtime.setFiberRef(Runtime.defaultRuntime, FiberRef.currentLoggers, HashSet.empty())

/** A started connection whose handler never ends; released with the test's Scope. */
const open = (limits: Limits) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const transport = new MemoryTransport()
      const ws = memoryConnection(transport, resolve({ keepaliveInterval: 0, ...limits }))
      ws.start((_: WebSocket<undefined>) => Effect.never, false, Forker.of(quiet))
      return { ws, transport }
    }),
    releaseConnection
  )

describe("Lifecycle pings on a connection", () => {
  it.live("a ping waiting for its Pong fails as closed when the transport closes", () =>
    Effect.gen(function*() {
      const c = yield* open({})
      const ping = yield* Effect.fork(c.ws.ping())
      yield* c.transport.writtenUntil((fs) => fs.filter((f) => f.op === PING).length >= 1, "1 Ping frame(s) written")
      c.transport.destroy()
      const error = yield* Effect.flip(Fiber.join(ping)).pipe(within("2 seconds", "the pending ping to end"))
      assert.instanceOf(error, WebSocketClosedError)
    }).pipe(Effect.scoped))

  it.live("a user ping with none outstanding starts the keepalive timeout", () =>
    Effect.gen(function*() {
      const c = yield* open({ keepaliveInterval: 10_000, keepaliveTimeout: 5_000 })
      const before = Date.now()
      yield* Effect.fork(c.ws.ping())
      yield* c.transport.writtenUntil((fs) => fs.filter((f) => f.op === PING).length >= 1, "1 Ping frame(s) written")
      const after = Date.now()
      c.ws.checkDeadlines(before + 4_999)
      assert.isFalse(c.transport.destroyed, "still in time")
      c.ws.checkDeadlines(after + 5_000)
      assert.isTrue(c.transport.destroyed, "no Pong within keepaliveTimeout of the ping: cut")
    }).pipe(Effect.scoped))

  it.live("a user ping while a keepalive ping is outstanding does not restart the keepalive timeout", () =>
    Effect.gen(function*() {
      const c = yield* open({ keepaliveInterval: 10_000, keepaliveTimeout: 5_000 })
      const k = Date.now() + 10_000
      c.ws.checkDeadlines(k)
      yield* c.transport.writtenUntil((fs) => fs.filter((f) => f.op === PING).length >= 1, "1 Ping frame(s) written")
      yield* Effect.fork(c.ws.ping())
      yield* c.transport.writtenUntil((fs) => fs.filter((f) => f.op === PING).length >= 2, "2 Ping frame(s) written")
      c.ws.checkDeadlines(k + 4_999)
      assert.isFalse(c.transport.destroyed, "timed from the keepalive ping: still in time")
      c.ws.checkDeadlines(k + 5_000)
      assert.isTrue(c.transport.destroyed)
    }).pipe(Effect.scoped))
})

// ------------------------------------------------------------------ CloseTimeouts on a set clock

/** `Date.now` returns what the test sets (restored with the Scope). */
const setClock = (start: number): Effect.Effect<{ set: (ms: number) => void }, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const real = Date.now
      let now = start
      Date.now = () => now
      return { real, set: (ms: number) => void (now = ms) }
    }),
    ({ real }) => Effect.sync(() => void (Date.now = real))
  )

/**
 * A `fork` that runs the fiber on the default runtime once the test's synchronous steps are done
 * (the clock set after an arm is what the fiber sees first); the fibers are interrupted with the
 * Scope.
 */
const forks = Effect.acquireRelease(
  Effect.sync(() => {
    const fibers: Array<Fiber.RuntimeFiber<void>> = []
    const fork = (effect: Effect.Effect<void>) => {
      const fiber = Effect.runFork(Effect.zipRight(Effect.yieldNow(), effect))
      fibers.push(fiber)
      return fiber
    }
    return { fibers, fork }
  }),
  ({ fibers }) => Effect.forEach(fibers, Fiber.interrupt, { discard: true })
)

/** A closing connection as the close-timeout fiber sees it; `then` runs when its deadline fires. */
const stub = (fired: Array<string>, name: string, then?: () => void) =>
  ({
    timerFired: () => {
      fired.push(name)
      then?.()
    }
  }) as unknown as Lifecycle

/** The fiber's queue, read through a cast: its compaction changes nothing else. */
const queueState = (t: CloseTimeouts) => {
  const p = t as unknown as { queue: Array<unknown>; head: number }
  return { length: p.queue.length, head: p.head }
}

/** A `CloseTimeouts` of `timeout` ms on a clock set to `now`, with the fibers it forks and the deadlines that fired. */
const closeTimeoutsAt = (now: number, timeout: number) =>
  Effect.gen(function*() {
    const clock = yield* setClock(now)
    const { fibers, fork } = yield* forks
    return { clock, fibers, fork, fired: [] as Array<string>, t: new CloseTimeouts(timeout) }
  })

describe("CloseTimeouts on a set clock", () => {
  it.live("a deadline fires when the clock reaches it exactly", () =>
    Effect.gen(function*() {
      yield* setClock(1_000)
      const { fork } = yield* forks
      const fired: Array<string> = []
      new CloseTimeouts(0).arm(stub(fired, "a"), fork)
      yield* waitUntil(() => fired.length === 1, "the deadline due now to fire", "2 seconds")
    }).pipe(Effect.scoped))

  it.live("the fiber sleeps until the first deadline, not longer", () =>
    Effect.gen(function*() {
      const { clock, fork, fired, t } = yield* closeTimeoutsAt(999_980, 20)
      t.arm(stub(fired, "z", () => clock.set(1_000_020)), fork) // due at 1_000_000
      clock.set(1_000_000)
      t.arm(stub(fired, "a"), fork) // due at 1_000_020: the fiber sleeps 20 ms for it
      yield* waitUntil(() => fired.length === 2, "the second deadline to fire after a 20 ms sleep", "2 seconds")
      assert.deepStrictEqual(fired, ["z", "a"])
    }).pipe(Effect.scoped))

  it.live("a fired deadline is no longer armed: disarming the last one left wakes the fiber, which ends", () =>
    Effect.gen(function*() {
      const { clock, fibers, fork, fired, t } = yield* closeTimeoutsAt(0, 1_000_000)
      t.arm(stub(fired, "a"), fork) // due at 1_000_000
      clock.set(500_000)
      const b = t.arm(stub(fired, "b"), fork) // due at 1_500_000
      clock.set(1_000_000)
      yield* waitUntil(() => fired.length === 1, "the first deadline to fire", "2 seconds")
      t.disarm(b)
      yield* Fiber.await(fibers[0]!).pipe(within("2 seconds", "the fiber to end once nothing is armed"))
      assert.deepStrictEqual(fired, ["a"])
    }).pipe(Effect.scoped))

  it.live("an interrupted sleep leaves no timer behind to disturb the next fiber", () =>
    Effect.gen(function*() {
      const { clock, fibers, fork, fired, t } = yield* closeTimeoutsAt(0, 1_000_000)
      t.arm(stub(fired, "a"), fork) // due at 1_000_000
      clock.set(1_000_000 - 20) // the first fiber sleeps 20 ms
      yield* Fiber.status(fibers[0]!).pipe(
        Effect.repeat({ until: (s) => s._tag === "Suspended", schedule: Schedule.spaced("2 millis") }),
        within("2 seconds", "the first fiber to sleep")
      )
      yield* Fiber.interrupt(fibers[0]!)
      clock.set(1_000_000)
      const b = t.arm(stub(fired, "b"), fork) // a fires at once; the second fiber sleeps 1_000 s for b
      assert.strictEqual(fibers.length, 2)
      yield* waitUntil(() => fired.length === 1, "the first deadline to fire", "2 seconds")
      // the first fiber's 20 ms timer was due before this one
      yield* Effect.async<void>((resume) => void setTimeout(() => resume(Effect.void), 40))
      t.disarm(b)
      yield* Fiber.await(fibers[1]!).pipe(within("2 seconds", "the second fiber to end once nothing is armed"))
    }).pipe(Effect.scoped))

  /**
   * `due` deadlines fire, then the fiber sleeps for the first of `pending` later ones: the queue
   * as it is then.
   */
  const compaction = (due: number, pending: number) =>
    Effect.gen(function*() {
      const { clock, fork, fired, t } = yield* closeTimeoutsAt(0, 1_000)
      for (let i = 0; i < due; i++) t.arm(stub(fired, "due"), fork) // due at 1_000
      clock.set(1)
      for (let i = 0; i < pending; i++) t.arm(stub(fired, "pending"), fork) // due at 1_001
      clock.set(1_000)
      yield* waitUntil(() => fired.length === due, `${due} deadlines to fire`, "2 seconds")
      return queueState(t)
    }).pipe(Effect.scoped)

  it.live("the queue is compacted once 1024 or more fired entries make at least half of it", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* compaction(1024, 1), { length: 1, head: 0 }, "1024 of 1025")
      assert.deepStrictEqual(yield* compaction(1024, 1024), { length: 1024, head: 0 }, "1024 of 2048")
      assert.deepStrictEqual(yield* compaction(1024, 1025), { length: 2049, head: 1024 }, "1024 of 2049: under half")
      assert.deepStrictEqual(yield* compaction(1, 1), { length: 2, head: 1 }, "1 of 2: too few to bother")
    }))
})
