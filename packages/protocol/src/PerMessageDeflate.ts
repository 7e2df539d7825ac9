/**
 * RFC 7692 permessage-deflate: negotiation of the extension in the opening handshake, and
 * a per-connection compressor/decompressor the connection state machine drives
 * synchronously, frame by frame.
 *
 * Memory, measured on Node 20.20 (bundled zlib 1.3.1, RSS per context with 1,000 alive):
 * - a deflate context costs about `(1 << (windowBits + 2)) + (1 << (memLevel + 9))` bytes
 *   once used (15/8: 264 KiB after a 200 KB message, ~200 KiB after small ones); Node's
 *   zlib keeps a 64 KiB hash table whatever `memLevel`, so small settings floor at ~65-80 KiB;
 * - an inflate context costs about `(1 << windowBits)` plus ~7 KiB once used (15: ~40 KiB);
 * - a context that has not been written to costs ~1.3 KiB of JS heap (Node initialises
 *   zlib on the first write), and this module creates none before the first message.
 * With context takeover each connection keeps its own contexts for its lifetime. Without
 * it nothing stays with the connection: `server_no_context_takeover` compresses on a
 * deflater shared by all connections (borrowed for the span of one synchronous call), and
 * `client_no_context_takeover` returns the inflater to a small shared pool at the end of
 * each message. The `memory` option ({@link MemoryPolicy}) chooses between the two per
 * direction; the default, `"shared"` both ways, answers both parameters to every offer, so
 * an idle compressed connection holds no zlib state. `memoryEstimate` gives the
 * steady-state figure for agreed parameters.
 *
 * @since 0.1.0
 */
import { HandshakeResponseError, InternalError } from "./Errors.js"
import type { InvalidPayloadError, MessageTooBigError } from "./Errors.js"
import * as internal from "./internal/deflate.js"
import type { ExtensionOffer, ExtensionParam } from "./internal/extensions.js"
import type { Role } from "./internal/frame.js"

/**
 * The extension token (RFC 7692 §7).
 *
 * @since 0.1.0
 * @category constants
 */
export const EXTENSION_NAME = "permessage-deflate"

/**
 * Server configuration. Every field is optional; defaults are listed per field.
 *
 * @since 0.1.0
 * @category models
 */
export interface PerMessageDeflateOptions {
  /** Offer permessage-deflate at all. Default `true` when an options object is given. */
  readonly enabled?: boolean
  /**
   * How much zlib state a connection may hold between messages: one policy for both
   * directions, or one per direction. Default `"shared"` both ways, which keeps an idle
   * compressed connection to a few hundred bytes; `"window32k"` both ways is the classic
   * per-connection behaviour (and accepts every offer as made). See {@link MemoryPolicy}.
   */
  readonly memory?: MemoryPolicy | {
    readonly compressor: MemoryPolicy
    readonly decompressor: MemoryPolicy
  }
  /**
   * Always reset our compressor after each message (ask for it even if the client did
   * not). `true` makes the compressor `"shared"` whatever `memory` says. Default: `true`
   * when the compressor is `"shared"`, else `false`.
   */
  readonly serverNoContextTakeover?: boolean
  /**
   * Ask the client to reset its compressor after each message. `true` makes the
   * decompressor `"shared"` whatever `memory` says. Default: `true` when the decompressor
   * is `"shared"`, else `false`.
   */
  readonly clientNoContextTakeover?: boolean
  /**
   * Largest LZ77 window we compress with, 9..15. Default: the compressor policy's window
   * (15 for `"shared"`). A client may ask for less.
   */
  readonly serverMaxWindowBits?: number
  /**
   * Window we ask the client to compress with, 9..15, when its offer allows it (it sent
   * `client_max_window_bits`); our inflater then uses that smaller window. Default: the
   * decompressor policy's window (15 for `"shared"`).
   */
  readonly clientMaxWindowBits?: number
  /**
   * zlib memLevel for compression, 1..9. Default 8, or the one matched to a dedicated
   * window (`"window1k"` 3, `"window4k"` 5, `"window8k"` 6, `"window32k"` 8).
   */
  readonly memLevel?: number
  /**
   * zlib compression level, 0..9. Default 1: on 16 KiB JSON-like messages it was the
   * fastest level measured, within a few points of level 3-4 in size (20% vs 18% of the
   * input); level 6 compresses 3-4x slower for 16%.
   */
  readonly level?: number
  /**
   * Messages smaller than this many bytes are sent uncompressed. Default 1024: below that,
   * frames are small anyway and the fixed cost per compressed message (a zlib call, a copy,
   * the peer's inflate) buys little.
   */
  readonly threshold?: number
  /**
   * Messages of at least this many bytes are compressed on libuv's thread pool instead of
   * the event loop, so that one large message does not stall every other connection (the
   * connection's later frames wait for it, in order). Default 256 KiB (about 2 ms of
   * synchronous zlib at level 1); `Infinity` keeps all compression on the event loop.
   * Inflating stays synchronous: its cost is bounded by `maxMessageSize`.
   */
  readonly offloadThreshold?: number
  /**
   * Process-wide limit on offloaded compressions running at once (libuv's pool is shared
   * with file system and DNS work, and each job holds a zlib context): further ones wait
   * in one queue. Every server in the process shares the queue; the smallest value any of
   * them configured applies. Default 2.
   */
  readonly offloadConcurrency?: number | undefined
}

