/**
 * Decoder micro-benchmark: frames/s and MB/s for masked client frames (binary, 16 B, 1 KiB,
 * 64 KiB, 1 MiB), fed whole (one chunk per frame) and in 16 KiB reads (chunks cut across frames),
 * for `ws`'s own Receiver (plain JavaScript unmasking, and with bufferutil) and for our
 * `Connection`, in the same process on the same bytes.
 *
 * Both decoders unmask in place, so every iteration feeds each decoder a fresh copy of the stream;
 * the copy is made outside the timed region, for every decoder alike.
 *
 *   pnpm bench:decoder            ~1 s per cell
 *   pnpm bench:decoder --quick    ~0.2 s per cell
 */
import { randomBytes } from "node:crypto"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { performance } from "node:perf_hooks"
import { parseArgs } from "node:util"

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    time: { type: "string" },
    wall: { type: "boolean", default: false },
    help: { type: "boolean", default: false }
  }
})
if (args.help) {
  console.log("usage: pnpm bench:decoder [--quick] [--time SECONDS_PER_CELL] [--wall]")
  console.log("  --wall   time with the wall clock instead of the process's CPU time")
  process.exit(0)
}
const secondsPerCell = args.time !== undefined ? Number(args.time) : args.quick ? 0.2 : 1
const ROUNDS = 3
/**
 * By default the timed region is measured in process CPU time (getrusage: precise on Linux), which
 * other processes competing for the cores do not inflate; `--wall` uses the wall clock instead.
 */
const wall = args.wall
const clock = wall
  ? () => performance.now()
  : () => {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1000
  }
const MAX_MESSAGE = 64 * 1024 * 1024

// ---------------------------------------------------------------------------------------------
// Input: a stream of masked binary frames (RFC 6455 §5.2), a random mask per frame
// ---------------------------------------------------------------------------------------------

const maskedFrame = (payload: Buffer): Buffer => {
  const len = payload.length
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8
  const out = Buffer.allocUnsafe(2 + ext + 4 + len)
  out[0] = 0x82
  if (ext === 0) out[1] = 0x80 | len
  else if (ext === 2) {
    out[1] = 0x80 | 126
    out.writeUInt16BE(len, 2)
  } else {
    out[1] = 0x80 | 127
    out.writeBigUInt64BE(BigInt(len), 2)
  }
  const mask = randomBytes(4)
  mask.copy(out, 2 + ext)
  const at = 6 + ext
  for (let i = 0; i < len; i++) out[at + i] = payload[i] ^ mask[i & 3]
  return out
}

interface Input {
  readonly size: number
  readonly frames: number
  readonly stream: Buffer
  /** Frame boundaries: chunk i is stream[ends[i-1] .. ends[i]). */
  readonly frameEnds: ReadonlyArray<number>
}

const makeInput = (size: number): Input => {
  // About 1 MiB of payload per iteration (at least 2 frames).
  const frames = Math.max(2, Math.floor((1024 * 1024) / size))
  const payload = randomBytes(size)
  const parts: Array<Buffer> = []
  const frameEnds: Array<number> = []
  let total = 0
  for (let i = 0; i < frames; i++) {
    const f = maskedFrame(payload)
    parts.push(f)
    total += f.length
    frameEnds.push(total)
  }
  return { size, frames, stream: Buffer.concat(parts), frameEnds }
}

type Feed = "whole" | "16k"
const chunkEnds = (input: Input, feed: Feed): Array<number> => {
  if (feed === "whole") return [...input.frameEnds]
  const out: Array<number> = []
  for (let at = 16 * 1024; at < input.stream.length; at += 16 * 1024) out.push(at)
  out.push(input.stream.length)
  return out
}

// ---------------------------------------------------------------------------------------------
// Decoders: feed(chunk) and count complete messages
// ---------------------------------------------------------------------------------------------

interface Decoder {
  readonly name: string
  /** Feeds one chunk; returns the messages completed so far, or throws on a decoder error. */
  feed(chunk: Buffer): void
  messages(): number
}

const require = createRequire(import.meta.url)
const wsDir = dirname(require.resolve("ws/package.json"))

interface WsReceiver {
  write(chunk: Buffer): boolean
  on(event: "message", f: () => void): void
  on(event: "error", f: (e: Error) => void): void
}
type WsReceiverClass = new (options: Record<string, unknown>) => WsReceiver

/**
 * ws reads WS_NO_BUFFER_UTIL once, when lib/buffer-util.js loads: load its modules twice, once with
 * it set and once without, to get both unmasking paths in one process.
 */
const loadWsReceiver = (noBufferUtil: boolean): WsReceiverClass => {
  for (const key of Object.keys(require.cache)) if (key.startsWith(join(wsDir, "lib"))) delete require.cache[key]
  const saved = process.env.WS_NO_BUFFER_UTIL
  if (noBufferUtil) process.env.WS_NO_BUFFER_UTIL = "1"
  else delete process.env.WS_NO_BUFFER_UTIL
  try {
    return require(join(wsDir, "lib", "receiver.js")) as WsReceiverClass
  } finally {
    if (saved === undefined) delete process.env.WS_NO_BUFFER_UTIL
    else process.env.WS_NO_BUFFER_UTIL = saved
  }
}

const wsDecoder = (name: string, Receiver: WsReceiverClass): Decoder => {
  const r = new Receiver({ isServer: true, maxPayload: MAX_MESSAGE, binaryType: "nodebuffer" })
  let count = 0
  let error: Error | undefined
  r.on("message", () => {
    count++
  })
  r.on("error", (e) => {
    error = e
  })
  return {
    name,
    feed(chunk) {
      r.write(chunk)
      if (error !== undefined) throw error
    },
    messages: () => count
  }
}

