import type { Connection } from "@effect-websocket/protocol/Connection"
import { checkClose } from "@effect-websocket/protocol/Connection"
import type { InvalidSendError, ProtocolError } from "@effect-websocket/protocol/Errors"
import { Effect } from "effect"
import type { Duplex } from "node:stream"
import { PolicyViolationError } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import type { Message, SendOptions } from "../WebSocket.js"
import { messageSize, NO_TAGS } from "./inbox.js"
import type { Resolved } from "./options.js"

/** What the outbox needs from its connection. */
export interface OutboxHost {
  readonly transport: Duplex
  readonly core: Connection
  readonly options: Resolved
  /** The transport is closed: nothing more is written. */
  readonly transportEnded: boolean
  /** A close is now under way (either way): the close timeout starts, the inbox ends. */
  closing(): void
  /** Fails the connection from our side. */
  terminate(error: ProtocolError): void
  /** Data went out (idle timeout). */
  touch(): void
  /** Forks an Effect in the connection's Scope (the writer fiber). */
  fork(effect: Effect.Effect<void>): void
}

/** What a connection holds back while a large message is compressed off the event loop. */
type Held =
  | { readonly kind: "message"; readonly data: Message; readonly compress: boolean }
  | { readonly kind: "frame"; readonly frame: Uint8Array }
  | { readonly kind: "close"; readonly code: number; readonly reason: string }
  | { readonly kind: "owed" }

/**
 * Everything a connection sends, in order: messages and control frames through the protocol
 * core, frames built elsewhere (broadcast), and the hold queue behind a message compressed off
 * the event loop. What a reader's turn (or a tick) produced goes out as one batch (one
 * cork/uncork, one writev).
 *
 * Backpressure: `send` suspends while more than `highWaterMark` bytes wait. The first sender
 * that has to wait starts the writer fiber (in the connection's Scope), which waits for the
 * transport's `drain`, flushes what accumulated, and resumes the senders once the buffer is
 * below the mark; it ends then, so a connection that keeps up has no writer fiber at all.
 */
export class Outbox {
  private flushQueued = false
  /** Inside a reader turn: the reader flushes once at its end. */
  inReader = false
  private messagesOut = 0
  private drainWaiters: Array<() => void> | undefined = undefined
  /** The writer fiber is waiting for `drain` (its resume). */
  private writerWaiting: ((e: Effect.Effect<void>) => void) | undefined = undefined
  private writerRunning = false

  // A message compressed off the event loop holds back everything this connection sends after
  // it (messages, prebuilt frames, our Close and the owed Close) until it is queued; pings and
  // pongs may go first (control frames may precede a message not yet started).
  private held: Array<Held> | undefined = undefined
  /** Bytes of the messages held back and of the one being compressed (for backpressure). */
  private heldBytes = 0
  /** A Close is among the held items: no message may be sent after it. */
  private closeHeld = false

  constructor(private readonly host: OutboxHost) {}

  /** Queues a message; false when the connection is not open. */
  send(data: Message, options?: SendOptions): boolean {
    const host = this.host
    if (host.transportEnded) return false
    const compress = options?.compress ?? true
    if (this.held !== undefined) return this.hold(data, compress)
    const core = host.core
    if (core.offloads(data, compress)) {
      const text = typeof data === "string"
      const input = core.compressLater(data, (payload) => this.offloaded(text, payload, input.byteLength))
      this.held = []
      this.heldBytes += input.byteLength
      return true
    }
    const err = typeof data === "string" ? core.sendText(data, compress) : core.sendBinary(data, compress)
    if (err !== undefined) return false
    this.messagesOut++
    this.scheduleFlush()
    return true
  }

  private hold(data: Message, compress: boolean): boolean {
    if (this.closeHeld || this.host.core.state !== "OPEN") return false
    this.held!.push({ kind: "message", data, compress })
    this.heldBytes += messageSize(data)
    return true
  }

