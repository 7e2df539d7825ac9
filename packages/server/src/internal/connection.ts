import type { Connection } from "@effect-websocket/protocol/Connection"
import { checkClose } from "@effect-websocket/protocol/Connection"
import type { PerMessageDeflateParams } from "@effect-websocket/protocol/PerMessageDeflate"
import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import { Cause, Chunk, Deferred, Effect, Exit, FiberId, Option, Stream } from "effect"
import type { Context, Fiber, Tracer } from "effect"
import type { Transport as Socket } from "./transport.js"
import { InternalError, InvalidSendError, PolicyViolationError, WebSocketClosedError } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import type { CloseInfo, Message, RequestInfo, SendOptions, WebSocket } from "../WebSocket.js"
import type { Resolved } from "./options.js"

/** Marks the end of the inbox: the peer's Close, a failure, or the end of the transport. */
const END: unique symbol = Symbol("end")
type Item = Message | typeof END

let nextId = 1
/** Metric updates pass one shared tags array: Effect caches the metric hook per array. */
export const NO_TAGS: Array<never> = []
const CLOSED = new WebSocketClosedError({ reason: "connection is not open" })

type Resume<A, E> = (effect: Effect.Effect<A, E>) => void

/** What a message counts for in the byte limits (UTF-16 units for text, as before encoding). */
const messageSize = (m: Message): number => (typeof m === "string" ? m.length : m.byteLength)

/**
 * The I/O glue of one connection: socket events feed the sans-I/O core synchronously
 * (no Effect per frame); decoded messages go to an inbox that the handler's stream drains
 * in batches, or straight to a `run` callback; sends append to the core's output, which is
 * written once per tick (or per socket read) with cork/uncork.
 */
export class WsConnection<Data> implements WebSocket<Data> {
  readonly id = nextId++

  // inbox
  private items: Array<Item> = []
  private head = 0
  private inboxBytes = 0
  private waiter: Resume<Chunk.Chunk<Message>, Option.Option<ProtocolError>> | undefined = undefined
  private consumer = false
  /** A batch was handed out and the consumer has not asked for the next one yet. */
  private batchOut = false
  private paused = false
  /** `run`: the callback, the context its Effects run in, and those of them still running. */
  private callback: ((m: Message) => unknown) | undefined = undefined
  private runContext: Context.Context<never> | undefined = undefined
  private running = 0
  private runningBytes = 0
  private runFailed = false

  // writer
  private flushQueued = false
  private inReader = false
  private drainWaiters: Array<() => void> | undefined = undefined
  private pongWaiters: Array<Resume<number, never>> | undefined = undefined
  private pingSentAt = 0
  private transportClosed = false

  // Deadlines, checked by the server's timer fiber (no timer or fiber per idle connection).
  /** Last data message either way (idle timeout). */
  lastActivity = Date.now()
  /** Last bytes from the peer (keepalive: a live peer needs no ping). */
  lastSeen = this.lastActivity
  /** When our keepalive ping went out; 0 when none is outstanding. */
  pingOutstandingSince = 0
  /** When the close timeout expires; 0 while open. */
  closeDeadline = 0
  /** Told once when the socket is closed (the engine's bookkeeping). */
  owner: { readonly transportClosed: (ws: WsConnection<Data>) => void } | undefined = undefined
  /** The handler's fiber and the connection's span (set by the engine). */
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  span: Tracer.Span | undefined = undefined

  private messagesIn = 0
  private messagesOut = 0

  // Everything below is built on first use: an idle connection holds only the fields above.
  private stream: Stream.Stream<Message, ProtocolError> | undefined = undefined
  private closedD: Deferred.Deferred<CloseInfo, ProtocolError> | undefined = undefined
  private transportD: Deferred.Deferred<void> | undefined = undefined
  /** How the connection ended, once it has. */
  private ended: Exit.Exit<CloseInfo, ProtocolError> | undefined = undefined
  /** `run` callers waiting for the end (no Deferred: an idle `run` keeps one closure). */
  private endWaiters: Array<Resume<void, ProtocolError>> | undefined = undefined
  private boundRun: WebSocket<Data>["run"] | undefined = undefined
  private boundSend: WebSocket<Data>["send"] | undefined = undefined
  private boundUnsafeSend: WebSocket<Data>["unsafeSend"] | undefined = undefined
  private boundPing: WebSocket<Data>["ping"] | undefined = undefined
  private boundClose: WebSocket<Data>["close"] | undefined = undefined