/**
 * The process-wide queue of compressions running off the event loop (`offloadThreshold`):
 * its limit, the jobs running and waiting now, the most that ran at once, and how many
 * have started since the process did.
 *
 * @since 0.1.0
 * @category metrics
 */
export const offloadStats: () => {
  readonly limit: number
  readonly running: number
  readonly queued: number
  readonly peak: number
  readonly jobs: number
} = internal.offloadStats

/**
 * What zlib state one direction of a compressed connection keeps between messages.
 *
 * - `"shared"`: none. Compressor: the server answers `server_no_context_takeover` and
 *   compresses every message of every connection on one process-wide deflater, reset after
 *   each message. Decompressor: the server answers `client_no_context_takeover` (RFC 7692
 *   §7.1.1.2 lets it add that even when the client did not offer it) and inflates each
 *   message on an inflater from a small process-wide pool, held only from a message's first
 *   frame to its last. Costs ratio on peers that repeat themselves across messages (each
 *   message is compressed on its own) and nothing per idle connection.
 * - `"window1k"`, `"window4k"`, `"window8k"`, `"window32k"`: a dedicated zlib context per
 *   connection in that direction, kept for the connection's life, with a 2^10, 2^12, 2^13
 *   or 2^15 byte LZ77 window (`*_max_window_bits` 10, 12, 13, 15) and a memLevel to match.
 *   Messages refer back to earlier ones: the best ratio on repetitive traffic, at the
 *   memory `memoryEstimate` gives. The client's window can only be limited when its offer
 *   carries `client_max_window_bits`; an offer without it is served by a later offer that
 *   has it, or else with a shared decompressor (`client_no_context_takeover`).
 *
 * @since 0.1.0
 * @category models
 */
export type MemoryPolicy = "shared" | "window1k" | "window4k" | "window8k" | "window32k"

/** Window bits and matching memLevel of each dedicated policy. */
const WINDOWS: Readonly<Record<Exclude<MemoryPolicy, "shared">, { readonly bits: number; readonly memLevel: number }>> =
  {
    window1k: { bits: 10, memLevel: 3 },
    window4k: { bits: 12, memLevel: 5 },
    window8k: { bits: 13, memLevel: 6 },
    window32k: { bits: 15, memLevel: 8 }
  }

const isPolicy = (p: unknown): p is MemoryPolicy => p === "shared" || (typeof p === "string" && p in WINDOWS)

/**
 * Options with every default filled in and every range checked. Resolving it again gives
 * the same options.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResolvedPerMessageDeflateOptions {
  readonly enabled: boolean
  /** Per direction; `serverNoContextTakeover` / `clientNoContextTakeover` are true exactly when `"shared"`. */
  readonly memory: { readonly compressor: MemoryPolicy; readonly decompressor: MemoryPolicy }
  readonly serverNoContextTakeover: boolean
  readonly clientNoContextTakeover: boolean
  readonly serverMaxWindowBits: number
  readonly clientMaxWindowBits: number
  readonly memLevel: number
  readonly level: number
  readonly threshold: number
  readonly offloadThreshold: number
  /** `undefined` when not configured (the process-wide default applies). */
  readonly offloadConcurrency: number | undefined
}

/**
 * What the handshake agreed (RFC 7692 §7.1). Window sizes are the ones each side compresses
 * with at most; 15 when not limited.
 *
 * @since 0.1.0
 * @category models
 */
export interface PerMessageDeflateParams {
  readonly serverNoContextTakeover: boolean
  readonly clientNoContextTakeover: boolean
  readonly serverMaxWindowBits: number
  readonly clientMaxWindowBits: number
}

