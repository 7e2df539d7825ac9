/**
 * The engine's close-timeout fiber (`CloseTimeouts`) on its own: deadlines fire in the order they
 * were armed and never early, a cleared deadline never fires, the fiber ends when its queue is
 * empty, and a fiber that was interrupted is replaced by the next arm. The connections here are
 * stubs: the wire-level behaviour is in Lifecycle.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scheduler } from "effect"
import { CloseTimeouts } from "../src/internal/lifecycle.js"
import type { Lifecycle } from "../src/internal/lifecycle.js"

/** A closing connection as the close-timeout fiber sees it: it records when its deadline fired. */
const stub = (fired: Array<{ name: string; at: number }>, name: string) =>
  ({ timerFired: () => fired.push({ name, at: Date.now() }) }) as unknown as Lifecycle

/** A `fork` that runs the fiber on the default runtime and keeps it for the test. */
const forks = () => {
  const fibers: Array<Fiber.RuntimeFiber<void>> = []
  const fork = (effect: Effect.Effect<void>) => {
    const fiber = Effect.runFork(effect)
    fibers.push(fiber)
    return fiber
  }
  return { fibers, fork }
}

/**
 * Records, in one list, when a fiber exits and when a marker timer set `ms` from now fires: the
 * order of the two says whether the fiber outlived the moment the marker stands for.
 */
const race = (fiber: Fiber.RuntimeFiber<void>, ms: number) => {
  const events: Array<string> = []
  fiber.addObserver(() => events.push("fiber ended"))
  setTimeout(() => events.push("marker"), ms)
  return events
}

const waitFor = (what: string, pred: () => boolean, ms = 2_000) =>
  Effect.timeoutFail(
    Effect.gen(function*() {
      while (!pred()) yield* Effect.sleep(2)
    }),
    { duration: ms, onTimeout: () => new Error(`timed out after ${ms} ms waiting for ${what}`) }
  )

