/**
 * The chunks `messages` hands out (`internal/chunk.ts`) are built with constructor calls instead of
 * Effect's literals, so that V8 cannot pretenure them; they must be Effect's own Chunks in every
 * respect. Checked against `Chunk.unsafeFromArray` on random arrays through Effect's Chunk API, and
 * the load-time check that picks the builder must reject a structure that is not Effect's.
 */
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Equal, FastCheck as fc, Hash } from "effect"
import { freshArray, messageChunk, sameAsEffect, youngChunks } from "../src/internal/chunk.js"

/** What Effect's Chunk API answers about `c` (each through the chunk's own backing). */
const observe = (c: Chunk.Chunk<number>) => ({
  array: Chunk.toReadonlyArray(c),
  length: Chunk.size(c),
  first: Chunk.head(c),
  last: Chunk.last(c),
  get1: Chunk.get(c, 1),
  reversed: Chunk.toReadonlyArray(Chunk.reverse(c)),
  dropped: Chunk.toReadonlyArray(Chunk.drop(c, 1)),
  taken: Chunk.toReadonlyArray(Chunk.take(c, 2)),
  mapped: Chunk.toReadonlyArray(Chunk.map(c, (n) => n * 2)),
  appended: Chunk.toReadonlyArray(Chunk.append(c, -1)),
  prepended: Chunk.toReadonlyArray(Chunk.prepend(c, -1)),
  concatenated: Chunk.toReadonlyArray(Chunk.appendAll(c, Chunk.make(-2, -3))),
  iterated: [...c],
  hash: Hash.hash(c),
  json: JSON.stringify(c.toJSON())
})

describe("messageChunk", () => {
  it("is the constructed chunk with this Effect (the load-time check accepted its structure)", () => {
    assert.isTrue(youngChunks)
    const c = messageChunk([1, 2, 3]) as unknown as { backing: object }
    // a constructed backing, not an object literal
    assert.notStrictEqual(Object.getPrototypeOf(c.backing), Object.prototype)
    const one = messageChunk([1]) as unknown as { backing: object }
    assert.notStrictEqual(Object.getPrototypeOf(one.backing), Object.prototype)
  })

  it("behaves as Chunk.unsafeFromArray under Effect's Chunk API", () => {
    fc.assert(
      fc.property(fc.array(fc.integer(), { maxLength: 12 }), (xs) => {
        const ours = messageChunk(xs.slice())
        const theirs = Chunk.unsafeFromArray(xs.slice())
        assert.isTrue(Chunk.isChunk(ours))
        assert.isTrue(Equal.equals(ours, theirs))
        assert.isTrue(Equal.equals(theirs, ours))
        assert.deepStrictEqual(observe(ours), observe(theirs))
      }),
      { numRuns: 300 }
    )
  })

  it("the empty batch is Effect's empty chunk", () => {
    assert.strictEqual(messageChunk([]), Chunk.empty())
  })

  it("the load-time check rejects a chunk whose structure is not Effect's", () => {
    const proto = Object.getPrototypeOf(Chunk.empty())
    const withFields = (backing: (array: ReadonlyArray<unknown>) => object) => <A>(array: ReadonlyArray<A>) => {
      const chunk = Object.create(proto)
      chunk.backing = backing(array)
      chunk.length = array.length
      chunk.depth = 0
      chunk.left = Chunk.empty()
      chunk.right = Chunk.empty()
      return chunk as Chunk.Chunk<A>
    }
    // Effect's own literals: accepted
    assert.isTrue(sameAsEffect(withFields((array) => array.length === 1 ? { _tag: "ISingleton", a: array[0] } : { _tag: "IArray", array })))
    // the fields in another order
    assert.isFalse(sameAsEffect(withFields((array) => array.length === 1 ? { a: array[0], _tag: "ISingleton" } : { array, _tag: "IArray" })))
    // an array backing for one element, where Effect makes a singleton
    assert.isFalse(sameAsEffect(withFields((array) => ({ _tag: "IArray", array }))))
    // a field Effect does not have
    assert.isFalse(sameAsEffect(withFields((array) => array.length === 1 ? { _tag: "ISingleton", a: array[0], n: 1 } : { _tag: "IArray", array, n: 1 })))
    // what Equal.equals and the elements cannot tell: a field Effect's chunk does not have, another depth, a copy of the array
    const effects = (array: ReadonlyArray<unknown>) => array.length === 1 ? { _tag: "ISingleton", a: array[0] } : { _tag: "IArray", array }
    assert.isFalse(sameAsEffect(<A>(array: ReadonlyArray<A>) => Object.assign(withFields(effects)(array), { extra: 1 })))
    assert.isFalse(sameAsEffect(<A>(array: ReadonlyArray<A>) => Object.assign(withFields(effects)(array), { depth: 1 })))
    assert.isFalse(sameAsEffect(withFields((array) => array.length === 1 ? { _tag: "ISingleton", a: array[0] } : { _tag: "IArray", array: array.slice() })))
    // another prototype
    assert.isFalse(sameAsEffect(<A>(array: ReadonlyArray<A>) => Object.assign(Object.create(null), Chunk.unsafeFromArray(array))))
  })

  it("freshArray makes a new empty array each time", () => {
    const a = freshArray<number>()
    const b = freshArray<number>()
    assert.notStrictEqual(a, b)
    a.push(1)
    assert.deepStrictEqual(b, [])
    assert.deepStrictEqual(freshArray(), [])
  })
})