interface OurEvent {
  readonly _tag: string
}
interface OurConnection {
  receiveData(chunk: Uint8Array): unknown
  eventsReceived(): Array<OurEvent>
  dataToSend(): Array<Uint8Array>
}
type OurConnectionClass = new (options: { role: "server"; maxMessageSize: number }) => OurConnection

const loadOurs = async (): Promise<OurConnectionClass | string> => {
  try {
    const mod = (await import("@effect-websocket/protocol/Connection")) as { Connection?: OurConnectionClass }
    return mod.Connection ?? "@effect-websocket/protocol/Connection does not export Connection yet"
  } catch (e) {
    return `@effect-websocket/protocol/Connection could not be loaded (${e instanceof Error ? e.message.split("\n")[0] : String(e)})`
  }
}

const ourDecoder = (Connection: OurConnectionClass): Decoder => {
  const c = new Connection({ role: "server", maxMessageSize: MAX_MESSAGE })
  let count = 0
  return {
    name: "ours",
    feed(chunk) {
      const failure = c.receiveData(chunk)
      // Drain after every chunk, as the server does after every socket read.
      const events = c.eventsReceived()
      for (let i = 0; i < events.length; i++) if (events[i]._tag === "Binary") count++
      if (failure !== undefined) throw new Error(`ours failed: ${JSON.stringify(failure)}`)
      if (c.dataToSend().length > 0) throw new Error("ours: unexpected output while decoding data frames")
    },
    messages: () => count
  }
}

// ---------------------------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------------------------

/** Decodes fresh copies of the stream for `seconds` (wall clock); returns decode seconds and frames decoded. */
const measure = (d: Decoder, input: Input, ends: ReadonlyArray<number>, seconds: number) => {
  let decodeTime = 0
  let frames = 0
  const deadline = performance.now() + seconds * 1000
  do {
    const fresh = Buffer.from(input.stream) // untimed: unmasking in place must not see unmasked bytes
    const before = d.messages()
    const t0 = clock()
    let start = 0
    for (let i = 0; i < ends.length; i++) {
      d.feed(fresh.subarray(start, ends[i]))
      start = ends[i]
    }
    decodeTime += clock() - t0
    const got = d.messages() - before
    if (got !== input.frames) throw new Error(`${d.name}: ${got} messages decoded, ${input.frames} expected`)
    frames += got
  } while (performance.now() < deadline)
  return { seconds: decodeTime / 1000, frames }
}

const median = (xs: Array<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

const human = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0))
const sizeName = (n: number) => (n >= 1024 * 1024 ? `${n / 1024 / 1024} MiB` : n >= 1024 ? `${n / 1024} KiB` : `${n} B`)

const main = async () => {
  const WsPlain = loadWsReceiver(true)
  const WsBufferUtil = loadWsReceiver(false)
  const ours = await loadOurs()
  const makers: Array<{ name: string; make: () => Decoder }> = [
    { name: "ws", make: () => wsDecoder("ws", WsPlain) },
    { name: "ws+bufferutil", make: () => wsDecoder("ws+bufferutil", WsBufferUtil) }
  ]
  if (typeof ours === "string") {
    console.log(`ours: skipped: ${ours}`)
  } else {
    makers.push({ name: "ours", make: () => ourDecoder(ours) })
  }
  console.log(
    `decoder micro-benchmark: masked binary client frames, Node ${process.version}; ` +
      `median of ${ROUNDS} rounds × ${(secondsPerCell / ROUNDS).toFixed(2)} s per decoder and cell, decoders alternating; ` +
      `timed in ${wall ? "wall-clock time" : "process CPU time (--wall for wall clock)"}; ` +
      `MB/s counts payload bytes; a fresh copy of the input for every iteration of every decoder (untimed)\n`
  )
  const rows: Array<Array<string>> = []
  const header = ["size", "feed", ...makers.flatMap((m) => [`${m.name} frames/s`, `${m.name} MB/s`])]
  if (makers.some((m) => m.name === "ours")) header.push("ours/ws", "ours/ws+bufferutil")
  for (const size of [16, 1024, 64 * 1024, 1024 * 1024]) {
    const input = makeInput(size)
    for (const feed of ["whole", "16k"] as const) {
      const ends = chunkEnds(input, feed)
      const decoders = makers.map((m) => m.make())
      // Warm up each decoder on this shape before timing it.
      for (const d of decoders) measure(d, input, ends, Math.min(0.05, secondsPerCell / 4))
      const rates = decoders.map(() => [] as Array<number>)
      for (let round = 0; round < ROUNDS; round++) {
        for (let k = 0; k < decoders.length; k++) {
          const i = (k + round) % decoders.length
          const r = measure(decoders[i], input, ends, secondsPerCell / ROUNDS)
          rates[i].push(r.frames / r.seconds)
        }
      }
      const fps = rates.map(median)
      const row = [sizeName(size), feed === "whole" ? "whole frames" : "16 KiB reads"]
      for (const f of fps) row.push(human(f), ((f * size) / 1e6).toFixed(size < 1024 ? 1 : 0))
      const o = makers.findIndex((m) => m.name === "ours")
      if (o >= 0) row.push(`${(fps[o] / fps[0]).toFixed(2)}×`, `${(fps[o] / fps[1]).toFixed(2)}×`)
      rows.push(row)
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: Array<string>) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
  console.log(line(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const r of rows) console.log(line(r))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
