/**
 * The client side of the opening handshake (RFC 6455 §4.1): the upgrade request bytes, an
 * incremental HTTP/1.1 response-head parser, and the checks a client applies to the
 * server's answer (status 101, `Upgrade`/`Connection`, `Sec-WebSocket-Accept`, the selected
 * subprotocol and extensions).
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { HandshakeResponseError } from "../Errors.js"
import type { ExtensionOffer } from "./extensions.js"
import { parseExtensions } from "./extensions.js"
import { acceptKey } from "./handshake.js"

const CR = 0x0d
const LF = 0x0a

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// HTAB / SP / VCHAR / obs-text: no CR, LF or other control characters (header injection)
const FIELD_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/

/**
 * A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes (RFC 6455 §4.1 item 7).
 *
 * @since 0.1.0
 * @category constructors
 */
export const generateKey = (): string => randomBytes(16).toString("base64")

/**
 * Options of {@link upgradeRequest}.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpgradeRequestOptions {
  /** `Host` value: `host[:port]` (the port is left out when it is the scheme's default). */
  readonly host: string
  /** Request target: path and query, e.g. `/chat?room=1`. */
  readonly path: string
  /** From {@link generateKey}. */
  readonly key: string
  /** Subprotocols offered, in order of preference (tokens). */
  readonly protocols?: ReadonlyArray<string> | undefined
  /** The `Sec-WebSocket-Extensions` offer (e.g. `PerMessageDeflate.clientOffer`). */
  readonly extensions?: string | undefined
  /** Extra request headers (`Origin`, `Authorization`, cookies, ...). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

const RESERVED_REQUEST = new Set([
  "host",
  "upgrade",
  "connection",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-protocol",
  "sec-websocket-extensions",
  "content-length",
  "transfer-encoding"
])

/**
 * The complete upgrade request (RFC 6455 §4.1):
 *
 * ```
 * GET <path> HTTP/1.1
 * Host: <host>
 * Upgrade: websocket
 * Connection: Upgrade
 * Sec-WebSocket-Key: <key>
 * Sec-WebSocket-Version: 13
 * [Sec-WebSocket-Protocol: a, b]
 * [Sec-WebSocket-Extensions: <offer>]
 * [extra headers]
 * ```
 *
 * Throws a `TypeError` (a programming error, not peer input) for a path with whitespace or
 * control characters, a subprotocol that is not a token or is offered twice, an invalid
 * header name or value (CR/LF injection), or an extra header the handshake sets itself.
 *
 * @since 0.1.0
 * @category constructors
 */
export const upgradeRequest = (options: UpgradeRequestOptions): Uint8Array => {
  const path = options.path
  if (path.length === 0 || !/^[\x21-\x7e\x80-\xff]+$/.test(path)) throw new TypeError("invalid request path")
  if (!FIELD_VALUE_RE.test(options.host) || options.host.length === 0) throw new TypeError("invalid Host")
  let head = "GET " + path + " HTTP/1.1\r\nHost: " + options.host +
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + options.key +
    "\r\nSec-WebSocket-Version: 13\r\n"
  const protocols = options.protocols
  if (protocols !== undefined && protocols.length > 0) {
    const seen = new Set<string>()
    for (const p of protocols) {
      if (!TOKEN_RE.test(p)) throw new TypeError(`subprotocol ${JSON.stringify(p)} is not a token`)
      if (seen.has(p)) throw new TypeError(`subprotocol ${JSON.stringify(p)} offered twice`)
      seen.add(p)
    }
    head += "Sec-WebSocket-Protocol: " + protocols.join(", ") + "\r\n"
  }
  const extensions = options.extensions
  if (extensions !== undefined && extensions.length > 0) {
    if (!FIELD_VALUE_RE.test(extensions)) throw new TypeError("invalid Sec-WebSocket-Extensions value")
    head += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
  }
  const headers = options.headers
  if (headers !== undefined) {
    for (const name of Object.keys(headers)) {
      const value = headers[name]!
      if (!TOKEN_RE.test(name)) throw new TypeError(`invalid header name: ${JSON.stringify(name)}`)
      if (typeof value !== "string" || !FIELD_VALUE_RE.test(value)) throw new TypeError(`invalid value for header ${name}`)
      if (RESERVED_REQUEST.has(name.toLowerCase())) {
        throw new TypeError(`header ${name} is set by the handshake and cannot be given`)
      }
      head += name + ": " + value + "\r\n"
    }
  }
  return Buffer.from(head + "\r\n", "latin1")
}

// ---------------------------------------------------------------------------
// ResponseParser
// ---------------------------------------------------------------------------

