import { PolicyViolationError } from "@effect-websocket/protocol/Errors"
import { headerLength, Opcode, writeHeader } from "@effect-websocket/protocol/Frame"
import { PerMessageDeflate } from "@effect-websocket/protocol/PerMessageDeflate"
import { Metric, MetricBoundaries } from "effect"
import * as Metrics from "../Metrics.js"
import type { Message, WebSocket } from "../WebSocket.js"
import { WsConnection } from "./connection.js"

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

/** One shared tags array: Effect caches a metric's hook per tags array. */
export const NO_TAGS: Array<never> = []

export const publishes = Metric.counter("websocket_broadcast_publishes_total", {
  description: "Messages published to a topic in this process (local and received from the backend)",
  incremental: true
})
export const fanOut = Metric.histogram(
  "websocket_broadcast_fanout",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 18 }),
  "Local subscribers of the topic, per publish"
)
export const delivered = Metric.counter("websocket_broadcast_delivered_total", {
  description: "Copies of published messages handed to subscriber connections",
  incremental: true
})
export const dropped = Metric.counter("websocket_broadcast_dropped_total", {
  description: "Copies skipped because the subscriber was over its buffered-bytes limit (policy \"drop\")",
  incremental: true
})
export const slowClosed = Metric.counter("websocket_broadcast_slow_closed_total", {
  description: "Subscribers closed with 1008 for being over their buffered-bytes limit (policy \"close\")",
  incremental: true
})
export const compressions = Metric.counter("websocket_broadcast_compressions_total", {
  description: "Shared permessage-deflate compressions (one per publish and compression setting)",
  incremental: true
})

// ---------------------------------------------------------------------------------------
// Delivery classes
// ---------------------------------------------------------------------------------------

/**
 * How a subscriber's copy of a message is produced:
 * - `Plain`: no permessage-deflate; the one uncompressed frame.
 * - `Shared`: permessage-deflate with `server_no_context_takeover`: every message is compressed
 *   on a fresh context, so all such connections with the same settings get the same bytes,
 *   compressed once per publish.
 * - `Own`: permessage-deflate with context takeover: the connection's own deflater holds the
 *   history of what it sent, so its copy must go through it (compressed per connection).
 */
export type Delivery =
  | { readonly _tag: "Plain" }
  | {
    readonly _tag: "Shared"
    readonly key: string
    readonly windowBits: number
    readonly level: number
    readonly memLevel: number
    readonly threshold: number
  }
  | { readonly _tag: "Own"; readonly threshold: number }

const PLAIN: Delivery = { _tag: "Plain" }

/** The delivery class of a connection, from the permessage-deflate parameters it agreed. */
export const deliveryOf = (conn: WsConnection<unknown>): Delivery => {
  const o = conn.options.perMessageDeflate
  const agreed = conn.deflate
  if (o === undefined || agreed === undefined) return PLAIN
  if (!agreed.serverNoContextTakeover) return { _tag: "Own", threshold: o.threshold }
  // PerMessageDeflate raises 8 to 9 the same way (see `negotiate`).
  const windowBits = Math.max(9, agreed.serverMaxWindowBits)
  return {
    _tag: "Shared",
    key: `${windowBits}/${o.level}/${o.memLevel}`,
    windowBits,
    level: o.level,
    memLevel: o.memLevel,
    threshold: o.threshold
  }
}

/** One unmasked, final frame in one buffer (the payload is copied once per publish, not per subscriber). */
const frameOf = (opcode: number, rsv1: boolean, payload: Uint8Array): Buffer => {
  const hl = headerLength(payload.length, false)
  const frame = Buffer.allocUnsafe(hl + payload.length)
  writeHeader(frame, 0, true, rsv1, opcode, payload.length, undefined)
  frame.set(payload, hl)
  return frame
}

// ---------------------------------------------------------------------------------------
// Pre-framed writes: the accessor the public handle lacks
// ---------------------------------------------------------------------------------------

/**
 * Whether a connection takes data frames: open, not closing either way. This and the two
 * functions below are everything Broadcast needs beyond the public `WebSocket` handle; they
 * reach into `WsConnection` (the only implementation of the handle) and would become handle
 * methods (`unsafeBufferedAmount()`, `unsafeSendFrame(frame)`) if the engine grew them.
 */
