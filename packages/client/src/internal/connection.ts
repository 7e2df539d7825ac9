import type { Connection } from "@effect-websocket/protocol/Connection"
import type { PerMessageDeflateParams } from "@effect-websocket/protocol/PerMessageDeflate"
import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import { InternalError, InvalidSendError, PolicyViolationError } from "@effect-websocket/protocol/Errors"
import { WebSocketClosedError } from "@effect-websocket/server/Errors"
import type { CloseInfo, Message, RequestInfo, SendOptions, WebSocket } from "@effect-websocket/server/WebSocket"
import { Cause, Chunk, Deferred, Effect, Exit, FiberId, Option, Runtime, Sink, Stream } from "effect"
import type { Context, Fiber } from "effect"
import type { Socket } from "node:net"
import type { ResolvedOptions } from "./options.js"

/** Marks the end of the inbox: the peer's Close, a failure, or the end of the transport. */
const END: unique symbol = Symbol("end")
type Item = Message | typeof END
type Resume<A, E> = (effect: Effect.Effect<A, E>) => void

const CLOSED = new WebSocketClosedError({ reason: "connection is not open" })
const messageSize = (m: Message): number => (typeof m === "string" ? m.length : m.byteLength)
let nextId = 1

/** The server's answer to the upgrade. */
export interface ResponseInfo {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
}

/**
 * The I/O glue of one client connection, the mirror of the server's: socket reads feed the
 * sans-I/O core synchronously (one pass per read, no Effect per frame); messages go to an
 * inbox drained in batches by `messages`, or straight to a `run` callback; sends append to
 * the core's output, written once per read or per tick with cork/uncork. Timers are plain
 * Node timers owned by the connection: the keepalive check and, once closing, the close
 * timeout that destroys the socket.
 */
export class ClientConnection implements WebSocket<undefined> {
  readonly id = nextId++
  readonly data = undefined

  // inbox
  private items: Array<Item> = []
  private head = 0
  private inboxBytes = 0
  private waiter: Resume<Chunk.Chunk<Message>, Option.Option<ProtocolError>> | undefined = undefined
  private consumer = false
  private batchOut = false
  private paused = false
  private callback: ((m: Message) => unknown) | undefined = undefined
  /** The fiber that called `run`, and a runtime with its context and FiberRefs, made on first use. */
  private runCaller: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  private runRuntime: Runtime.Runtime<never> | undefined = undefined
  private running = 0
  /** The Effects `run` callbacks returned that are still running: interrupted when the connection ends. */
  private runFibers: Set<Fiber.RuntimeFiber<unknown, unknown>> | undefined = undefined
  private runFailed = false

  // writer
  private flushQueued = false
  private inReader = false
  private drainWaiters: Array<() => void> = []
  private pongWaiters: Array<Resume<number, never>> = []
  private pingSentAt = 0
  private transportClosed = false
  private closeInitiator: "local" | "remote" | undefined = undefined
  private localFailure = false

  // timers
  private lastSeen = Date.now()
  private lastActivity = this.lastSeen
  private pingOutstandingSince = 0
  private keepalive: ReturnType<typeof setInterval> | undefined = undefined
  private closeTimer: ReturnType<typeof setTimeout> | undefined = undefined

  private readonly closedD: Deferred.Deferred<CloseInfo, ProtocolError> = Deferred.unsafeMake(FiberId.none)
  private readonly transportD: Deferred.Deferred<void> = Deferred.unsafeMake(FiberId.none)
  private ended: Exit.Exit<CloseInfo, ProtocolError> | undefined = undefined
  private endWaiters: Array<Resume<void, ProtocolError>> = []
  readonly messages: Stream.Stream<Message, ProtocolError>

