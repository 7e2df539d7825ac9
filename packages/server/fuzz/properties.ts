/**
 * Fuzz properties over the sans-I/O core, shared by the CI test (`test/Fuzz.test.ts`, a
 * bounded number of runs) and the long campaign (`fuzz/run.ts`, random seeds for minutes).
 *
 * Each property feeds peer-controlled bytes (or strings) to a parser, cut at arbitrary
 * points, and checks that the result is events or a typed error, never an exception, and
 * that the result is well typed. A hang shows up as a run that never returns (the test
 * times out; the campaign prints the property it is stuck in).
 */
import type { ConnectionEvent } from "@effect-websocket/protocol/Connection"
import { Connection, isValidCloseCode } from "@effect-websocket/protocol/Connection"
import { HandshakeError, isProtocolError } from "@effect-websocket/protocol/Errors"
import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import type { ExtensionOffer } from "@effect-websocket/protocol/Extensions"
import { formatExtension, parseExtensions, parseProtocols } from "@effect-websocket/protocol/Extensions"
import type { RequestParseResult } from "@effect-websocket/protocol/Handshake"
import { acceptResponse, rejectResponse, RequestParser, validateUpgrade } from "@effect-websocket/protocol/Handshake"
import type { PerMessageDeflateParams } from "@effect-websocket/protocol/PerMessageDeflate"
import { negotiate, PerMessageDeflate } from "@effect-websocket/protocol/PerMessageDeflate"
import { FastCheck as fc } from "effect"
import { deflateRawSync, constants as zconstants } from "node:zlib"

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/** Thrown (inside a property only) when an invariant does not hold; fast-check reports it. */
const check = (ok: boolean, what: string): void => {
  if (!ok) throw new Error(`invariant broken: ${what}`)
}

/** Cuts `bytes` at `cuts` (taken modulo length + 1, sorted, deduplicated). */
export const split = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const n = bytes.length
  const points = [...new Set(cuts.map((c) => c % (n + 1)))].sort((a, b) => a - b)
  const out: Array<Buffer> = []
  let prev = 0
  for (const p of points) {
    if (p > prev) out.push(Buffer.from(bytes.subarray(prev, p)))
    prev = p
  }
  if (prev < n) out.push(Buffer.from(bytes.subarray(prev)))
  return out
}

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
const isToken = (s: string): boolean => s.length > 0 && [...s].every((c) => TCHARS.includes(c))

/** A small, fast PRNG (xorshift32) for inputs too large to draw byte by byte. */
const prng = (seed: number) => {
  let x = (seed | 0) || 0x9e3779b9
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}

const deflate = (data: Uint8Array): Buffer => {
  const out = deflateRawSync(data, { finishFlush: zconstants.Z_SYNC_FLUSH })
  return out.subarray(0, out.length - 4)
}

// ---------------------------------------------------------------------------------------
// Frames: arbitraries
// ---------------------------------------------------------------------------------------

export type Role = "server" | "client"

/** How a generated frame is written: minimal or non-minimal length form, masked or not. */
interface FrameSpec {
  readonly fin: boolean
  readonly rsv: number
  readonly opcode: number
  readonly masked: boolean
  readonly mask: Uint8Array
  readonly lengthForm: "minimal" | "16" | "64"
  readonly payload: Uint8Array
  /** Cut the frame short (a truncated frame ends the stream, or runs into the next). */
  readonly truncate: number | undefined
}