/**
 * A syntactically valid HTTP/1.x response head. `headers` is a null-prototype record keyed
 * by lowercase name, values trimmed, repeated fields joined with `", "`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RawResponse {
  readonly httpVersion: string
  readonly status: number
  readonly statusText: string
  readonly headers: Readonly<Record<string, string>>
}

/**
 * A complete response head and the bytes that followed it in the same chunk (`rest`): the
 * first frames after a 101, or the start of the body otherwise.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResponseComplete {
  readonly response: RawResponse
  readonly rest: Uint8Array
}

/**
 * Limits of {@link ResponseParser}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResponseParserLimits {
  /** Largest response head in bytes. Default 16384. */
  readonly maxHeaderBytes?: number | undefined
  /** Most header lines. Default 100. */
  readonly maxHeaders?: number | undefined
}

const tooLarge = (detail: string) => new HandshakeResponseError({ reason: "TooLarge", detail })
const malformed = (detail: string) => new HandshakeResponseError({ reason: "Malformed", detail })

/**
 * Incremental parser for an HTTP/1.1 response head (the answer to an upgrade request or to a
 * proxy `CONNECT`). Feed it bytes as they arrive, split anywhere; each byte is scanned once
 * for the blank line and kept in a buffer that never grows past `maxHeaderBytes`. Lines
 * must end with CRLF; a bare CR or LF, an obs-fold line, a control character in a value or
 * a head over the limits is a `HandshakeResponseError`. Never throws on input bytes;
 * single-use.
 *
 * @since 0.1.0
 * @category parsing
 */
export class ResponseParser {
  readonly maxHeaderBytes: number
  readonly maxHeaders: number
  private buffer: Buffer
  private length = 0
  private finished: HandshakeResponseError | null | undefined = undefined

  constructor(limits?: ResponseParserLimits) {
    this.maxHeaderBytes = limits?.maxHeaderBytes ?? 16384
    this.maxHeaders = limits?.maxHeaders ?? 100
    this.buffer = Buffer.allocUnsafe(Math.min(1024, this.maxHeaderBytes))
  }

  /** `undefined` while incomplete, the response and the remaining bytes, or an error. */
  push(chunk: Uint8Array): ResponseComplete | HandshakeResponseError | undefined {
    if (this.finished !== undefined) return this.finished ?? (this.finished = malformed("response already parsed"))
    const start = this.length
    // scan the new bytes, with the last three old ones, for CRLF CRLF
    let end = -1
    const from = start >= 3 ? start - 3 : 0
    const room = this.maxHeaderBytes - start
    const take = chunk.length < room ? chunk.length : room
    this.append(chunk, take)
    const buf = this.buffer
    for (let i = from; i + 3 < this.length; i++) {
      if (buf[i] === CR && buf[i + 1] === LF && buf[i + 2] === CR && buf[i + 3] === LF) {
        end = i + 4
        break
      }
    }
    if (end === -1) {
      if (this.length >= this.maxHeaderBytes) return this.fail(tooLarge("response head too large"))
      return undefined
    }
    const parsed = parseResponse(buf.subarray(0, end), this.maxHeaders)
    if (parsed instanceof HandshakeResponseError) return this.fail(parsed)
    this.finished = null
    const consumed = end - start // bytes of this chunk that belong to the head
    this.buffer = Buffer.alloc(0)
    return { response: parsed, rest: chunk.subarray(consumed) }
  }

  private fail(error: HandshakeResponseError): HandshakeResponseError {
    this.finished = error
    this.buffer = Buffer.alloc(0)
    return error
  }

  private append(chunk: Uint8Array, count: number): void {
    const needed = this.length + count
    if (this.buffer.length < needed) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(needed, this.buffer.length * 2), this.maxHeaderBytes))
      this.buffer.copy(grown, 0, 0, this.length)
      this.buffer = grown
    }
    this.buffer.set(count === chunk.length ? chunk : chunk.subarray(0, count), this.length)
    this.length = needed
  }
}

const STATUS_LINE = /^HTTP\/(\d)\.(\d) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/

const parseResponse = (head: Buffer, maxHeaders: number): RawResponse | HandshakeResponseError => {
  const text = head.toString("latin1", 0, head.length - 4)
  const lines = text.split("\r\n")
  for (const line of lines) {
    if (line.includes("\r") || line.includes("\n")) return malformed("bare CR or LF in response head")
  }
  const statusLine = STATUS_LINE.exec(lines[0]!)
  if (statusLine === null) return malformed("malformed status line")
  if (lines.length - 1 > maxHeaders) return tooLarge("too many header fields")
  const headers: Record<string, string> = Object.create(null)
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    const colon = line.indexOf(":")
    if (colon <= 0) return malformed("malformed header field")
    const name = line.slice(0, colon)
    if (!TOKEN_RE.test(name)) return malformed("malformed header field")
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "")
    if (!FIELD_VALUE_RE.test(value)) return malformed("invalid character in header value")
    const key = name.toLowerCase()
    const previous = headers[key]
    headers[key] = previous === undefined ? value : previous + ", " + value
  }
  return {
    httpVersion: statusLine[1] + "." + statusLine[2],
    status: Number(statusLine[3]),
    statusText: statusLine[4] ?? "",
    headers
  }
}