  constructor(
    readonly socket: Socket,
    readonly core: Connection,
    readonly options: Resolved,
    readonly request: RequestInfo,
    readonly protocol: string | undefined,
    readonly extensions: string | undefined,
    /** The permessage-deflate parameters agreed, if any (what `extensions` says, parsed). */
    readonly deflate: PerMessageDeflateParams | undefined,
    readonly data: Data
  ) {
    // One set of listener functions for every connection; they find theirs on the socket.
    ;(socket as SocketWithConnection)[CONNECTION] = this as WsConnection<any>
    socket.on("data", onSocketData)
    socket.on("end", onSocketEnd)
    socket.on("close", onSocketClose)
    socket.on("drain", onSocketDrain)
    // errors (ECONNRESET, ...) are followed by 'close'; the cause shows as an abnormal closure
    if (socket.listenerCount("error") === 0) socket.on("error", noop)
  }

  /** Completes with how the connection ended (made on first use). */
  get closedDeferred(): Deferred.Deferred<CloseInfo, ProtocolError> {
    if (this.closedD === undefined) {
      this.closedD = Deferred.unsafeMake(FiberId.none)
      if (this.ended !== undefined) Deferred.unsafeDone(this.closedD, this.ended)
    }
    return this.closedD
  }

  /** Completes when the TCP socket is closed (made on first use). */
  get transportDeferred(): Deferred.Deferred<void> {
    if (this.transportD === undefined) {
      this.transportD = Deferred.unsafeMake(FiberId.none)
      if (this.transportClosed) Deferred.unsafeDone(this.transportD, Exit.void)
    }
    return this.transportD
  }

  // ------------------------------------------------------------------ reader

