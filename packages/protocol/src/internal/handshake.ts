/**
 * The server side of the opening handshake (RFC 6455 §4.2): an incremental
 * HTTP/1.1 request-head parser, the upgrade validation rules, and the response
 * bytes for accepting or refusing.
 *
 * @since 0.1.0
 */
import { hash } from "node:crypto"
import { HandshakeError } from "../Errors.js"
import type { ExtensionOffer } from "./extensions.js"
import { parseExtensions, parseProtocols } from "./extensions.js"

// ---------------------------------------------------------------------------
// Character classes
// ---------------------------------------------------------------------------

const CR = 0x0d
const LF = 0x0a
const SP = 0x20
const HTAB = 0x09
const COLON = 0x3a

// 1: tchar (RFC 7230 §3.2.6), 2: field-value octet (HTAB / SP / VCHAR / obs-text),
// 4: request-target octet (VCHAR / obs-text; checked loosely, the router decides)
const CLASS = /* @__PURE__ */ (() => {
  const table = new Uint8Array(256)
  const specials = "!#$%&'*+-.^_`|~"
  for (let i = 0; i < specials.length; i++) table[specials.charCodeAt(i)] |= 1
  for (let c = 0x30; c <= 0x39; c++) table[c] |= 1
  for (let c = 0x41; c <= 0x5a; c++) table[c] |= 1
  for (let c = 0x61; c <= 0x7a; c++) table[c] |= 1
  table[HTAB] |= 2
  for (let c = 0x20; c <= 0x7e; c++) table[c] |= 2
  for (let c = 0x80; c <= 0xff; c++) table[c] |= 2 | 4
  for (let c = 0x21; c <= 0x7e; c++) table[c] |= 4
  return table
})()

const TOKEN = 1
const FIELD = 2
const TARGET = 4

const isToken = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 0x7f || (CLASS[c] & TOKEN) === 0) return false
  }
  return true
}

const isFieldValue = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 0xff || (CLASS[c] & FIELD) === 0) return false
  }
  return true
}

// ---------------------------------------------------------------------------
// RequestParser
// ---------------------------------------------------------------------------

/**
 * Limits for {@link RequestParser}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestParserLimits {
  /** Largest request head (request line, headers and the final CRLF CRLF) in bytes. Default 16384. */
  readonly maxHeaderBytes?: number | undefined
  /** Largest number of header lines. Default 100. */
  readonly maxHeaders?: number | undefined
}

/**
 * A syntactically valid HTTP/1.x request head. `httpVersion` is `"major.minor"`
 * (`"1.1"`), `headers` a null-prototype record keyed by lowercase field name with
 * leading/trailing whitespace trimmed from values; a repeated field is joined with
 * `", "` in arrival order. Bytes are decoded as latin1.
 *
 * @since 0.1.0
 * @category models
 */
export interface RawRequest {
  readonly method: string
  readonly target: string
  readonly httpVersion: string
  readonly headers: Readonly<Record<string, string>>
}

/**
 * A complete request head, with the bytes that followed it in the same chunk
 * (`rest`, possibly empty): they are the first WebSocket frame bytes and must be
 * fed to the frame decoder.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestComplete {
  readonly request: RawRequest
  readonly rest: Uint8Array
}

/**
 * `undefined` while the head is incomplete, a {@link RequestComplete} once the
 * blank line arrived, or a `HandshakeError` (400 malformed, 431 too large).
 *
 * @since 0.1.0
 * @category models
 */
export type RequestParseResult = RequestComplete | HandshakeError | undefined

const DEFAULT_MAX_HEADER_BYTES = 16384
const DEFAULT_MAX_HEADERS = 100
const INITIAL_CAPACITY = 1024

const tooLarge = (what: string) => new HandshakeError({ status: 431, reason: what })
const badRequest = (reason: string) => new HandshakeError({ status: 400, reason })

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const checkLimit = (name: string, value: number | undefined, fallback: number, min: number): number => {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`RequestParser: ${name} must be an integer >= ${min}, got ${value}`)
  }
  return value
}

// Scanner states: where we are relative to the CRLF CRLF that ends the head.
const S_LINE = 0 // inside a line
const S_CR = 1 // after CR
const S_CRLF = 2 // at the start of a line
const S_CRLFCR = 3 // after CR at the start of a line

