/**
 * What zlib itself costs per permessage-deflate message, on the contexts the server uses: the
 * shared deflater (reset after every message, `server_no_context_takeover`) and a pooled
 * inflater (reset after every message, `client_no_context_takeover`), with the default
 * parameters (level 1, windowBits 15, memLevel 8). No sockets, no framing, no UTF-8: only the
 * zlib calls a compressed echo makes, so that the server's whole CPU per message in `pnpm
 * bench`'s deflate scenarios can be set against it (and against other servers' whole cost).
 *
 * Variants (`--variants`, windowBits/level/memLevel) run in interleaved rounds, so the
 * machine's drift falls on all of them alike; the median of the rounds is printed.
 *
 *   pnpm bench:zlib [--sizes 256,1024,4096,16384,65536] [--rounds 15] [--variants 15/1/8,15/1/9]
 */
import * as Deflate from "../packages/protocol/src/internal/deflate.js"
import { flag, median } from "./src/cli.js"
import { makePayload } from "./src/wire.js"

const sizes = flag("sizes", "256,1024,4096,16384,65536").split(",").map(Number)
const rounds = Number(flag("rounds", "15"))
const variants = flag("variants", "15/1/8").split(",").map((v) => v.split("/").map(Number) as [number, number, number])

/** µs per call of `f`, over enough calls to take about 20 ms. */
const time = (f: () => void, calls: number): number => {
  const start = process.hrtime.bigint()
  for (let i = 0; i < calls; i++) f()
  return Number(process.hrtime.bigint() - start) / calls / 1000
}

const open = (kind: Deflate.ZKind, bits: number, level: number, memLevel: number): Deflate.ZContext => {
  const z = Deflate.openContext(kind, bits, level, memLevel)
  if (!(z instanceof Deflate.ZContext)) throw new Error(`cannot open a ${kind} context: ${z.reason}`)
  return z
}

console.log("zlib µs per message (median of rounds), the bench's JSON payloads; deflate = compress + reset,")
console.log("inflate = the piece, the `00 00 ff ff` tail and a reset")
for (const size of sizes) {
  const payload = makePayload("json", size)
  const calls = Math.max(50, Math.round(2_000_000 / Math.max(size, 1024)))
  const rows = variants.map(([bits, level, memLevel]) => {
    const deflater = open("deflate", bits, level, memLevel)
    const compressed = Deflate.deflateMessage(deflater, payload)
    if (!(compressed instanceof Uint8Array)) throw new Error("deflate failed")
    Deflate.resetContext(deflater)
    const inflater = open("inflate", bits, 0, 0)
    const check = Deflate.inflatePiece(inflater, compressed, true, size * 2)
    if (!(check instanceof Uint8Array) || !Buffer.from(check).equals(payload)) throw new Error("round trip failed")
    Deflate.resetContext(inflater)
    return { name: `${bits}/${level}/${memLevel}`, deflater, inflater, compressed, deflate: [] as Array<number>, inflate: [] as Array<number> }
  })
  for (let r = 0; r < rounds; r++) {
    for (const row of rows) {
      row.deflate.push(time(() => {
        Deflate.deflateMessage(row.deflater, payload)
        Deflate.resetContext(row.deflater)
      }, calls))
      row.inflate.push(time(() => {
        Deflate.inflatePiece(row.inflater, row.compressed, true, size * 2)
        Deflate.resetContext(row.inflater)
      }, calls))
    }
  }
  for (const row of rows) {
    const d = median(row.deflate)
    const i = median(row.inflate)
    console.log(
      `${String(payload.length).padStart(6)} B → ${String(row.compressed.length).padStart(5)} B  ${row.name.padEnd(8)}` +
        `  deflate ${d.toFixed(1).padStart(6)}  inflate ${i.toFixed(1).padStart(6)}  both ${(d + i).toFixed(1).padStart(6)}`
    )
    Deflate.closeContext(row.deflater)
    Deflate.closeContext(row.inflater)
  }
}
