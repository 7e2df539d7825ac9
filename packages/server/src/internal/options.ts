import type { PerMessageDeflateOptions, ResolvedPerMessageDeflateOptions } from "@effect-websocket/protocol/PerMessageDeflate"
import { resolveOptions } from "@effect-websocket/protocol/PerMessageDeflate"

/** Limits and timeouts of a server; see the defaults table in the package README. */
export interface Limits {
  /** Largest message after reassembly and inflation (bytes). Default 1 MiB. */
  readonly maxMessageSize?: number | undefined
  /** Largest frame payload (bytes). Default: maxMessageSize. */
  readonly maxFrameSize?: number | undefined
  /** Most frames in one message. Default 65,536. */
  readonly maxFragments?: number | undefined
  /** Largest upgrade request head (bytes). Default 16 KiB (431 beyond). */
  readonly maxHeaderBytes?: number | undefined
  /** Most header lines in the upgrade request. Default 100 (431 beyond). */
  readonly maxHeaders?: number | undefined
  /** Time from TCP accept (or TLS start) to a complete upgrade request (ms). Default 10 s. */
  readonly handshakeTimeout?: number | undefined
  /** Time we wait for the peer's Close and its TCP close once closing started (ms). Default 5 s. */
  readonly closeTimeout?: number | undefined
  /** Interval between keepalive pings (ms); 0 disables. Default 30 s. */
  readonly keepaliveInterval?: number | undefined
  /** Time a keepalive ping waits for a Pong before the connection is dropped (ms). Default 30 s. */
  readonly keepaliveTimeout?: number | undefined
  /** Close connections without any data message either way for this long (ms); 0 disables. Default 0. */
  readonly idleTimeout?: number | undefined
  /** `send` suspends while more than this many bytes wait to be written. Default 1 MiB. */
  readonly highWaterMark?: number | undefined
  /** A connection with more than this many bytes waiting to be written is closed (1008). Default 16 MiB. */
  readonly maxBufferedBytes?: number | undefined
  /** Pause reading when this many bytes of messages wait for the handler. Default 1 MiB. */
  readonly inboxHighWaterMark?: number | undefined
}

export interface Resolved {
  readonly maxMessageSize: number
  readonly maxFrameSize: number
  readonly maxFragments: number
  readonly maxHeaderBytes: number
  readonly maxHeaders: number
  readonly handshakeTimeout: number
  readonly closeTimeout: number
  readonly keepaliveInterval: number
  readonly keepaliveTimeout: number
  readonly idleTimeout: number
  readonly highWaterMark: number
  readonly maxBufferedBytes: number
  readonly inboxHighWaterMark: number
  /** Checked (a bad value throws a RangeError when the server is made, as a bad limit does) and with defaults. */
  readonly perMessageDeflate: ResolvedPerMessageDeflateOptions | undefined
}

export const defaults = {
  maxMessageSize: 1024 * 1024,
  maxFragments: 65_536,
  maxHeaderBytes: 16 * 1024,
  maxHeaders: 100,
  handshakeTimeout: 10_000,
  closeTimeout: 5_000,
  keepaliveInterval: 30_000,
  keepaliveTimeout: 30_000,
  idleTimeout: 0,
  highWaterMark: 1024 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
  inboxHighWaterMark: 1024 * 1024
} as const

/**
 * The limits that count bytes or items: whole numbers, at least what the request parser needs
 * (`RequestParser`: 16 bytes of request head); the times (ms) and the buffer marks: numbers >= 0,
 * the times finite.
 */
const whole: ReadonlyArray<readonly [keyof Limits, number]> = [
  ["maxMessageSize", 0],
  ["maxFrameSize", 0],
  ["maxFragments", 0],
  ["maxHeaderBytes", 16],
  ["maxHeaders", 0]
]
const times: ReadonlyArray<keyof Limits> = [
  "handshakeTimeout",
  "closeTimeout",
  "keepaliveInterval",
  "keepaliveTimeout",
  "idleTimeout"
]
const marks: ReadonlyArray<keyof Limits> = ["highWaterMark", "maxBufferedBytes", "inboxHighWaterMark"]

/**
 * Throws a `RangeError` for a limit out of its range (a configuration error, found when the
 * server is made rather than at the first connection, or never: a `NaN` limit would limit nothing).
 */
const check = (o: Limits): void => {
  const bad = (name: string, rule: string, value: number) =>
    new RangeError(`WebSocket server option ${name} must be ${rule}, got ${value}`)
  for (const [name, min] of whole) {
    const v = o[name]
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) throw bad(name, `an integer >= ${min}`, v)
  }
  for (const name of times) {
    const v = o[name]
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw bad(name, "a finite number >= 0 (ms)", v)
  }
  for (const name of marks) {
    const v = o[name]
    if (v !== undefined && !(v >= 0)) throw bad(name, "a number >= 0", v)
  }
}

export const resolve = (
  o: Limits & { readonly perMessageDeflate?: boolean | PerMessageDeflateOptions | undefined }
): Resolved => {
  check(o)
  const maxMessageSize = o.maxMessageSize ?? defaults.maxMessageSize
  const pmd = o.perMessageDeflate === true
    ? resolveOptions({})
    : o.perMessageDeflate === false || o.perMessageDeflate === undefined
    ? undefined
    : resolveOptions(o.perMessageDeflate)
  return {
    maxMessageSize,
    maxFrameSize: o.maxFrameSize ?? maxMessageSize,
    maxFragments: o.maxFragments ?? defaults.maxFragments,
    maxHeaderBytes: o.maxHeaderBytes ?? defaults.maxHeaderBytes,
    maxHeaders: o.maxHeaders ?? defaults.maxHeaders,
    handshakeTimeout: o.handshakeTimeout ?? defaults.handshakeTimeout,
    closeTimeout: o.closeTimeout ?? defaults.closeTimeout,
    keepaliveInterval: o.keepaliveInterval ?? defaults.keepaliveInterval,
    keepaliveTimeout: o.keepaliveTimeout ?? defaults.keepaliveTimeout,
    idleTimeout: o.idleTimeout ?? defaults.idleTimeout,
    highWaterMark: o.highWaterMark ?? defaults.highWaterMark,
    maxBufferedBytes: o.maxBufferedBytes ?? defaults.maxBufferedBytes,
    inboxHighWaterMark: o.inboxHighWaterMark ?? defaults.inboxHighWaterMark,
    perMessageDeflate: pmd !== undefined && pmd.enabled ? pmd : undefined
  }
}
