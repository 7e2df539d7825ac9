/**
 * The scenarios. Every server sees the same generator with the same bytes.
 */
import type { GeneratorMode } from "./loadgen.js"
import type { PayloadKind } from "./wire.js"

export interface Scenario {
  readonly name: string
  readonly title: string
  readonly description: string
  readonly mode: GeneratorMode
  readonly conns: number
  /** Messages in flight per connection (window mode). */
  readonly window: number
  readonly payload: PayloadKind
  readonly size: number
  readonly deflate: boolean
  /** Total messages per second (rate mode). */
  readonly rate: number
  /** Concurrent handshake loops (handshake mode). */
  readonly concurrency: number
  /** What one unit of work is, for the tables. */
  readonly unit: "msg" | "handshake" | "conn"
  /**
   * How WebSockets reach the server: `tcp` (ws://, one TCP connection each), `tls` (wss://, one
   * TLS connection each) or `h2` (wss:// as RFC 8441 streams, all over one HTTP/2 connection per
   * generator thread). Only servers that list the transport run `tls` and `h2` scenarios.
   */
  readonly transport: Transport
  /**
   * The least warm-up this scenario gets, in seconds, whatever `--warmup` says (not in `--quick`
   * mode). For scenarios whose unit runs a server's whole connection path, at a few thousand units
   * per second: a 1 s warm-up leaves that path still being compiled and the heap still growing.
   */
  readonly minWarmupSec?: number
  /**
   * The least number of runs this scenario gets unless `--runs` is given (not in `--quick` mode): for
   * a scenario whose question is whether any run falls into a slower regime, not only the median.
   */
  readonly minRuns?: number
}

export type Transport = "tcp" | "tls" | "h2"

const base = { window: 1, deflate: false, rate: 0, concurrency: 0, payload: "binary", size: 32, transport: "tcp" } as const

/** The same echo load over one HTTP/2 connection (RFC 8441) and over a TLS connection per WebSocket. */
const overTls = (size: number, window: number, payload: "text" | "binary"): ReadonlyArray<Scenario> => {
  const label = size >= 1024 ? `${size / 1024}k` : String(size)
  const what = `64 conns × ${size >= 1024 ? `${size / 1024} KiB` : `${size} B`} ${payload}, ${window} in flight`
  const common = { ...base, mode: "window", conns: 64, window, payload, size, unit: "msg" } as const
  return [
    {
      ...common,
      name: `h2-${label}`,
      title: `${what}, as streams of one HTTP/2 connection`,
      description:
        "WebSockets over HTTP/2 (RFC 8441 extended CONNECT): every WebSocket of the generator is a stream of one TLS connection.",
      transport: "h2"
    },
    {
      ...common,
      name: `wss-${label}`,
      title: `${what}, one TLS connection each`,
      description: `The baseline of h2-${label}: the same load with one TLS connection (HTTP/1.1 upgrade) per WebSocket.`,
      transport: "tls"
    }
  ]
}

