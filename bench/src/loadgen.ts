/**
 * One load-generator thread. Raw `node:net` sockets do the HTTP upgrade themselves, then write
 * precomputed masked frames and parse the echoed frames minimally (header + length, payload skipped).
 *
 * Modes:
 * - window:    every connection keeps `window` messages in flight; each echoed message triggers one
 *              new send (written in one batch per socket read).
 * - rate:      open loop at a fixed total rate, latency measured from the *intended* send time
 *              (no coordinated omission).
 * - handshake: `concurrency` loops of connect → upgrade → Close → wait for the server's Close and FIN.
 * - idle:      open `conns` connections, echo one message on each, then stay idle.
 *
 * Transports: `tcp` (ws://), `tls` (wss://, one TLS connection per WebSocket, ALPN http/1.1) and
 * `h2` (RFC 8441: every WebSocket of this thread is an extended CONNECT stream of one HTTP/2
 * connection). The certificate is the orchestrator's self-signed one: not verified.
 *
 * Counters and the latency histogram live in a SharedArrayBuffer that the orchestrator snapshots.
 */
import { readlinkSync } from "node:fs"
import * as http2 from "node:http2"
import * as net from "node:net"
import type { Duplex } from "node:stream"
import * as tls from "node:tls"
import { performance } from "node:perf_hooks"
import { parentPort, workerData } from "node:worker_threads"
import {
  bucketOf,
  C_CLIENT_CLOSED_FIRST,
  C_DROPPED,
  C_ERRORS,
  C_LEN_MISMATCH,
  C_MSGS,
  C_OPEN,
  C_SENT,
  C_UNEXPECTED_CLOSE,
  C_VERIFY_FAIL,
  C_VERIFY_OK,
  closeFrame,
  compressMessage,
  COUNTERS,
  decompressMessage,
  maskedFrame,
  OP_CLOSE,
  DEFLATE_OFFER,
  upgradeRequest,
  WS_ACCEPT
} from "./wire.js"

export type GeneratorMode = "window" | "rate" | "handshake" | "idle"

export interface GeneratorConfig {
  readonly mode: GeneratorMode
  readonly index: number
  readonly host: string
  readonly port: number
  /** Local addresses to spread connections over (several 127.0.0.x avoid ephemeral-port exhaustion). */
  readonly sourceAddresses: ReadonlyArray<string>
  readonly conns: number
  readonly window: number
  readonly opcode: number
  readonly payload: Uint8Array
  readonly deflate: boolean
  readonly transport: "tcp" | "tls" | "h2"
  /** Messages per second for this thread (rate mode). */
  readonly rate: number
  /** Concurrent handshake loops (handshake mode) or concurrent pending connects (other modes). */
  readonly concurrency: number
  readonly shared: SharedArrayBuffer
}

export type ToMain =
  | { readonly type: "tid"; readonly tid: number }
  | { readonly type: "ready"; readonly open: number; readonly failed: number; readonly firstError?: string }
  | { readonly type: "stopped" }
  | { readonly type: "fatal"; readonly message: string }

export type FromMain = { readonly type: "stop" }

const cfg = workerData as GeneratorConfig
const shared = new Uint32Array(cfg.shared)
const hist = new Uint32Array(cfg.shared, COUNTERS * 4)
const port = parentPort!
const post = (m: ToMain) => port.postMessage(m)

const payload = Buffer.from(cfg.payload.buffer, cfg.payload.byteOffset, cfg.payload.byteLength)
const wirePayload = cfg.deflate ? compressMessage(payload) : payload
const frame = maskedFrame(cfg.opcode, wirePayload, cfg.deflate)
const frameLen = frame.length
/** Echoes of uncompressed messages must have the same length; compressed ones vary by server. */
const expectedLen = cfg.deflate ? -1 : payload.length
const batchFrames = Math.max(1, Math.min(cfg.mode === "rate" ? 64 : cfg.window, Math.floor((64 << 20) / frameLen)))
const batch = Buffer.allocUnsafe(frameLen * batchFrames)
for (let i = 0; i < batchFrames; i++) frame.copy(batch, i * frameLen)
const upgrade = upgradeRequest(cfg.host, cfg.port, cfg.deflate)
const close = closeFrame()
const RING = cfg.mode === "rate" ? 4096 : Math.max(1, cfg.window)