export const encodeSpec = (f: FrameSpec): Buffer => {
  const len = f.payload.length
  const form = f.lengthForm === "minimal" ? (len < 126 ? "7" : len < 65536 ? "16" : "64") : f.lengthForm
  const head = Buffer.alloc(form === "7" ? 2 : form === "16" ? 4 : 10)
  head[0] = (f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0x0f)
  const m = f.masked ? 0x80 : 0
  if (form === "7") head[1] = m | len
  else if (form === "16") {
    head[1] = m | 126
    head.writeUInt16BE(len & 0xffff, 2)
  } else {
    head[1] = m | 127
    head.writeBigUInt64BE(BigInt(len), 2)
  }
  let payload = Buffer.from(f.payload)
  if (f.masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= f.mask[i % 4]!
  const frame = Buffer.concat(f.masked ? [head, Buffer.from(f.mask), payload] : [head, payload])
  return f.truncate === undefined ? frame : frame.subarray(0, f.truncate % (frame.length + 1))
}

const utf8ish = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 40 }).map((s) => Buffer.from(s, "utf8")),
  // valid text with one byte changed: invalid UTF-8 of every kind
  fc.tuple(fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }), fc.nat(), fc.integer({ min: 0x80, max: 0xff }))
    .map(([s, at, b]) => {
      const bytes = Buffer.from(s, "utf8")
      bytes[at % bytes.length] = b
      return bytes
    }),
  fc.constantFrom("c0af", "eda080", "f4908080", "e282", "f09f98", "ff", "e282ac", "f09f9880").map((h) => Buffer.from(h, "hex"))
)

const closePayload = fc.oneof(
  fc.constant(Buffer.alloc(0)),
  fc.uint8Array({ minLength: 1, maxLength: 1 }).map((b) => Buffer.from(b)),
  fc.tuple(
    fc.oneof(fc.constantFrom(1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 3000, 4999), fc.integer({ min: 0, max: 65535 })),
    utf8ish
  ).map(([code, reason]) => {
    const b = Buffer.alloc(2 + Math.min(reason.length, 123))
    b.writeUInt16BE(code)
    reason.copy(b, 2, 0, 123)
    return b
  })
)

const payloadArb = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  { weight: 3, arbitrary: utf8ish },
  { weight: 2, arbitrary: fc.oneof(fc.string({ maxLength: 300 }), fc.constant("a".repeat(5000))).map((s) => deflate(Buffer.from(s))) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 126, maxLength: 1200 }) },
  { weight: 1, arbitrary: closePayload }
)

/** A frame that is valid more often than not, for the given receiving role. */
export const frameSpecArb = (role: Role): fc.Arbitrary<FrameSpec> =>
  fc.record({
    fin: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    rsv: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 3, arbitrary: fc.constant(4) }, {
      weight: 1,
      arbitrary: fc.integer({ min: 0, max: 7 })
    }),
    opcode: fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(0, 1, 2, 8, 9, 10) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) }
    ),
    masked: fc.oneof({ weight: 12, arbitrary: fc.constant(role === "server") }, {
      weight: 1,
      arbitrary: fc.constant(role !== "server")
    }),
    mask: fc.uint8Array({ minLength: 4, maxLength: 4 }),
    lengthForm: fc.oneof({ weight: 10, arbitrary: fc.constant("minimal" as const) }, {
      weight: 1,
      arbitrary: fc.constantFrom("16" as const, "64" as const)
    }),
    payload: payloadArb,
    truncate: fc.oneof({ weight: 15, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat() })
  })

/** A byte stream of frames, then a few byte-level mutations. */
export const frameStreamArb = (role: Role): fc.Arbitrary<Buffer> =>
  fc.tuple(
    fc.array(frameSpecArb(role), { maxLength: 12 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom("set", "insert", "delete")), {
      maxLength: 3
    })
  ).map(([frames, mutations]) => {
    let bytes = Buffer.concat(frames.map(encodeSpec))
    for (const [at, value, kind] of mutations) {
      if (bytes.length === 0) break
      const i = at % bytes.length
      if (kind === "set") bytes[i] = value
      else if (kind === "insert") bytes = Buffer.concat([bytes.subarray(0, i), Buffer.of(value), bytes.subarray(i)])
      else bytes = Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)])
    }
    return bytes
  })