/**
 * Incremental parser for the HTTP/1.1 request head of an upgrade request. Feed it
 * socket bytes with {@link RequestParser.push} as they arrive, split anywhere.
 *
 * When the first chunk holds the whole head (the usual case), it is parsed in
 * place in one pass, without a copy. Otherwise each new byte is scanned once by a
 * four-state matcher for CRLF CRLF that carries over chunk boundaries, and copied
 * into one buffer that never grows beyond `maxHeaderBytes`; the head is parsed
 * once when complete. Feeding one byte at a time therefore stays linear.
 *
 * Strict framing: lines end with CRLF; a bare CR or LF, whitespace before a colon,
 * an obs-fold continuation line, or a control character in a value is a 400.
 * More than `maxHeaderBytes` bytes without the end of the head, or more than
 * `maxHeaders` header lines, is a 431 as soon as it is seen.
 *
 * The parser is single-use: after it returned a request or an error, further
 * calls return an error (the same one after a failure).
 *
 * @since 0.1.0
 * @category parsing
 */
export class RequestParser {
  readonly maxHeaderBytes: number
  readonly maxHeaders: number
  private buffer: Buffer | undefined = undefined
  private length = 0
  private state = S_LINE
  private lines = 0
  // undefined while parsing, null after a complete head, the error after a failure
  private finished: HandshakeError | null | undefined = undefined

  constructor(limits?: RequestParserLimits) {
    this.maxHeaderBytes = checkLimit("maxHeaderBytes", limits?.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, 16)
    this.maxHeaders = checkLimit("maxHeaders", limits?.maxHeaders, DEFAULT_MAX_HEADERS, 0)
  }

  /**
   * Adds the next bytes. Returns `undefined` while the head is incomplete, the
   * request and the remaining bytes once it is complete, or a `HandshakeError`.
   * Never throws on input bytes.
   */
  push(chunk: Uint8Array): RequestParseResult {
    if (this.finished !== undefined) {
      return this.finished ?? (this.finished = badRequest("request head already parsed"))
    }
    if (this.length === 0 && this.state === S_LINE) {
      // Fast path: the whole head usually arrives in the first chunk. Parse it in
      // place in one pass; fall back to scanning and buffering when it is cut short.
      const buf = asBuffer(chunk)
      const request = parseHead(buf, chunk.length < this.maxHeaderBytes ? chunk.length : this.maxHeaderBytes, this.maxHeaders)
      if (request !== undefined) {
        if (request instanceof HandshakeError) return this.fail(request)
        this.finished = null
        return { request, rest: chunk.subarray(headEnd) }
      }
    }
    const room = this.maxHeaderBytes - this.length
    const limit = chunk.length < room ? chunk.length : room
    const maxLines = this.maxHeaders + 1 // the request line ends with a CRLF too
    let state = this.state
    let lines = this.lines
    let i = 0
    let end = -1
    for (; i < limit; i++) {
      const b = chunk[i]
      if (b === CR) {
        if (state === S_LINE) state = S_CR
        else if (state === S_CRLF) state = S_CRLFCR
        else return this.fail(badRequest("bare CR in request head"))
      } else if (b === LF) {
        if (state === S_CR) {
          state = S_CRLF
          if (++lines > maxLines) return this.fail(tooLarge("too many header fields"))
        } else if (state === S_CRLFCR) {
          end = i + 1
          break
        } else {
          return this.fail(badRequest("bare LF in request head"))
        }
      } else if (state === S_LINE || state === S_CRLF) {
        state = S_LINE
      } else {
        return this.fail(badRequest("bare CR in request head"))
      }
    }

    if (end === -1) {
      if (this.length + limit >= this.maxHeaderBytes) {
        return this.fail(tooLarge("request head too large"))
      }
      this.append(chunk, limit)
      this.state = state
      this.lines = lines
      return undefined
    }

    this.append(chunk, end)
    const request = parseHead(this.buffer!, this.length, this.maxHeaders)
    if (request === undefined) return this.fail(badRequest("malformed request head"))
    if (request instanceof HandshakeError) return this.fail(request)
    this.buffer = undefined
    this.finished = null
    return { request, rest: chunk.subarray(end) }
  }

  private fail(error: HandshakeError): HandshakeError {
    this.finished = error
    this.buffer = undefined
    return error
  }