export const isAccepting = (conn: WsConnection<unknown>): boolean =>
  !conn.isTransportClosed && !conn.core.closeExpected

/**
 * Writes a complete frame built elsewhere. What the connection queued before goes out first
 * (its pending batch is flushed), so the frame keeps its place among the connection's own
 * sends. The frame must be a final, unmasked data frame; RSV1 only where permessage-deflate was
 * agreed and the payload was compressed on a fresh context (`server_no_context_takeover`).
 */
export const writeFrame = (conn: WsConnection<unknown>, frame: Uint8Array): void => {
  conn.writePrebuilt(frame)
  if (conn.socket.writableLength > conn.options.maxBufferedBytes) {
    conn.terminate(new PolicyViolationError({ reason: "send buffer over limit" }))
  }
}

// ---------------------------------------------------------------------------------------
// The local registry
// ---------------------------------------------------------------------------------------

export interface Policy {
  readonly maxBufferedBytes: number
  readonly onSlow: "drop" | "close"
}

/** One connection that subscribed to something; kept until its transport closes. */
export interface Member {
  readonly ws: WebSocket<unknown>
  /** The engine's connection, when the handle is one (always, unless wrapped). */
  readonly conn: WsConnection<unknown> | undefined
  readonly delivery: Delivery
  readonly topics: Map<string, Policy>
}

export interface LocalResult {
  subscribers: number
  sent: number
  dropped: number
  closed: number
  compressions: number
}

/**
 * Topic → subscribers for this process. Everything is synchronous: a publish builds each
 * distinct frame at most once and writes it to every subscriber in one loop, no Effect per
 * subscriber. Handles that are not the engine's connections (wrappers) are returned to the
 * caller as `fallbacks`, to be served through the public handle.
 */
export class Registry {
  private readonly topics = new Map<string, Map<Member, Policy>>()
  private readonly members = new Map<WebSocket<unknown>, Member>()
  private closed = false

  constructor(
    /** This process gained its first (true) or lost its last (false) subscriber of a topic. */
    private readonly onInterest: (topic: string, subscribed: boolean) => void,
    /** A handle the registry cannot watch itself: call `remove(ws)` when it closes. */
    private readonly watch: (ws: WebSocket<unknown>) => void
  ) {}

  subscribe(topic: string, ws: WebSocket<unknown>, policy: Policy): void {
    if (this.closed) return
    let member = this.members.get(ws)
    if (member === undefined) {
      const conn = ws instanceof WsConnection ? ws as WsConnection<unknown> : undefined
      if (conn !== undefined && conn.isTransportClosed) return
      member = { ws, conn, delivery: conn === undefined ? PLAIN : deliveryOf(conn), topics: new Map() }
      this.members.set(ws, member)
      if (conn !== undefined) conn.socket.once("close", () => this.remove(ws))
      else this.watch(ws)
    }
    member.topics.set(topic, policy)
    let subs = this.topics.get(topic)
    if (subs === undefined) {
      subs = new Map()
      this.topics.set(topic, subs)
    }
    const first = subs.size === 0
    subs.set(member, policy)
    if (first) this.onInterest(topic, true)
  }

  unsubscribe(topic: string, ws: WebSocket<unknown>): void {
    const member = this.members.get(ws)
    if (member === undefined || !member.topics.delete(topic)) return
    this.leave(topic, member)
  }

  unsubscribeAll(ws: WebSocket<unknown>): void {
    const member = this.members.get(ws)
    if (member === undefined) return
    for (const topic of member.topics.keys()) this.leave(topic, member)
    member.topics.clear()
  }

  /** The connection is gone: forget it. */
  remove(ws: WebSocket<unknown>): void {
    this.unsubscribeAll(ws)
    this.members.delete(ws)
  }

  private leave(topic: string, member: Member): void {
    const subs = this.topics.get(topic)
    if (subs === undefined) return
    subs.delete(member)
    if (subs.size === 0) {
      this.topics.delete(topic)
      if (!this.closed) this.onInterest(topic, false)
    }
  }

  subscriberCount(topic: string): number {
    return this.topics.get(topic)?.size ?? 0
  }

