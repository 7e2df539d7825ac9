// `node --import ./bench/servers/effect-sink-release.mjs …` (the bench's `ours-stream-released`): loads
// Effect with one change to `Sink.forEach` and `Sink.forEachChunk`, made to its source text as the
// module loads (nothing on disk changes), to measure what `Stream.runForEach` costs once that change
// is made in Effect itself.
//
// What it changes: for each chunk, those Sinks build a `fromEffect` channel node around an Effect
// that captures the chunk (`Effect.forEach(chunk, f)`, or `f(chunk)`), and the node keeps that
// Effect after it has run. Here the node gets an Effect that hands over the captured one when it runs
// and keeps nothing. Under 1 MiB messages the kept Effect keeps the chunk's buffers alive long enough
// for V8 to promote them, and the process does a mark-compact every 25 ms; with the change it does
// as few as with the callback form (bench/README.md, "What keeps the chunk: Effect's Sink.forEach").
//
// When Effect's text is not the one this was written against (3.22), it throws: no silent no-op.
import { register } from "node:module"
import { isMainThread } from "node:worker_threads"

const FILE = /\/effect\/dist\/esm\/internal\/sink\.js$/

const forEachBefore = `    onInput: input => pipe(core.fromEffect(Effect.forEach(input, v => f(v), {
      discard: true
    })), core.flatMap(() => process)),`
const forEachAfter =
  `    onInput: input => pipe(core.fromEffect(handOver(Effect.forEach(input, v => f(v), { discard: true }))), core.flatMap(() => process)),`
const forEachChunkBefore = `    onInput: input => pipe(core.fromEffect(f(input)), core.flatMap(() => process)),`
const forEachChunkAfter = `    onInput: input => pipe(core.fromEffect(handOver(f(input))), core.flatMap(() => process)),`
// An Effect that runs `effect` and lets go of it as it starts: the node that holds this one no
// longer reaches the chunk once it has run.
const handOver = `
const handOver = effect => {
  let held = effect;
  return Effect.suspend(() => {
    const e = held;
    held = undefined;
    return e;
  });
};
`

/** The loader hook: rewrites Effect's sink module as it loads. */
export const load = async (url, context, nextLoad) => {
  const result = await nextLoad(url, context)
  if (!FILE.test(url)) return result
  const source = String(result.source)
  if (!source.includes(forEachBefore) || !source.includes(forEachChunkBefore)) {
    throw new Error(`effect-sink-release: ${url} is not the Sink source this change was written for`)
  }
  return {
    ...result,
    source: source.replace(forEachBefore, forEachAfter).replace(forEachChunkBefore, forEachChunkAfter) + handOver
  }
}

if (isMainThread) register(import.meta.url)