let running = true
let addrIndex = cfg.index
const nextAddress = () => cfg.sourceAddresses[addrIndex++ % cfg.sourceAddresses.length]
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))
let firstError: string | undefined

const unmaskCopy = (data: Buffer, mask: Uint8Array | undefined): Buffer => {
  if (mask === undefined) return data
  const out = Buffer.allocUnsafe(data.length)
  for (let i = 0; i < data.length; i++) out[i] = data[i] ^ mask[i & 3]
  return out
}

/** A TLS connection from the next source address, offering one ALPN protocol. */
const tlsSocket = (alpn: string): tls.TLSSocket => {
  const tcp = net.connect({ host: cfg.host, port: cfg.port, localAddress: nextAddress(), noDelay: true })
  return tls.connect({ socket: tcp, rejectUnauthorized: false, ALPNProtocols: [alpn] })
}

/** This thread's HTTP/2 connection (h2), opened with the first WebSocket. */
let session: http2.ClientHttp2Session | undefined
const h2Session = (): http2.ClientHttp2Session => {
  if (session !== undefined) return session
  const s = http2.connect(`https://${cfg.host}:${cfg.port}`, {
    createConnection: () => tlsSocket("h2"),
    // receive windows of the size browsers use (Node's 64 KiB would hold the 16 KiB load back)
    settings: { initialWindowSize: 1 << 20 }
  })
  s.once("remoteSettings", () => s.setLocalWindowSize(16 << 20))
  s.on("error", (e) => {
    if (running) {
      shared[C_ERRORS]++
      firstError ??= errorText(e)
    }
  })
  return (session = s)
}

const h2Headers: http2.OutgoingHttpHeaders = {
  ":method": "CONNECT",
  ":protocol": "websocket",
  ":scheme": "https",
  ":path": "/",
  ":authority": `${cfg.host}:${cfg.port}`,
  "sec-websocket-version": "13",
  ...(cfg.deflate ? { "sec-websocket-extensions": DEFLATE_OFFER } : {})
}

/** The byte stream of one WebSocket: a TCP or TLS socket that upgrades, or an HTTP/2 stream. */
const openTransport = (conn: Conn): Duplex => {
  if (cfg.transport === "h2") {
    const stream = h2Session().request(h2Headers, { endStream: false })
    stream.on("response", (headers) => {
      if (headers[":status"] !== 200) return conn.fail(`extended CONNECT refused: ${headers[":status"]}`)
      if (cfg.deflate && !/permessage-deflate/i.test(String(headers["sec-websocket-extensions"] ?? ""))) {
        return conn.fail("server did not negotiate permessage-deflate")
      }
      conn.opened(EMPTY)
    })
    return stream
  }
  if (cfg.transport === "tls") {
    const socket = tlsSocket("http/1.1")
    socket.on("secureConnect", () => socket.write(upgrade))
    return socket
  }
  const socket = net.connect({ host: cfg.host, port: cfg.port, localAddress: nextAddress(), noDelay: true })
  socket.on("connect", () => socket.write(upgrade))
  return socket
}
const EMPTY = Buffer.alloc(0)

