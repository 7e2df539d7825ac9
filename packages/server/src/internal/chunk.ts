/**
 * Holders of received messages that V8 never allocates in the old generation.
 *
 * V8 "pretenures" an allocation site (an object or array literal) once it sees almost every object
 * that site made survive a scavenge, as two scavenges back to back make it see: from then on the
 * site's objects are allocated in the old generation. Under a high rate of large messages the
 * scavenges come from the young generation's external memory (each socket read brings an
 * ArrayBuffer), and they do come back to back. Effect's `Chunk.of` and `Chunk.unsafeFromArray`
 * build their backing with a literal; once that site is pretenured, each chunk of messages holds
 * its young buffers from the old generation, where nothing frees it before the next mark-compact:
 * the buffers outlive every scavenge, are promoted, and their bytes force a mark-compact every few
 * thousand 16 KiB messages. That doubled the Stream form's CPU per message at 16 KiB in the runs
 * where it happened (`bench/README.md`, "V8's pretenuring"; `pnpm bench:pretenure`). Any array
 * literal that holds messages can be pretenured the same way (the inbox's, the protocol core's).
 *
 * Objects made by a constructor call, `Object.create` or `Array.prototype.slice` carry no
 * allocation site, so they stay young. `messageChunk` builds with those the structure that
 * `Chunk.unsafeFromArray` builds, after checking once, at load, that this Effect builds that
 * structure; where it does not, it is `Chunk.unsafeFromArray` itself.
 */
import { Chunk, Equal } from "effect"

/** An empty array to copy: `NO_ITEMS.slice()` is a fresh array without an allocation site. */
const NO_ITEMS: Array<never> = []

/** A new empty array that V8 allocates young whatever it decided for literals. */
export const freshArray = <A>(): Array<A> => NO_ITEMS.slice()

// The fields in the order of Effect's literals (`sameAsEffect` compares the keys in order)
class ArrayBacking<A> {
  readonly _tag = "IArray"
  readonly array: ReadonlyArray<A>
  constructor(array: ReadonlyArray<A>) {
    this.array = array
  }
}

class SingletonBacking<A> {
  readonly _tag = "ISingleton"
  readonly a: A
  constructor(a: A) {
    this.a = a
  }
}

const EMPTY = Chunk.empty<never>()
const PROTO: object = Object.getPrototypeOf(EMPTY)

/** What `Chunk.unsafeFromArray` returns, built from constructor calls and `Object.create`. */
const build = <A>(array: ReadonlyArray<A>): Chunk.Chunk<A> => {
  const length = array.length
  if (length === 0) return EMPTY
  const chunk = Object.create(PROTO)
  chunk.backing = length === 1 ? new SingletonBacking(array[0]) : new ArrayBacking(array)
  chunk.length = length
  chunk.depth = 0
  chunk.left = EMPTY
  chunk.right = EMPTY
  return chunk
}

const keys = (o: object): string => Object.keys(o).join(",")

/** Whether `build` makes, for one element and for two, what this Effect's `Chunk.unsafeFromArray` makes. */
export const sameAsEffect = (make: <A>(array: ReadonlyArray<A>) => Chunk.Chunk<A>): boolean =>
  [[7], [7, 8]].every((sample) => {
    const ours = make(sample) as unknown as Record<string, any>
    const theirs = Chunk.unsafeFromArray(sample) as unknown as Record<string, any>
    return Object.getPrototypeOf(ours) === Object.getPrototypeOf(theirs) &&
      keys(ours) === keys(theirs) &&
      typeof theirs.backing === "object" && theirs.backing !== null &&
      keys(ours.backing) === keys(theirs.backing) &&
      Object.keys(theirs).every((k) => k === "backing" || ours[k] === theirs[k]) &&
      Object.keys(theirs.backing).every((k) => ours.backing[k] === theirs.backing[k]) &&
      Equal.equals(ours, theirs) &&
      Chunk.toReadonlyArray(ours as unknown as Chunk.Chunk<number>).join() === sample.join()
  })

/** Whether `messageChunk` is `build` (this Effect's Chunk has the structure `build` makes). */
export const youngChunks = sameAsEffect(build)

/** A chunk of the messages in `array` (which the chunk then owns), allocated young. */
export const messageChunk: <A>(array: ReadonlyArray<A>) => Chunk.Chunk<A> = youngChunks ? build : Chunk.unsafeFromArray