  constructor(
    readonly socket: Socket,
    readonly core: Connection,
    readonly options: ResolvedOptions,
    readonly request: RequestInfo,
    readonly response: ResponseInfo,
    readonly protocol: string | undefined,
    readonly extensions: string | undefined,
    /** The permessage-deflate parameters agreed, if any (what `extensions` says, parsed). */
    readonly deflate: PerMessageDeflateParams | undefined = undefined
  ) {
    this.messages = Stream.repeatEffectChunkOption(Effect.suspend(() => this.take()))
    socket.on("data", (chunk: Buffer) => this.onData(chunk))
    socket.on("end", () => this.onEnd())
    socket.on("close", () => this.onClose())
    socket.on("drain", () => this.onDrain())
    socket.on("error", () => {}) // followed by 'close'; shows as an abnormal closure
    const o = options
    const period = Math.min(
      o.keepaliveInterval > 0 ? o.keepaliveInterval : Infinity,
      o.keepaliveInterval > 0 ? o.keepaliveTimeout : Infinity,
      o.idleTimeout > 0 ? o.idleTimeout : Infinity
    )
    if (period !== Infinity) {
      this.keepalive = setInterval(() => this.checkDeadlines(Date.now()), Math.max(10, Math.floor(period / 4)))
      this.keepalive.unref()
    }
  }

  // ------------------------------------------------------------------ reader

