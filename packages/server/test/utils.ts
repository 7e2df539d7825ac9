import { Effect, Schedule } from "effect"
import type { Duration, Scope } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import type * as http from "node:http"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import WebSocket from "ws"
import type { WebSocket as Ws } from "../src/WebSocket.js"

/**
 * A load test's count of connections, scaled by LOAD_SCALE (default 1). `pnpm mutate` sets it to
 * 0.1: each mutant reruns every test that covers it, and the thousand-connection tests would then
 * be most of a run's time. Fewer connections can only catch fewer mutants, never more.
 */
export const loadCount = (n: number, least = 10): number =>
  Math.max(least, Math.round(n * (Number(process.env["LOAD_SCALE"] ?? 1) || 1)))

/**
 * Waits for `effect` at most `duration`, then fails naming what it was waiting for: a regression
 * shows up as "timed out after 5 seconds: <what>", not as the test runner's 30 s timeout.
 */
export const within = (duration: Duration.DurationInput, what: string) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | Error, R> =>
  Effect.timeoutFail(effect, { duration, onTimeout: () => new Error(`timed out after ${String(duration)}: ${what}`) })

/**
 * Waits until `predicate` holds (checked every 5 ms), at most `duration`, for conditions no
 * event announces (a counter, a socket's state); fails naming `what` on timeout.
 */
export const waitUntil = (
  predicate: () => boolean,
  what: string,
  duration: Duration.DurationInput = "5 seconds"
): Effect.Effect<void, Error> =>
  Effect.sync(predicate).pipe(
    Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced("5 millis") }),
    Effect.asVoid,
    within(duration, what)
  )

/** A `ws` client (an independent implementation), closed with the scope. */
export const connect = (
  url: string,
  options: WebSocket.ClientOptions & { protocols?: string | Array<string> } = {}
): Effect.Effect<WebSocket, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<WebSocket, Error>((resume) => {
      const ws = new WebSocket(url, options.protocols ?? [], { perMessageDeflate: false, ...options })
      recorders.set(ws, makeRecorder(ws))
      ws.once("upgrade", (res) => upgradeHeaders.set(ws, res.headers as Record<string, string>))
      ws.once("open", () => resume(Effect.succeed(ws)))
      ws.once("error", (e) => resume(Effect.fail(e)))
      ws.once("unexpected-response", (_req, res) =>
        resume(Effect.fail(new Error(`unexpected response ${res.statusCode}`))))
    }),
    (ws) => Effect.sync(() => ws.terminate())
  )

const upgradeHeaders = new WeakMap<WebSocket, Record<string, string>>()

/** The headers of the 101 response a `ws` client got. */
export const responseHeaders = (ws: WebSocket): Record<string, string> => upgradeHeaders.get(ws) ?? {}

const recorders = new WeakMap<WebSocket, ReturnType<typeof makeRecorder>>()

/** Every message and the close of a `ws` client, recorded from its creation on. */
export const recorder = (ws: WebSocket) => recorders.get(ws) ?? makeRecorder(ws)

const makeRecorder = (ws: WebSocket) => {
  const messages: Array<{ data: string | Buffer; isBinary: boolean }> = []
  let waiters: Array<() => void> = []
  let closed: { code: number; reason: string } | undefined
  const notify = () => {
    const w = waiters
    waiters = []
    for (const f of w) f()
  }
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    messages.push({ data: isBinary ? data : data.toString("utf8"), isBinary })
    notify()
  })
  ws.on("close", (code: number, reason: Buffer) => {
    closed = { code, reason: reason.toString() }
    notify()
  })
  const until = (pred: () => boolean): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const check = () => {
        if (pred()) resume(Effect.void)
        else waiters.push(check)
      }
      check()
    })
  return {
    messages,
    get closed() {
      return closed
    },
    waitMessages: (n: number) => until(() => messages.length >= n),
    waitClose: until(() => closed !== undefined).pipe(Effect.map(() => closed!))
  }
}

