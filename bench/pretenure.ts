/**
 * Why the Stream form's cost at 16 KiB varies from run to run: V8's allocation-site pretenuring
 * meeting per-read ArrayBuffers. Each probe process hands 16 KiB buffers (one per "read", as a
 * socket's reads bring them) to a consumer that runs later, then drops them; nothing keeps them.
 * Every young ArrayBuffer counts towards V8's external-memory limit for the young generation, so
 * scavenges come from that limit. When a scavenge finds almost every object of an allocation site
 * alive (two scavenges back to back do), V8 starts allocating that site's objects in the old
 * generation. A short-lived holder allocated there keeps the young buffers it points to alive
 * through every scavenge until the next mark-compact; they are promoted, and the old generation's
 * external memory then forces a mark-compact every few dozen MiB. The run stays in that mode.
 *
 *   pnpm bench:pretenure [--runs 6] [--messages 150000]
 *   pnpm bench:pretenure --size 1048576 --messages 3000 --consumers [--runs 6]
 *
 * The probe (a child process per run, one at a time) consumes the buffers with
 * `Stream.runForEachChunk` over a channel that pulls batches, as `ws.messages` does. It runs with
 * V8's defaults and with `--no-allocation-site-pretenuring`; the table gives, per run, the
 * mark-compacts (`--trace-gc`) and the CPU per message. (A probe that hands the batches to
 * setImmediate callbacks without Effect switched modes too, with either setting: Node's immediate
 * queue links each entry to the next, which can keep a promoted entry's successors alive.)
 *
 * `--consumers` compares, with V8's defaults and the server's holders, the two ways Effect runs a
 * Stream: `Stream.runForEachChunk` (what `Stream.runForEach`, `Stream.run(ws.sink)` and every
 * `Stream.run*` go through: the Stream piped into a Sink's channel) and a loop over
 * `Stream.toPull` (the Stream's channel alone), and between them the Stream's channel piped by hand
 * into a one-step reader. At 1 MiB the piped ones take several times the mark-compacts and CPU of
 * the pull loop (`bench/README.md`).
 */
import { Channel, Chunk, Effect, Stream } from "effect"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { freshArray, messageChunk, youngChunks } from "../packages/server/src/internal/chunk.js"
import { flag, median } from "./src/cli.js"

const probe = process.argv[2] === "--probe"
/** `effect`: a literal array and Effect's `Chunk.unsafeFromArray`; `young`: the server's `freshArray` and `messageChunk`. */
const holders = flag("holders", "effect")
/** Bytes per message (per "read"). */
const size = Number(flag("size", "16384"))
/**
 * `runForEachChunk` (a Sink, as every `Stream.run*`), `pipeTo` (the Stream's channel piped by hand
 * into a channel that reads a chunk, runs one Effect and loops: no Sink, no `pipeToOrFail`) or
 * `toPull` (a loop over the Stream's pull: one executor, nothing piped).
 */
const consumer = flag("consumer", "runForEachChunk")
const newArray = <A>(): Array<A> => holders === "young" ? freshArray<A>() : []
const toChunk = <A>(array: Array<A>): Chunk.Chunk<A> => holders === "young" ? messageChunk(array) : Chunk.unsafeFromArray(array)

