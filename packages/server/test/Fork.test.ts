/**
 * How connection fibers start (`internal/fork.ts`): their Scope is made synchronously, before
 * the fiber, and must be Effect's own Scope in every respect, since Effect's combinators
 * (`forkIn`, `forkScoped`) read a Scope's state. Checked against `Scope.make` on random
 * programs, and through a real connection whose handler uses `Effect.forkScoped`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, ExecutionStrategy, Exit, FastCheck as fc, Scope, Stream } from "effect"
import { scopeMaker, scopes } from "../src/internal/fork.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connect, within } from "./utils.js"

type Op =
  | { readonly _tag: "add" }
  | { readonly _tag: "dies" }
  | { readonly _tag: "fork" }
  | { readonly _tag: "addToChild"; readonly child: number }
  | { readonly _tag: "closeChild"; readonly child: number }
  | { readonly _tag: "forkIn" }

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ _tag: "add" }),
  fc.constant<Op>({ _tag: "dies" }),
  fc.constant<Op>({ _tag: "fork" }),
  fc.nat(5).map((child): Op => ({ _tag: "addToChild", child })),
  fc.nat(5).map((child): Op => ({ _tag: "closeChild", child })),
  fc.constant<Op>({ _tag: "forkIn" })
)

/** Runs `ops` on `scope`, closes it with `exit`, adds one more finalizer; what ran, in order, and how the close ended. */
const trace = (scope: Scope.CloseableScope, ops: ReadonlyArray<Op>, exit: Exit.Exit<unknown, string>) =>
  Effect.gen(function*() {
    const log: Array<string> = []
    const children: Array<Scope.CloseableScope> = []
    const note = (what: string) => (e: Exit.Exit<unknown, unknown>) => Effect.sync(() => log.push(`${what}:${e._tag}`))
    for (const [i, o] of ops.entries()) {
      switch (o._tag) {
        case "add":
          yield* Scope.addFinalizerExit(scope, note(`f${i}`))
          break
        case "dies":
          yield* Scope.addFinalizer(scope, Effect.die(`d${i}`))
          break
        case "fork": {
          const child = yield* Scope.fork(scope, ExecutionStrategy.sequential)
          yield* Scope.addFinalizerExit(child, note(`c${i}`))
          children.push(child)
          break
        }
        case "addToChild": {
          const child = children[o.child]
          if (child !== undefined) yield* Scope.addFinalizerExit(child, note(`a${i}`))
          break
        }
        case "closeChild": {
          const child = children[o.child]
          if (child !== undefined) yield* Scope.close(child, Exit.void)
          break
        }
        case "forkIn": {
          const started = yield* Deferred.make<void>()
          yield* Effect.forkIn(
            Effect.zipRight(Deferred.succeed(started, undefined), Effect.onInterrupt(Effect.never, () => Effect.sync(() => log.push(`i${i}`)))),
            scope
          )
          yield* Deferred.await(started)
          break
        }
      }
    }
    const closed = yield* Effect.exit(Scope.close(scope, exit))
    yield* Scope.addFinalizerExit(scope, note("late"))
    return { log, closed: closed._tag }
  })

describe("a connection's Scope, made synchronously", () => {
  it("is Effect's own Scope on the Effect version installed", () => {
    assert.isTrue(scopes.direct, "this version of Effect makes Scopes otherwise: every connection pays Effect.runSync")
    assert.strictEqual(Object.getPrototypeOf(scopes.make()), Object.getPrototypeOf(Effect.runSync(Scope.make())))
  })

  it.effect("behaves as Scope.make's on random programs (finalizers, children, forkIn fibers, dying finalizers, late ones)", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 12 }), fc.boolean(), async (ops, fails) => {
          const exit: Exit.Exit<unknown, string> = fails ? Exit.fail("boom") : Exit.void
          const ours = await Effect.runPromise(trace(scopes.make(), ops, exit))
          const effects = await Effect.runPromise(Effect.flatMap(Scope.make(), (s) => trace(s, ops, exit)))
          assert.deepStrictEqual(ours, effects)
        }),
        { numRuns: 200 }
      )
    ))

  it("takes the direct path only for a sample shaped as an open, empty Scope of Effect's", () => {
    const sample = () => Effect.runSync(Scope.make()) as Scope.CloseableScope & { state: unknown }
    const withExtraKey = Object.assign(sample(), { extra: 1 })
    const closed = sample()
    Effect.runSync(Scope.close(closed, Exit.void))
    const holding = sample()
    Effect.runSync(Scope.addFinalizer(holding, Effect.void))
    const otherState = sample()
    otherState.state = { _tag: "Open", finalizers: new Map(), more: 1 }
    const setState = sample()
    setState.state = { _tag: "Open", finalizers: new Set() }
    const cases: ReadonlyArray<[string, Scope.CloseableScope, boolean]> = [
      ["a Scope fresh from Scope.make", sample(), true],
      ["one with a key more", withExtraKey, false],
      ["a closed one", closed, false],
      ["one holding a finalizer", holding, false],
      ["one whose state has a key more", otherState, false],
      ["one whose finalizers are not a Map", setState, false]
    ]
    for (const [name, scope, direct] of cases) assert.strictEqual(scopeMaker(scope).direct, direct, name)
  })

  it.effect("falls back to Scope.make when a Scope has another shape", () =>
    Effect.gen(function*() {
      const odd = Object.assign(Object.create(null), { strategy: ExecutionStrategy.sequential }) as Scope.CloseableScope
      const maker = scopeMaker(odd)
      assert.isFalse(maker.direct)
      const scope = maker.make()
      const log: Array<string> = []
      yield* Scope.addFinalizer(scope, Effect.sync(() => log.push("a")))
      yield* Scope.addFinalizer(scope, Effect.sync(() => log.push("b")))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(log, ["b", "a"])
    }))
})

describe("a handler's scoped fibers", () => {
  it.live("a fiber the handler forks with Effect.forkScoped is interrupted when its connection ends", () =>
    Effect.gen(function*() {
      const interrupted = yield* Deferred.make<number>()
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.zipRight(
            Effect.forkScoped(Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, ws.id))),
            Stream.runForEach(ws.messages, ws.send)
          )
      })
      const client = yield* connect(server.url)
      client.close(1000)
      const id = yield* Deferred.await(interrupted).pipe(within("5 seconds", "the scoped fiber's interruption"))
      assert.isAbove(id, 0)
    }).pipe(Effect.scoped))
})