describe("CloseTimeouts", () => {
  it.live("fires each deadline no earlier than the timeout, in the order armed; a cleared one never fires", () =>
    Effect.gen(function*() {
      const fired: Array<{ name: string; at: number }> = []
      const { fibers, fork } = forks()
      const timeouts = new CloseTimeouts(60)
      const armedAt: Record<string, number> = {}
      for (const name of ["a", "b", "c", "d"]) {
        armedAt[name] = Date.now()
        const deadline = timeouts.arm(stub(fired, name), fork)
        if (name === "b") timeouts.disarm(deadline) // b's connection closed in time
        yield* Effect.sleep(10)
      }
      assert.strictEqual(fibers.length, 1, "one fiber for deadlines armed while it runs")
      yield* waitFor("a, c and d to fire", () => fired.length >= 3)
      yield* Fiber.await(fibers[0]!)
      assert.deepStrictEqual(fired.map((f) => f.name), ["a", "c", "d"])
      for (const f of fired) assert.isAtLeast(f.at - armedAt[f.name]!, 60 - 1, `${f.name} fired early`)
    }))

  it.live("the fiber ends when its queue is empty; the next arm starts another", () =>
    Effect.gen(function*() {
      const fired: Array<{ name: string; at: number }> = []
      const { fibers, fork } = forks()
      const timeouts = new CloseTimeouts(20)
      timeouts.arm(stub(fired, "a"), fork)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fibers[0]!)), "the fiber ends, it does not fail")
      assert.deepStrictEqual(fired.map((f) => f.name), ["a"])
      timeouts.arm(stub(fired, "b"), fork)
      assert.strictEqual(fibers.length, 2, "a new fiber once the first has ended")
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fibers[1]!)))
      assert.deepStrictEqual(fired.map((f) => f.name), ["a", "b"])
    }))

  it.live("a cleared deadline does not keep the fiber: it ends with the last armed one", () =>
    Effect.gen(function*() {
      const fired: Array<{ name: string; at: number }> = []
      const { fibers, fork } = forks()
      const timeouts = new CloseTimeouts(400)
      timeouts.arm(stub(fired, "a"), fork)
      yield* Effect.sleep(200)
      timeouts.disarm(timeouts.arm(stub(fired, "b"), fork)) // b's connection closed in time
      // a falls due 200 ms from now, b would 400 ms from now: a marker between the two
      const events = race(fibers[0]!, 300)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fibers[0]!)))
      assert.deepStrictEqual(fired.map((f) => f.name), ["a"])
      yield* waitFor("the marker at b's deadline", () => events.includes("marker"))
      assert.deepStrictEqual(events, ["fiber ended", "marker"], "the fiber slept until a cleared deadline")
    }))

  it.live("disarming the last armed deadline ends the fiber at once; one armed right after still fires", () =>
    Effect.gen(function*() {
      const fired: Array<{ name: string; at: number }> = []
      const { fibers, fork } = forks()
      const timeouts = new CloseTimeouts(300)
      const a = timeouts.arm(stub(fired, "a"), fork)
      // a marker halfway to a's deadline: disarming ends the fiber well before it
      const events = race(fibers[0]!, 150)
      yield* Effect.sleep(10)
      timeouts.disarm(a)
      assert.isTrue(Exit.isSuccess(yield* Fiber.await(fibers[0]!)))
      yield* waitFor("the marker at a's deadline", () => events.includes("marker"))
      assert.deepStrictEqual(events, ["fiber ended", "marker"], "the fiber waited for a disarmed deadline")
      assert.deepStrictEqual(fired, [])
      // disarm and arm again before the woken fiber has run: the same fiber serves the new deadline
      const b = timeouts.arm(stub(fired, "b"), fork)
      yield* Effect.sleep(10)
      timeouts.disarm(b)
      timeouts.arm(stub(fired, "c"), fork)
      assert.strictEqual(fibers.length, 2, "the woken fiber was still running: no new one")
      yield* waitFor("c to fire", () => fired.length === 1)
      assert.deepStrictEqual(fired.map((f) => f.name), ["c"])
    }))

  it.live("a deadline armed after the queue emptied but before the fiber's exit still fires", () =>
    Effect.gen(function*() {
      const fired: Array<{ name: string; at: number }> = []
      const timeouts = new CloseTimeouts(20)
      // A scheduler that makes the fiber yield once `inGap` is set and runs `inGap` before the
      // fiber resumes: set when a's deadline fires, it runs right after the step that emptied
      // the queue, before the fiber's exit is handled
      let inGap: (() => void) | undefined
      const scheduler: Scheduler.Scheduler = {
        shouldYield: () => inGap === undefined ? false : 0,
        scheduleTask: (task) => {
          const hook = inGap
          inGap = undefined
          setTimeout(() => {
            hook?.()
            task()
          }, 0)
        }
      }
      const fibers: Array<Fiber.RuntimeFiber<void>> = []
      const fork = (effect: Effect.Effect<void>) => fibers.push(Effect.runFork(effect, { scheduler }))
      const a = {
        timerFired: () => {
          fired.push({ name: "a", at: Date.now() })
          inGap = () => timeouts.arm(stub(fired, "b"), fork)
        }
      } as unknown as Lifecycle
      timeouts.arm(a, fork)
      yield* waitFor("b to fire", () => fired.length === 2)
      assert.deepStrictEqual(fired.map((f) => f.name), ["a", "b"])
      assert.strictEqual(fibers.length, 2, "b was armed when the first fiber had let go of the queue: a second fiber")
    }))

  it.live("a fiber that was interrupted (its runtime shut down) is replaced by the next arm", () =>
    Effect.gen(function*() {
      const fired: Array<{ name: string; at: number }> = []
      const { fibers, fork } = forks()
      const timeouts = new CloseTimeouts(50)
      timeouts.arm(stub(fired, "lost"), fork)
      yield* Fiber.interrupt(fibers[0]!)
      timeouts.arm(stub(fired, "next"), fork)
      assert.strictEqual(fibers.length, 2, "the interrupted fiber no longer counts as running")
      yield* waitFor("the next deadline to fire", () => fired.some((f) => f.name === "next"))
    }))

  it.live("many deadlines, most cleared: the armed ones still fire, in order", () =>
    Effect.gen(function*() {
      const fired: Array<{ name: string; at: number }> = []
      const { fibers, fork } = forks()
      const timeouts = new CloseTimeouts(30)
      const keep = new Set([0, 1500, 2999])
      for (let i = 0; i < 3000; i++) {
        const deadline = timeouts.arm(stub(fired, String(i)), fork)
        if (!keep.has(i)) timeouts.disarm(deadline)
      }
      yield* Fiber.await(fibers[0]!)
      assert.deepStrictEqual(fired.map((f) => f.name), ["0", "1500", "2999"])
      assert.strictEqual(fibers.length, 1)
    }))
})