// ---------------------------------------------------------------------------
// validateResponse
// ---------------------------------------------------------------------------

/**
 * What the client offered, to check the answer against.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientOffer {
  readonly key: string
  readonly protocols?: ReadonlyArray<string> | undefined
  /** Names of the extensions offered (e.g. `["permessage-deflate"]`). */
  readonly extensions?: ReadonlyArray<string> | undefined
}

/**
 * An accepted upgrade: the subprotocol the server selected, and the extensions it agreed
 * to as parsed from `Sec-WebSocket-Extensions` (check their parameters with the extension's
 * own rules, e.g. `PerMessageDeflate.acceptResponse`).
 *
 * @since 0.1.0
 * @category models
 */
export interface AcceptedUpgrade {
  readonly protocol: string | undefined
  readonly extensions: ReadonlyArray<ExtensionOffer>
  /** The raw `Sec-WebSocket-Extensions` value, if any. */
  readonly extensionsHeader: string | undefined
}

const listHas = (value: string | undefined, lower: string): boolean =>
  value !== undefined && value.split(",").some((v) => v.trim().toLowerCase() === lower)

/**
 * The client's checks of a `101 Switching Protocols` response (RFC 6455 §4.1, the list
 * after "the client MUST validate the server's response"): `Upgrade` lists `websocket`,
 * `Connection` lists `upgrade`, `Sec-WebSocket-Accept` is `acceptKey(key)`, a selected
 * subprotocol is one of those offered (one only), and every extension in
 * `Sec-WebSocket-Extensions` is one that was offered, at most once. Call it only for a 101:
 * any other status is the caller's to report.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateResponse = (
  response: RawResponse,
  offer: ClientOffer
): AcceptedUpgrade | HandshakeResponseError => {
  const h = response.headers
  if (!listHas(h["upgrade"], "websocket")) {
    return new HandshakeResponseError({ reason: "Upgrade", detail: "missing Upgrade: websocket" })
  }
  if (!listHas(h["connection"], "upgrade")) {
    return new HandshakeResponseError({ reason: "Upgrade", detail: "missing Connection: Upgrade" })
  }
  const accept = h["sec-websocket-accept"]
  if (accept === undefined) {
    return new HandshakeResponseError({ reason: "Accept", detail: "missing Sec-WebSocket-Accept" })
  }
  if (accept !== acceptKey(offer.key)) {
    return new HandshakeResponseError({ reason: "Accept", detail: "Sec-WebSocket-Accept does not match the key" })
  }
  const protocolHeader = h["sec-websocket-protocol"]
  let protocol: string | undefined = undefined
  if (protocolHeader !== undefined) {
    if (protocolHeader.includes(",")) {
      return new HandshakeResponseError({ reason: "Protocol", detail: "more than one subprotocol selected" })
    }
    if (!(offer.protocols ?? []).includes(protocolHeader)) {
      return new HandshakeResponseError({
        reason: "Protocol",
        detail: `server selected subprotocol ${JSON.stringify(protocolHeader)} that was not offered`
      })
    }
    protocol = protocolHeader
  }
  const extensionsHeader = h["sec-websocket-extensions"]
  let extensions: ReadonlyArray<ExtensionOffer> = []
  if (extensionsHeader !== undefined) {
    const parsed = parseExtensions(extensionsHeader)
    if (!Array.isArray(parsed)) {
      return new HandshakeResponseError({ reason: "Extensions", detail: "malformed Sec-WebSocket-Extensions" })
    }
    const offered = offer.extensions ?? []
    const seen = new Set<string>()
    for (const e of parsed as ReadonlyArray<ExtensionOffer>) {
      if (!offered.includes(e.name)) {
        return new HandshakeResponseError({ reason: "Extensions", detail: `extension ${e.name} was not offered` })
      }
      if (seen.has(e.name)) {
        return new HandshakeResponseError({ reason: "Extensions", detail: `extension ${e.name} accepted twice` })
      }
      seen.add(e.name)
    }
    extensions = parsed as ReadonlyArray<ExtensionOffer>
  }
  return { protocol, extensions, extensionsHeader }
}