  private append(chunk: Uint8Array, count: number): void {
    if (count === 0) return
    const needed = this.length + count
    let buffer = this.buffer
    if (buffer === undefined || buffer.length < needed) {
      let capacity = buffer === undefined ? INITIAL_CAPACITY : buffer.length * 2
      if (capacity < needed) capacity = needed
      if (capacity > this.maxHeaderBytes) capacity = this.maxHeaderBytes
      const grown = Buffer.allocUnsafe(capacity)
      if (buffer !== undefined) buffer.copy(grown, 0, 0, this.length)
      this.buffer = buffer = grown
    }
    buffer.set(count === chunk.length ? chunk : chunk.subarray(0, count), this.length)
    this.length = needed
  }
}

const GET = "GET"
const HTTP_1_1 = "1.1"

// Header names seen in nearly every upgrade request are matched against these
// interned strings instead of being decoded and lowercased one by one.
const KNOWN_NAMES = [
  "host",
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions",
  "sec-websocket-protocol",
  "origin",
  "user-agent",
  "accept",
  "accept-encoding",
  "accept-language",
  "cache-control",
  "pragma",
  "cookie",
  "authorization",
  "content-length",
  "transfer-encoding",
  "referer",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-real-ip",
  "sec-fetch-dest",
  "sec-fetch-mode",
  "sec-fetch-site"
]

const hashStep = (h: number, lower: number): number => (Math.imul(h, 31) + lower) | 0

const KNOWN = /* @__PURE__ */ (() => {
  const map = new Map<number, string>()
  for (const name of KNOWN_NAMES) {
    let h = 0
    for (let i = 0; i < name.length; i++) h = hashStep(h, name.charCodeAt(i))
    if (!map.has(h)) map.set(h, name)
  }
  return map
})()

const equalsLower = (buf: Buffer, start: number, end: number, lower: string): boolean => {
  if (end - start !== lower.length) return false
  for (let i = start; i < end; i++) {
    let c = buf[i]
    if (c >= 0x41 && c <= 0x5a) c += 32
    if (c !== lower.charCodeAt(i - start)) return false
  }
  return true
}

/**
 * The `RawRequest` objects this parser makes. `validateUpgrade` knows their header
 * values are all strings and skips normalizing them.
 */
class ParsedRequest implements RawRequest {
  constructor(
    readonly method: string,
    readonly target: string,
    readonly httpVersion: string,
    readonly headers: Readonly<Record<string, string>>
  ) {}
}

/** Where the last complete head parsed by `parseHead` ended (just past its final LF). */
let headEnd = 0

/**
 * Parses a request head from `buf[0, limit)`. Returns `undefined` when the bytes
 * run out before the final CRLF (then nothing is known yet), the error for the
 * first rule broken, or the request, with `headEnd` set past its final CRLF.
 * One pass; CR must be followed by LF and LF preceded by CR.
 */