/** Any bytes: raw noise, or frame streams. */
export const wireBytesArb = (role: Role): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
    { weight: 3, arbitrary: frameStreamArb(role) }
  )

/** 64 KiB of input: PRNG-filled frames (mostly valid headers, random payloads) or pure noise. */
export const bigInputArb = (role: Role): fc.Arbitrary<Buffer> =>
  fc.tuple(fc.integer(), fc.boolean()).map(([seed, noise]) => {
    const next = prng(seed)
    const out = Buffer.allocUnsafe(64 * 1024)
    if (noise) {
      for (let i = 0; i < out.length; i++) out[i] = next() & 0xff
      return out
    }
    let p = 0
    while (p < out.length) {
      const r = next()
      const opcode = [0, 1, 2, 2, 9, 10, 1, 8][r & 7]!
      const len = (r >>> 3) % 5 === 0 ? 126 + ((r >>> 8) % 3000) : (r >>> 8) % 126
      const control = opcode >= 8
      const bytesLen = control ? Math.min(len, 125) : len
      const fin = control || ((r >>> 20) & 3) !== 0
      const masked = (role === "server") !== (((r >>> 22) & 63) === 0)
      const head: Array<number> = [(fin ? 0x80 : 0) | opcode]
      if (bytesLen < 126) head.push((masked ? 0x80 : 0) | bytesLen)
      else head.push((masked ? 0x80 : 0) | 126, bytesLen >> 8, bytesLen & 0xff)
      if (masked) head.push(next() & 0xff, next() & 0xff, next() & 0xff, next() & 0xff)
      for (const b of head) if (p < out.length) out[p++] = b
      for (let i = 0; i < bytesLen && p < out.length; i++) out[p++] = opcode === 1 ? 0x61 + (next() % 26) : next() & 0xff
    }
    return out
  })

const cutsArb = fc.array(fc.nat(), { maxLength: 24 })

const pmdParamsArb: fc.Arbitrary<PerMessageDeflateParams | undefined> = fc.option(
  fc.record({
    serverNoContextTakeover: fc.boolean(),
    clientNoContextTakeover: fc.boolean(),
    serverMaxWindowBits: fc.integer({ min: 8, max: 15 }),
    clientMaxWindowBits: fc.integer({ min: 8, max: 15 })
  }),
  { nil: undefined }
)

// ---------------------------------------------------------------------------------------
// Frames: the checks
// ---------------------------------------------------------------------------------------

const CLOSE_CODES = new Set([1002, 1007, 1008, 1009, 1011])

const checkError = (err: ProtocolError | undefined): void => {
  if (err === undefined) return
  check(isProtocolError(err), "receiveData returned something that is not a ProtocolError")
  check(CLOSE_CODES.has(err.closeCode), `unexpected close code ${err.closeCode}`)
  check(typeof err.reason === "string" && Buffer.byteLength(err.reason) <= 123, "reason not a short string")
}

const checkEvent = (e: ConnectionEvent, maxMessageSize: number): void => {
  switch (e._tag) {
    case "Text":
      check(typeof e.data === "string", "Text data is not a string")
      check(Buffer.byteLength(e.data, "utf8") <= maxMessageSize, "Text over the limit")
      check(Buffer.from(e.data, "utf8").toString("utf8") === e.data, "Text is not well-formed")
      return
    case "Binary":
      check(Buffer.isBuffer(e.data), "Binary data is not a Buffer")
      check(e.data.length <= maxMessageSize, "Binary over the limit")
      return
    case "Ping":
    case "Pong":
      check(Buffer.isBuffer(e.data) && e.data.length <= 125, "control payload")
      return
    case "Close":
      check(e.code === 1005 || isValidCloseCode(e.code), `Close code ${e.code}`)
      check(typeof e.reason === "string", "Close reason")
      return
    default:
      check(false, `unknown event ${(e as { _tag: string })._tag}`)
  }
}

