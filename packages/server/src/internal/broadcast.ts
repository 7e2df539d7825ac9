import { PolicyViolationError } from "@effect-websocket/protocol/Errors"
import { headerLength, Opcode, writeHeader } from "@effect-websocket/protocol/Frame"
import { PerMessageDeflate } from "@effect-websocket/protocol/PerMessageDeflate"
import { Effect, Scope } from "effect"
import * as Metrics from "../Metrics.js"
import type { Message, WebSocket } from "../WebSocket.js"
import type { ConnectionPort } from "./port.js"
import { portOf } from "./port.js"

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

/** One shared tags array: Effect caches a metric's hook per tags array. */
export const NO_TAGS: Array<never> = []

// defined in Metrics.ts with the server's other metrics
export const publishes = Metrics.broadcastPublishes
export const fanOut = Metrics.broadcastFanOut
export const delivered = Metrics.broadcastDelivered
export const dropped = Metrics.broadcastDropped
export const slowClosed = Metrics.broadcastSlowClosed
export const compressions = Metrics.broadcastCompressions

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
export const deliveryOf = (conn: ConnectionPort): Delivery => {
  const compression = conn.compression
  if (compression === undefined) return PLAIN
  const { options: o, params: agreed } = compression
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
// The local registry
// ---------------------------------------------------------------------------------------

export interface Policy {
  readonly maxBufferedBytes: number
  readonly onSlow: "drop" | "close"
}

/** One connection that subscribed to something; kept until its transport closes. */
export interface Member {
  readonly ws: WebSocket<unknown>
  /** The connection's port, when the handle is one of the engine's (always, unless wrapped). */
  readonly conn: ConnectionPort | undefined
  readonly delivery: Delivery
  readonly topics: Map<string, Policy>
  /** Topic → the name this member shows under in the topic's presence. */
  presence: Map<string, string> | undefined
  /** Topics whose live messages wait for the member's history to be sent first (resume). */
  held: Map<string, Array<Held>> | undefined
}

/** Live messages kept at most for one resuming member while its history is fetched. */
export const MAX_HELD = 10_000

/** A message kept for a member that resumes. */
export interface Held {
  readonly offset: string | undefined
  readonly message: Message
  readonly compress: boolean
}

/** Orders offsets of the form `ms-seq` (Redis stream ids) or plain counters. */
export const compareOffsets = (a: string, b: string): number => {
  const da = a.indexOf("-")
  const db = b.indexOf("-")
  const ha = Number(da < 0 ? a : a.slice(0, da))
  const hb = Number(db < 0 ? b : b.slice(0, db))
  if (ha !== hb) return ha < hb ? -1 : 1
  const la = da < 0 ? 0 : Number(a.slice(da + 1))
  const lb = db < 0 ? 0 : Number(b.slice(db + 1))
  return la === lb ? 0 : la < lb ? -1 : 1
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
    private readonly watch: (ws: WebSocket<unknown>) => void,
    /** The presence names of this process's subscribers of a topic changed. */
    private readonly onPresence: (topic: string, names: ReadonlyArray<string>) => void = () => {}
  ) {}

  private memberOf(ws: WebSocket<unknown>): Member | undefined {
    let member = this.members.get(ws)
    if (member === undefined) {
      const conn = portOf(ws)
      if (conn !== undefined && conn.transportEnded) return undefined
      member = {
        ws,
        conn,
        delivery: conn === undefined ? PLAIN : deliveryOf(conn),
        topics: new Map(),
        presence: undefined,
        held: undefined
      }
      this.members.set(ws, member)
      // released with the rest of what the connection holds, when its Scope closes
      if (conn !== undefined) Effect.runSync(Scope.addFinalizer(conn.scope, Effect.sync(() => this.remove(ws))))
      else this.watch(ws)
    }
    return member
  }

  /** The name `ws` shows under in the presence of `topic` once it subscribed to it. */
  setPresence(ws: WebSocket<unknown>, topic: string, name: string): void {
    if (this.closed) return
    const member = this.memberOf(ws)
    if (member === undefined) return
    ;(member.presence ??= new Map()).set(topic, name)
    if (member.topics.has(topic)) this.onPresence(topic, this.presence(topic))
  }

  /** Presence names of this process's subscribers of a topic, sorted. */
  presence(topic: string): Array<string> {
    const names: Array<string> = []
    const subs = this.topics.get(topic)
    if (subs === undefined) return names
    for (const member of subs.keys()) {
      const name = member.presence?.get(topic)
      if (name !== undefined) names.push(name)
    }
    return names.sort()
  }

  /**
   * Subscribes `ws`; with `hold`, live messages of the topic are kept for it until `release`.
   * False when the connection is already gone or the registry closed.
   */
  subscribe(topic: string, ws: WebSocket<unknown>, policy: Policy, hold: boolean): boolean {
    if (this.closed) return false
    const member = this.memberOf(ws)
    if (member === undefined) return false
    if (hold) (member.held ??= new Map()).set(topic, [])
    member.topics.set(topic, policy)
    let subs = this.topics.get(topic)
    if (subs === undefined) {
      subs = new Map()
      this.topics.set(topic, subs)
    }
    const first = subs.size === 0
    subs.set(member, policy)
    if (first) this.onInterest(topic, true)
    if (member.presence?.has(topic) === true) this.onPresence(topic, this.presence(topic))
    return true
  }

  /**
   * Ends the hold of a resuming member: its history first (up to `upTo`, the last offset this
   * process delivered live), then the live messages kept meanwhile that come after that
   * history (by offset), then live delivery.
   */
  release(topic: string, ws: WebSocket<unknown>, history: ReadonlyArray<Held>, upTo: string | undefined): void {
    const member = this.members.get(ws)
    const kept = member?.held?.get(topic)
    if (member === undefined || kept === undefined) return
    member.held!.delete(topic)
    if (member.held!.size === 0) member.held = undefined
    if (!member.topics.has(topic)) return
    let last: string | undefined = undefined
    for (const entry of history) {
      // Past what this process delivered live: it comes live later.
      if (upTo !== undefined && entry.offset !== undefined && compareOffsets(entry.offset, upTo) > 0) break
      if (member.ws.unsafeSend(entry.message, { compress: entry.compress })) delivered.unsafeUpdate(1, NO_TAGS)
      last = entry.offset
    }
    for (const entry of kept) {
      if (last !== undefined && entry.offset !== undefined && compareOffsets(entry.offset, last) <= 0) continue
      if (member.ws.unsafeSend(entry.message, { compress: entry.compress })) delivered.unsafeUpdate(1, NO_TAGS)
    }
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
    member.held?.delete(topic)
    const named = member.presence?.delete(topic) === true
    if (subs.size === 0) {
      this.topics.delete(topic)
      if (!this.closed) this.onInterest(topic, false)
    }
    if (named && !this.closed) this.onPresence(topic, this.presence(topic))
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
    offset: string | undefined,
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
      if (member.held !== undefined) {
        const kept = member.held.get(topic)
        if (kept !== undefined) {
          // Bounded: a history that takes this long to arrive costs the resuming member messages.
          if (kept.length < MAX_HELD) kept.push({ offset, message, compress })
          else skipped++
          continue
        }
      }
      const conn = member.conn
      if (conn === undefined) {
        fallbacks.push([member, policy])
        continue
      }
      if (!conn.accepting) continue
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
      conn.writeFrame(frame)
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