class Conn {
  readonly socket: Duplex
  /** 0 upgrading, 1 open, 2 Close sent, 3 Close received. */
  state = 0
  startedAt = performance.now()
  closeReceivedAt = 0
  warmed = false
  private hs: Buffer | undefined
  // frame parser
  private readonly hdr = Buffer.allocUnsafe(14)
  private hdrHave = 0
  private skip = 0
  private frameLen = 0
  private frameOp = 0
  private frameFin = false
  private frameRsv1 = false
  private frameMask: Uint8Array | undefined
  private msgLen = 0
  private msgCompressed = false
  // first reply of every connection is captured and checked byte for byte
  private capture: Array<Buffer> | undefined = []
  // send timestamps of messages in flight (echoes come back in order)
  readonly times = new Float64Array(RING)
  head = 0
  count = 0
  pending = 0

  constructor(readonly onOpen: (c: Conn) => void, readonly onMessages: (c: Conn, n: number, now: number) => void) {
    const socket = openTransport(this)
    this.socket = socket
    socket.on("data", (chunk: Buffer) => this.onData(chunk))
    socket.on("error", (e) => {
      if (running) {
        shared[C_ERRORS]++
        firstError ??= errorText(e)
      }
    })
  }

  push(t: number): boolean {
    if (this.count === RING) return false
    this.times[(this.head + this.count) % RING] = t
    this.count++
    return true
  }

  private onData(chunk: Buffer): void {
    if (this.state === 0) {
      this.hs = this.hs === undefined ? chunk : Buffer.concat([this.hs, chunk])
      const end = this.hs.indexOf("\r\n\r\n")
      if (end < 0) {
        if (this.hs.length > 8192) this.fail("oversized upgrade response")
        return
      }
      const head = this.hs.toString("latin1", 0, end)
      const rest = this.hs.subarray(end + 4)
      this.hs = undefined
      if (!head.startsWith("HTTP/1.1 101") || !head.includes(WS_ACCEPT)) {
        return this.fail(`upgrade refused: ${head.split("\r\n")[0]}`)
      }
      if (cfg.deflate && !/permessage-deflate/i.test(head)) return this.fail("server did not negotiate permessage-deflate")
      this.opened(rest)
      return
    }
    this.parse(chunk)
  }

  /** The upgrade succeeded; `rest` are the bytes that came with its response. */
  opened(rest: Buffer): void {
    this.state = 1
    shared[C_OPEN]++
    this.onOpen(this)
    if (rest.length > 0) this.parse(rest)
  }

  fail(reason: string): void {
    shared[C_ERRORS]++
    firstError ??= reason
    this.socket.destroy()
  }

  private parse(chunk: Buffer): void {
    const now = performance.now()
    const n = chunk.length
    let i = 0
    let done = 0
    while (i < n) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, n - i)
        if (this.capture !== undefined) this.capture.push(Buffer.from(chunk.subarray(i, i + take)))
        this.skip -= take
        i += take
        if (this.skip === 0) done += this.frameDone()
        continue
      }
      // Header: parse in place when it is whole in this chunk, else gather it byte by byte.
      let h: Buffer
      let at: number
      if (this.hdrHave === 0 && n - i >= 2 && n - i >= headerLength(chunk[i + 1])) {
        h = chunk
        at = i
        i += headerLength(chunk[i + 1])
      } else {
        this.hdr[this.hdrHave++] = chunk[i++]
        if (this.hdrHave < 2 || this.hdrHave < headerLength(this.hdr[1])) continue
        h = this.hdr
        at = 0
        this.hdrHave = 0
      }
      const b0 = h[at]
      const b1 = h[at + 1]
      const len7 = b1 & 0x7f
      let len = len7
      let p = at + 2
      if (len7 === 126) {
        len = (h[p] << 8) | h[p + 1]
        p += 2
      } else if (len7 === 127) {
        len = h.readUInt32BE(p) * 2 ** 32 + h.readUInt32BE(p + 4)
        p += 8
      }
      this.frameMask = b1 & 0x80 ? Uint8Array.of(h[p], h[p + 1], h[p + 2], h[p + 3]) : undefined
      this.frameFin = (b0 & 0x80) !== 0
      this.frameRsv1 = (b0 & 0x40) !== 0
      this.frameOp = b0 & 0x0f
      this.frameLen = len
      this.skip = len
      if (len === 0) done += this.frameDone()
    }
    if (done > 0) this.onMessages(this, done, now)
  }

  /** Returns 1 when a data message completed. */
  private frameDone(): number {
    const op = this.frameOp
    if (op >= 8) {
      if (this.capture !== undefined && this.msgLen === 0) this.capture.length = 0
      if (op === OP_CLOSE) {
        this.state = 3
        this.closeReceivedAt = performance.now()
      }
      return 0
    }
    if (op !== 0) {
      this.msgLen = 0
      this.msgCompressed = this.frameRsv1
    }
    this.msgLen += this.frameLen
    if (this.capture !== undefined && this.frameMask !== undefined && this.frameFin && op !== 0) {
      // A single masked frame (the raw echo): unmask what was captured.
      this.capture = [unmaskCopy(Buffer.concat(this.capture), this.frameMask)]
    }
    if (!this.frameFin) return 0
    if (expectedLen >= 0 && this.msgLen !== expectedLen) shared[C_LEN_MISMATCH]++
    if (this.capture !== undefined) {
      this.verify(Buffer.concat(this.capture))
      this.capture = undefined
    }
    this.msgLen = 0
    return 1
  }

  private verify(data: Buffer): void {
    let ok: boolean
    try {
      const plain = this.msgCompressed ? decompressMessage(data) : data
      ok = plain.equals(payload)
    } catch {
      ok = false
    }
    if (ok) shared[C_VERIFY_OK]++
    else shared[C_VERIFY_FAIL]++
  }
}