const DEFAULTS: ResolvedPerMessageDeflateOptions = {
  enabled: true,
  memory: { compressor: "shared", decompressor: "shared" },
  serverNoContextTakeover: true,
  clientNoContextTakeover: true,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
  memLevel: 8,
  level: 1,
  threshold: 1024,
  offloadThreshold: 256 * 1024,
  offloadConcurrency: undefined
}

const intIn = (name: string, value: number | undefined, min: number, max: number, fallback: number): number => {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`permessage-deflate option ${name} must be an integer in ${min}..${max}, got ${value}`)
  }
  return value
}

/**
 * Fills in defaults and checks ranges. A bad value is a configuration mistake, not peer
 * input, so it throws a `RangeError`; call this once at server start-up to surface it
 * early (`negotiate` and the constructor call it too).
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolveOptions = (
  options: PerMessageDeflateOptions | ResolvedPerMessageDeflateOptions
): ResolvedPerMessageDeflateOptions => {
  if (RESOLVED.has(options)) return options as ResolvedPerMessageDeflateOptions
  const threshold = options.threshold ?? DEFAULTS.threshold
  if (!(threshold >= 0)) throw new RangeError(`permessage-deflate option threshold must be >= 0, got ${threshold}`)
  const offloadThreshold = options.offloadThreshold ?? DEFAULTS.offloadThreshold
  if (!(offloadThreshold >= 1)) {
    throw new RangeError(`permessage-deflate option offloadThreshold must be >= 1, got ${offloadThreshold}`)
  }
  const memory = options.memory ?? DEFAULTS.memory
  const [compressorAsked, decompressorAsked] = typeof memory === "string"
    ? [memory, memory]
    : [memory.compressor, memory.decompressor]
  if (!isPolicy(compressorAsked) || !isPolicy(decompressorAsked)) {
    throw new RangeError(
      `permessage-deflate option memory must be one of shared, window1k, window4k, window8k, window32k (or one per direction), got ${
        JSON.stringify(memory)
      }`
    )
  }
  // An explicit no-context-takeover makes that direction shared: nothing to keep.
  const compressor = options.serverNoContextTakeover === true ? "shared" : compressorAsked
  const decompressor = options.clientNoContextTakeover === true ? "shared" : decompressorAsked
  const serverBits = intIn("serverMaxWindowBits", options.serverMaxWindowBits, 9, 15, 15)
  const clientBits = intIn("clientMaxWindowBits", options.clientMaxWindowBits, 9, 15, 15)
  const resolved: ResolvedPerMessageDeflateOptions = {
    enabled: options.enabled ?? DEFAULTS.enabled,
    memory: { compressor, decompressor },
    serverNoContextTakeover: compressor === "shared",
    clientNoContextTakeover: decompressor === "shared",
    serverMaxWindowBits: compressor === "shared" ? serverBits : Math.min(serverBits, WINDOWS[compressor].bits),
    clientMaxWindowBits: decompressor === "shared" ? clientBits : Math.min(clientBits, WINDOWS[decompressor].bits),
    memLevel: intIn(
      "memLevel",
      options.memLevel,
      1,
      9,
      compressor === "shared" ? DEFAULTS.memLevel : WINDOWS[compressor].memLevel
    ),
    level: intIn("level", options.level, 0, 9, DEFAULTS.level),
    threshold,
    offloadThreshold,
    offloadConcurrency: options.offloadConcurrency === undefined
      ? undefined
      : intIn("offloadConcurrency", options.offloadConcurrency, 1, 1024, 1)
  }
  RESOLVED.add(resolved)
  return resolved
}

/** Objects `resolveOptions` returned: resolving one again is the identity (negotiation runs per handshake). */
const RESOLVED = new WeakSet<object>()

// ---------------------------------------------------------------------------------------
// Negotiation (RFC 7692 §5, §7.1)
// ---------------------------------------------------------------------------------------

/** "8".."15" exactly: decimal, no sign, no leading zero (RFC 7692 §7.1.2.1, §7.1.2.2). */
const windowBitsValue = (value: string): number | undefined => {
  if (value.length === 1) return value === "8" || value === "9" ? Number(value) : undefined
  if (value.length === 2 && value.charCodeAt(0) === 0x31) {
    const d = value.charCodeAt(1) - 0x30
    return d >= 0 && d <= 5 ? 10 + d : undefined
  }
  return undefined
}

