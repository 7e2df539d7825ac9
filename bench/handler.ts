/**
 * Handler-form micro-benchmark: the CPU one message costs inside the server, per handler form,
 * with no kernel in the way. A connection of the server (its reader fiber, inbox, outbox and the
 * handler's fiber) runs on an in-memory transport; batches of masked client frames are fed as
 * reads, the echoes are discarded. Measured in process CPU time (other processes competing for
 * the cores do not inflate it much), best of 3 rounds.
 *
 *   pnpm bench:handler                       32 B and 16 KiB, batches of 1, 4 and 16 messages
 *   pnpm bench:handler --size 1048576 --batch 1 --messages 400
 *   pnpm bench:handler --floor               also Effect's own floor: the same reads through
 *                                            streams with no WebSocket code at all (below)
 */
import { Channel, Chunk, Effect, Runtime, Sink, Stream } from "effect"
import { Duplex } from "node:stream"
import { parseArgs } from "node:util"
import { Forker } from "../packages/server/src/internal/fork.js"
import { resolve } from "../packages/server/src/internal/options.js"
import type { WebSocket } from "../packages/server/src/WebSocket.js"
// the connection the server package's unit tests use: an in-memory transport, a real protocol core
import { memoryConnection } from "../packages/server/test/memory.js"

const { values: args } = parseArgs({
  options: {
    size: { type: "string" },
    batch: { type: "string" },
    messages: { type: "string" },
    forms: { type: "string" },
    floor: { type: "boolean" }
  }
})

type Form = "fast" | "stream" | "sink" | "pipeline"
const handlers: Record<Form, (ws: WebSocket) => Effect.Effect<unknown, unknown>> = {
  fast: (ws) => ws.run((m) => void ws.unsafeSend(m)),
  stream: (ws) => Stream.runForEach(ws.messages, ws.send),
  sink: (ws) => Stream.run(ws.messages, ws.sink),
  pipeline: (ws) => ws.messages.pipe(Stream.map((m) => m), Stream.run(ws.sink))
}

/** A transport that accepts every write at once and never reads by itself. */
class NullTransport extends Duplex {
  bytesOut = 0
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.bytesOut += chunk.length
    callback()
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: () => void): void {
    for (const c of chunks) this.bytesOut += c.chunk.length
    callback()
  }
}

const maskedFrame = (payload: Buffer): Buffer => {
  const n = payload.length
  const hl = n < 126 ? 2 : n < 65536 ? 4 : 10
  const f = Buffer.allocUnsafe(hl + 4 + n)
  f[0] = 0x82
  if (n < 126) f[1] = 0x80 | n
  else if (n < 65536) {
    f[1] = 0x80 | 126
    f.writeUInt16BE(n, 2)
  } else {
    f[1] = 0x80 | 127
    f.writeBigUInt64BE(BigInt(n), 2)
  }
  const mask = [0x37, 0xfa, 0x21, 0x3d]
  for (let i = 0; i < 4; i++) f[hl + i] = mask[i]!
  for (let i = 0; i < n; i++) f[hl + 4 + i] = payload[i]! ^ mask[i & 3]!
  return f
}

const tick = () => new Promise<void>((r) => setImmediate(r))
const cpu = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** One connection with `form`'s handler; `total` messages fed in reads of `batch` frames. Returns CPU µs per message. */
const measure = async (form: Form, size: number, batch: number, total: number): Promise<number> => {
  const transport = new NullTransport()
  const options = resolve({ maxMessageSize: 64 * 1024 * 1024, keepaliveInterval: 0 })
  const ws = memoryConnection(transport, options)
  ws.start(handlers[form], false, Forker.of(Runtime.defaultRuntime))
  const frame = maskedFrame(Buffer.alloc(size, 0x61))
  const template = Buffer.concat(Array.from({ length: batch }, () => frame))
  const echoBytes = (size < 126 ? 2 : size < 65536 ? 4 : 10) + size
  await tick()
  const rounds = Math.ceil(total / batch)
  const start = cpu()
  for (let r = 0; r < rounds; r++) {
    // the decoder unmasks in place: every read gets its own copy (the same cost for every form)
    transport.emit("data", Buffer.from(template))
    await tick()
  }
  while (transport.bytesOut < rounds * batch * echoBytes) await tick()
  const used = cpu() - start
  transport.destroy()
  await Effect.runPromise(ws.released)
  return (used * 1000) / (rounds * batch)
}

/**
 * Effect's floor: the same reads (a fresh buffer per read, cut into `batch` messages) through
 * consumers with no WebSocket code at all, each "sending" a message by counting its bytes:
 * - `floor-callback`: a plain function per message, no Effect (what the read loop itself costs);
 * - `floor-fiber`: one fiber that waits for each read in `Effect.async` and runs an Effect per
 *   message (`Effect.forEach`), no Stream;
 * - `floor-stream`: `Stream.runForEach` over a Stream built as `ws.messages` is (a channel that
 *   pulls a batch, writes it and loops);
 * - `floor-sink`: the same Stream run into a Sink whose channel counts each chunk's messages in its
 *   `onInput` and loops, as `ws.sink` does: no Effect per message or per chunk, only the pipe;
 * - `floor-async`: `Stream.runForEach` over Effect's stock `Stream.async`, one `emit.chunk` per read.
 * The distance between `fast` and `stream` above, set against the one between `floor-callback`
 * and `floor-stream`, says how much of the Stream form's cost is Effect's machinery per chunk;
 * `sink` against `floor-sink` says the same of the Sink form.
 */
type Floor = "floor-callback" | "floor-fiber" | "floor-stream" | "floor-sink" | "floor-async"
const floors: Array<Floor> = ["floor-callback", "floor-fiber", "floor-stream", "floor-sink", "floor-async"]