export const scenarios: ReadonlyArray<Scenario> = [
  {
    ...base,
    name: "small",
    title: "64 conns × 32 B text, 16 in flight",
    description: "Many small text messages, pipelined: per-message overhead (framing, events, syscalls).",
    mode: "window",
    conns: 64,
    window: 16,
    payload: "text",
    size: 32,
    unit: "msg"
  },
  {
    ...base,
    name: "medium",
    title: "16 conns × 16 KiB binary, 4 in flight",
    description: "Medium binary messages: unmasking and copying dominate.",
    mode: "window",
    conns: 16,
    window: 4,
    payload: "binary",
    size: 16 * 1024,
    unit: "msg"
  },
  {
    ...base,
    name: "large",
    title: "1 conn × 1 MiB binary, 2 in flight",
    description: "Large messages on one connection: reassembly across many reads, bulk unmasking.",
    mode: "window",
    conns: 1,
    window: 2,
    payload: "binary",
    size: 1024 * 1024,
    unit: "msg"
  },
  {
    ...base,
    name: "large-16",
    title: "1 conn × 1 MiB binary, 16 in flight, at least 9 runs",
    description:
      "The large scenario with 16 messages queued per connection, run at least 9 times: does any run of a server fall into a slower regime (back-to-back major GCs) than its median?",
    mode: "window",
    conns: 1,
    window: 16,
    payload: "binary",
    size: 1024 * 1024,
    unit: "msg",
    minRuns: 9
  },
  {
    ...base,
    name: "deflate",
    title: "16 conns × 16 KiB JSON, permessage-deflate, 4 in flight",
    description:
      "The generator negotiates permessage-deflate and sends a precompressed JSON message (RSV1); the server inflates and deflates every echo.",
    mode: "window",
    conns: 16,
    window: 4,
    payload: "json",
    size: 16 * 1024,
    deflate: true,
    unit: "msg"
  },
  {
    ...base,
    name: "deflate-256",
    title: "16 conns × 256 B JSON, permessage-deflate, 4 in flight",
    description:
      "As deflate with 256 B messages (below every server's 1 KiB compression threshold: inflate only, replies go out uncompressed).",
    mode: "window",
    conns: 16,
    window: 4,
    payload: "json",
    size: 256,
    deflate: true,
    unit: "msg"
  },
  {
    ...base,
    name: "deflate-4k",
    title: "16 conns × 4 KiB JSON, permessage-deflate, 4 in flight",
    description:
      "As deflate with 4 KiB messages.",
    mode: "window",
    conns: 16,
    window: 4,
    payload: "json",
    size: 4 * 1024,
    deflate: true,
    unit: "msg"
  },
  {
    ...base,
    name: "deflate-64k",
    title: "16 conns × 64 KiB JSON, permessage-deflate, 4 in flight",
    description:
      "As deflate with 64 KiB messages.",
    mode: "window",
    conns: 16,
    window: 4,
    payload: "json",
    size: 64 * 1024,
    deflate: true,
    unit: "msg"
  },
  {
    ...base,
    name: "latency",
    title: "32 conns × 32 B text at 20,000 msg/s total",
    description: "Open-loop fixed rate: round-trip latency when the server is not saturated.",
    mode: "rate",
    conns: 32,
    payload: "text",
    size: 32,
    rate: 20_000,
    unit: "msg"
  },
  {
    ...base,
    name: "handshake",
    title: "upgrade + close handshake, 32 concurrent",
    description:
      "Connect, upgrade, send Close, wait for the server's Close and TCP FIN, repeat: handshakes/s and server CPU per handshake. " +
      "At least 5 s of warm-up (a 1 s warm-up is only a few thousand handshakes: the servers' connection paths are still being compiled and their heaps still growing).",
    mode: "handshake",
    conns: 0,
    concurrency: 32,
    unit: "handshake",
    minWarmupSec: 5
  },
  {
    ...base,
    name: "idle5k",
    title: "5,000 idle connections",
    description: "Open 5,000 connections, echo one 32 B message on each, then idle: server RSS per connection.",
    mode: "idle",
    conns: 5000,
    concurrency: 256,
    unit: "conn"
  },
  {
    ...base,
    name: "idle10k",
    title: "10,000 idle connections",
    description: "As idle5k with 10,000 connections (spread over several 127.0.0.x source addresses).",
    mode: "idle",
    conns: 10_000,
    concurrency: 256,
    unit: "conn"
  },
  {
    ...base,
    name: "idle1k-deflate",
    title: "1,000 idle compressed connections",
    description:
      "Open 1,000 connections that negotiate permessage-deflate, echo one compressed 2 KiB JSON message on each (above every server's threshold, so the reply is compressed too), then idle: server RSS per connection, zlib contexts included.",
    mode: "idle",
    conns: 1000,
    concurrency: 256,
    payload: "json",
    size: 2048,
    deflate: true,
    unit: "conn"
  },
  ...overTls(32, 16, "text"),
  ...overTls(16 * 1024, 4, "binary")
]