  private offloaded(text: boolean, payload: Buffer, inputBytes: number): void {
    const held = this.held
    // dropped meanwhile: the connection failed or its transport closed
    if (held === undefined) return
    this.held = undefined
    this.heldBytes -= inputBytes
    if (this.host.core.sendCompressed(text, payload) === undefined) this.messagesOut++
    for (let i = 0; i < held.length; i++) {
      const item = held[i]!
      const again = this.held as Array<Held> | undefined
      if (again !== undefined) {
        again.push(item) // another large message is being compressed: the rest waits behind it
        continue
      }
      switch (item.kind) {
        case "message":
          this.heldBytes -= messageSize(item.data)
          this.send(item.data, { compress: item.compress })
          break
        case "frame":
          this.heldBytes -= item.frame.byteLength
          this.writePrebuilt(item.frame)
          break
        case "close":
          this.closeHeld = false
          this.close(item.code, item.reason)
          break
        case "owed":
          this.replyClose()
          break
      }
    }
    this.flush()
    this.release()
  }

  /** Drops what is held (the connection failed or closed): nothing more will be written. */
  dropHeld(): void {
    this.held = undefined
    this.heldBytes = 0
    this.closeHeld = false
  }

  /** Sends the Close owed to the peer, after whatever is held. */
  replyClose(): void {
    const held = this.held
    if (held === undefined) this.host.core.sendOwedClose()
    else if (!held.some((h) => h.kind === "owed")) held.push({ kind: "owed" })
  }

  /** Starts the closing handshake with our code, after whatever is held; no-op when closing already. */
  close(code: number, reason: string): InvalidSendError | undefined {
    const host = this.host
    const core = host.core
    if (core.state !== "OPEN" && !core.closeOwed) return undefined
    const held = this.held
    if (held !== undefined) {
      if (this.closeHeld) return undefined
      const err = checkClose(code, reason)
      if (err !== undefined) return err
      this.closeHeld = true
      held.push({ kind: "close", code, reason })
      return undefined
    }
    const err = core.sendClose(code, reason)
    if (err !== undefined) return err
    this.flush()
    host.closing()
    return undefined
  }

  /** Whether data frames are still taken (open, and no Close of ours queued or held). */
  get takesFrames(): boolean {
    return !this.closeHeld && this.host.core.state === "OPEN"
  }

  /**
   * Writes a complete data frame built elsewhere (broadcast), after everything queued before
   * it; dropped once our Close is queued (nothing may follow it).
   */
  writePrebuilt(frame: Uint8Array): void {
    const host = this.host
    if (host.transportEnded || !this.takesFrames) return
    const held = this.held
    if (held !== undefined) {
      held.push({ kind: "frame", frame })
      this.heldBytes += frame.byteLength
      return
    }
    this.flush()
    host.transport.write(frame)
    host.touch()
  }

  /**
   * `writePrebuilt` with the transport corked until the next tick: what one tick publishes to
   * this connection goes out in one write (writev) instead of one per frame.
   */
  writePrebuiltLater(frame: Uint8Array): void {
    const transport = this.host.transport
    if (transport.writableCorked === 0 && !this.host.transportEnded) {
      transport.cork()
      process.nextTick(uncorkTick, transport)
    }
    this.writePrebuilt(frame)
  }

  /** Bytes waiting: held back, queued in the core, and in the transport's buffer. */
  bufferedBytes(): number {
    return this.heldBytes + this.host.core.bufferedAmount + this.host.transport.writableLength
  }

  /** Completes at once below the high-water mark; otherwise when the writer has drained below it. */
  backpressure(): Effect.Effect<void> {
    return this.mustWait() ? this.waitBelowMark() : Effect.void
  }

  /** Whether a sender has to wait: more than the high-water mark waits, even after a flush. */
  mustWait(): boolean {
    const o = this.host.options
    if (this.bufferedBytes() <= o.highWaterMark) return false
    this.flush()
    return !(this.heldBytes + this.host.transport.writableLength <= o.highWaterMark || this.host.transportEnded)
  }

