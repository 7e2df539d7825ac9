/**
 * What the pieces of a connection's Effect shape cost on their own, in process CPU time and heap:
 * the floor under the reader fiber's resume per read, a fork per connection, a Scope per
 * connection, and an idle suspended fiber. The server README's "What this shape costs" uses these
 * figures to say which part of the budget each piece takes.
 *
 *   pnpm bench:fibers            (run with --expose-gc for the heap figures)
 */
import { Effect, Exit, FiberRef, FiberRefs, Runtime, Scope } from "effect"
import type { Scheduler } from "effect"

const inline: Scheduler.Scheduler = { shouldYield: () => false, scheduleTask: (task) => task() }

const cpu = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

/** Best of 5 rounds of `n` iterations, in µs per iteration. */
const measure = async (n: number, body: (n: number) => void | Promise<void>): Promise<number> => {
  let best = Infinity
  for (let round = 0; round < 5; round++) {
    const start = cpu()
    await body(n)
    best = Math.min(best, (cpu() - start) / n)
  }
  return best
}

/** A fiber suspended in `Effect.async`, resumed `n` times from outside (as a socket callback does). */
const resumes = (scheduler: Scheduler.Scheduler | undefined) => async (n: number) => {
  let resume: ((e: Effect.Effect<void>) => void) | undefined
  let count = 0
  const wait = Effect.async<void>((r) => {
    resume = r
  })
  const step: Effect.Effect<void> = Effect.suspend(() => ++count >= n ? Effect.void : wait)
  const fiber = Runtime.runFork(Runtime.defaultRuntime)(
    Effect.suspend(() => wait),
    scheduler === undefined ? {} : { scheduler }
  )
  while (count < n) {
    const r = resume
    resume = undefined
    if (r !== undefined) r(step)
    // on the default scheduler the resume runs a microtask later
    else await Promise.resolve()
  }
  await Effect.runPromise(fiber.await)
}

const forks = (n: number) => {
  const run = Runtime.runFork(Runtime.defaultRuntime)
  for (let i = 0; i < n; i++) run(Effect.void)
}

const scopes = (n: number) => {
  const one = Effect.flatMap(Scope.make(), (scope) =>
    Effect.zipRight(Scope.addFinalizer(scope, Effect.void), Scope.close(scope, Exit.void)))
  Effect.runSync(Effect.repeatN(one, n - 1))
}

const calls = (n: number) => {
  let x = 0
  const f = () => {
    x++
  }
  for (let i = 0; i < n; i++) f()
  if (x !== n) throw new Error("unreachable")
}

/** Heap bytes per fiber suspended in `Effect.async` (kept alive), with --expose-gc. */
const idleFiberBytes = (n: number, options: Runtime.RunForkOptions): number | undefined => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) return undefined
  gc()
  const before = process.memoryUsage().heapUsed
  const keep: Array<unknown> = []
  // one parameter, as the reader's: `Effect.async` gives a register of another arity an AbortSignal
  const wait = Effect.async<void>((_resume) => {})
  for (let i = 0; i < n; i++) keep.push(Runtime.runFork(Runtime.defaultRuntime)(wait, options))
  gc()
  const after = process.memoryUsage().heapUsed
  keep.length = 0
  return (after - before) / n
}

const N = 200_000
console.log("CPU µs per operation (best of 5), this process")
console.log(`  plain function call                        ${(await measure(N, calls)).toFixed(3)}`)
console.log(`  resume a suspended fiber, inline scheduler ${(await measure(N, resumes(inline))).toFixed(3)}`)
console.log(`  resume a suspended fiber, default scheduler ${(await measure(N, resumes(undefined))).toFixed(3)}`)
console.log(`  fork a fiber that ends at once             ${(await measure(N / 4, forks)).toFixed(3)}`)
console.log(`  Scope: make, add a finalizer, close        ${(await measure(N / 4, scopes)).toFixed(3)}`)
const bytes = idleFiberBytes(20_000, { scheduler: inline })
const bare = idleFiberBytes(20_000, {
  scheduler: inline,
  updateRefs: (_refs, id) => FiberRefs.unsafeMake(new Map([[FiberRef.currentScheduler, [[id, inline]]]]))
})
console.log(
  bytes === undefined
    ? "heap per idle fiber: run with node --expose-gc"
    : `heap bytes per fiber suspended in Effect.async: ${bytes.toFixed(0)} with the default runtime's FiberRefs, ${
      bare!.toFixed(0)
    } with one FiberRef`
)
