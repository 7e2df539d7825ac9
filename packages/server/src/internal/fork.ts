import { Context, Effect, FiberSet, RuntimeFlags, Runtime, Scope } from "effect"
import type { Fiber } from "effect"

/** `runFork` of a runtime whose services are `R`. */
export type RunFork<R> = <A, EX>(
  effect: Effect.Effect<A, EX, R>,
  options?: Runtime.RunForkOptions | undefined
) => Fiber.RuntimeFiber<A, EX>

/**
 * How an engine starts its fibers: `run` for its own (an upgrade hook, the deadline sweep, a
 * connection's reader), and `connection` for a connection's fiber, which is forked with the
 * connection's Scope already in its context and interruption already off, instead of taking
 * three steps on the new fiber to get there (measured in the server README: it is most of what a
 * fiber costs a handshake beyond the fork itself). With a FiberSet (the standalone server and
 * the HTTP routes), every fiber joins it, so that what is left when the server's scope closes is
 * interrupted.
 */
export class Forker<R> {
  private readonly connectionFlags: RuntimeFlags.RuntimeFlags

  constructor(
    readonly runtime: Runtime.Runtime<R>,
    readonly run: RunFork<R>,
    private readonly set: FiberSet.FiberSet | undefined
  ) {
    this.connectionFlags = RuntimeFlags.disable(runtime.runtimeFlags, RuntimeFlags.Interruption)
  }

  /** A forker for the runtime of the fiber that asks (an upgrade hook's), joining no set. */
  static of<R>(runtime: Runtime.Runtime<R>): Forker<R> {
    return new Forker(runtime, Runtime.runFork(runtime), undefined)
  }

  /**
   * Forks a connection's fiber: `scope` in its context and interruption off from its first step
   * (the fiber turns it on around the handler alone).
   */
  connection<A, E>(effect: Effect.Effect<A, E, R | Scope.Scope>, scope: Scope.Scope): Fiber.RuntimeFiber<A, E> {
    const runtime = this.runtime
    const fiber = Runtime.runFork(
      Runtime.make({
        context: Context.add(runtime.context, Scope.Scope, scope),
        fiberRefs: runtime.fiberRefs,
        runtimeFlags: this.connectionFlags
      }),
      effect as Effect.Effect<A, E, R>
    )
    if (this.set !== undefined) FiberSet.unsafeAdd(this.set, fiber)
    return fiber
  }
}

/** A forker for the running fiber's runtime, its fibers in a FiberSet closed with the current Scope. */
export const makeForker = <R>(): Effect.Effect<Forker<R>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const set = yield* FiberSet.make()
    const run = yield* FiberSet.runtime(set)<R>()
    const runtime = yield* Effect.runtime<R>()
    return new Forker(runtime, run, set)
  })

/**
 * How Scopes are made synchronously (a connection's Scope exists before its fiber does).
 *
 * Effect 3 makes Scopes only through an Effect (`Scope.make`), and code such as `Effect.forkIn`
 * reads a Scope's internal state, so the Scope has to be Effect's own, not an implementation of
 * the interface. A new one is made the way `Scope.make` makes it: from the prototype of a Scope
 * made once by `Scope.make`, with the state an open Scope has. That shape is checked once, at
 * load, against the Scope `Scope.make` returned; if this version of Effect makes them otherwise,
 * every Scope comes from `Scope.make` through `Effect.runSync` (slower, the same behaviour), and
 * `direct` says so. `sample` is a Scope `Scope.make` returned.
 */
export const scopeMaker = (
  sample: Scope.CloseableScope
): { readonly make: () => Scope.CloseableScope; readonly direct: boolean } => {
  const slow = () => Effect.runSync(Scope.make())
  const state = (sample as { readonly state?: { readonly _tag?: unknown; readonly finalizers?: unknown } }).state
  const sameShape = Object.keys(sample).join() === "strategy,state" &&
    state !== undefined && Object.keys(state).join() === "_tag,finalizers" &&
    state._tag === "Open" && state.finalizers instanceof Map && state.finalizers.size === 0
  if (!sameShape) return { make: slow, direct: false }
  const proto = Object.getPrototypeOf(sample) as object
  const strategy = sample.strategy
  const make = () => {
    const scope = Object.create(proto) as { strategy: unknown; state: unknown }
    scope.strategy = strategy
    scope.state = { _tag: "Open", finalizers: new Map() }
    return scope as unknown as Scope.CloseableScope
  }
  return { make, direct: true }
}

/** Scopes made the fast way when this version of Effect allows it (`scopeMaker`). */
export const scopes = scopeMaker(Effect.runSync(Scope.make()))