export interface DecodeOutcome {
  readonly events: Array<unknown>
  readonly error: number | undefined
}

/** Events in a comparable form. */
const plain = (e: ConnectionEvent): unknown =>
  e._tag === "Text" || e._tag === "Close" ? e : { _tag: e._tag, data: e.data.toString("hex") }

/**
 * Feeds `chunks` to a fresh connection and checks every step: typed errors only, typed
 * events, nothing after a failure or after the peer's Close, output made of byte arrays.
 */
export const decode = (
  chunks: ReadonlyArray<Buffer>,
  role: Role,
  pmd: PerMessageDeflateParams | undefined,
  maxMessageSize = 4096,
  maxFragments = 16
): DecodeOutcome => {
  const compression = pmd === undefined ? undefined : new PerMessageDeflate(pmd, {}, role)
  const c = new Connection({ role, maxMessageSize, maxFragments, compression })
  const events: Array<unknown> = []
  let error: number | undefined
  let closed = false
  for (const chunk of chunks) {
    const err = c.receiveData(chunk)
    checkError(err)
    const evs = c.eventsReceived()
    check(Array.isArray(evs), "eventsReceived is not an array")
    if (error !== undefined) {
      check(err === undefined && evs.length === 0, "input processed after a failure")
    }
    if (closed) check(evs.length === 0, "events after the peer's Close")
    for (const e of evs) {
      checkEvent(e, maxMessageSize)
      if (e._tag === "Close") closed = true
      events.push(plain(e))
    }
    if (err !== undefined && error === undefined) {
      error = err.closeCode
      check(c.failure === err, "failure not recorded")
    }
    for (const out of c.dataToSend()) check(out instanceof Uint8Array, "dataToSend item is not bytes")
  }
  c.receiveEof()
  check(c.eventsReceived().length === 0, "events after EOF")
  check(c.closeTransport, "closeTransport after EOF")
  for (const out of c.dataToSend()) check(out instanceof Uint8Array, "dataToSend item is not bytes")
  c.dispose()
  return { events, error }
}

// ---------------------------------------------------------------------------------------
// Handshake: arbitraries and checks
// ---------------------------------------------------------------------------------------

const latin1 = (s: string) => Buffer.from(s, "latin1")

const headerNames = [
  "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
  "Sec-WebSocket-Extensions", "Origin", "Content-Length", "Transfer-Encoding", "__proto__", "constructor", "X-A"
]
const headerValues = [
  "websocket", "Upgrade", "upgrade, keep-alive", "dGhlIHNhbXBsZSBub25jZQ==", "13", "8", "chat, superchat",
  "permessage-deflate; client_max_window_bits", `permessage-deflate; x="y\\z"`, "0", "chunked", "", " ", "\t",
  "127.0.0.1", "a,b", "\u00ff\u0080"
]

/** A structurally valid upgrade request, sometimes with a wrong value or header. */
const requestArb = fc.record({
  method: fc.constantFrom("GET", "GET", "GET", "POST", "get", "G\u00e9T"),
  target: fc.constantFrom("/", "/chat?x=1", "*", "http://h/p", "/\u00ff"),
  version: fc.constantFrom("HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x"),
  headers: fc.array(
    fc.tuple(
      fc.oneof(fc.constantFrom(...headerNames), fc.string({ maxLength: 8 })),
      fc.oneof(fc.constantFrom(...headerValues), fc.string({ unit: "binary", maxLength: 30 }))
    ),
    { maxLength: 14 }
  ),
  base: fc.boolean()
}).map(({ base, headers, method, target, version }) => {
  const lines = base
    ? [
      ["Host", "x"],
      ["Upgrade", "websocket"],
      ["Connection", "Upgrade"],
      ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
      ["Sec-WebSocket-Version", "13"],
      ...headers
    ]
    : headers
  return latin1(`${method} ${target} ${version}\r\n${lines.map(([n, v]) => `${n}: ${v}`).join("\r\n")}\r\n\r\n`)
})