/** Header length (2-14) from the second header byte. */
const headerLength = (b1: number): number => {
  const len7 = b1 & 0x7f
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0)
}

const recordRtt = (c: Conn, n: number, now: number) => {
  for (let k = 0; k < n && c.count > 0; k++) {
    const sentAt = c.times[c.head]
    c.head = (c.head + 1) % RING
    c.count--
    hist[bucketOf((now - sentAt) * 1000)]++
  }
  shared[C_MSGS] += n
}

const writeFrames = (c: Conn, n: number) => {
  while (n > 0) {
    const k = Math.min(n, batchFrames)
    c.socket.write(k === batchFrames ? batch : batch.subarray(0, k * frameLen))
    n -= k
  }
}

const conns: Array<Conn> = []
const timers: Array<NodeJS.Timeout> = []

/** Opens `cfg.conns` connections, at most `cfg.concurrency` upgrading at once; calls back when all settled. */
const openAll = (onOpen: (c: Conn) => void, onMessages: (c: Conn, n: number, now: number) => void, settled: (open: number, failed: number) => void) => {
  let started = 0
  let open = 0
  let failed = 0
  let finished = false
  const check = () => {
    if (!finished && open + failed === cfg.conns) {
      finished = true
      settled(open, failed)
    }
  }
  const startNext = () => {
    if (!running || started >= cfg.conns) return
    started++
    const c = new Conn((c) => {
      open++
      onOpen(c)
      startNext()
      check()
    }, onMessages)
    conns.push(c)
    c.socket.on("close", () => {
      if (c.state === 0) {
        failed++
        startNext()
        check()
      } else if (running) {
        shared[C_UNEXPECTED_CLOSE]++
      }
    })
  }
  if (cfg.conns === 0) return settled(0, 0)
  for (let i = 0; i < Math.min(cfg.concurrency, cfg.conns); i++) startNext()
}

const ready = (open: number, failed: number) =>
  post(firstError === undefined ? { type: "ready", open, failed } : { type: "ready", open, failed, firstError })

const runWindow = () => {
  openAll(
    (c) => {
      const now = performance.now()
      for (let k = 0; k < cfg.window; k++) c.push(now)
      shared[C_SENT] += cfg.window
      writeFrames(c, cfg.window)
    },
    (c, n, now) => {
      recordRtt(c, n, now)
      if (!running) return
      for (let k = 0; k < n; k++) c.push(now)
      shared[C_SENT] += n
      writeFrames(c, n)
    },
    ready
  )
}