const parseHead = (buf: Buffer, limit: number, maxHeaders: number): RawRequest | HandshakeError | undefined => {
  // request-line = method SP request-target SP HTTP-version CRLF
  let i = 0
  while (i < limit && (CLASS[buf[i]] & TOKEN) !== 0) i++
  if (i === limit) return undefined
  if (i === 0 || buf[i] !== SP) return badRequest("malformed request line")
  const method = i === 3 && buf[0] === 0x47 && buf[1] === 0x45 && buf[2] === 0x54 ? GET : buf.toString("latin1", 0, i)
  const targetStart = ++i
  while (i < limit && (CLASS[buf[i]] & TARGET) !== 0) i++
  if (i === limit) return undefined
  if (i === targetStart || buf[i] !== SP) return badRequest("malformed request line")
  const targetEnd = i++
  // "HTTP/" DIGIT "." DIGIT CRLF
  if (i + 10 > limit) return undefined
  if (
    buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 || buf[i + 3] !== 0x50 ||
    buf[i + 4] !== 0x2f || !isDigit(buf[i + 5]) || buf[i + 6] !== 0x2e || !isDigit(buf[i + 7]) ||
    buf[i + 8] !== CR || buf[i + 9] !== LF
  ) {
    return badRequest("malformed request line")
  }
  const major = buf[i + 5]
  const minor = buf[i + 7]
  i += 10

  const headers: Record<string, string> = Object.create(null)
  let count = 0
  // each iteration reads one `field-name ":" OWS field-value OWS CRLF`, or the final CRLF
  for (;;) {
    if (i >= limit) return undefined
    let c = buf[i]
    if (c === CR) {
      if (i + 1 >= limit) return undefined
      if (buf[i + 1] !== LF) return badRequest("bare CR in request head")
      headEnd = i + 2
      break
    }
    if (++count > maxHeaders) return tooLarge("too many header fields")
    const nameStart = i
    let upper = false
    let h = 0
    while ((CLASS[c] & TOKEN) !== 0) {
      if (c >= 0x41 && c <= 0x5a) {
        upper = true
        c += 32
      }
      h = hashStep(h, c)
      if (++i === limit) return undefined
      c = buf[i]
    }
    if (i === nameStart || c !== COLON) return badRequest("malformed header field")
    const nameEnd = i++
    while (i < limit && (buf[i] === SP || buf[i] === HTAB)) i++
    const valueStart = i
    let valueEnd = i
    for (; i < limit; i++) {
      c = buf[i]
      if (c === CR) break
      if ((CLASS[c] & FIELD) === 0) return badRequest("invalid character in header value")
      if (c !== SP && c !== HTAB) valueEnd = i + 1
    }
    if (i + 1 >= limit) return undefined
    if (buf[i + 1] !== LF) return badRequest("bare CR in request head")
    i += 2
    let name = KNOWN.get(h)
    if (name === undefined || !equalsLower(buf, nameStart, nameEnd, name)) {
      name = buf.toString("latin1", nameStart, nameEnd)
      if (upper) name = name.toLowerCase()
    }
    const value = valueEnd === valueStart ? "" : buf.toString("latin1", valueStart, valueEnd)
    const previous = headers[name]
    headers[name] = previous === undefined ? value : previous + ", " + value
  }
  return new ParsedRequest(
    method,
    buf.toString("latin1", targetStart, targetEnd),
    major === 0x31 && minor === 0x31 ? HTTP_1_1 : String.fromCharCode(major, 0x2e, minor),
    headers
  )
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39

// ---------------------------------------------------------------------------
// validateUpgrade
// ---------------------------------------------------------------------------

/**
 * The fields `validateUpgrade` reads. Both a {@link RawRequest} (`target`) and a
 * `node:http` `IncomingMessage` (`url`, headers that may be arrays) fit.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpgradeRequestInput {
  readonly method?: string | undefined
  readonly target?: string | undefined
  readonly url?: string | undefined
  readonly httpVersion: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

/**
 * A request that passed every RFC 6455 §4.2.1 check. `headers` holds every field
 * by lowercase name (array values joined with `", "`), `protocols` the offered
 * subprotocols in order (empty when none), `extensions` the parsed
 * `Sec-WebSocket-Extensions` offers (empty when none).
 *
 * @since 0.1.0
 * @category models
 */
export interface UpgradeRequest {
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly host: string
  readonly origin: string | undefined
  /** `Sec-WebSocket-Key`; empty for an HTTP/2 extended CONNECT, which has none (RFC 8441 §5). */
  readonly key: string
  readonly protocols: ReadonlyArray<string>
  readonly extensions: ReadonlyArray<ExtensionOffer>
}

const EMPTY: ReadonlyArray<never> = Object.freeze([])

const UPGRADE_REQUIRED_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Upgrade": "websocket",
  "Sec-WebSocket-Version": "13"
})
const ALLOW_GET: Readonly<Record<string, string>> = Object.freeze({ "Allow": "GET" })

const headerValue = (value: string | ReadonlyArray<string> | undefined): string | undefined =>
  value === undefined || typeof value === "string" ? value : value.join(", ")

/**
 * Whether the comma-separated list `value` holds an element equal to `lower`
 * (ASCII case-insensitive, OWS around elements ignored). `lower` is lowercase
 * ASCII letters. No allocation, linear time.
 */
const listContains = (value: string, lower: string): boolean => {
  const n = value.length
  const m = lower.length
  let i = 0
  while (i < n) {
    while (i < n) {
      const c = value.charCodeAt(i)
      if (c !== SP && c !== HTAB && c !== 0x2c) break
      i++
    }
    const start = i
    while (i < n && value.charCodeAt(i) !== 0x2c) i++
    let stop = i
    while (stop > start) {
      const c = value.charCodeAt(stop - 1)
      if (c !== SP && c !== HTAB) break
      stop--
    }
    if (stop - start === m) {
      let k = 0
      while (k < m && (value.charCodeAt(start + k) | 0x20) === lower.charCodeAt(k)) k++
      if (k === m) return true
    }
  }
  return false
}