const headPiece = fc.oneof(
  fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
  fc.constantFrom("GET ", "/ ", "HTTP/1.1", "\r\n", "\r", "\n", ":", " ", "\t", "Host: x", "Upgrade: websocket", "a", "\u0000", "\u00ff")
    .map(latin1)
)

/** Any bytes for the request parser: valid requests (maybe mutated) plus trailing bytes, or grammar noise. */
export const requestBytesArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(
    requestArb,
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 2 }),
    fc.uint8Array({ maxLength: 20 })
  ).map(([req, mutations, tail]) => {
    const b = Buffer.concat([req, tail])
    for (const [at, v] of mutations) b[at % b.length] = v
    return b
  }),
  fc.array(headPiece, { maxLength: 40 }).map((ps) => Buffer.concat(ps))
)

const checkUpgrade = (request: Parameters<typeof validateUpgrade>[0]): void => {
  const upgrade = validateUpgrade(request)
  if (upgrade instanceof HandshakeError) {
    check([400, 405, 426].includes(upgrade.status), `validateUpgrade status ${upgrade.status}`)
    // the refusal can always be written
    check(rejectResponse(upgrade).length > 0, "rejectResponse")
    return
  }
  check(upgrade.key.length === 24, "key length")
  check(upgrade.protocols.every(isToken), "protocols are tokens")
  for (const offer of upgrade.extensions) checkOffer(offer)
  // whatever the peer offered, building the 101 from it never throws (no header injection)
  const negotiated = negotiate(upgrade.extensions, {})
  if (negotiated !== undefined) {
    const reparsed = parseExtensions(negotiated.response)
    check(!(reparsed instanceof HandshakeError) && reparsed.length === 1, "negotiated response re-parses")
  }
  const response = acceptResponse({
    key: upgrade.key,
    protocol: upgrade.protocols[0],
    extensions: negotiated?.response
  })
  check(response.length > 0, "acceptResponse")
}

export interface HeadOutcome {
  readonly status: number | undefined
  readonly request: unknown
  readonly rest: string | undefined
}

/** Feeds the chunks to a parser until it answers; checks the answer and validates it. */
export const parseRequest = (
  chunks: ReadonlyArray<Buffer>,
  maxHeaderBytes: number,
  maxHeaders: number
): HeadOutcome => {
  const parser = new RequestParser({ maxHeaderBytes, maxHeaders })
  let result: RequestParseResult
  const restParts: Array<Buffer> = []
  for (const chunk of chunks) {
    if (result === undefined) result = parser.push(chunk)
    else restParts.push(chunk)
  }
  if (result === undefined) return { status: undefined, request: undefined, rest: undefined }
  if (result instanceof HandshakeError) {
    check(result.status === 400 || result.status === 431, `parser status ${result.status}`)
    // single use: the parser keeps refusing
    check(parser.push(Buffer.from("x")) instanceof HandshakeError, "parser reused after an error")
    return { status: result.status, request: undefined, rest: undefined }
  }
  const r = result.request
  check(typeof r.method === "string" && typeof r.target === "string" && /^\d\.\d$/.test(r.httpVersion), "request line")
  check(Object.getPrototypeOf(r.headers) === null, "headers must be a null-prototype record")
  for (const [name, value] of Object.entries(r.headers)) {
    check(name === name.toLowerCase() && isToken(name), `header name ${JSON.stringify(name)}`)
    check(typeof value === "string" && !/[\r\n]/.test(value), "header value")
  }
  check(result.rest instanceof Uint8Array, "rest")
  checkUpgrade(r)
  return {
    status: 200,
    request: { method: r.method, target: r.target, httpVersion: r.httpVersion, headers: { ...r.headers } },
    rest: Buffer.concat([result.rest, ...restParts]).toString("hex")
  }
}