/** An offer's parameters once validated; `undefined` means the offer must be declined. */
interface OfferParams {
  serverNoContextTakeover: boolean
  clientNoContextTakeover: boolean
  /** undefined: absent. */
  serverMaxWindowBits: number | undefined
  /** undefined: absent; 0: present without a value. */
  clientMaxWindowBits: number | undefined
}

const parseOffer = (params: ReadonlyArray<ExtensionParam>): OfferParams | undefined => {
  const r: OfferParams = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined
  }
  for (const p of params) {
    switch (p.name) {
      case "server_no_context_takeover": {
        if (r.serverNoContextTakeover || p.value !== undefined) return undefined
        r.serverNoContextTakeover = true
        break
      }
      case "client_no_context_takeover": {
        if (r.clientNoContextTakeover || p.value !== undefined) return undefined
        r.clientNoContextTakeover = true
        break
      }
      case "server_max_window_bits": {
        if (r.serverMaxWindowBits !== undefined || p.value === undefined) return undefined
        const bits = windowBitsValue(p.value)
        if (bits === undefined) return undefined
        r.serverMaxWindowBits = bits
        break
      }
      case "client_max_window_bits": {
        if (r.clientMaxWindowBits !== undefined) return undefined
        if (p.value === undefined) {
          r.clientMaxWindowBits = 0
        } else {
          const bits = windowBitsValue(p.value)
          if (bits === undefined) return undefined
          r.clientMaxWindowBits = bits
        }
        break
      }
      default:
        // RFC 7692 §5: a parameter not defined for use in an offer.
        return undefined
    }
  }
  return r
}

/**
 * The result of accepting an offer: the agreed parameters and the exact
 * `Sec-WebSocket-Extensions` response value.
 *
 * @since 0.1.0
 * @category models
 */
export interface Negotiated {
  readonly params: PerMessageDeflateParams
  readonly response: string
}

/**
 * Server side of RFC 7692 §5 and §7.1. Walks the client's offers in order, skips other
 * extensions, declines every permessage-deflate offer that has an unknown, duplicated or
 * malformed parameter (a value where none is allowed, none where one is required, a window
 * outside 8..15, a leading zero), and accepts the first valid one that the memory policy
 * serves as offered; when none does, the first valid one, served as the policy allows (a
 * dedicated decompressor window the client cannot be held to becomes a shared decompressor).
 * Returns `undefined` when the extension is disabled or no offer is valid: the handshake
 * then goes on without compression. RFC 7692 never makes the server fail the handshake
 * over an offer (§5: it "MUST decline" bad offers; failing the connection is the client's
 * rule for bad responses), so this never returns an error.
 *
 * Agreed parameters:
 * - `server_no_context_takeover` when offered or when the compressor is `"shared"`, and
 *   then in the response;
 * - `client_no_context_takeover` when offered (the client announced it) or when the
 *   decompressor is `"shared"` (§7.1.1.2: the server may add it); in the response in both
 *   cases;
 * - `server_max_window_bits`: min(offered, configured), answered only when offered (the
 *   response must not carry it otherwise, and compressing with a smaller window than the
 *   client's default needs no agreement). An offer of 8 is accepted and answered with 8: zlib
 *   cannot open a raw 256-byte window and Node raises 8 to 9, but zlib's deflate never emits
 *   a distance beyond `2^windowBits - 262` (250 for 9 bits), so its 9-bit output is always
 *   readable with a 256-byte window (checked in the tests with a real 8-bit inflater).
 * - `client_max_window_bits`: answered only when offered; min(offered value or 15,
 *   configured), written when below 15 or when the client gave a value. When not offered
 *   the client may use 15 and we inflate with 15: a dedicated decompressor window below
 *   15 cannot be had, so that offer is served only if no later one carries the parameter,
 *   and then without client context takeover.
 *
 * Response order: `permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover; server_max_window_bits=N; client_max_window_bits=N`.
 *
 * @since 0.1.0
 * @category negotiation
 */
export const negotiate = (
  offers: ReadonlyArray<ExtensionOffer>,
  options: PerMessageDeflateOptions
): Negotiated | undefined => {
  const o = resolveOptions(options)
  if (!o.enabled) return undefined
  let fallback: OfferParams | undefined
  for (const offer of offers) {
    if (offer.name !== EXTENSION_NAME) continue
    const p = parseOffer(offer.params)
    if (p === undefined) continue
    if (servesAsOffered(p, o)) return accept(p, o)
    fallback ??= p
  }
  return fallback === undefined ? undefined : accept(fallback, o)
}