// base64 of 16 bytes: 22 alphabet characters then "==" (RFC 6455 §4.1 item 7).
const isBase64Char = (c: number): boolean =>
  (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f

const isValidKey = (key: string): boolean => {
  if (key.length !== 24 || key.charCodeAt(22) !== 0x3d || key.charCodeAt(23) !== 0x3d) return false
  for (let i = 0; i < 22; i++) {
    if (!isBase64Char(key.charCodeAt(i))) return false
  }
  return true
}

const isHttp11OrLater = (version: string): boolean =>
  version.length === 3 && version.charCodeAt(0) === 0x31 && version.charCodeAt(1) === 0x2e &&
  version.charCodeAt(2) >= 0x31 && version.charCodeAt(2) <= 0x39

const normalizeHeaders = (
  headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
): Readonly<Record<string, string>> => {
  for (const name in headers) {
    if (typeof headers[name] !== "string") {
      const out: Record<string, string> = Object.create(null)
      for (const key in headers) {
        const value = headerValue(headers[key])
        if (value !== undefined) out[key] = value
      }
      return out
    }
  }
  return headers as Readonly<Record<string, string>>
}

/** The offered subprotocols and extensions, parsed (400 when malformed). */
const parseOffers = (
  headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
): { readonly protocols: ReadonlyArray<string>; readonly extensions: ReadonlyArray<ExtensionOffer> } | HandshakeError => {
  const protocolValue = headerValue(headers["sec-websocket-protocol"])
  let protocols: ReadonlyArray<string> = EMPTY
  if (protocolValue !== undefined) {
    const parsed = parseProtocols(protocolValue)
    if (parsed instanceof HandshakeError) return parsed
    protocols = parsed
  }
  const extensionValue = headerValue(headers["sec-websocket-extensions"])
  let extensions: ReadonlyArray<ExtensionOffer> = EMPTY
  if (extensionValue !== undefined) {
    const parsed = parseExtensions(extensionValue)
    if (parsed instanceof HandshakeError) return parsed
    extensions = parsed
  }
  return { protocols, extensions }
}

/**
 * Applies the server's opening-handshake rules (RFC 6455 §4.2.1) to a request
 * head, in this order:
 *
 * | rule | failure |
 * | --- | --- |
 * | method is `GET` | 405 with `Allow: GET` |
 * | HTTP version is 1.1 or a later 1.x | 400 |
 * | exactly one non-empty `Host` | 400 |
 * | `Upgrade` lists `websocket`, `Connection` lists `upgrade` (case-insensitive) | 426 with `Upgrade: websocket`, `Sec-WebSocket-Version: 13` |
 * | `Sec-WebSocket-Version` is `13` | 426 with the same headers (RFC 6455 §4.4) |
 * | `Sec-WebSocket-Key` is base64 of 16 bytes | 400 |
 * | no request body (`Transfer-Encoding`, non-zero `Content-Length`) | 400 |
 * | `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions` well formed | 400 |
 *
 * A wrong method is a 405 rather than a 400 because the resource exists and
 * only GET can upgrade it. A missing upgrade is a 426 because RFC 7231 §6.5.15
 * defines it for exactly that case (a plain GET reaching a WebSocket endpoint),
 * and it must name the protocol in `Upgrade`. A body is refused because the bytes
 * after the head are read as WebSocket frames.
 *
 * The request target is returned as `url` without checks; routing (404) and
 * origin policy (403) are the caller's decisions.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateUpgrade = (raw: UpgradeRequestInput): UpgradeRequest | HandshakeError => {
  const method = raw.method
  if (method !== GET) {
    if (method === undefined) return badRequest("missing request method")
    return new HandshakeError({ status: 405, reason: "method not allowed: a WebSocket upgrade must be a GET", headers: ALLOW_GET })
  }
  if (!isHttp11OrLater(raw.httpVersion)) return badRequest("a WebSocket upgrade requires HTTP/1.1")
  const url = raw.target ?? raw.url
  if (url === undefined || url.length === 0) return badRequest("missing request target")
  const headers = raw.headers
  const host = headerValue(headers["host"])
  if (host === undefined || host.length === 0) return badRequest("missing Host header")
  if (host.indexOf(",") !== -1) return badRequest("more than one Host header")
  const upgrade = headerValue(headers["upgrade"])
  if (upgrade === undefined || !listContains(upgrade, "websocket")) {
    return new HandshakeError({ status: 426, reason: "missing Upgrade: websocket", headers: UPGRADE_REQUIRED_HEADERS })
  }
  const connection = headerValue(headers["connection"])
  if (connection === undefined || !listContains(connection, "upgrade")) {
    return new HandshakeError({ status: 426, reason: "missing Connection: Upgrade", headers: UPGRADE_REQUIRED_HEADERS })
  }
  if (headerValue(headers["sec-websocket-version"]) !== "13") {
    return new HandshakeError({
      status: 426,
      reason: "unsupported Sec-WebSocket-Version (13 is required)",
      headers: UPGRADE_REQUIRED_HEADERS
    })
  }
  const key = headerValue(headers["sec-websocket-key"])
  if (key === undefined || !isValidKey(key)) return badRequest("missing or invalid Sec-WebSocket-Key")
  if (headers["transfer-encoding"] !== undefined) return badRequest("an upgrade request cannot have a body")
  const contentLength = headerValue(headers["content-length"])
  if (contentLength !== undefined && contentLength !== "0") return badRequest("an upgrade request cannot have a body")

  const offers = parseOffers(headers)
  if (offers instanceof HandshakeError) return offers
  return {
    method,
    url,
    headers: raw instanceof ParsedRequest ? raw.headers : normalizeHeaders(headers),
    host,
    origin: headerValue(headers["origin"]),
    key,
    protocols: offers.protocols,
    extensions: offers.extensions
  }
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/**
 * `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID))
 * (RFC 6455 §1.3, §4.2.2 item 5.4).
 *
 * @since 0.1.0
 * @category constructors
 */
export const acceptKey = (key: string): string => hash("sha1", key + GUID, "base64")

/**
 * Options of {@link acceptResponse}.
 *
 * @since 0.1.0
 * @category models
 */
export interface AcceptOptions {
  /** The request's `Sec-WebSocket-Key`. */
  readonly key: string
  /** The selected subprotocol (a token, one the client offered). */
  readonly protocol?: string | undefined
  /** The `Sec-WebSocket-Extensions` response value (see `formatExtension`); omitted when empty. */
  readonly extensions?: string | undefined
  /** Extra response headers. */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * Options of {@link rejectResponse}. A `HandshakeError` fits as is.
 *
 * @since 0.1.0
 * @category models
 */
export interface RejectOptions {
  /** HTTP status, an integer from 300 to 599 (not 304). */
  readonly status: number
  /** Short explanation, used as the body when `body` is not given. */
  readonly reason?: string | undefined
  /** Extra response headers; `Content-Type` may be overridden. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** Response body, UTF-8 encoded. Defaults to `reason`, then the status text. */
  readonly body?: string | undefined
}

const ACCEPT_RESERVED = new Set([
  "upgrade",
  "connection",
  "sec-websocket-accept",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "content-length",
  "transfer-encoding"
])
const REJECT_RESERVED = new Set(["connection", "content-length", "transfer-encoding"])

const checkedHeader = (name: string, value: string, reserved: ReadonlySet<string>): string => {
  if (!isToken(name)) throw new TypeError(`invalid header name: ${JSON.stringify(name)}`)
  if (typeof value !== "string" || !isFieldValue(value)) {
    throw new TypeError(`invalid value for header ${name}`)
  }
  if (reserved.has(name.toLowerCase())) throw new TypeError(`header ${name} is set by the handshake and cannot be given`)
  return name + ": " + value + "\r\n"
}

/**
 * The complete `101 Switching Protocols` response (RFC 6455 §4.2.2 item 5):
 *
 * ```
 * HTTP/1.1 101 Switching Protocols
 * Upgrade: websocket
 * Connection: Upgrade
 * Sec-WebSocket-Accept: <acceptKey(key)>
 * [Sec-WebSocket-Protocol: <protocol>]
 * [Sec-WebSocket-Extensions: <extensions>]
 * [extra headers]
 * ```
 *
 * Throws a `TypeError` (a programming error, not peer input) when `protocol` is
 * not a token, a header name is not a token, a value holds CR, LF or another
 * control character (header injection), or an extra header would duplicate one
 * the handshake sets.
 *
 * @since 0.1.0
 * @category constructors
 */
export const acceptResponse = (options: AcceptOptions): Uint8Array => {
  let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
    acceptKey(options.key) + "\r\n"
  const protocol = options.protocol
  if (protocol !== undefined) {
    if (!isToken(protocol)) throw new TypeError("Sec-WebSocket-Protocol must be a token")
    head += "Sec-WebSocket-Protocol: " + protocol + "\r\n"
  }
  const extensions = options.extensions
  if (extensions !== undefined && extensions.length > 0) {
    if (!isFieldValue(extensions)) throw new TypeError("invalid Sec-WebSocket-Extensions value")
    head += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
  }
  const headers = options.headers
  if (headers !== undefined) {
    for (const name of Object.keys(headers)) head += checkedHeader(name, headers[name], ACCEPT_RESERVED)
  }
  return Buffer.from(head + "\r\n", "latin1")
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  414: "URI Too Long",
  421: "Misdirected Request",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported"
}

/**
 * A complete HTTP/1.1 error (or redirect) response that closes the connection:
 * status line with the standard status text, the extra headers, `Content-Type:
 * text/plain; charset=utf-8` (unless given), `Content-Length` and
 * `Connection: close` (`Connection: Upgrade, close` when an `Upgrade` header is
 * given, as RFC 7230 §6.7 requires), then the body.
 *
 * `rejectResponse(error)` works for a `HandshakeError`: its status, its reason as
 * the body, and its headers (`Allow`, `Upgrade`, `Sec-WebSocket-Version`).
 *
 * Throws a `TypeError` / `RangeError` (programming errors) for a status outside
 * 300–599 or 304, an invalid header name or value (CR/LF injection), or a header
 * that would duplicate `Connection`, `Content-Length` or `Transfer-Encoding`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const rejectResponse = (options: RejectOptions): Uint8Array => {
  const status = options.status
  if (!Number.isInteger(status) || status < 300 || status > 599 || status === 304) {
    throw new RangeError(`rejectResponse: unsupported status ${status}`)
  }
  const statusText = STATUS_TEXT[status] ?? ""
  const body = options.body ?? options.reason ?? statusText
  let head = "HTTP/1.1 " + status + " " + statusText + "\r\n"
  let contentType = true
  let upgrade = false
  const headers = options.headers
  if (headers !== undefined) {
    for (const name of Object.keys(headers)) {
      head += checkedHeader(name, headers[name], REJECT_RESERVED)
      const lower = name.toLowerCase()
      if (lower === "content-type") contentType = false
      else if (lower === "upgrade") upgrade = true
    }
  }
  if (contentType) head += "Content-Type: text/plain; charset=utf-8\r\n"
  const bodyLength = Buffer.byteLength(body, "utf8")
  head += "Content-Length: " + bodyLength + "\r\nConnection: " + (upgrade ? "Upgrade, close" : "close") + "\r\n\r\n"
  const out = Buffer.allocUnsafe(head.length + bodyLength)
  out.write(head, 0, "latin1")
  out.write(body, head.length, "utf8")
  return out
}

// ---------------------------------------------------------------------------
// validateExtendedConnect (RFC 8441: WebSockets over HTTP/2)
// ---------------------------------------------------------------------------

/**
 * Options of {@link validateExtendedConnect}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExtendedConnectOptions {
  /** The `:scheme` the server is reached by: `"https"` behind TLS (wss), `"http"` in clear (ws). Default `"https"`. */
  readonly scheme?: "https" | "http" | undefined
}

const ALLOW_CONNECT: Readonly<Record<string, string>> = Object.freeze({ "allow": "CONNECT" })
const VERSION_13: Readonly<Record<string, string>> = Object.freeze({ "sec-websocket-version": "13" })
const CONNECT = "CONNECT"

/**
 * Applies RFC 8441 §4-5 to the header block of an HTTP/2 request (pseudo-header
 * fields included, names lowercase as HTTP/2 requires, e.g. a `node:http2`
 * stream's `headers`), in this order:
 *
 * | rule | failure |
 * | --- | --- |
 * | `:method` is `CONNECT` | 405 with `allow: CONNECT` |
 * | `:protocol` is present (an extended CONNECT, not a tunnel to `:authority`) | 501 |
 * | `:protocol` is `websocket` (case-insensitive) | 501 |
 * | `:scheme` and `:path` present (§4), `:scheme` is the server's | 400 |
 * | `:authority` present and non-empty | 400 |
 * | `sec-websocket-version` is `13` | 400 with `sec-websocket-version: 13` |
 * | `sec-websocket-protocol`, `sec-websocket-extensions` well formed | 400 |
 *
 * A plain CONNECT asks for a tunnel, a proxy's job, and an unknown `:protocol`
 * asks for a protocol the server does not speak: both are functions the server
 * does not implement (501, RFC 9110 §15.6.2). A wrong version is a 400, not the
 * 426 of HTTP/1.1: a 426 must carry `Upgrade`, a connection-specific field that
 * HTTP/2 forbids (RFC 9113 §8.2.2); the supported version goes in
 * `sec-websocket-version` as RFC 6455 §4.4 asks. `sec-websocket-key` is not
 * used over HTTP/2 (RFC 8441 §5): present or not, it is ignored and `key` is
 * empty.
 *
 * The result has `url` = `:path`, `host` = `:authority`, and `headers` without
 * the pseudo-header fields. Never throws on peer input.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateExtendedConnect = (
  headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>,
  options?: ExtendedConnectOptions
): UpgradeRequest | HandshakeError => {
  const method = headerValue(headers[":method"])
  if (method !== CONNECT) {
    return new HandshakeError({
      status: 405,
      reason: "method not allowed: a WebSocket over HTTP/2 is opened with an extended CONNECT",
      headers: ALLOW_CONNECT
    })
  }
  const protocol = headerValue(headers[":protocol"])
  if (protocol === undefined) return new HandshakeError({ status: 501, reason: "CONNECT tunnels are not supported" })
  if (protocol.length !== 9 || !listContains(protocol, "websocket")) {
    return new HandshakeError({ status: 501, reason: "unsupported :protocol (websocket is supported)" })
  }
  const scheme = headerValue(headers[":scheme"])
  if (scheme === undefined) return badRequest("missing :scheme")
  if (scheme !== (options?.scheme ?? "https")) return badRequest("wrong :scheme")
  const url = headerValue(headers[":path"])
  if (url === undefined || url.length === 0) return badRequest("missing :path")
  const host = headerValue(headers[":authority"])
  if (host === undefined || host.length === 0) return badRequest("missing :authority")
  if (headerValue(headers["sec-websocket-version"]) !== "13") {
    return new HandshakeError({
      status: 400,
      reason: "unsupported sec-websocket-version (13 is required)",
      headers: VERSION_13
    })
  }
  const offers = parseOffers(headers)
  if (offers instanceof HandshakeError) return offers
  const fields: Record<string, string> = Object.create(null)
  for (const name in headers) {
    if (name.charCodeAt(0) === COLON) continue
    const value = headerValue(headers[name])
    if (value !== undefined) fields[name] = value
  }
  return {
    method,
    url,
    headers: fields,
    host,
    origin: headerValue(headers["origin"]),
    key: "",
    protocols: offers.protocols,
    extensions: offers.extensions
  }
}

/**
 * Options of {@link extendedConnectResponse}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExtendedConnectAcceptOptions {
  /** The selected subprotocol (a token, one the client offered). */
  readonly protocol?: string | undefined
  /** The `sec-websocket-extensions` response value; omitted when empty. */
  readonly extensions?: string | undefined
  /** Extra response headers (names are lowercased). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

// Connection-specific fields are malformed in HTTP/2 (RFC 9113 §8.2.2); the rest are the handshake's own.
const H2_RESERVED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "content-length",
  "sec-websocket-accept",
  "sec-websocket-protocol",
  "sec-websocket-extensions"
])

/**
 * The header block that accepts an extended CONNECT (RFC 8441 §5): `:status`
 * 200, the selected subprotocol and extensions, the extra headers. No
 * `sec-websocket-accept`: HTTP/2 has no key to answer.
 *
 * Throws a `TypeError` (a programming error) for a non-token subprotocol, an
 * invalid header name or value, or an extra header that HTTP/2 forbids or the
 * handshake sets.
 *
 * @since 0.1.0
 * @category constructors
 */
export const extendedConnectResponse = (options: ExtendedConnectAcceptOptions): Record<string, string | number> => {
  const out: Record<string, string | number> = { ":status": 200 }
  const protocol = options.protocol
  if (protocol !== undefined) {
    if (!isToken(protocol)) throw new TypeError("sec-websocket-protocol must be a token")
    out["sec-websocket-protocol"] = protocol
  }
  const extensions = options.extensions
  if (extensions !== undefined && extensions.length > 0) {
    if (!isFieldValue(extensions)) throw new TypeError("invalid sec-websocket-extensions value")
    out["sec-websocket-extensions"] = extensions
  }
  const headers = options.headers
  if (headers !== undefined) {
    for (const name of Object.keys(headers)) {
      checkedHeader(name, headers[name], H2_RESERVED)
      out[name.toLowerCase()] = headers[name]
    }
  }
  return out
}