const runProbe = async (count: number): Promise<void> => {
  // the server's chunks must be this Effect's (one module instance) and the constructed kind
  if (holders === "young" && (!youngChunks || Object.getPrototypeOf(toChunk([1, 2])) !== Object.getPrototypeOf(Chunk.empty()))) {
    throw new Error("the server's chunk.ts loaded another copy of effect")
  }
  let read = 0
  let handled = 0
  let items: Array<Buffer> = newArray()
  let waiter: ((e: Effect.Effect<unknown>) => void) | undefined
  const reader = (): void => {
    if (read < count) {
      read++
      items.push(Buffer.allocUnsafeSlow(size))
    }
    const w = waiter
    if (w !== undefined) {
      waiter = undefined
      w(pull)
    }
    if (read < count) setImmediate(reader)
  }
  const wait = Effect.async<unknown>((resume) => {
    waiter = resume
  })
  const pull: Effect.Effect<unknown> = Effect.suspend(() => {
    if (items.length > 0) {
      const batch = items
      items = newArray()
      return Effect.succeed(toChunk(batch))
    }
    return read >= count ? Effect.succeed(null) : wait
  })
  const loop: Channel.Channel<Chunk.Chunk<Buffer>, unknown, never, unknown, void, unknown> = Channel.flatMap(
    Channel.fromEffect(pull),
    (r) => r === null ? Channel.void : Channel.flatMap(Channel.write(r as Chunk.Chunk<Buffer>), () => loop)
  )
  const started = process.cpuUsage()
  setImmediate(reader)
  const consume = (c: Chunk.Chunk<Buffer>) =>
    Effect.sync(() => {
      handled += c.length
    })
  const stream = Stream.fromChannel(loop)
  const oneStep: Channel.Channel<never, Chunk.Chunk<Buffer>, unknown, unknown, void, unknown> = Channel.readWithCause({
    onInput: (c: Chunk.Chunk<Buffer>) => Channel.flatMap(Channel.fromEffect(consume(c)), () => oneStep),
    onFailure: Channel.failCause,
    onDone: () => Channel.void
  })
  await Effect.runPromise(
    consumer === "toPull"
      ? Effect.scoped(Effect.flatMap(Stream.toPull(stream), (pull) => Effect.forever(Effect.flatMap(pull, consume))))
        .pipe(Effect.ignore)
      : consumer === "pipeTo"
      ? Channel.runDrain(Channel.pipeTo(Stream.toChannel(stream), oneStep)).pipe(Effect.ignore)
      : Stream.runForEachChunk(stream, consume)
  )
  const cpu = process.cpuUsage(started)
  process.stderr.write(`RESULT ${handled} ${(cpu.user + cpu.system) / handled}\n`)
}

const main = (): void => {
  const runs = Number(flag("runs", "6"))
  const messages = flag("messages", "150000")
  const self = fileURLToPath(import.meta.url)
  const bytes = flag("size", "16384")
  console.log(`${runs} runs per setting, ${messages} messages of ${bytes} bytes each\n`)
  console.log("| V8 flags, holders, consumer | mark-compacts per run | CPU µs/msg per run | median µs/msg |")
  console.log("|---|---|---|---|")
  const settings = process.argv.includes("--consumers")
    ? [
      { label: "(defaults), the server's holders, `Stream.runForEachChunk`", flags: [], holders: "young", via: "runForEachChunk" },
      { label: "(defaults), the server's holders, `Channel.pipeTo` by hand", flags: [], holders: "young", via: "pipeTo" },
      { label: "(defaults), the server's holders, `Stream.toPull` loop", flags: [], holders: "young", via: "toPull" }
    ]
    : [
      { label: "(defaults)", flags: [], holders: "effect", via: "runForEachChunk" },
      { label: "`--no-allocation-site-pretenuring`", flags: ["--no-allocation-site-pretenuring"], holders: "effect", via: "runForEachChunk" },
      { label: "(defaults), the server's holders", flags: [], holders: "young", via: "runForEachChunk" }
    ]
  for (const { flags, holders: kind, label, via } of settings) {
    const compacts: Array<number> = []
    const costs: Array<number> = []
    for (let i = 0; i < runs; i++) {
      // --trace-gc prints on stdout, the probe's result goes to stderr
      const child = spawnSync(
        process.execPath,
        [...flags, "--trace-gc", "--import", "tsx", self, "--probe", "--messages", messages, "--holders", kind, "--size", bytes, "--consumer", via],
        { encoding: "utf8", maxBuffer: 64 << 20 }
      )
      const result = /RESULT \d+ ([\d.]+)/.exec(child.stderr)
      if (child.status !== 0 || result === null) throw new Error(`probe failed: ${child.stderr}`)
      compacts.push(child.stdout.split("\n").filter((l) => l.includes("Mark-Compact")).length)
      costs.push(Number(result[1]))
    }
    console.log(
      `| ${label} | ${compacts.join(", ")} | ${
        costs.map((c) => c.toFixed(1)).join(", ")
      } | ${median(costs).toFixed(1)} |`
    )
  }
}

if (probe) await runProbe(Number(flag("messages", "150000")))
else main()
