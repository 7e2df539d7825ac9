/**
 * Bytes on the wire per message for the echo bench's JSON payloads (`src/wire.ts`
 * `makePayload("json", size)`), for each of our permessage-deflate memory policies next to
 * `ws` with its defaults (context takeover, 32 KiB window, zlib level 6 as it ships). Computed
 * in one process with each library's own server-side codec; no sockets.
 *
 * Two streams of ten messages per size:
 * - `same`: the one payload ten times, what the echo bench sends. Context takeover turns
 *   repeats into back-references, so this is the best case for dedicated windows;
 * - `varied`: ten different payloads of the same shape and size (records that share keys and
 *   values, not whole messages), closer to a live feed.
 * Figures are average compressed payload bytes per message (frame headers excluded) and the
 * percentage of the uncompressed size.
 *
 *   pnpm bench:ratio
 */
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { negotiate, PerMessageDeflate } from "@effect-websocket/protocol/PerMessageDeflate"
import type { MemoryPolicy } from "@effect-websocket/protocol/PerMessageDeflate"
import { makePayload } from "./src/wire.js"

const SIZES = [256, 2048, 4096, 16 * 1024, 64 * 1024]
const COUNT = 10

const require = createRequire(import.meta.url)
const wsDir = dirname(require.resolve("ws/package.json"))

interface WsPmd {
  accept(offers: Array<Record<string, Array<string | true>>>): unknown
  compress(data: Buffer, fin: boolean, cb: (error: Error | null, out?: Buffer) => void): void
  cleanup(): void
}
type WsPmdClass = new (options: Record<string, unknown>) => WsPmd
const WsPerMessageDeflate = require(join(wsDir, "lib", "permessage-deflate.js")) as WsPmdClass

/** The messages of a stream: the same payload ten times, or ten payloads of that size. */
const stream = (kind: "same" | "varied", size: number): Array<Buffer> =>
  Array.from({ length: COUNT }, (_, i) => makePayload("json", kind === "same" ? size : size + i))

const wsBytes = async (messages: Array<Buffer>): Promise<number> => {
  const pmd = new WsPerMessageDeflate({ threshold: 0, isServer: true })
  pmd.accept([{ client_max_window_bits: [true] }])
  let total = 0
  for (const m of messages) {
    total += await new Promise<number>((resolve, reject) =>
      pmd.compress(m, true, (error, out) => (error ? reject(error) : resolve(out!.length)))
    )
  }
  pmd.cleanup()
  return total / messages.length
}

// Chromium's, ws's and python-websockets' offer.
const OFFER = [{ name: "permessage-deflate", params: [{ name: "client_max_window_bits", value: undefined }] }]

const oursBytes = (policy: MemoryPolicy, messages: Array<Buffer>): number => {
  const options = { memory: policy, threshold: 0 }
  const pmd = new PerMessageDeflate(negotiate(OFFER, options)!.params, options)
  let total = 0
  for (const m of messages) total += pmd.compress(m).length
  pmd.close()
  return total / messages.length
}

const POLICIES: Array<MemoryPolicy> = ["shared", "window1k", "window4k", "window8k", "window32k"]

const cell = (bytes: number, size: number) => `${Math.round(bytes)} (${((100 * bytes) / size).toFixed(1)}%)`

const main = async () => {
  const header = ["payload", "stream", "ws (32 KiB, takeover, level 6)", ...POLICIES.map((p) => `ours ${p}`)]
  const rows: Array<Array<string>> = []
  for (const size of SIZES) {
    for (const kind of ["same", "varied"] as const) {
      const messages = stream(kind, size)
      const actual = messages.reduce((n, m) => n + m.length, 0) / messages.length
      rows.push([
        `${Math.round(actual)} B JSON`,
        kind,
        cell(await wsBytes(messages), actual),
        ...POLICIES.map((p) => cell(oursBytes(p, messages), actual))
      ])
    }
  }
  console.log(`| ${header.join(" | ")} |`)
  console.log(`| ${header.map((_, i) => (i < 2 ? "---" : "---:")).join(" | ")} |`)
  for (const r of rows) console.log(`| ${r.join(" | ")} |`)
  console.log(
    "\nAverage compressed payload bytes per message over ten messages (percentage of the message); threshold 0 for all. " +
      "`shared` answers server_no_context_takeover: every message compressed on its own."
  )
}

void main()