// ---------------------------------------------------------------------------------------
// Extensions: arbitraries and checks
// ---------------------------------------------------------------------------------------

const extPiece = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("permessage-deflate", "x", "__proto__", "constructor", "client_max_window_bits", "server_no_context_takeover", "15", "8", "08") },
  { weight: 4, arbitrary: fc.constantFrom(",", ";", "=", "\"", "\\", " ", "\t", "  ", ", ,") },
  { weight: 1, arbitrary: fc.string({ maxLength: 4 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 3 }) }
)

/** Strings for the extension and protocol parsers: grammar pieces and any characters. */
export const headerValueArb: fc.Arbitrary<string> = fc.oneof(
  fc.array(extPiece, { maxLength: 30 }).map((ps) => ps.join("")),
  fc.string({ unit: "binary", maxLength: 60 })
)

const checkOffer = (offer: ExtensionOffer): void => {
  check(isToken(offer.name), `extension name ${JSON.stringify(offer.name)}`)
  for (const p of offer.params) {
    check(isToken(p.name), "param name")
    check(p.value === undefined || isToken(p.value), `param value ${JSON.stringify(p.value)}`)
  }
}

/** Parses a header value as extensions and as protocols; checks types and a format round trip. */
export const parseHeaderValue = (value: string): void => {
  const offers = parseExtensions(value)
  if (offers instanceof HandshakeError) {
    check(offers.status === 400, "extensions status")
  } else {
    for (const offer of offers) {
      checkOffer(offer)
      const again = parseExtensions(formatExtension(offer))
      check(!(again instanceof HandshakeError) && again.length === 1, "format round trip")
      if (!(again instanceof HandshakeError)) {
        check(JSON.stringify(again[0]) === JSON.stringify(offer), "format round trip is lossless")
      }
    }
    const agreed = negotiate(offers, {})
    check(agreed === undefined || agreed.response.startsWith("permessage-deflate"), "negotiate")
  }
  const protocols = parseProtocols(value)
  if (protocols instanceof HandshakeError) check(protocols.status === 400, "protocols status")
  else check(protocols.every(isToken), "protocol tokens")
}

// ---------------------------------------------------------------------------------------
// Frames we send: the encoder's output across connections
// ---------------------------------------------------------------------------------------

/** Unmasked frames in `bytes` as [opcode, payload hex]; undefined when the bytes are not exactly frames. */
const decodeServerFrames = (bytes: Buffer): Array<[number, string]> | undefined => {
  const frames: Array<[number, string]> = []
  let p = 0
  while (p < bytes.length) {
    if (p + 2 > bytes.length) return undefined
    const b0 = bytes[p]!
    const b1 = bytes[p + 1]!
    if ((b0 & 0x70) !== 0 || (b1 & 0x80) !== 0 || (b0 & 0x80) === 0) return undefined
    let len = b1 & 0x7f
    let q = p + 2
    if (len === 126) {
      if (q + 2 > bytes.length) return undefined
      len = bytes.readUInt16BE(q)
      q += 2
    } else if (len === 127) {
      if (q + 8 > bytes.length) return undefined
      len = Number(bytes.readBigUInt64BE(q))
      q += 8
    }
    if (q + len > bytes.length) return undefined
    frames.push([b0 & 0x0f, bytes.subarray(q, q + len).toString("hex")])
    p = q + len
  }
  return frames
}

/** Where the shared output slab stands, read from the last view a connection handed out. */
const slabState = (views: ReadonlyArray<Uint8Array>): { pos: number; size: number } | undefined => {
  const last = views[views.length - 1]
  if (last === undefined) return undefined
  return { pos: last.byteOffset + last.byteLength, size: last.buffer.byteLength }
}

/**
 * Starts a fresh shared slab and fills it with small frames from `filler` until `left`
 * bytes remain (best effort). Returns the views handed out in the fresh slab: the first
 * one starts at its offset 0, so a write to the slab's start afterwards shows in them.
 */