/**
 * Whether the policy serves this offer without changing what it asked for its direction:
 * only a dedicated decompressor window below 15 needs `client_max_window_bits` in the offer
 * (or no context to keep at all).
 */
const servesAsOffered = (p: OfferParams, o: ResolvedPerMessageDeflateOptions): boolean =>
  o.clientNoContextTakeover || p.clientNoContextTakeover || p.clientMaxWindowBits !== undefined ||
  o.clientMaxWindowBits === 15

/**
 * Agreements made so far, per resolved options and offer: every connection that agreed the
 * same thing shares one `Negotiated` (its parameters and response string are kept for the
 * connection's life). At most 2 × 2 × 9 × 10 offer shapes per options object.
 */
const AGREED = new WeakMap<ResolvedPerMessageDeflateOptions, Map<number, Negotiated>>()

const accept = (p: OfferParams, o: ResolvedPerMessageDeflateOptions): Negotiated => {
  const key = (p.serverNoContextTakeover ? 1 : 0) + (p.clientNoContextTakeover ? 2 : 0) +
    (p.serverMaxWindowBits ?? 0) * 4 + (p.clientMaxWindowBits ?? 1) * 64
  let cache = AGREED.get(o)
  if (cache === undefined) AGREED.set(o, cache = new Map())
  let agreed = cache.get(key)
  if (agreed === undefined) cache.set(key, agreed = agree(p, o))
  return agreed
}

const agree = (p: OfferParams, o: ResolvedPerMessageDeflateOptions): Negotiated => {
  const serverNoContextTakeover = p.serverNoContextTakeover || o.serverNoContextTakeover
  // A dedicated window the client cannot be held to (no client_max_window_bits offered)
  // falls back to a shared decompressor.
  const clientNoContextTakeover = p.clientNoContextTakeover || !servesAsOffered(p, o) || o.clientNoContextTakeover
  const serverMaxWindowBits = p.serverMaxWindowBits === undefined
    ? o.serverMaxWindowBits
    : Math.min(p.serverMaxWindowBits, o.serverMaxWindowBits)
  const clientMaxWindowBits = p.clientMaxWindowBits === undefined
    ? 15
    : Math.min(p.clientMaxWindowBits === 0 ? 15 : p.clientMaxWindowBits, o.clientMaxWindowBits)
  let response = EXTENSION_NAME
  if (serverNoContextTakeover) response += "; server_no_context_takeover"
  if (clientNoContextTakeover) response += "; client_no_context_takeover"
  if (p.serverMaxWindowBits !== undefined) response += `; server_max_window_bits=${serverMaxWindowBits}`
  if (p.clientMaxWindowBits !== undefined && (clientMaxWindowBits < 15 || p.clientMaxWindowBits !== 0)) {
    response += `; client_max_window_bits=${clientMaxWindowBits}`
  }
  return {
    params: { serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits },
    response
  }
}

// ---------------------------------------------------------------------------------------
// Client side of the negotiation (RFC 7692 §5, §7.1)
// ---------------------------------------------------------------------------------------

/** A client keeps a context per direction unless its options say otherwise (the classic offer). */
const clientDefaults = (options: PerMessageDeflateOptions): PerMessageDeflateOptions =>
  options.memory === undefined ? { ...options, memory: "window32k" } : options

/**
 * The client's `Sec-WebSocket-Extensions` offer for these options, read from the client's
 * side: `serverNoContextTakeover` asks the server to reset its compressor after each
 * message, `clientNoContextTakeover` announces that we will, `serverMaxWindowBits` below 15
 * asks the server for a smaller window, and `client_max_window_bits` is always offered (with
 * `clientMaxWindowBits` as its value when below 15) so that the server may ask us for a
 * smaller window. `undefined` when `enabled` is false.
 *
 * @since 0.1.0
 * @category negotiation
 */
export const clientOffer = (options: PerMessageDeflateOptions = {}): string | undefined => {
  const o = resolveOptions(clientDefaults(options))
  if (!o.enabled) return undefined
  let offer = EXTENSION_NAME
  if (o.serverNoContextTakeover) offer += "; server_no_context_takeover"
  if (o.clientNoContextTakeover) offer += "; client_no_context_takeover"
  if (o.serverMaxWindowBits < 15) offer += `; server_max_window_bits=${o.serverMaxWindowBits}`
  offer += o.clientMaxWindowBits < 15 ? `; client_max_window_bits=${o.clientMaxWindowBits}` : "; client_max_window_bits"
  return offer
}