  onData(chunk: Buffer): void {
    const received = this.messagesIn
    this.lastSeen = Date.now()
    this.inReader = true
    const core = this.core
    core.receiveData(chunk)
    const events = core.eventsReceived()
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      switch (e._tag) {
        case "Text":
        case "Binary":
          this.messagesIn++
          this.deliver(e.data)
          break
        case "Pong":
          this.onPong()
          break
        case "Close":
          if (this.closeInitiator === undefined) this.closeInitiator = "remote"
          break
        case "Ping":
          break
      }
    }
    Metrics.bytesReceived.unsafeUpdate(chunk.length, NO_TAGS)
    if (this.messagesIn !== received) {
      this.lastActivity = this.lastSeen
      Metrics.messagesReceived.unsafeUpdate(this.messagesIn - received, NO_TAGS)
    }
    if (core.failure !== undefined && this.closeInitiator === undefined) this.closeInitiator = "local"
    if (core.closeExpected) this.onClosing()
    this.inReader = false
    this.flush()
    if (this.inboxBytes > this.options.inboxHighWaterMark && !this.paused) {
      this.paused = true
      this.socket.pause()
      Metrics.backpressureEvents.unsafeUpdate(1, NO_TAGS)
    }
    this.wake()
  }

  private deliver(m: Message): void {
    const cb = this.callback
    if (cb !== undefined) {
      const r = cb(m)
      if (r !== undefined && Effect.isEffect(r)) this.runEffect(r, messageSize(m))
      return
    }
    this.items.push(m)
    this.inboxBytes += messageSize(m)
  }

  private onClosing(): void {
    const core = this.core
    if (core.closeOwed) {
      if (!this.items.includes(END, this.head)) this.items.push(END)
      // Reply at once unless a consumer still has messages from before the Close to answer.
      if (!this.consumer || (this.head === this.items.length - 1 && !this.batchOut)) this.replyClose()
    } else if (this.items[this.items.length - 1] !== END) {
      this.items.push(END)
    }
    if (this.closeDeadline === 0) this.closeDeadline = Date.now() + this.options.closeTimeout
  }

  /** @internal the next-tick flush. */
  flushTick(): void {
    this.flushQueued = false
    this.flush()
  }

  onEnd(): void {
    this.core.receiveEof()
    this.onClosing()
    this.flush()
    this.wake()
  }

  onClose(): void {
    if (this.transportClosed) return
    this.transportClosed = true
    this.dropHeld()
    const core = this.core
    if (!core.eofReceived) core.receiveEof()
    if (this.items[this.items.length - 1] !== END) this.items.push(END)
    const failure = core.failure
    const received = core.closeReceived
    const sent = core.closeSent
    const wasClean = core.closeHandshakeDone
    const last = received ?? (wasClean ? sent : undefined)
    const info: CloseInfo = {
      code: failure !== undefined ? failure.closeCode : last?.code ?? 1006,
      reason: failure !== undefined ? failure.reason : last?.reason ?? "",
      wasClean,
      initiatedBy: this.closeInitiator ?? (sent !== undefined ? "local" : "transport")
    }
    Metrics.closeCodes.unsafeUpdate(String(info.code), NO_TAGS)
    core.dispose()
    const ended = this.ended = failure !== undefined && !this.localFailure ? Exit.fail(failure) : Exit.succeed(info)
    if (this.closedD !== undefined) Deferred.unsafeDone(this.closedD, ended)
    if (this.transportD !== undefined) Deferred.unsafeDone(this.transportD, Exit.void)
    const endWaiters = this.endWaiters
    if (endWaiters !== undefined) {
      this.endWaiters = undefined
      const result = Exit.asVoid(ended)
      for (const w of endWaiters) w(result)
    }
    this.owner?.transportClosed(this)
    this.onDrain()
    const pongs = this.pongWaiters
    if (pongs !== undefined) {
      this.pongWaiters = undefined
      for (const w of pongs) w(Effect.interrupt as any)
    }
    this.wake()
  }

  /** Who sent the first Close frame. */
  private closeInitiator: "local" | "remote" | undefined = undefined
  /** True when the failure is ours (hard limit, keepalive), not the peer's. */
  private localFailure = false

  // ------------------------------------------------------------------ inbox

  private wake(): void {
    const w = this.waiter
    if (w !== undefined && (this.head < this.items.length)) {
      this.waiter = undefined
      w(Effect.suspend(() => this.take()))
    }
  }

  private take(): Effect.Effect<Chunk.Chunk<Message>, Option.Option<ProtocolError>> {
    this.consumer = true
    this.batchOut = false
    const items = this.items
    const start = this.head
    if (start < items.length) {
      if (items[start] === END) return this.reachEnd()
      let end = start
      let bytes = 0
      while (end < items.length && items[end] !== END) {
        const m = items[end] as Message
        bytes += messageSize(m)
        end++
      }
      const batch = items.slice(start, end) as Array<Message>
      if (end === items.length) {
        this.items = []
        this.head = 0
      } else {
        this.head = end
      }
      this.inboxBytes -= bytes
      this.batchOut = true
      if (this.paused && this.inboxBytes <= this.options.inboxHighWaterMark >>> 1 && !this.transportClosed) {
        this.paused = false
        this.socket.resume()
      }
      return Effect.succeed(Chunk.unsafeFromArray(batch))
    }
    return Effect.async<Chunk.Chunk<Message>, Option.Option<ProtocolError>>((resume) => {
      this.waiter = resume
      return Effect.sync(() => {
        if (this.waiter === resume) this.waiter = undefined
      })
    })
  }

  /** The consumer handled everything before the Close: send the owed Close reply now. */
  private reachEnd(): Effect.Effect<never, Option.Option<ProtocolError>> {
    if (this.core.closeOwed) {
      this.replyClose()
      this.flush()
    }
    const failure = this.core.failure
    return Effect.fail(failure !== undefined && !this.localFailure ? Option.some(failure) : Option.none())
  }

  /** Built on first use: a connection handled with `run` never pays for a Stream. */
  get messages(): Stream.Stream<Message, ProtocolError> {
    return this.stream ??= Stream.repeatEffectChunkOption(Effect.suspend(() => this.take()))
  }

  // The handle's functions, each bound to this connection on first use (so that `ws.send` can
  // be passed around detached) rather than as one closure per function per connection.
  get run(): WebSocket<Data>["run"] {
    return this.boundRun ??= (onMessage) => this.runWith(onMessage)
  }
  get send(): WebSocket<Data>["send"] {
    return this.boundSend ??= (data, options) => this.sendEffect(data, options)
  }
  get sendText(): WebSocket<Data>["sendText"] {
    return this.send
  }
  get sendBinary(): WebSocket<Data>["sendBinary"] {
    return this.send
  }
  get unsafeSend(): WebSocket<Data>["unsafeSend"] {
    return this.boundUnsafeSend ??= (data, options) => this.sendNow(data, options)
  }
  get ping(): WebSocket<Data>["ping"] {
    return this.boundPing ??= (data) => this.pingEffect(data)
  }
  get close(): WebSocket<Data>["close"] {
    return this.boundClose ??= (code, reason) => this.closeEffect(code, reason)
  }
  get closed(): Effect.Effect<CloseInfo, ProtocolError> {
    return Deferred.await(this.closedDeferred)
  }
  get bufferedAmount(): Effect.Effect<number> {
    return Effect.sync(() => this.bufferedBytes())
  }

  runWith<_, E, R>(
    onMessage: (message: Message) => Effect.Effect<_, E, R> | void
  ): Effect.Effect<void, ProtocolError | E, R> {
    return Effect.withFiberRuntime<void, ProtocolError | E, R>((fiber) => {
      this.runContext = fiber.currentContext
      // Messages already in the inbox go first, in order.
      const items = this.items
      const pending = items.slice(this.head).filter((m): m is Message => m !== END)
      const ended = items.includes(END, this.head)
      items.length = 0
      if (ended) items.push(END)
      this.head = 0
      this.inboxBytes = 0
      this.consumer = true
      this.callback = onMessage
      if (this.paused && !this.transportClosed) {
        this.paused = false
        this.socket.resume()
      }
      for (const m of pending) this.deliver(m)
      if (this.core.closeOwed) {
        this.replyClose()
        this.flush()
      }
      return this.awaitEnd()
    })
  }

  /**
   * Runs an Effect the `run` callback returned, concurrently with the others; while the ones
   * still running hold more than the inbox high-water mark (or 1,024 of them run), reading is
   * paused. The first failure ends the connection (1011).
   */
  private runEffect(effect: Effect.Effect<unknown, unknown, any>, size: number): void {
    this.running++
    this.runningBytes += size
    if (!this.paused && (this.runningBytes > this.options.inboxHighWaterMark || this.running > 1024)) {
      this.paused = true
      this.socket.pause()
      Metrics.backpressureEvents.unsafeUpdate(1, NO_TAGS)
    }
    Effect.runFork(Effect.provide(effect, this.runContext!) as Effect.Effect<unknown, unknown>).addObserver((exit) => {
      this.running--
      this.runningBytes -= size
      if (
        this.paused && !this.transportClosed && this.runningBytes <= this.options.inboxHighWaterMark >>> 1 &&
        this.running <= 512
      ) {
        this.paused = false
        this.socket.resume()
      }
      if (exit._tag === "Failure" && !this.runFailed && !Cause.isInterruptedOnly(exit.cause)) {
        this.runFailed = true
        this.terminate(new InternalError({ reason: "handler failed", cause: exit.cause }))
      }
    })
  }

  /**
   * Completes when the connection has ended (fails with the peer's protocol error). Not
   * interruptible from outside the fiber's own interruption: the waiter stays until the end.
   */
  private awaitEnd(): Effect.Effect<void, ProtocolError> {
    const ended = this.ended
    if (ended !== undefined) return Exit.asVoid(ended)
    return Effect.async<void, ProtocolError>((resume) => {
      // a literal of one: an idle connection keeps no spare capacity
      if (this.endWaiters === undefined) this.endWaiters = [resume]
      else this.endWaiters.push(resume)
    })
  }

  // ------------------------------------------------------------------ writer

  /** Queues a message; false when the connection is not open. */
  sendNow(data: Message, options?: SendOptions): boolean {
    if (this.transportClosed) return false
    const compress = options?.compress ?? true
    if (this.held !== undefined) return this.hold(data, compress)
    const core = this.core
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

  // A message compressed off the event loop holds back everything this connection sends after
  // it (messages, prebuilt frames, our Close and the owed Close) until it is queued; pings and
  // pongs may go first (control frames may precede a message not yet started).
  private held: Array<Held> | undefined = undefined
  /** Bytes of the messages held back and of the one being compressed (for backpressure). */
  private heldBytes = 0
  /** A Close is among the held items: no message may be sent after it. */
  private closeHeld = false

  private hold(data: Message, compress: boolean): boolean {
    if (this.closeHeld || this.core.state !== "OPEN") return false
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
    if (this.core.sendCompressed(text, payload) === undefined) this.messagesOut++
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
          this.sendNow(item.data, { compress: item.compress })
          break
        case "frame":
          this.heldBytes -= item.frame.byteLength
          this.writePrebuilt(item.frame)
          break
        case "close":
          this.closeHeld = false
          this.startClose(item.code, item.reason)
          break
        case "owed":
          this.replyClose()
          break
      }
    }
    this.flush()
    if (this.drainWaiters !== undefined && this.bufferedBytes() <= this.options.highWaterMark) this.onDrain()
  }

  /** Drops what is held (the connection failed or closed): nothing more will be written. */
  private dropHeld(): void {
    this.held = undefined
    this.heldBytes = 0
    this.closeHeld = false
  }

  /** Sends the Close owed to the peer, after whatever is held. */
  private replyClose(): void {
    const held = this.held
    if (held === undefined) this.core.sendOwedClose()
    else if (!held.some((h) => h.kind === "owed")) held.push({ kind: "owed" })
  }

  /**
   * Writes a complete data frame built elsewhere (broadcast), after everything queued before
   * it; dropped once our Close is queued (nothing may follow it).
   */
  writePrebuilt(frame: Uint8Array): void {
    if (this.transportClosed || this.closeHeld || this.core.state !== "OPEN") return
    const held = this.held
    if (held !== undefined) {
      held.push({ kind: "frame", frame })
      this.heldBytes += frame.byteLength
      return
    }
    this.flush()
    this.socket.write(frame)
    this.lastActivity = Date.now()
  }

  /** Bytes waiting: held back, queued in the core, and in the socket's buffer. */
  bufferedBytes(): number {
    return this.heldBytes + this.core.bufferedAmount + this.socket.writableLength
  }

  sendEffect(data: Message, options?: SendOptions): Effect.Effect<void, WebSocketClosedError> {
    return Effect.suspend(() => {
      if (!this.sendNow(data, options)) return Effect.fail(CLOSED)
      return this.backpressure()
    })
  }

  private backpressure(): Effect.Effect<void> {
    if (this.bufferedBytes() <= this.options.highWaterMark) return Effect.void
    this.flush()
    if (this.heldBytes + this.socket.writableLength <= this.options.highWaterMark || this.transportClosed) {
      return Effect.void
    }
    Metrics.backpressureEvents.unsafeUpdate(1, NO_TAGS)
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

  onDrain(): void {
    const ws = this.drainWaiters
    if (ws === undefined || this.heldBytes > this.options.highWaterMark && !this.transportClosed) return
    this.drainWaiters = undefined
    for (const w of ws) w()
  }

  private scheduleFlush(): void {
    if (this.inReader || this.flushQueued) return
    this.flushQueued = true
    process.nextTick(flushTick, this)
  }

  /** Writes everything the core produced as one batch (one writev), then closes TCP if due. */
  flush(): void {
    if (this.transportClosed) return
    const core = this.core
    const out = core.dataToSend()
    const socket = this.socket
    if (out.length === 1) {
      socket.write(out[0]!)
    } else if (out.length > 1) {
      socket.cork()
      for (let i = 0; i < out.length; i++) socket.write(out[i]!)
      socket.uncork()
    }
    if (out.length > 0) {
      let n = 0
      for (let i = 0; i < out.length; i++) n += out[i]!.byteLength
      Metrics.bytesSent.unsafeUpdate(n, NO_TAGS)
      if (this.messagesOut > 0) {
        Metrics.messagesSent.unsafeUpdate(this.messagesOut, NO_TAGS)
        this.messagesOut = 0
        this.lastActivity = Date.now()
      }
    }
    if (core.closeTransport) {
      if (!socket.writableEnded) socket.end()
      if (this.closeDeadline === 0) this.closeDeadline = Date.now() + this.options.closeTimeout
    } else if (socket.writableLength > this.options.maxBufferedBytes) {
      this.terminate(new PolicyViolationError({ reason: "send buffer over limit" }))
    }
  }

  /** Fails the connection from our side (hard limit, handler failure, keepalive). */
  terminate(error: ProtocolError): void {
    if (this.transportClosed) return
    this.localFailure = true
    if (this.closeInitiator === undefined) this.closeInitiator = "local"
    this.dropHeld()
    this.core.fail(error)
    this.core.sendOwedClose()
    this.flush()
    this.onClosing()
  }

  /** Starts the closing handshake with our code; no-op when closing already. */
  startClose(code: number, reason: string): InvalidSendError | undefined {
    if (this.transportClosed) return undefined
    const core = this.core
    if (core.state !== "OPEN" && !core.closeOwed) return undefined
    const held = this.held
    if (held !== undefined) {
      if (this.closeHeld) return undefined
      const err = checkClose(code, reason)
      if (err !== undefined) return err
      if (this.closeInitiator === undefined) this.closeInitiator = "local"
      this.closeHeld = true
      held.push({ kind: "close", code, reason })
      return undefined
    }
    if (this.closeInitiator === undefined) this.closeInitiator = "local"
    const err = core.sendClose(code, reason)
    if (err !== undefined) return err
    this.flush()
    this.onClosing()
    return undefined
  }

  /** Sends an owed Close (if any) and destroys the socket: the close timeout expired. */
  destroy(): void {
    if (this.transportClosed) return
    this.dropHeld()
    this.core.sendOwedClose()
    this.flush()
    this.socket.destroy()
  }

  // ------------------------------------------------------------------ ping

  private onPong(): void {
    const now = Date.now()
    this.pingOutstandingSince = 0
    const ws = this.pongWaiters
    if (ws === undefined) return
    this.pongWaiters = undefined
    const rtt = now - this.pingSentAt
    Metrics.pingRoundTrip.unsafeUpdate(rtt, NO_TAGS)
    for (const w of ws) w(Effect.succeed(rtt))
  }

  /**
   * Checks this connection's deadlines (called by the server's timer fiber): close timeout,
   * keepalive ping and its timeout, idle timeout.
   */
  checkDeadlines(now: number): void {
    if (this.transportClosed) return
    const o = this.options
    if (this.closeDeadline !== 0) {
      if (now >= this.closeDeadline) this.destroy()
      return
    }
    if (o.keepaliveInterval > 0) {
      if (this.pingOutstandingSince !== 0) {
        if (now - this.pingOutstandingSince >= o.keepaliveTimeout) {
          // A half-open peer: nothing will reach it, so no Close; the connection ends as 1006.
          this.destroy()
          return
        }
      } else if (now - this.lastSeen >= o.keepaliveInterval && this.core.sendPing() === undefined) {
        this.pingOutstandingSince = this.pingSentAt = now
        this.flush()
      }
    }
    if (o.idleTimeout > 0 && now - this.lastActivity >= o.idleTimeout) this.startClose(1001, "idle timeout")
  }

  pingEffect(data?: Uint8Array): Effect.Effect<number, WebSocketClosedError | InvalidSendError> {
    return Effect.suspend(() => {
      if (this.transportClosed) return Effect.fail(CLOSED)
      const err = this.core.sendPing(data)
      if (err !== undefined) {
        return Effect.fail(err.reason.startsWith("connection is") ? CLOSED : err)
      }
      this.pingSentAt = Date.now()
      if (this.pingOutstandingSince === 0) this.pingOutstandingSince = this.pingSentAt
      this.scheduleFlush()
      return Effect.async<number, never>((resume) => {
        ;(this.pongWaiters ??= []).push(resume)
      }).pipe(Effect.catchAllCause(() => Effect.fail(CLOSED)))
    })
  }

  // ------------------------------------------------------------------ close

  closeEffect(code = 1000, reason = ""): Effect.Effect<CloseInfo, InvalidSendError> {
    return Effect.suspend(() => {
      const err = this.startClose(code, reason)
      if (err !== undefined) return Effect.fail(err)
      return Deferred.await(this.closedDeferred).pipe(
        Effect.catchAll((e) =>
          Effect.succeed<CloseInfo>({ code: e.closeCode, reason: e.reason, wasClean: false, initiatedBy: "remote" })
        )
      )
    })
  }

  /** For the shutdown path and tests. */
  get isTransportClosed(): boolean {
    return this.transportClosed
  }
}

export { InvalidSendError }

/** What a connection holds back while a large message is compressed off the event loop. */
type Held =
  | { readonly kind: "message"; readonly data: Message; readonly compress: boolean }
  | { readonly kind: "frame"; readonly frame: Uint8Array }
  | { readonly kind: "close"; readonly code: number; readonly reason: string }
  | { readonly kind: "owed" }

const CONNECTION: unique symbol = Symbol("effect-websocket/connection")
interface SocketWithConnection extends Socket {
  [CONNECTION]: WsConnection<unknown>
}
const owner = (socket: Socket): WsConnection<unknown> => (socket as SocketWithConnection)[CONNECTION]
function onSocketData(this: Socket, chunk: Buffer): void {
  owner(this).onData(chunk)
}
function onSocketEnd(this: Socket): void {
  owner(this).onEnd()
}
function onSocketClose(this: Socket): void {
  owner(this).onClose()
}
function onSocketDrain(this: Socket): void {
  owner(this).onDrain()
}
const noop = () => {}
const flushTick = (ws: WsConnection<unknown>): void => {
  ws.flushTick()
}