  topicsOf(ws: WebSocket<unknown>): ReadonlyArray<string> {
    const member = this.members.get(ws)
    return member === undefined ? [] : [...member.topics.keys()]
  }

  /**
   * Delivers a message to this process's subscribers. The uncompressed frame is built once,
   * the compressed one once per compression setting among `Shared` subscribers; `Own`
   * subscribers compress through their own deflater. A subscriber over its limit is skipped
   * (`drop`) or failed with 1008 (`close`) and unsubscribed.
   */
  publish(
    topic: string,
    message: Message,
    compress: boolean,
    result: LocalResult,
    fallbacks: Array<[Member, Policy]>
  ): void {
    const subs = this.topics.get(topic)
    publishes.unsafeUpdate(1, NO_TAGS)
    const n = subs === undefined ? 0 : subs.size
    fanOut.unsafeUpdate(n, NO_TAGS)
    result.subscribers += n
    if (subs === undefined || n === 0) return
    const text = typeof message === "string"
    const opcode = text ? Opcode.Text : Opcode.Binary
    let payload: Uint8Array | undefined = undefined
    let plain: Buffer | undefined = undefined
    let shared: Map<string, { readonly frame: Buffer; readonly size: number }> | undefined = undefined
    let slow: Array<Member> | undefined = undefined
    let sent = 0
    let skipped = 0
    let closed = 0
    let compressed = 0
    let deflatedIn = 0
    let deflatedOut = 0
    let rawFrames = 0
    let rawBytes = 0
    for (const [member, policy] of subs) {
      const conn = member.conn
      if (conn === undefined) {
        fallbacks.push([member, policy])
        continue
      }
      if (!isAccepting(conn)) continue
      if (conn.bufferedBytes() > policy.maxBufferedBytes) {
        if (policy.onSlow === "close") (slow ??= []).push(member)
        else skipped++
        continue
      }
      payload ??= text ? Buffer.from(message as string, "utf8") : message as Uint8Array
      const d = member.delivery
      let frame: Buffer
      if (d._tag === "Plain" || !compress || payload.length < d.threshold) {
        frame = plain ??= frameOf(opcode, false, payload)
      } else if (d._tag === "Own") {
        // Context takeover: only this connection's deflater can produce its next message.
        if (conn.sendNow(message)) sent++
        continue
      } else {
        let cached = shared?.get(d.key)
        if (cached === undefined) {
          const deflated = PerMessageDeflate.compressStandalone(payload, d.windowBits, d.level, d.memLevel)
          cached = { frame: frameOf(opcode, true, deflated), size: deflated.length }
          ;(shared ??= new Map()).set(d.key, cached)
          compressed++
        }
        frame = cached.frame
        deflatedIn += payload.length
        deflatedOut += cached.size
      }
      writeFrame(conn, frame)
      sent++
      rawFrames++
      rawBytes += frame.length
    }
    if (slow !== undefined) {
      for (const member of slow) {
        member.conn?.terminate(new PolicyViolationError({ reason: "subscriber too slow" }))
        this.unsubscribeAll(member.ws)
      }
      closed = slow.length
    }
    result.sent += sent
    result.dropped += skipped
    result.closed += closed
    result.compressions += compressed
    if (sent > 0) delivered.unsafeUpdate(sent, NO_TAGS)
    if (skipped > 0) dropped.unsafeUpdate(skipped, NO_TAGS)
    if (closed > 0) slowClosed.unsafeUpdate(closed, NO_TAGS)
    if (compressed > 0) compressions.unsafeUpdate(compressed, NO_TAGS)
    // Counted per copy sent, like the bytes a connection's own codec compresses.
    if (deflatedIn > 0) Metrics.deflateMeter.compressed(deflatedIn, deflatedOut)
    if (rawFrames > 0) {
      Metrics.messagesSent.unsafeUpdate(rawFrames, NO_TAGS)
      Metrics.bytesSent.unsafeUpdate(rawBytes, NO_TAGS)
    }
  }

  /** The layer is being released: forget everything, report no more interest changes. */
  close(): void {
    this.closed = true
    this.topics.clear()
    this.members.clear()
  }
}