const runRate = () => {
  openAll(
    () => {},
    recordRtt,
    (open, failed) => {
      ready(open, failed)
      const live = conns.filter((c) => c.state === 1)
      if (live.length === 0) return
      const t0 = performance.now()
      const perMs = cfg.rate / 1000
      let sent = 0
      let rr = 0
      const tick = () => {
        if (!running) return
        const due = Math.floor((performance.now() - t0) * perMs) - sent
        for (let j = 0; j < due; j++) {
          const c = live[rr]
          rr = rr + 1 === live.length ? 0 : rr + 1
          if (c.push(t0 + (sent + j) / perMs)) c.pending++
          else shared[C_DROPPED]++
        }
        if (due > 0) {
          sent += due
          for (const c of live) {
            if (c.pending > 0) {
              shared[C_SENT] += c.pending
              writeFrames(c, c.pending)
              c.pending = 0
            }
          }
        }
      }
      timers.push(setInterval(tick, 1))
    }
  )
}

const runIdle = () => {
  let warmed = 0
  let target = 0
  let reported = false
  const report = (open: number, failed: number) => {
    if (reported) return
    reported = true
    ready(open, failed)
  }
  openAll(
    (c) => {
      c.push(performance.now())
      writeFrames(c, 1)
    },
    (c, n, now) => {
      recordRtt(c, n, now)
      if (!c.warmed) {
        c.warmed = true
        warmed++
        if (target > 0 && warmed === target) report(target, cfg.conns - target)
      }
    },
    (open, failed) => {
      target = open
      if (open === 0 || warmed === open) report(open, failed)
    }
  )
}

const active = new Set<Conn>()
const runHandshake = () => {
  const loop = () => {
    if (!running) return
    const c = new Conn(
      (c) => {
        c.state = 2
        c.socket.write(close)
      },
      () => {}
    )
    active.add(c)
    c.socket.on("close", () => {
      active.delete(c)
      if (c.state === 3) {
        shared[C_MSGS]++
        hist[bucketOf((performance.now() - c.startedAt) * 1000)]++
      } else if (running) {
        shared[C_ERRORS]++
        firstError ??= `connection closed in state ${c.state}`
      }
      loop()
    })
  }
  for (let i = 0; i < cfg.concurrency; i++) loop()
  // A server that never closes TCP after the closing handshake is cut after 1 s (counted), and a
  // connection stuck anywhere else after 5 s.
  timers.push(
    setInterval(() => {
      const now = performance.now()
      for (const c of active) {
        if (c.state === 3 && now - c.closeReceivedAt > 1000) {
          shared[C_CLIENT_CLOSED_FIRST]++
          c.socket.destroy()
        } else if (now - c.startedAt > 5000) {
          c.state = -1
          c.socket.destroy()
        }
      }
    }, 250)
  )
  ready(cfg.concurrency, 0)
}

const stop = () => {
  running = false
  for (const t of timers) clearInterval(t)
  for (const c of conns) c.socket.destroy()
  for (const c of active) c.socket.destroy()
  session?.destroy()
  post({ type: "stopped" })
  port.close()
}

port.on("message", (m: FromMain) => {
  if (m.type === "stop") stop()
})

try {
  // /proc/thread-self -> "<pid>/task/<tid>": lets the orchestrator read this thread's own CPU time.
  const link = readlinkSync("/proc/thread-self")
  post({ type: "tid", tid: Number(link.split("/").pop()) })
} catch {
  post({ type: "tid", tid: -1 })
}

try {
  switch (cfg.mode) {
    case "window":
      runWindow()
      break
    case "rate":
      runRate()
      break
    case "idle":
      runIdle()
      break
    case "handshake":
      runHandshake()
      break
  }
} catch (e) {
  post({ type: "fatal", message: errorText(e) })
}