/** A raw TCP client that performs the upgrade itself and records every byte after it. */
export const rawConnect = (
  port: number,
  extraHeaders = ""
): Effect.Effect<{ socket: net.Socket; received: () => Buffer; ended: Effect.Effect<void> }, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ socket: net.Socket; received: () => Buffer; ended: Effect.Effect<void> }, Error>((resume) => {
      const socket = net.connect(port, "127.0.0.1")
      let buf = Buffer.alloc(0)
      let upgraded = false
      let endWaiters: Array<() => void> = []
      let isEnded = false
      socket.on("error", () => {})
      socket.on("close", () => {
        isEnded = true
        for (const w of endWaiters) w()
        endWaiters = []
      })
      socket.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        if (!upgraded) {
          const i = buf.indexOf("\r\n\r\n")
          if (i < 0) return
          const head = buf.subarray(0, i).toString()
          buf = buf.subarray(i + 4)
          upgraded = true
          if (!head.startsWith("HTTP/1.1 101")) return resume(Effect.fail(new Error(head)))
          resume(Effect.succeed({
            socket,
            received: () => buf,
            ended: Effect.async<void>((r) => {
              if (isEnded) r(Effect.void)
              else endWaiters.push(() => r(Effect.void))
            })
          }))
        }
      })
      socket.write(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extraHeaders + "\r\n"
      )
    }),
    ({ socket }) => Effect.sync(() => socket.destroy())
  )

/** Sends raw bytes and returns the full response (until the server closes). */
export const rawExchange = (port: number, bytes: string | Buffer): Effect.Effect<string> =>
  Effect.async<string>((resume) => {
    const socket = net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    socket.on("data", (d) => chunks.push(d))
    socket.on("error", () => {})
    socket.on("close", () => resume(Effect.succeed(Buffer.concat(chunks).toString("latin1"))))
    socket.write(bytes)
  })

/** A self-signed certificate for 127.0.0.1, made at test time with openssl. */
export const makeCertificate = (): { key: string; cert: string } => {
  const dir = mkdtempSync(join(tmpdir(), "ws-cert-"))
  try {
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"
    ], { stdio: "ignore" })
    return { key: readFileSync(join(dir, "key.pem"), "utf8"), cert: readFileSync(join(dir, "cert.pem"), "utf8") }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A masked client frame. */
export const clientFrame = (opcode: number, payload: Buffer | string, fin = true): Buffer => {
  const p = typeof payload === "string" ? Buffer.from(payload) : payload
  const mask = Buffer.from([1, 2, 3, 4])
  const len = p.length
  const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len]) :
    len < 65536 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, len >> 8, len & 255]) :
    (() => {
      const h = Buffer.alloc(10)
      h[0] = (fin ? 0x80 : 0) | opcode
      h[1] = 0x80 | 127
      h.writeBigUInt64BE(BigInt(len), 2)
      return h
    })()
  const masked = Buffer.from(p)
  for (let i = 0; i < masked.length; i++) masked[i]! ^= mask[i % 4]!
  return Buffer.concat([head, mask, masked])
}

// ---------------------------------------------------------------------------------------
// Raw-socket helpers for adversarial tests (appended; shared)
// ---------------------------------------------------------------------------------------

/** The RFC 6455 §1.2 key, valid for any upgrade request. */
export const TEST_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

/**
 * An upgrade request head. `headers` lines replace the defaults of the same name
 * (case-insensitive) and are appended otherwise; a `null` value removes a default.
 */
export const upgradeRequest = (
  headers: Readonly<Record<string, string | null>> = {},
  requestLine = "GET / HTTP/1.1"
): string => {
  const base: Array<[string, string]> = [
    ["Host", "127.0.0.1"],
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", TEST_KEY],
    ["Sec-WebSocket-Version", "13"]
  ]
  const lines: Array<string> = []
  const given = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), [k, v] as const]))
  for (const [name, value] of base) {
    const override = given.get(name.toLowerCase())
    if (override === undefined) lines.push(`${name}: ${value}`)
    else if (override[1] !== null) lines.push(`${override[0]}: ${override[1]}`)
    given.delete(name.toLowerCase())
  }
  for (const [name, value] of given.values()) if (value !== null) lines.push(`${name}: ${value}`)
  return requestLine + "\r\n" + lines.join("\r\n") + "\r\n\r\n"
}