  onData(chunk: Buffer): void {
    this.lastSeen = Date.now()
    this.inReader = true
    const core = this.core
    core.receiveData(chunk)
    const events = core.eventsReceived()
    let messages = false
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      switch (e._tag) {
        case "Text":
        case "Binary":
          messages = true
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
    if (messages) this.lastActivity = this.lastSeen
    if (core.failure !== undefined && this.closeInitiator === undefined) this.closeInitiator = "local"
    if (core.closeExpected) this.onClosing()
    this.inReader = false
    this.flush()
    if (this.inboxBytes > this.options.inboxHighWaterMark && !this.paused) {
      this.paused = true
      this.socket.pause()
    }
    this.wake()
  }

  private deliver(m: Message): void {
    const cb = this.callback
    if (cb !== undefined) {
      // the connection is failing (1011): what came after the failure is not handled
      if (this.runFailed) return
      let r: unknown
      try {
        r = cb(m)
      } catch (defect) {
        // thrown in the socket's callback: it fails the connection as a failing Effect would
        this.failRun(Cause.die(defect))
        return
      }
      if (r !== undefined && Effect.isEffect(r)) this.runEffect(r as Effect.Effect<unknown, unknown, any>)
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
      if (!this.consumer || (this.head === this.items.length - 1 && !this.batchOut)) core.sendOwedClose()
    } else if (this.items[this.items.length - 1] !== END) {
      this.items.push(END)
    }
    if (this.closeTimer === undefined && !this.transportClosed) {
      this.closeTimer = setTimeout(() => this.destroy(), this.options.closeTimeout)
    }
  }

  private onEnd(): void {
    this.core.receiveEof()
    this.onClosing()
    this.flush()
    this.wake()
  }

  private onClose(): void {
    if (this.transportClosed) return
    this.transportClosed = true
    const fibers = this.runFibers
    if (fibers !== undefined) for (const f of fibers) f.unsafeInterruptAsFork(FiberId.none)
    if (this.keepalive !== undefined) clearInterval(this.keepalive)
    if (this.closeTimer !== undefined) clearTimeout(this.closeTimer)
    const core = this.core
    if (!core.eofReceived) core.receiveEof()
    if (this.items[this.items.length - 1] !== END) this.items.push(END)
    const failure = core.failure
    const outcome = core.closeOutcome()
    const info: CloseInfo = {
      code: outcome.code,
      reason: outcome.reason,
      wasClean: outcome.wasClean,
      initiatedBy: this.closeInitiator ?? (core.closeSent !== undefined ? "local" : "transport")
    }
    core.dispose()
    const ended = this.ended = failure !== undefined && !this.localFailure ? Exit.fail(failure) : Exit.succeed(info)
    Deferred.unsafeDone(this.closedD, ended)
    Deferred.unsafeDone(this.transportD, Exit.void)
    const endWaiters = this.endWaiters
    this.endWaiters = []
    const result = Exit.asVoid(ended)
    for (const w of endWaiters) w(result)
    this.onDrain()
    const pongs = this.pongWaiters
    this.pongWaiters = []
    for (const w of pongs) w(Effect.interrupt as any)
    this.wake()
  }

  // ------------------------------------------------------------------ inbox

  private wake(): void {
    const w = this.waiter
    if (w !== undefined && this.head < this.items.length) {
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
        bytes += messageSize(items[end] as Message)
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

  private reachEnd(): Effect.Effect<never, Option.Option<ProtocolError>> {
    if (this.core.closeOwed) {
      this.core.sendOwedClose()
      this.flush()
    }
    const failure = this.core.failure
    return Effect.fail(failure !== undefined && !this.localFailure ? Option.some(failure) : Option.none())
  }

  readonly run: WebSocket<undefined>["run"] = (onMessage) =>
    Effect.withFiberRuntime((fiber) => {
      this.runCaller = fiber as Fiber.RuntimeFiber<unknown, unknown>
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
        this.core.sendOwedClose()
        this.flush()
      }
      return this.awaitEnd()
    })

  private runEffect(effect: Effect.Effect<unknown, unknown, any>): void {
    this.running++
    if (!this.paused && this.running > 1024) {
      this.paused = true
      this.socket.pause()
    }
    const fiber = Runtime.runFork(this.callerRuntime())(effect as Effect.Effect<unknown, unknown>)
    const fibers = this.runFibers ??= new Set()
    fibers.add(fiber)
    fiber.addObserver((exit) => {
      fibers.delete(fiber)
      this.running--
      if (this.paused && !this.transportClosed && this.running <= 512) {
        this.paused = false
        this.socket.resume()
      }
      if (exit._tag === "Failure" && !Cause.isInterruptedOnly(exit.cause)) this.failRun(exit.cause)
    })
  }

  /** A `run` callback threw or an Effect it returned failed: close with 1011 (once) and log the cause. */
  private failRun(cause: Cause.Cause<unknown>): void {
    if (this.runFailed) return
    this.runFailed = true
    this.terminate(new InternalError({ reason: "handler failed", cause }))
    Runtime.runFork(this.callerRuntime())(Effect.logError("WebSocket run callback failed", cause))
  }

  /**
   * The runtime around `run` (its services, logger, log level, tracer and annotations): the Effects
   * a callback returns, and the log of its failure, run with it.
   */
  private callerRuntime(): Runtime.Runtime<never> {
    const caller = this.runCaller!
    return this.runRuntime ??= Runtime.make({
      context: caller.currentContext as Context.Context<never>,
      runtimeFlags: Runtime.defaultRuntimeFlags,
      fiberRefs: caller.getFiberRefs()
    })
  }

  private awaitEnd(): Effect.Effect<void, ProtocolError> {
    const ended = this.ended
    if (ended !== undefined) return Exit.asVoid(ended)
    return Effect.async<void, ProtocolError>((resume) => {
      this.endWaiters.push(resume)
    })
  }

  // ------------------------------------------------------------------ writer

  readonly unsafeSend: WebSocket<undefined>["unsafeSend"] = (data, options) => this.sendNow(data, options)

  private sendNow(data: Message, options?: SendOptions): boolean {
    if (this.transportClosed) return false
    const compress = options?.compress ?? true
    const core = this.core
    const err = typeof data === "string" ? core.sendText(data, compress) : core.sendBinary(data, compress)
    if (err !== undefined) return false
    this.lastActivity = Date.now()
    this.scheduleFlush()
    return true
  }

  readonly send: WebSocket<undefined>["send"] = (data, options) =>
    Effect.suspend(() => {
      if (!this.sendNow(data, options)) return Effect.fail(CLOSED)
      return this.backpressure()
    })
  readonly sendText: WebSocket<undefined>["sendText"] = this.send
  readonly sendBinary: WebSocket<undefined>["sendBinary"] = this.send
  /** Each chunk queued whole, one flush, then the high-water mark (as the server's `sink`). */
  readonly sink: WebSocket<undefined>["sink"] = Sink.forEachChunk((chunk: Chunk.Chunk<Message>) =>
    Effect.suspend(() => {
      for (const m of chunk) if (!this.sendNow(m)) return Effect.fail(CLOSED)
      return this.backpressure()
    })
  )

  bufferedBytes(): number {
    return this.core.bufferedAmount + this.socket.writableLength
  }

  get bufferedAmount(): Effect.Effect<number> {
    return Effect.sync(() => this.bufferedBytes())
  }

  private backpressure(): Effect.Effect<void> {
    if (this.bufferedBytes() <= this.options.highWaterMark) return Effect.void
    this.flush()
    if (this.socket.writableLength <= this.options.highWaterMark || this.transportClosed) return Effect.void
    return Effect.async<void>((resume) => {
      const w = () => resume(Effect.void)
      this.drainWaiters.push(w)
      return Effect.sync(() => {
        const i = this.drainWaiters.indexOf(w)
        if (i >= 0) this.drainWaiters.splice(i, 1)
      })
    })
  }

  private onDrain(): void {
    const ws = this.drainWaiters
    if (ws.length === 0) return
    this.drainWaiters = []
    for (const w of ws) w()
  }

  private scheduleFlush(): void {
    if (this.inReader || this.flushQueued) return
    this.flushQueued = true
    process.nextTick(() => {
      this.flushQueued = false
      this.flush()
    })
  }

  /** Writes everything the core produced as one batch (one writev), then closes TCP if due. */
  private flush(): void {
    if (this.transportClosed) return
    const out = this.core.dataToSend()
    const socket = this.socket
    if (out.length === 1) {
      socket.write(out[0]!)
    } else if (out.length > 1) {
      socket.cork()
      for (let i = 0; i < out.length; i++) socket.write(out[i]!)
      socket.uncork()
    }
    if (this.core.closeTransport) {
      if (!socket.writableEnded) socket.end()
      if (this.closeTimer === undefined) this.closeTimer = setTimeout(() => this.destroy(), this.options.closeTimeout)
    } else if (socket.writableLength > this.options.maxBufferedBytes) {
      this.terminate(new PolicyViolationError({ reason: "send buffer over limit" }))
    }
  }

  /** Fails the connection from our side (hard limit, handler failure). */
  private terminate(error: ProtocolError): void {
    if (this.transportClosed) return
    this.localFailure = true
    if (this.closeInitiator === undefined) this.closeInitiator = "local"
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
    this.core.sendOwedClose()
    this.flush()
    this.socket.destroy()
  }

  /** Completes when the TCP socket is closed. */
  get transportClosedEffect(): Effect.Effect<void> {
    return Deferred.await(this.transportD)
  }

  get isTransportClosed(): boolean {
    return this.transportClosed
  }

  // ------------------------------------------------------------------ ping

  private onPong(): void {
    this.pingOutstandingSince = 0
    const ws = this.pongWaiters
    if (ws.length === 0) return
    this.pongWaiters = []
    const rtt = Date.now() - this.pingSentAt
    for (const w of ws) w(Effect.succeed(rtt))
  }

  private checkDeadlines(now: number): void {
    if (this.transportClosed || this.closeTimer !== undefined) return
    const o = this.options
    if (o.keepaliveInterval > 0) {
      if (this.pingOutstandingSince !== 0) {
        if (now - this.pingOutstandingSince >= o.keepaliveTimeout) {
          // a half-open peer: nothing will reach it, so no Close; the connection ends as 1006
          this.socket.destroy()
          return
        }
      } else if (now - this.lastSeen >= o.keepaliveInterval && this.core.sendPing() === undefined) {
        this.pingOutstandingSince = this.pingSentAt = now
        this.flush()
      }
    }
    if (o.idleTimeout > 0 && now - this.lastActivity >= o.idleTimeout) this.startClose(1001, "idle timeout")
  }

  readonly ping: WebSocket<undefined>["ping"] = (data) =>
    Effect.suspend(() => {
      if (this.transportClosed) return Effect.fail(CLOSED)
      const err = this.core.sendPing(data)
      if (err !== undefined) return Effect.fail(err.reason.startsWith("connection is") ? CLOSED : err)
      this.pingSentAt = Date.now()
      if (this.pingOutstandingSince === 0) this.pingOutstandingSince = this.pingSentAt
      this.scheduleFlush()
      return Effect.async<number, never>((resume) => {
        this.pongWaiters.push(resume)
      }).pipe(Effect.catchAllCause(() => Effect.fail(CLOSED)))
    })

  // ------------------------------------------------------------------ close

  readonly close: WebSocket<undefined>["close"] = (code = 1000, reason = "") =>
    Effect.suspend(() => {
      const err = this.startClose(code, reason)
      if (err !== undefined) return Effect.fail(err)
      return Deferred.await(this.closedD).pipe(
        Effect.catchAll((e) =>
          Effect.succeed<CloseInfo>({ code: e.closeCode, reason: e.reason, wasClean: false, initiatedBy: "remote" })
        )
      )
    })

  get closed(): Effect.Effect<CloseInfo, ProtocolError> {
    return Deferred.await(this.closedD)
  }
}

export { InvalidSendError }