  /** After `mustWait` said so: completes when the writer has drained below the high-water mark. */
  private waitBelowMark(): Effect.Effect<void> {
    Metrics.backpressureEvents.unsafeUpdate(1, NO_TAGS)
    if (!this.writerRunning) {
      this.writerRunning = true
      this.host.fork(this.writer())
    }
    return Effect.async<void>((resume) => {
      const w = () => resume(Effect.void)
      ;(this.drainWaiters ??= []).push(w)
      return Effect.sync(() => {
        const ws = this.drainWaiters
        const i = ws === undefined ? -1 : ws.indexOf(w)
        if (i >= 0) ws!.splice(i, 1)
      })
    })
  }

  /**
   * The writer fiber: waits for `drain`, flushes, and once the buffer is below the high-water
   * mark (or the transport is gone) resumes the waiting senders and ends.
   */
  private writer(): Effect.Effect<void> {
    const waitDrain = Effect.async<void>((resume) => {
      this.writerWaiting = resume
      return Effect.sync(() => {
        this.writerWaiting = undefined
      })
    })
    const loop: Effect.Effect<void> = Effect.suspend(() => {
      this.flush()
      if (this.belowMark()) return Effect.void
      return Effect.zipRight(waitDrain, loop)
    })
    return Effect.ensuring(
      loop,
      Effect.sync(() => {
        this.writerRunning = false
        this.wakeSenders()
      })
    )
  }

  private belowMark(): boolean {
    const host = this.host
    return host.transportEnded || this.heldBytes + host.transport.writableLength <= host.options.highWaterMark
  }

  private wakeSenders(): void {
    const ws = this.drainWaiters
    if (ws === undefined) return
    this.drainWaiters = undefined
    for (const w of ws) w()
  }

  /** The transport drained (or closed): the writer goes on. */
  release(): void {
    const w = this.writerWaiting
    if (w !== undefined && this.belowMark()) {
      this.writerWaiting = undefined
      w(Effect.void)
    } else if (w === undefined && !this.writerRunning && this.drainWaiters !== undefined && this.belowMark()) {
      this.wakeSenders()
    }
  }

  /** Flushes at the end of this reader turn, or on the next tick. */
  flushSoon(): void {
    this.scheduleFlush()
  }

  private scheduleFlush(): void {
    if (this.inReader || this.flushQueued) return
    this.flushQueued = true
    process.nextTick(flushTick, this)
  }

  /** @internal the next-tick flush. */
  flushTick(): void {
    this.flushQueued = false
    this.flush()
  }

  /** Writes everything the core produced as one batch (one writev), then closes TCP if due. */
  flush(): void {
    const host = this.host
    if (host.transportEnded) return
    const core = host.core
    const out = core.dataToSend()
    const transport = host.transport
    if (out.length === 1) {
      transport.write(out[0]!)
    } else if (out.length > 1) {
      transport.cork()
      for (let i = 0; i < out.length; i++) transport.write(out[i]!)
      transport.uncork()
    }
    if (out.length > 0) {
      let n = 0
      for (let i = 0; i < out.length; i++) n += out[i]!.byteLength
      Metrics.bytesSent.unsafeUpdate(n, NO_TAGS)
      if (this.messagesOut > 0) {
        Metrics.messagesSent.unsafeUpdate(this.messagesOut, NO_TAGS)
        this.messagesOut = 0
        host.touch()
      }
    }
    if (core.closeTransport) {
      if (!transport.writableEnded) transport.end()
      host.closing()
    } else if (transport.writableLength > host.options.maxBufferedBytes) {
      host.terminate(new PolicyViolationError({ reason: "send buffer over limit" }))
    }
  }
}

const uncorkTick = (transport: Duplex): void => {
  transport.uncork()
}

const flushTick = (outbox: Outbox): void => {
  outbox.flushTick()
}