/** A TCP client with no protocol logic: records every byte received and its close. */
export interface RawSocket {
  readonly socket: net.Socket
  /** Everything received so far. */
  readonly received: () => Buffer
  readonly isClosed: () => boolean
  /** Completes when the socket closed (either side, or a reset). */
  readonly closed: Effect.Effect<void>
  /** Completes with true when `pred(received)` holds, with false if the socket closed first. */
  readonly waitFor: (pred: (received: Buffer) => boolean) => Effect.Effect<boolean>
}

const makeRawSocket = (socket: net.Socket): RawSocket => {
  const chunks: Array<Buffer> = []
  let joined: Buffer | undefined = Buffer.alloc(0)
  let isClosed = false
  let waiters: Array<() => void> = []
  const notify = () => {
    const w = waiters
    waiters = []
    for (const f of w) f()
  }
  const received = () => (joined ??= Buffer.concat(chunks))
  socket.on("data", (d: Buffer) => {
    chunks.push(d)
    joined = undefined
    notify()
  })
  socket.on("error", () => {})
  socket.on("close", () => {
    isClosed = true
    notify()
  })
  const waitFor = (pred: (received: Buffer) => boolean): Effect.Effect<boolean> =>
    Effect.async<boolean>((resume) => {
      const check = () => {
        if (pred(received())) resume(Effect.succeed(true))
        else if (isClosed) resume(Effect.succeed(false))
        else waiters.push(check)
      }
      check()
    })
  return {
    socket,
    received,
    isClosed: () => isClosed,
    closed: Effect.asVoid(waitFor(() => false)),
    waitFor
  }
}

/** Opens a raw TCP connection (destroyed with the scope) once it is connected. */
export const rawSocket = (port: number, host = "127.0.0.1"): Effect.Effect<RawSocket, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<RawSocket, Error>((resume) => {
      const socket = net.connect(port, host)
      const raw = makeRawSocket(socket)
      const onError = (e: Error) => resume(Effect.fail(e))
      socket.once("error", onError)
      socket.once("connect", () => {
        socket.removeListener("error", onError)
        resume(Effect.succeed(raw))
      })
    }),
    ({ socket }) => Effect.sync(() => socket.destroy())
  )

/** Wraps an already created socket (a TLS one, say) in the same recorder. */
export const recordSocket = (socket: net.Socket): RawSocket => makeRawSocket(socket)

/** Where an HTTP response head ends in `received` (-1 while incomplete). */
export const headEnd = (received: Buffer): number => {
  const i = received.indexOf("\r\n\r\n")
  return i < 0 ? -1 : i + 4
}

/** A frame as the server sent it (unmasked). */
export interface ServerFrame {
  readonly fin: boolean
  readonly rsv: number
  readonly opcode: number
  readonly payload: Buffer
}

/** Decodes the complete server frames in `bytes` (ignores a trailing partial one). */
export const parseServerFrames = (bytes: Buffer): Array<ServerFrame> => splitServerFrames(bytes).frames

/** The complete frames at the start of `bytes`, and how many bytes they take. */
export const splitServerFrames = (bytes: Buffer): { frames: Array<ServerFrame>; used: number } => {
  const frames: Array<ServerFrame> = []
  let p = 0
  while (p + 2 <= bytes.length) {
    const b0 = bytes[p]!
    const b1 = bytes[p + 1]!
    let len = b1 & 0x7f
    let q = p + 2
    if (len === 126) {
      if (q + 2 > bytes.length) break
      len = bytes.readUInt16BE(q)
      q += 2
    } else if (len === 127) {
      if (q + 8 > bytes.length) break
      len = Number(bytes.readBigUInt64BE(q))
      q += 8
    }
    if (b1 & 0x80) q += 4
    if (q + len > bytes.length) break
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, payload: bytes.subarray(q, q + len) })
    p = q + len
  }
  return { frames, used: p }
}

/** The code of the first Close frame in `bytes` (1005 for an empty one), or undefined. */
export const closeCodeIn = (bytes: Buffer): number | undefined => {
  const close = parseServerFrames(bytes).find((f) => f.opcode === 8)
  if (close === undefined) return undefined
  return close.payload.length >= 2 ? close.payload.readUInt16BE(0) : 1005
}

/**
 * Any client frame, valid or not: `mask: false` sends it unmasked, `rsv` sets RSV1-3
 * (bits 0b100, 0b010, 0b001), `length` overrides the declared length (`"64"` forces the
 * 8-byte form, a bigint writes those 64 bits verbatim).
 */