/** Reads cut into messages, queued for a consumer that waits in `Effect.async`, or given to a callback. */
class Source {
  items: Array<Uint8Array> = []
  waiter: ((chunk: Effect.Effect<Chunk.Chunk<Uint8Array>>) => void) | undefined = undefined
  callback: ((m: Uint8Array) => void) | undefined = undefined
  /** After a read's messages: `floor-async` emits them as one chunk. */
  flush: (() => void) | undefined = undefined
  readonly take = Effect.suspend((): Effect.Effect<Chunk.Chunk<Uint8Array>> => {
    if (this.items.length > 0) return Effect.succeed(this.drain())
    return this.wait
  })
  /** A Stream built as `ws.messages` is: a channel that pulls a batch, writes it and loops. */
  stream(): Stream.Stream<Uint8Array> {
    const loop: Channel.Channel<Chunk.Chunk<Uint8Array>, unknown, never, unknown, void, unknown> = Channel
      .flatMap(Channel.fromEffect(this.take), (chunk) => Channel.flatMap(Channel.write(chunk), () => loop))
    return Stream.fromChannel(loop)
  }
  private readonly wait = Effect.async<Chunk.Chunk<Uint8Array>>((resume) => {
    this.waiter = resume
  })
  private drain(): Chunk.Chunk<Uint8Array> {
    const items = this.items
    this.items = []
    return Chunk.unsafeFromArray(items)
  }
  read(buffer: Buffer, size: number): void {
    for (let at = 0; at < buffer.length; at += size) {
      const m = buffer.subarray(at, at + size)
      if (this.callback !== undefined) this.callback(m)
      else this.items.push(m)
    }
    const w = this.waiter
    if (w !== undefined && this.items.length > 0) {
      this.waiter = undefined
      w(Effect.succeed(this.drain()))
    }
  }
}

const floorConsumer = (
  form: Floor,
  source: Source,
  count: (m: Uint8Array) => void,
  send: (m: Uint8Array) => Effect.Effect<void>
) => {
  switch (form) {
    case "floor-callback":
      return Effect.sync(() => {
        source.callback = count
      }).pipe(Effect.zipRight(Effect.never))
    case "floor-fiber":
      return Effect.forever(Effect.flatMap(source.take, (chunk) => Effect.forEach(chunk, send, { discard: true })))
    case "floor-stream":
      return Stream.runForEach(source.stream(), send)
    case "floor-sink": {
      const counter: Channel.Channel<never, Chunk.Chunk<Uint8Array>, never, never, void, unknown> = Channel
        .readWithCause({
          onInput: (chunk: Chunk.Chunk<Uint8Array>) => {
            for (const m of chunk) count(m)
            return counter
          },
          onFailure: Channel.failCause,
          onDone: () => Channel.void
        })
      return Stream.run(source.stream(), Sink.fromChannel(counter))
    }
    case "floor-async":
      return Stream.runForEach(
        Stream.async<Uint8Array>((emit) => {
          const items: Array<Uint8Array> = []
          source.callback = (m) => void items.push(m)
          source.flush = () => {
            void emit.chunk(Chunk.unsafeFromArray(items.splice(0)))
          }
        }),
        send
      )
  }
}

const measureFloor = async (form: Floor, size: number, batch: number, total: number): Promise<number> => {
  const source = new Source()
  let bytes = 0
  const count = (m: Uint8Array) => void (bytes += m.byteLength)
  const send = (m: Uint8Array) => Effect.sync(() => count(m))
  const fiber = Effect.runFork(floorConsumer(form, source, count, send))
  const template = Buffer.alloc(size * batch, 0x61)
  await tick()
  const rounds = Math.ceil(total / batch)
  const start = cpu()
  for (let r = 0; r < rounds; r++) {
    source.read(Buffer.from(template), size)
    source.flush?.()
    await tick()
  }
  while (bytes < rounds * batch * size) await tick()
  const used = cpu() - start
  await Effect.runPromise(fiber.interruptAsFork(fiber.id()).pipe(Effect.zipRight(fiber.await)))
  return (used * 1000) / (rounds * batch)
}

const sizes = args.size !== undefined ? [Number(args.size)] : [32, 16 * 1024]
const batches = args.batch !== undefined ? [Number(args.batch)] : [1, 4, 16]
const forms = (args.forms?.split(",") ?? ["fast", "stream", "sink", "pipeline"]) as Array<Form>
console.log(
  "CPU µs per message (best of 3), no kernel; × = against the callback form (fast), floors against floor-callback"
)
for (const size of sizes) {
  for (const batch of batches) {
    const total = args.messages !== undefined ? Number(args.messages) : size >= 65536 ? 2_000 : 60_000
    const results = new Map<Form | Floor, number>()
    for (const form of forms) {
      let best = Infinity
      for (let round = 0; round < 3; round++) best = Math.min(best, await measure(form, size, batch, total))
      results.set(form, best)
    }
    if (args.floor) {
      for (const form of floors) {
        let best = Infinity
        for (let round = 0; round < 3; round++) best = Math.min(best, await measureFloor(form, size, batch, total))
        results.set(form, best)
      }
    }
    const base = results.get("fast")
    const cells = [...results.keys()].map((f) => {
      const v = results.get(f)!
      // handler forms against the callback form, floors against the plain callback floor
      const against = f.startsWith("floor-") ? results.get("floor-callback") : base
      const ratio = against !== undefined && f !== "fast" && f !== "floor-callback"
        ? ` (${(v / against).toFixed(2)}×)`
        : ""
      return `${f} ${v.toFixed(2)}${ratio}`
    })
    console.log(`${String(size).padStart(7)} B × ${String(batch).padStart(2)} per read: ${cells.join("  ")}`)
  }
}