const fillSlab = (filler: Connection, left: number): Array<Uint8Array> => {
  // 1. move on to a fresh slab: 4 KiB frames until one lands at offset 0
  let views: Array<Uint8Array> = []
  for (let guard = 0; guard < 40 && views.length === 0; guard++) {
    filler.sendBinary(Buffer.alloc(4096, 0x5a))
    const out = filler.dataToSend()
    const i = out.findIndex((v) => v.byteOffset === 0)
    if (i >= 0) views = out.slice(i)
  }
  // 2. fill it: one frame of exactly the remaining size when possible
  for (let guard = 0; guard < 100; guard++) {
    const state = slabState(views)
    if (state === undefined) return views
    const r = state.size - state.pos - left
    if (r <= 0) return views
    let n: number
    if (r >= 2 && r <= 127) n = r - 2 // 2 + n bytes
    else if (r >= 130 && r <= 4100) n = r - 4 // 4 + n bytes
    else if (r > 4100) n = r - 4100 >= 130 ? 4096 : 200
    else n = 0 // 1, 128 or 129 left over: a 2-byte frame shifts it
    filler.sendBinary(Buffer.alloc(n, 0x5a))
    views = views.concat(filler.dataToSend())
  }
  return views
}

interface Send {
  readonly conn: number
  readonly kind: "text" | "binary" | "ping"
  readonly size: number
}

const sendArb: fc.Arbitrary<Send> = fc.record({
  conn: fc.integer({ min: 0, max: 2 }),
  kind: fc.constantFrom("text" as const, "binary" as const, "binary" as const, "ping" as const),
  size: fc.oneof(fc.integer({ min: 0, max: 125 }), fc.integer({ min: 126, max: 4096 }), fc.integer({ min: 4097, max: 70_000 }))
})

/**
 * Sends on three connections that share the output slab, starting `left` bytes before the
 * slab's end, and checks that each connection's output is exactly the frames it sent and
 * that nothing handed out earlier was written again.
 */
export const encode = (left: number, sends: ReadonlyArray<Send>, flushEvery: number): void => {
  const filled = fillSlab(new Connection({ role: "server" }), left)
  const conns = [0, 1, 2].map(() => new Connection({ role: "server" }))
  const expected: Array<Array<[number, string]>> = [[], [], []]
  const outputs: Array<Array<Uint8Array>> = [[], [], []]
  const snapshots: Array<[Uint8Array, Buffer]> = filled.map((v) => [v, Buffer.from(v)])
  const take = (i: number) => {
    for (const v of conns[i]!.dataToSend()) {
      outputs[i]!.push(v)
      snapshots.push([v, Buffer.from(v)])
    }
  }
  sends.forEach((send, n) => {
    const c = conns[send.conn]!
    const byte = (n * 37 + 11) & 0xff
    if (send.kind === "text") {
      const text = String.fromCharCode(0x61 + (byte % 26)).repeat(send.size)
      c.sendText(text)
      expected[send.conn]!.push([1, Buffer.from(text).toString("hex")])
    } else if (send.kind === "binary") {
      const bytes = Buffer.alloc(send.size, byte)
      c.sendBinary(bytes)
      expected[send.conn]!.push([2, bytes.toString("hex")])
    } else {
      const bytes = Buffer.alloc(send.size % 126, byte)
      c.sendPing(bytes)
      expected[send.conn]!.push([9, bytes.toString("hex")])
    }
    if (flushEvery > 0 && n % flushEvery === 0) take(send.conn)
  })
  for (let i = 0; i < 3; i++) take(i)
  for (const [view, copy] of snapshots) check(Buffer.from(view).equals(copy), "bytes already handed out were overwritten")
  for (let i = 0; i < 3; i++) {
    const frames = decodeServerFrames(Buffer.concat(outputs[i]!))
    check(frames !== undefined, `connection ${i}: output is not a sequence of well-formed frames`)
    check(JSON.stringify(frames) === JSON.stringify(expected[i]), `connection ${i}: output differs from what was sent`)
  }
}

