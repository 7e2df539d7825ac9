/**
 * Handler-form micro-benchmark: the CPU one message costs inside the server, per handler form,
 * with no kernel in the way. A connection of the server (its reader fiber, inbox, outbox and the
 * handler's fiber) runs on an in-memory transport; batches of masked client frames are fed as
 * reads, the echoes are discarded. Measured in process CPU time (other processes competing for
 * the cores do not inflate it much), best of 3 rounds.
 *
 *   pnpm bench:handler                       32 B and 16 KiB, batches of 1, 4 and 16 messages
 *   pnpm bench:handler --size 1048576 --batch 1 --messages 400
 */
import { Connection } from "@effect-websocket/protocol/Connection"
import { Effect, Runtime, Stream } from "effect"
import { Duplex } from "node:stream"
import { parseArgs } from "node:util"
import { WsConnection } from "../packages/server/src/internal/connection.js"
import { Forker } from "../packages/server/src/internal/fork.js"
import { CloseTimeouts } from "../packages/server/src/internal/lifecycle.js"
import { resolve } from "../packages/server/src/internal/options.js"
import type { WebSocket } from "../packages/server/src/WebSocket.js"

const { values: args } = parseArgs({
  options: {
    size: { type: "string" },
    batch: { type: "string" },
    messages: { type: "string" },
    forms: { type: "string" }
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
  const closeTimeouts = new CloseTimeouts(options.closeTimeout)
  const core = new Connection({ role: "server", maxMessageSize: options.maxMessageSize, deferClose: true })
  const ws = new WsConnection<undefined>({
    transport: transport as unknown as import("node:net").Socket,
    core,
    options,
    request: { url: "/", headers: {}, remoteAddress: undefined, remotePort: undefined, transport: "http/1.1" },
    protocol: undefined,
    extensions: undefined,
    deflate: undefined,
    data: undefined,
    owner: { closeTimeouts, transportClosed: () => {}, released: () => {} }
  }, new Uint8Array(0))
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

const sizes = args.size !== undefined ? [Number(args.size)] : [32, 16 * 1024]
const batches = args.batch !== undefined ? [Number(args.batch)] : [1, 4, 16]
const forms = (args.forms?.split(",") ?? ["fast", "stream", "sink", "pipeline"]) as Array<Form>
console.log("CPU µs per message (best of 3), no kernel; × = against the callback form (fast)")
for (const size of sizes) {
  for (const batch of batches) {
    const total = args.messages !== undefined ? Number(args.messages) : size >= 65536 ? 2_000 : 60_000
    const results = new Map<Form, number>()
    for (const form of forms) {
      let best = Infinity
      for (let round = 0; round < 3; round++) best = Math.min(best, await measure(form, size, batch, total))
      results.set(form, best)
    }
    const base = results.get("fast")
    const cells = forms.map((f) => {
      const v = results.get(f)!
      return `${f} ${v.toFixed(2)}${base !== undefined && f !== "fast" ? ` (${(v / base).toFixed(2)}×)` : ""}`
    })
    console.log(`${String(size).padStart(7)} B × ${String(batch).padStart(2)} per read: ${cells.join("  ")}`)
  }
}