/**
 * Client side of RFC 7692 §7.1: checks the server's answer to {@link clientOffer} with the
 * same options, and returns the parameters both sides now use, or why the client must fail
 * the connection (RFC 7692 §7.1: a response it cannot accept). Refused: an unknown or
 * repeated parameter, a value where none is allowed or none where one is required, a window
 * outside 8..15, no `server_no_context_takeover` when we asked for it, a
 * `server_max_window_bits` above what we asked for, and a `client_max_window_bits` above
 * what we offered. The windows agreed are the server's value (15 when absent) and the
 * smaller of the server's value and our configured one.
 *
 * @since 0.1.0
 * @category negotiation
 */
export const acceptResponse = (
  response: ExtensionOffer,
  options: PerMessageDeflateOptions = {}
): PerMessageDeflateParams | HandshakeResponseError => {
  const o = resolveOptions(clientDefaults(options))
  const refuse = (detail: string) => new HandshakeResponseError({ reason: "Extensions", detail })
  if (response.name !== EXTENSION_NAME) return refuse(`${response.name} is not ${EXTENSION_NAME}`)
  const p = parseOffer(response.params)
  if (p === undefined) return refuse("permessage-deflate response with invalid parameters")
  if (p.clientMaxWindowBits === 0) return refuse("client_max_window_bits without a value in a response")
  if (o.serverNoContextTakeover && !p.serverNoContextTakeover) {
    return refuse("the server did not agree to server_no_context_takeover")
  }
  if (p.serverMaxWindowBits !== undefined && o.serverMaxWindowBits < 15 && p.serverMaxWindowBits > o.serverMaxWindowBits) {
    return refuse("server_max_window_bits above the one offered")
  }
  if (p.clientMaxWindowBits !== undefined && p.clientMaxWindowBits > o.clientMaxWindowBits) {
    return refuse("client_max_window_bits above the one offered")
  }
  return {
    serverNoContextTakeover: p.serverNoContextTakeover,
    clientNoContextTakeover: p.clientNoContextTakeover || o.clientNoContextTakeover,
    serverMaxWindowBits: p.serverMaxWindowBits ?? 15,
    clientMaxWindowBits: Math.min(p.clientMaxWindowBits ?? 15, o.clientMaxWindowBits)
  }
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

/**
 * Approximate bytes a used deflate context holds: zlib's window (2 × 2^windowBits), its
 * chain table (2 × 2^windowBits), hash table (2^(memLevel+8); measured at no less than
 * 64 KiB with Node 20's bundled zlib) and pending buffer (2^(memLevel+8)), plus ~6 KiB.
 *
 * @since 0.1.0
 * @category memory
 */
export const deflateMemory = (windowBits: number, memLevel: number): number =>
  (1 << (windowBits + 2)) + Math.max(1 << (memLevel + 8), 1 << 16) + (1 << (memLevel + 8)) + 6 * 1024

/**
 * Approximate bytes a used inflate context holds: its window plus ~7 KiB of state.
 *
 * @since 0.1.0
 * @category memory
 */
export const inflateMemory = (windowBits: number): number => (1 << windowBits) + 7 * 1024

/**
 * Steady-state zlib memory one connection keeps between messages with these agreed
 * parameters, in bytes (0 in both directions without context takeover, since contexts are
 * then shared or pooled). Shared contexts are not counted.
 *
 * @since 0.1.0
 * @category memory
 */
export const memoryEstimate = (
  params: PerMessageDeflateParams,
  options: PerMessageDeflateOptions = {},
  role: Role = "server"
): number => {
  const o = resolveOptions(options)
  const server = role === "server"
  const ownNoTakeover = server ? params.serverNoContextTakeover : params.clientNoContextTakeover
  const peerNoTakeover = server ? params.clientNoContextTakeover : params.serverNoContextTakeover
  const ownBits = server ? params.serverMaxWindowBits : params.clientMaxWindowBits
  const peerBits = server ? params.clientMaxWindowBits : params.serverMaxWindowBits
  return (ownNoTakeover ? 0 : deflateMemory(Math.max(9, ownBits), o.memLevel)) +
    (peerNoTakeover ? 0 : inflateMemory(peerBits))
}

/**
 * Closes the idle zlib contexts kept for reuse by connections without context takeover
 * and by `PerMessageDeflate.compressStandalone` (at shutdown, or to give memory back after
 * a burst). Safe at any time; later calls simply create new ones.
 *
 * @since 0.1.0
 * @category memory
 */
export const releaseSharedContexts = (): void => internal.releaseIdleContexts()

// ---------------------------------------------------------------------------------------
// Per-connection codec (RFC 7692 §7.2)
// ---------------------------------------------------------------------------------------

/**
 * Where a codec reports the bytes it compressed and inflated (metrics), called
 * synchronously once per compressed message and once per inflated piece. Both counts of a
 * call belong to the same data: `uncompressed` bytes went in (or came out) as `compressed`
 * bytes of payload on the wire.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeflateMeter {
  readonly compressed: (uncompressed: number, compressed: number) => void
  readonly inflated: (compressed: number, uncompressed: number) => void
}

/**
 * One connection's permessage-deflate state. Everything is synchronous. zlib contexts are
 * created on first use; `close()` frees them.
 *
 * With `role` "server" (the default) it compresses with the server parameters and
 * inflates with the client ones; "client" swaps them.
 *
 * @since 0.1.0
 * @category models
 */
export class PerMessageDeflate {
  /** The agreed parameters. */
  readonly params: PerMessageDeflateParams
  readonly role: Role
  private readonly level: number
  private readonly memLevel: number
  private readonly threshold: number
  private readonly offloadThreshold: number
  /** What we compress with: window bits (9..15; 8 is raised to 9, see `negotiate`). */
  private readonly deflateBits: number
  private readonly deflateNoTakeover: boolean
  private readonly inflateBits: number
  private readonly inflateNoTakeover: boolean
  /** Our own deflater; only with context takeover (otherwise a shared one is borrowed). */
  private deflater: internal.ZContext | undefined = undefined
  /** The inflater: kept with context takeover, else held from a message's start to its end. */
  private inflater: internal.ZContext | undefined = undefined
  private closed = false
  /** Set after a decompression failure: the inflate stream cannot be resumed. */
  private broken: InvalidPayloadError | MessageTooBigError | InternalError | undefined = undefined

  private readonly meter: DeflateMeter | undefined

  constructor(
    params: PerMessageDeflateParams,
    options: PerMessageDeflateOptions = {},
    role: Role = "server",
    meter?: DeflateMeter
  ) {
    const o = resolveOptions(options)
    this.params = params
    this.role = role
    this.meter = meter
    this.level = o.level
    this.memLevel = o.memLevel
    this.threshold = o.threshold
    this.offloadThreshold = o.offloadThreshold
    if (o.offloadConcurrency !== undefined) internal.limitOffloadConcurrency(o.offloadConcurrency)
    const server = role === "server"
    this.deflateBits = Math.max(9, server ? params.serverMaxWindowBits : params.clientMaxWindowBits)
    this.deflateNoTakeover = server ? params.serverNoContextTakeover : params.clientNoContextTakeover
    this.inflateBits = server ? params.clientMaxWindowBits : params.serverMaxWindowBits
    this.inflateNoTakeover = server ? params.clientNoContextTakeover : params.serverNoContextTakeover
  }

  /**
   * Whether a message of this size should be compressed (`byteLength >= threshold`).
   *
   * @since 0.1.0
   */
  shouldCompress(byteLength: number): boolean {
    return byteLength >= this.threshold
  }

  /**
   * Compresses one whole outgoing message (RFC 7692 §7.2.1): DEFLATE with a sync flush,
   * the trailing `00 00 ff ff` removed. The result goes in a frame with RSV1 set.
   *
   * Never fails: if zlib cannot be used (it cannot allocate a context, or reports an
   * error) the message is sent as DEFLATE blocks with no compression, which every
   * receiver inflates, and our context is dropped so that the windows stay in step.
   *
   * @since 0.1.0
   */
  compress(data: Uint8Array): Buffer {
    const out = this.deflateNoTakeover || this.closed
      ? PerMessageDeflate.compressStandalone(data, this.deflateBits, this.level, this.memLevel)
      : this.compressOwn(data)
    this.meter?.compressed(data.length, out.length)
    return out
  }

  private compressOwn(data: Uint8Array): Buffer {
    let z = this.deflater
    if (z === undefined) {
      const made = internal.openContext("deflate", this.deflateBits, this.level, this.memLevel)
      if (!(made instanceof internal.ZContext)) return internal.storedBlocks(data)
      z = this.deflater = made
    }
    const out = internal.deflateMessage(z, data)
    if (Buffer.isBuffer(out)) return out
    internal.closeContext(z)
    this.deflater = undefined
    return internal.storedBlocks(data)
  }

  /**
   * Whether a message of this size is compressed off the event loop
   * (`byteLength >= offloadThreshold`), with `compressOffloaded`.
   *
   * @since 0.1.0
   */
  shouldOffload(byteLength: number): boolean {
    return byteLength >= this.offloadThreshold && byteLength >= this.threshold
  }

  /**
   * Compresses one whole outgoing message on libuv's thread pool, within the process-wide
   * limit (`offloadConcurrency`); `done` receives the payload for a frame with RSV1, on the
   * event loop. The message is compressed on a fresh context, and with context takeover our
   * own compressor is reset too, so that no later message refers back past it: the caller
   * must hold this connection's later messages until `done` (and compress none meanwhile).
   *
   * @since 0.1.0
   */
  compressOffloaded(data: Uint8Array, done: (payload: Buffer) => void): void {
    if (this.deflater !== undefined) internal.resetContext(this.deflater)
    const meter = this.meter
    internal.deflateOffloaded(
      data,
      this.deflateBits,
      this.level,
      this.memLevel,
      meter === undefined ? done : (payload) => {
        meter.compressed(data.length, payload.length)
        done(payload)
      }
    )
  }

  /**
   * Inflates part of one compressed message (RFC 7692 §7.2.2) as its unmasked payload
   * bytes arrive. `fin` marks the last piece (it may be empty): the `00 00 ff ff` tail is
   * then inflated too and, without context takeover, the context is reset. `maxBytes` is
   * how many inflated bytes the message may still produce; zlib is never given room for
   * more than one byte beyond it.
   *
   * Returns the inflated bytes (possibly empty), or the error to close with: 1009 when the
   * message inflates past `maxBytes`, 1007 when the data does not inflate, 1011 if zlib
   * cannot be used. After an error every later call returns the same error.
   *
   * @since 0.1.0
   */
  decompress(
    data: Uint8Array,
    fin: boolean,
    maxBytes: number
  ): Buffer | MessageTooBigError | InvalidPayloadError | InternalError {
    if (this.broken !== undefined) return this.broken
    let z = this.inflater
    if (z === undefined) {
      const made = this.closed
        ? new InternalError({ reason: "permessage-deflate used after close" })
        : this.inflateNoTakeover
        ? internal.borrowInflater(this.inflateBits)
        : internal.openContext("inflate", this.inflateBits, 0, 0)
      if (!(made instanceof internal.ZContext)) return (this.broken = made)
      z = this.inflater = made
    }
    const out = internal.inflatePiece(z, data, fin, maxBytes)
    if (!Buffer.isBuffer(out)) {
      internal.closeContext(z)
      this.inflater = undefined
      return (this.broken = out)
    }
    if (fin && this.inflateNoTakeover) {
      this.inflater = undefined
      internal.releaseInflater(z)
    }
    this.meter?.inflated(data.length, out.length)
    return out
  }

  /**
   * Frees this connection's zlib contexts. Idempotent. Afterwards `decompress` returns an
   * `InternalError` and `compress` keeps no context (it compresses like
   * `compressStandalone`).
   *
   * @since 0.1.0
   */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.deflater !== undefined) internal.closeContext(this.deflater)
    if (this.inflater !== undefined) internal.closeContext(this.inflater)
    this.deflater = undefined
    this.inflater = undefined
  }

  /**
   * Compresses one message on a fresh context, the same bytes every connection that agreed
   * `server_no_context_takeover` (or that compresses with no context takeover) would send:
   * compress once, then write the result to many connections. Uses a shared, reset deflater
   * (no per-call allocation of zlib state). `windowBits` 8 is raised to 9 (see `negotiate`).
   * Throws a `RangeError` for out-of-range arguments (configuration, not peer input);
   * otherwise never fails (falls back to blocks with no compression like `compress`).
   *
   * @since 0.1.0
   */
  static compressStandalone(
    data: Uint8Array,
    windowBits = 15,
    level = DEFAULTS.level,
    memLevel = DEFAULTS.memLevel
  ): Buffer {
    const bits = Math.max(9, intIn("windowBits", windowBits, 8, 15, 15))
    const z = internal.borrowDeflater(bits, intIn("level", level, 0, 9, 1), intIn("memLevel", memLevel, 1, 9, 8))
    if (!(z instanceof internal.ZContext)) return internal.storedBlocks(data)
    const out = internal.deflateMessage(z, data)
    if (Buffer.isBuffer(out)) {
      internal.releaseDeflater(z)
      return out
    }
    internal.closeContext(z)
    return internal.storedBlocks(data)
  }
}