// ---------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------

const roleArb = fc.constantFrom<Role>("server", "client")

/** Properties by name, in the order the campaign cycles through them. */
export const properties = {
  /** Arbitrary bytes, arbitrary cuts, both roles, with or without permessage-deflate. */
  "frames: events or a typed error": fc.property(
    roleArb.chain((role) => fc.tuple(fc.constant(role), wireBytesArb(role), cutsArb, pmdParamsArb)),
    ([role, bytes, cuts, pmd]) => {
      decode(split(bytes, cuts), role, pmd)
    }
  ),
  /** Any chunking of the same bytes gives the same events and the same failure. */
  "frames: chunking does not change the outcome": fc.property(
    roleArb.chain((role) => fc.tuple(fc.constant(role), wireBytesArb(role), cutsArb, pmdParamsArb)),
    ([role, bytes, cuts, pmd]) => {
      const whole = decode([Buffer.from(bytes)], role, pmd)
      const pieces = decode(split(bytes, cuts), role, pmd)
      check(JSON.stringify(whole) === JSON.stringify(pieces), "chunked decoding differs from whole decoding")
    }
  ),
  /** 64 KiB inputs (default limits) return, cut in a few places or byte by byte at the start. */
  "frames: 64 KiB inputs": fc.property(
    roleArb.chain((role) => fc.tuple(fc.constant(role), bigInputArb(role), cutsArb, pmdParamsArb)),
    ([role, bytes, cuts, pmd]) => {
      const chunks = split(bytes, cuts)
      const first = chunks[0]!
      const bytewise = [...split(first, Array.from({ length: Math.min(first.length, 256) }, (_, i) => i)), ...chunks.slice(1)]
      decode(bytewise, role, pmd, 1024 * 1024, 65_536)
    }
  ),
  /** The request parser and validateUpgrade on any bytes, cut anywhere; chunking does not change the outcome. */
  "handshake: request head": fc.property(
    requestBytesArb,
    cutsArb,
    fc.integer({ min: 16, max: 400 }),
    fc.integer({ min: 0, max: 20 }),
    (bytes, cuts, maxHeaderBytes, maxHeaders) => {
      const whole = parseRequest([Buffer.from(bytes)], maxHeaderBytes, maxHeaders)
      const pieces = parseRequest(split(bytes, cuts), maxHeaderBytes, maxHeaders)
      // Acceptance never depends on the cuts. Refusals may: 400 and 431 can swap (the
      // streaming scan counts lines before it parses them), and a malformed request line
      // seen whole is refused at once but, cut short, only when the head completes.
      check((whole.status === 200) === (pieces.status === 200), "accepted whole but not in pieces, or the reverse")
      if (whole.status === undefined) check(pieces.status === undefined, "refused in pieces, incomplete whole")
      check(JSON.stringify(whole.request) === JSON.stringify(pieces.request), "a different request in pieces")
      check(whole.rest === pieces.rest, "different rest bytes")
    }
  ),
  /** Our own output: frames sent on connections sharing the output slab, near its end. */
  "frames: the encoder's output stays intact": fc.property(
    fc.integer({ min: 0, max: 16 }),
    fc.array(sendArb, { minLength: 1, maxLength: 12 }),
    fc.integer({ min: 0, max: 4 }),
    (left, sends, flushEvery) => {
      encode(left, sends, flushEvery)
    }
  ),
  /** Sec-WebSocket-Extensions / Sec-WebSocket-Protocol values. */
  "handshake: extension and protocol parsers": fc.property(headerValueArb, (value) => {
    parseHeaderValue(value)
  })
} as const

export type PropertyName = keyof typeof properties