export const craftFrame = (options: {
  readonly opcode: number
  readonly payload?: Buffer | string
  readonly fin?: boolean
  readonly rsv?: number
  readonly mask?: false | Buffer
  readonly length?: number | bigint
}): Buffer => {
  const p = options.payload === undefined ? Buffer.alloc(0) :
    typeof options.payload === "string" ? Buffer.from(options.payload) : options.payload
  const mask = options.mask === false ? undefined : options.mask ?? Buffer.from([0x11, 0x22, 0x33, 0x44])
  const declared = options.length ?? p.length
  const b0 = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | (options.opcode & 0x0f)
  const m = mask === undefined ? 0 : 0x80
  let head: Buffer
  if (typeof declared === "bigint" || declared > 0xffff) {
    head = Buffer.alloc(10)
    head[1] = m | 127
    head.writeBigUInt64BE(BigInt(declared), 2)
  } else if (declared > 125) {
    head = Buffer.alloc(4)
    head[1] = m | 126
    head.writeUInt16BE(declared, 2)
  } else {
    head = Buffer.alloc(2)
    head[1] = m | declared
  }
  head[0] = b0
  if (mask === undefined) return Buffer.concat([head, p])
  const masked = Buffer.from(p)
  for (let i = 0; i < masked.length; i++) masked[i]! ^= mask[i % 4]!
  return Buffer.concat([head, mask, masked])
}

/** Polls `effect` every 10 ms until `pred` holds or `timeoutMs` passed; returns the last value. */
export const pollUntil = <A>(
  effect: Effect.Effect<A>,
  pred: (a: A) => boolean,
  timeoutMs: number
): Effect.Effect<A> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    let value = yield* effect
    while (!pred(value) && Date.now() < deadline) {
      yield* Effect.sleep(10)
      value = yield* effect
    }
    return value
  })

/** A node:http(s) server listening on 127.0.0.1 (any port) for the scope; its port. */
export const listenHttp = <S extends http.Server>(server: S): Effect.Effect<number, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<number>((resume) => {
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
    }),
    () =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

/** Records the process's uncaught exceptions while the scope is open (an unhandled socket 'error' lands here). */
export const uncaughtErrors: Effect.Effect<Array<unknown>, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => {
    const errors: Array<unknown> = []
    const listener = (e: unknown) => void errors.push(e)
    process.on("uncaughtException", listener)
    return { errors, listener }
  }),
  ({ listener }) => Effect.sync(() => void process.removeListener("uncaughtException", listener))
).pipe(Effect.map(({ errors }) => errors))

/**
 * A handle that is not the engine's object (served through the public API), around a real
 * connection; `bufferedAmount` answers `buffered.value` and counts its calls.
 */
export const wrap = (ws: Ws<unknown>, buffered?: { value: number; calls: number }): Ws<unknown> => ({
  id: ws.id,
  request: ws.request,
  protocol: ws.protocol,
  extensions: ws.extensions,
  sink: ws.sink,
  deflate: ws.deflate,
  data: ws.data,
  messages: ws.messages,
  run: ws.run,
  send: ws.send,
  sendText: ws.sendText,
  sendBinary: ws.sendBinary,
  unsafeSend: ws.unsafeSend,
  ping: ws.ping,
  close: ws.close,
  closed: ws.closed,
  bufferedAmount: buffered === undefined ? ws.bufferedAmount : Effect.sync(() => {
    buffered.calls++
    return buffered.value
  })
})

/** A raw client that upgraded on `path` with extra headers; resolves once the 101 arrived. */
export const rawClient = (port: number, path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const raw = yield* rawSocket(port)
    raw.socket.write(upgradeRequest(headers, `GET ${path} HTTP/1.1`))
    if (!(yield* raw.waitFor((b) => headEnd(b) > 0))) throw new Error(`no response head for ${path}`)
    const head = raw.received().subarray(0, headEnd(raw.received())).toString("latin1")
    if (!head.startsWith("HTTP/1.1 101 ")) throw new Error(`not upgraded: ${head}`)
    return { raw, head }
  })

/** The frames a raw client received after the response head. */
export const framesOf = (raw: RawSocket): Array<ServerFrame> => {
  const b = raw.received()
  return parseServerFrames(b.subarray(headEnd(b)))
}
