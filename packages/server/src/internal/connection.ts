import type { Connection } from "@effect-websocket/protocol/Connection"
import { isProtocolError } from "@effect-websocket/protocol/Errors"
import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import type { PerMessageDeflateParams, ResolvedPerMessageDeflateOptions } from "@effect-websocket/protocol/PerMessageDeflate"
import {
  Cause,
  Channel,
  Context,
  DefaultServices,
  Deferred,
  Effect,
  Effectable,
  Exit,
  FiberId,
  FiberRef,
  Option,
  Runtime,
  Scope,
  Sink,
  Tracer
} from "effect"
import type { Scheduler } from "effect"
import type { Chunk, Clock, Fiber, Stream } from "effect"
import type { Duplex } from "node:stream"
import {
  InternalError,
  InvalidPayloadError,
  InvalidSendError,
  PolicyViolationError,
  WebSocketClosedError
} from "../Errors.js"
import { MessageDecodeError } from "../MessageSchema.js"
import * as Metrics from "../Metrics.js"
import type { CloseInfo, Message, RequestInfo, SendOptions, WebSocket } from "../WebSocket.js"
import { scopes } from "./fork.js"
import type { Forker } from "./fork.js"
import { Inbox, NO_TAGS } from "./inbox.js"
import type { InboxHost } from "./inbox.js"
import { Lifecycle } from "./lifecycle.js"
import type { CloseTimeouts, LifecycleHost } from "./lifecycle.js"
import type { Resolved } from "./options.js"
import { Outbox } from "./outbox.js"
import type { OutboxHost } from "./outbox.js"
import type { ConnectionPort } from "./port.js"
import { PortId } from "./port.js"

let nextId = 1
const CLOSED = new WebSocketClosedError({ reason: "connection is not open" })

/** What the engine hears from a connection. */
export interface Owner {
  /** The engine's close-timeout fiber. */
  readonly closeTimeouts: CloseTimeouts
  /** Its transport closed. */
  transportClosed(port: ConnectionPort): void
  /** Its Scope closed: the handler ended and its finalizers ran. */
  released(port: ConnectionPort): void
}

/** The options a connection starts with. */
export interface Setup<Data> {
  readonly transport: Duplex
  readonly core: Connection
  readonly options: Resolved
  readonly request: RequestInfo
  readonly protocol: string | undefined
  readonly extensions: string | undefined
  /** The permessage-deflate parameters agreed, if any (what `extensions` says, parsed). */
  readonly deflate: PerMessageDeflateParams | undefined
  readonly data: Data
  readonly owner: Owner
}

/**
 * The reader fiber's scheduler: a resume runs the fiber's next step at once, in the transport
 * callback that resumed it, rather than a microtask later through the shared scheduler. The
 * reader does a bounded amount of work per resume (what one read brought), so it never yields.
 */
const inline: Scheduler.Scheduler = {
  shouldYield: () => false,
  scheduleTask: (task) => task()
}

/** How the reader fiber is forked: on the inline scheduler. */
const READER: Runtime.RunForkOptions = { scheduler: inline }

/**
 * How long the reader fiber waits for the next read before it ends (ms). A read that comes
 * within this of the previous wake-up keeps the reader waiting for the next one (a busy
 * connection is resumed, not forked, per read); a lone read is handled by a reader that ends
 * when it is done, and the engine's deadline sweep ends a reader that has waited this long. An
 * idle connection holds no reader fiber.
 */
export const READER_LINGER = 1000

/** Reader queue markers: the transport's end of input, and its close. */
const EOF: unique symbol = Symbol("eof")
const GONE: unique symbol = Symbol("gone")
type ReadItem = Buffer | typeof EOF | typeof GONE

/** Turns a handler failure into the close code the connection ends with. */
export const closeCodeForHandlerFailure = (cause: Cause.Cause<unknown>): { code: number; reason: string } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure) && failure.value instanceof MessageDecodeError) {
    return { code: 1007, reason: "message does not match the schema" }
  }
  return { code: 1011, reason: "internal error" }
}

/** Effect's built-in tracer: its spans are kept by nobody (no exporter reads them). */
const nativeTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)

/**
 * Whether the connection gets its span: always (`true`), never (`false`), or (`"auto"`) when the
 * fiber's tracer records spans somewhere: a tracer other than Effect's built-in one is installed
 * and tracing is not turned off.
 */
const wantsSpan = (policy: boolean | "auto", fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean =>
  policy === "auto"
    ? fiber.getFiberRef(FiberRef.currentTracerEnabled) &&
      Context.get(fiber.getFiberRef(DefaultServices.currentServices), Tracer.Tracer) !== nativeTracer
    : policy

/**
 * Effect's native tracer builds a span's trace and span ids one character at a time, and V8
 * keeps such a string as a chain of cons strings: ~24 of them, ~0.75 KB, per connection for
 * as long as it is open. Reading a character makes V8 flatten each chain in place.
 */
const flattenIds = (span: Tracer.Span): void => {
  span.traceId.charCodeAt(0)
  span.spanId.charCodeAt(0)
}

/**
 * One connection: the handle its handler gets, and the port the engine and broadcast use.
 *
 * It is a Scoped resource. `start` makes the connection's Scope and forks the connection's
 * fiber with that Scope in its context; the fiber forks the reader fiber, runs the handler,
 * closes with the code the handler's end calls for, waits for the transport to close, and
 * closes the Scope, which runs the handler's finalizers (in reverse order, once)
 * and then releases what the connection holds (its `run` Effects, the core's compression
 * contexts, the transport, its place in the engine's keepalive set).
 *
 * The work is split by concept: the inbox (delivery to a Stream or a `run` callback, flow
 * control), the outbox (frames, hold queue, one write per batch, the writer fiber under
 * backpressure) and the lifecycle (close bookkeeping, deadlines; the close deadline is fired by
 * the engine's close-timeout fiber).
 */
export class WsConnection<Data> implements WebSocket<Data>, ConnectionPort, InboxHost, OutboxHost, LifecycleHost {
  readonly id = nextId++
  readonly transport: Duplex
  readonly core: Connection
  readonly options: Resolved
  readonly request: RequestInfo
  readonly protocol: string | undefined
  readonly extensions: string | undefined
  readonly deflate: PerMessageDeflateParams | undefined
  readonly data: Data
  private readonly owner: Owner
  private readonly inbox: Inbox
  private readonly outbox: Outbox
  private readonly life: Lifecycle

  // the reader fiber: transport events wait here for it, in order
  private pending: Array<ReadItem> | undefined = undefined
  private readerResume: ((e: Effect.Effect<void>) => void) | undefined = undefined
  private readerAlive = false
  /** Set when the connection's fiber starts: from then on a transport event forks the reader if none is alive. */
  private readerOnDemand = false
  /** Whether the reader alive now waits for the next read once it has handled what woke it. */
  private readerLinger = false
  /** When a reader was last forked (ms). */
  private readerWoken = 0

  // the Effect side, set when the connection's fiber starts
  /** The connection's fiber: the handler runs on it. */
  private mainFiber: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  /** A runtime with the connection fiber's context and FiberRefs, made on first use. */
  private runtimeCache: Runtime.Runtime<never> | undefined = undefined
  private scopeRef: Scope.CloseableScope | undefined = undefined
  /** Forks with the runtime the connection's fiber was forked with (the reader, the close-timeout fiber). */
  runFork: ((effect: Effect.Effect<void>, options?: Runtime.RunForkOptions) => Fiber.RuntimeFiber<void>) | undefined =
    undefined
  private readerFiber: Fiber.RuntimeFiber<void> | undefined = undefined
  /** Fibers forked for the connection (close timeout, writer), interrupted when its Scope closes. */
  private forked: Set<Fiber.RuntimeFiber<void>> | undefined = undefined
  handlerRunning = false
  private span: Tracer.Span | undefined = undefined
  private clock: Clock.Clock | undefined = undefined
  /** Waiters for the Scope's close; `true` once it closed. */
  private releaseWaiters: Array<() => void> | true | undefined = undefined

  private messagesIn = 0

  // built on first use: an idle connection holds none of them
  private boundRun: WebSocket<Data>["run"] | undefined = undefined
  private boundSend: WebSocket<Data>["send"] | undefined = undefined
  private boundUnsafeSend: WebSocket<Data>["unsafeSend"] | undefined = undefined
  private boundPing: WebSocket<Data>["ping"] | undefined = undefined
  private boundClose: WebSocket<Data>["close"] | undefined = undefined
  private boundSink: WebSocket<Data>["sink"] | undefined = undefined

  constructor(setup: Setup<Data>, rest: Uint8Array) {
    this.transport = setup.transport
    this.core = setup.core
    this.options = setup.options
    this.request = setup.request
    this.protocol = setup.protocol
    this.extensions = setup.extensions
    this.deflate = setup.deflate
    this.data = setup.data
    this.owner = setup.owner
    this.inbox = new Inbox(this)
    this.outbox = new Outbox(this)
    this.life = new Lifecycle(this)
    if (rest.length > 0) this.pending = [Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength)]
    // One set of listener functions for every connection; they find theirs on the transport.
    const transport = this.transport as TransportWithConnection
    transport[CONNECTION] = this as WsConnection<any>
    transport.on("data", onTransportData)
    transport.on("end", onTransportEnd)
    transport.on("close", onTransportClose)
    transport.on("drain", onTransportDrain)
    // errors (ECONNRESET, ...) are followed by 'close'; the cause shows as an abnormal closure
    if (transport.listenerCount("error") === 0) transport.on("error", noop)
  }

  get [PortId](): ConnectionPort {
    return this
  }

  // ------------------------------------------------------------------ the connection's fiber

  /**
   * Starts the connection's fiber. Its Scope is made first and is in the fiber's context from
   * the start, and the fiber is uninterruptible from its first step to its end but for the
   * handler (`Forker.connection`). The fiber forks the reader fiber when there is something to
   * read and runs the handler (in the connection's span, when it has one). When the handler
   * ends, however (`ended`), the connection closes with the code its end calls for; once the
   * transport has closed too, the Scope is closed on this same fiber: the handler's finalizers
   * run in reverse order, then `release` frees what the connection holds.
   */
  start<E, R>(
    handler: (ws: WebSocket<Data>) => Effect.Effect<unknown, E, R>,
    span: boolean | "auto",
    forker: Forker<Exclude<R, Scope.Scope>>
  ): void {
    this.runFork = forker.run
    const scope = scopes.make()
    this.scopeRef = scope
    forker.connection(
      Effect.withFiberRuntime<unknown, E, Exclude<R, Scope.Scope>>((fiber) => {
        this.mainFiber = fiber
        this.handlerRunning = true
        // a close that began before this fiber ran gets its close deadline now
        if (this.core.closeExpected) this.life.closing()
        // Reading starts; the reader fiber is forked by the first transport event (or now,
        // for the bytes that came with the upgrade request).
        this.readerOnDemand = true
        this.transport.resume()
        if (this.pending !== undefined) this.forkReader()
        return Effect.matchCauseEffect(Effect.interruptible(this.runHandler(handler, wantsSpan(span, fiber))), endOf(this))
      }),
      scope
    )
  }

  private runHandler<E, R>(
    handler: (ws: WebSocket<Data>) => Effect.Effect<unknown, E, R>,
    span: boolean
  ): Effect.Effect<unknown, E, Exclude<R, Scope.Scope>> {
    const run = Effect.suspend(() => handler(this)) as Effect.Effect<unknown, E, Exclude<R, Scope.Scope>>
    if (!span) return run
    // The handler inside the connection's span, the parent of the spans it makes; the span
    // goes into the fiber's context for good rather than through a `provideService` frame (the
    // fiber is the connection's, and it ends with it) and ends when the handler does (`ended`).
    return Effect.flatMap(
      Effect.makeSpan("websocket.connection", {
        attributes: { "websocket.id": this.id, "url.path": this.request.url },
        captureStackTrace: false
      }),
      (s) =>
        Effect.clockWith((clock) => {
          flattenIds(s)
          this.span = s
          this.clock = clock
          return Effect.zipRight(FiberRef.update(FiberRef.currentContext, Context.add(Tracer.ParentSpan, s)), run)
        })
    )
  }

  /**
   * The handler ended (on the connection's fiber, uninterruptibly): close with the code its end
   * calls for, wait for the transport to close (the close deadline bounds that), then close the
   * Scope: the handler's finalizers, then `release`.
   */
  ended(exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    const scope = this.scopeRef!
    this.handlerRunning = false
    const span = this.span
    if (span !== undefined) {
      this.span = undefined
      if (span.status._tag === "Started") {
        span.end(span.status.startTime === BigInt(0) ? BigInt(0) : this.clock!.unsafeCurrentTimeNanos(), exit)
      }
    }
    let failed: Cause.Cause<unknown> | undefined = undefined
    if (Exit.isSuccess(exit)) {
      this.startClose(1000, "")
    } else if (Cause.isInterruptedOnly(exit.cause)) {
      this.startClose(1001, "")
    } else {
      const failure = Cause.failureOption(exit.cause)
      const error = Option.isSome(failure) ? failure.value : undefined
      // The stream's own protocol error, or a send after the peer left: already closing.
      const closing = error !== undefined &&
        (isProtocolError(error) && this.core.failure !== undefined || error instanceof WebSocketClosedError)
      if (!closing) {
        const { code, reason } = closeCodeForHandlerFailure(exit.cause)
        if (code === 1007) {
          this.terminate(new InvalidPayloadError({ reason }))
        } else {
          this.terminate(new InternalError({ reason: "internal error", cause: exit.cause }))
          failed = exit.cause
        }
      }
    }
    this.life.handlerDone()
    // The Scope closes (the handler's finalizers, in reverse order), then what the connection
    // holds is released, whatever the finalizers did; closing a Scope nobody added to costs nothing.
    const close = Effect.zipRight(
      this.inbox.interruptAll(),
      Effect.flatMap(Effect.exit(Scope.close(scope, exit)), (closed) => Effect.zipRight(this.release(), closed))
    )
    const closeAfterTransport = this.life.transportEnded ? close : Effect.zipRight(this.life.transportGone, close)
    return failed !== undefined
      ? Effect.zipRight(Effect.logError("WebSocket handler failed", failed), closeAfterTransport)
      : closeAfterTransport
  }

  /** What the connection holds, released once its Scope has closed (the handler's finalizers ran). */
  private release(): Effect.Effect<void> {
    const reader = this.readerFiber
    // the reader ends by itself when the transport closes; it is interrupted only when alive
    if (reader !== undefined && this.readerAlive) reader.unsafeInterruptAsFork(FiberId.none)
    this.readerAlive = false
    this.readerOnDemand = false
    const forked = this.forked
    if (forked !== undefined) for (const f of forked) f.unsafeInterruptAsFork(FiberId.none)
    this.outbox.dropHeld()
    this.core.dispose()
    if (!this.transport.destroyed) this.transport.destroy()
    this.owner.released(this)
    const waiters = this.releaseWaiters
    this.releaseWaiters = true
    if (waiters !== undefined && waiters !== true) for (const w of waiters) w()
    return this.inbox.interruptAll()
  }

  /** A runtime with the connection fiber's context and FiberRefs (for the fibers it forks). */
  private runtime(): Runtime.Runtime<never> {
    const fiber = this.mainFiber
    if (fiber === undefined) return Runtime.defaultRuntime
    return this.runtimeCache ??= Runtime.make({
      context: fiber.currentContext as Context.Context<never>,
      runtimeFlags: Runtime.defaultRuntimeFlags,
      fiberRefs: fiber.getFiberRefs()
    })
  }

  /** Forks an Effect for the connection (interrupted when its Scope closes, if still running). */
  fork(effect: Effect.Effect<void>): Fiber.RuntimeFiber<void> | undefined {
    if (this.scopeRef === undefined || this.releaseWaiters === true) return undefined
    const fiber = Runtime.runFork(this.runtime())(effect)
    const forked = this.forked ??= new Set()
    forked.add(fiber)
    fiber.addObserver(() => forked.delete(fiber))
    return fiber
  }

  /** Completes when the connection's Scope has closed (the handler ended, its finalizers ran). */
  get released(): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const waiters = this.releaseWaiters
      if (waiters === true) return resume(Effect.void)
      const w = () => resume(Effect.void)
      if (waiters === undefined) this.releaseWaiters = [w]
      else waiters.push(w)
    })
  }

  /** Interrupts the handler (it outlived its transport by the close timeout, or the server shuts down). */
  interruptHandler(): boolean {
    const f = this.mainFiber
    if (f === undefined || !this.handlerRunning) return false
    f.unsafeInterruptAsFork(FiberId.none)
    return true
  }

  /** The connection's Scope (the port's; defined once the connection's fiber has started). */
  get scope(): Scope.Scope {
    return this.scopeRef!
  }

  // ------------------------------------------------------------------ reader

  /**
   * The reader fiber: resumed once per transport event (a read, its end, its close), it feeds
   * the protocol core and delivers what came out, then flushes what the core has to send as
   * one batch. No Effect per frame or per message; its loop is built once per connection.
   *
   * It lives while the connection reads: forked (with the runtime the connection's fiber was
   * forked with, on the inline scheduler) by a read that comes within `READER_LINGER` of the
   * previous one, it waits for the next read until `READER_LINGER` passes without one
   * (`checkDeadlines`), or until the transport has ended. For the bytes that came with the
   * upgrade request it is forked by the connection's fiber, and ends once it has handled them.
   */
  private forkReader(): void {
    const now = Date.now()
    this.readerLinger = now - this.readerWoken < READER_LINGER
    this.readerWoken = now
    this.readerAlive = true
    this.readerFiber = this.runFork!(startReader(this), READER)
  }

  /** The reader fiber waits for the next transport event here (`feed` resumes it with `readerStep`). */
  readerWaiting(resume: (step: Effect.Effect<void>) => void): void {
    this.readerResume = resume
  }

  /** One step of the reader fiber, built on its first wait. */
  private readerStep: Effect.Effect<void> | undefined = undefined

  /**
   * Handles what waits; true when the reader ends: the transport is gone, or it handled a lone
   * read of a connection that is not closing.
   */
  drain(): boolean {
    // events that arrive while these are handled (a 'close' emitted by a destroy) are handled too
    for (let items = this.pending; items !== undefined; items = this.pending) {
      this.pending = undefined
      this.handle(items)
    }
    if (this.life.transportEnded) {
      this.readerAlive = false
      this.readerOnDemand = false
      return true
    }
    // a closing connection waits for the transport's end, which comes soon: the reader waits too
    if (!this.readerLinger && !this.core.closeExpected) {
      this.readerAlive = false
      return true
    }
    return false
  }

  /** The reader has waited `READER_LINGER` without a read: it ends (the next read forks another). */
  private retireReader(now: number): void {
    const r = this.readerResume
    if (r === undefined || now - this.life.lastSeen < READER_LINGER) return
    this.readerResume = undefined
    this.readerAlive = false
    r(Effect.void)
  }

  /**
   * A transport event: to the reader fiber when one is alive. Otherwise a read that comes within
   * `READER_LINGER` of the previous one forks a reader that stays for the next reads; a lone
   * read, and the transport's end, are handled here, in the transport's callback, as the reader
   * would handle them (the same `handle`, in order, one pass per event): forking a fiber for
   * one event costs more than the event (see "What this shape costs" in the README), and a
   * fiber would add nothing to it: it runs no Effect, and the `run` Effects it starts are forked
   * with the runtime around `run` either way. Before the connection's fiber has started, every
   * event is handled here.
   */
  feed(item: ReadItem): void {
    if (!this.readerAlive) {
      if (this.readerOnDemand && item !== EOF && item !== GONE) {
        const now = Date.now()
        if (now - this.readerWoken < READER_LINGER) {
          this.pending = [item]
          this.forkReader()
          return
        }
        this.readerWoken = now
      }
      this.handle([item])
      if (item === GONE) this.readerOnDemand = false
      return
    }
    const p = this.pending
    if (p === undefined) this.pending = [item]
    else p.push(item)
    const r = this.readerResume
    if (r !== undefined) {
      this.readerResume = undefined
      r(this.readerStep ??= readerStep(this))
    }
  }

  private handle(items: Array<ReadItem>): void {
    const outbox = this.outbox
    outbox.inReader = true
    try {
      for (let i = 0; i < items.length; i++) {
        const item = items[i]!
        if (item === EOF) this.onEnd()
        else if (item === GONE) this.onGone()
        else this.onData(item)
      }
    } catch (defect) {
      // a defect of ours: this connection fails (1011, logged); the reader and the others go on
      outbox.inReader = false
      const cause = Cause.die(defect)
      this.terminate(new InternalError({ reason: "internal error", cause }))
      const log = Effect.logError("WebSocket connection failed", cause)
      if (this.runFork !== undefined) this.runFork(log)
      else Effect.runFork(log)
    }
    outbox.inReader = false
    outbox.flush()
    this.inbox.settle()
  }

  private onData(chunk: Buffer): void {
    if (this.life.transportEnded) return
    const received = this.messagesIn
    const life = this.life
    life.lastSeen = Date.now()
    const core = this.core
    core.receiveData(chunk)
    const events = core.eventsReceived()
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!
      switch (e._tag) {
        case "Text":
        case "Binary":
          this.messagesIn++
          this.inbox.push(e.data)
          break
        case "Pong":
          life.onPong()
          break
        case "Close":
          if (life.initiator === undefined) life.initiator = "remote"
          break
        case "Ping":
          break
      }
    }
    Metrics.bytesReceived.unsafeUpdate(chunk.length, NO_TAGS)
    if (this.messagesIn !== received) {
      life.lastActivity = life.lastSeen
      Metrics.messagesReceived.unsafeUpdate(this.messagesIn - received, NO_TAGS)
    }
    if (core.failure !== undefined && life.initiator === undefined) life.initiator = "local"
    if (core.closeExpected) this.closing()
  }

  private onEnd(): void {
    if (this.life.transportEnded) return
    this.core.receiveEof()
    this.closing()
  }

  private onGone(): void {
    if (this.life.transportEnded) return
    this.outbox.dropHeld()
    const core = this.core
    if (!core.eofReceived) core.receiveEof()
    this.inbox.end()
    this.life.transportClosed(core)
    this.owner.transportClosed(this)
    this.outbox.release()
  }

  // ------------------------------------------------------------------ hosts' callbacks

  get closeTimeouts(): CloseTimeouts {
    return this.owner.closeTimeouts
  }

  get inboxHighWaterMark(): number {
    return this.options.inboxHighWaterMark
  }

  setReading(on: boolean): void {
    if (this.life.transportEnded) return
    if (on) this.transport.resume()
    else this.transport.pause()
  }

  caughtUp(): void {
    if (this.core.closeOwed) {
      this.outbox.replyClose()
      this.outbox.flush()
    }
  }

  endFailure(): Option.Option<ProtocolError> {
    const failure = this.core.failure
    return failure !== undefined && !this.life.localFailure ? Option.some(failure) : Option.none()
  }

  fail(error: ProtocolError): void {
    this.terminate(error)
  }

  get transportEnded(): boolean {
    return this.life.transportEnded
  }

  touch(): void {
    this.life.lastActivity = Date.now()
  }

  /**
   * A close is under way (the peer's Close, ours, a failure, the transport's end): the inbox
   * ends, the owed Close goes out once the consumer has handled what came before it, and the
   * close timeout starts.
   */
  closing(): void {
    const inbox = this.inbox
    inbox.end()
    if (this.core.closeOwed && inbox.drained) this.outbox.replyClose()
    this.life.closing()
  }

  /** The transport drained: the writer fiber goes on. */
  drained(): void {
    this.outbox.release()
  }

  // ------------------------------------------------------------------ port

  get accepting(): boolean {
    return !this.life.transportEnded && !this.core.closeExpected
  }

  get transportClosed(): Effect.Effect<void> {
    return this.life.transportGone
  }

  get compression(): ConnectionPort["compression"] {
    const options: ResolvedPerMessageDeflateOptions | undefined = this.options.perMessageDeflate
    const params = this.deflate
    return options === undefined || params === undefined ? undefined : { options, params }
  }

  bufferedBytes(): number {
    return this.outbox.bufferedBytes()
  }

  sendNow(data: Message, options?: SendOptions): boolean {
    return this.outbox.send(data, options)
  }

  writeFrame(frame: Uint8Array): void {
    this.outbox.writePrebuiltLater(frame)
    if (this.transport.writableLength > this.options.maxBufferedBytes) {
      this.terminate(new PolicyViolationError({ reason: "send buffer over limit" }))
    }
  }

  /** Fails the connection from our side (hard limit, handler failure, keepalive). */
  terminate(error: ProtocolError): void {
    const life = this.life
    if (life.transportEnded) return
    life.localFailure = true
    if (life.initiator === undefined) life.initiator = "local"
    this.outbox.dropHeld()
    this.core.fail(error)
    this.core.sendOwedClose()
    this.outbox.flush()
    this.closing()
  }

  /** Starts the closing handshake with our code; no-op when closing already. */
  startClose(code: number, reason: string): InvalidSendError | undefined {
    const life = this.life
    if (life.transportEnded) return undefined
    const core = this.core
    if (core.state !== "OPEN" && !core.closeOwed) return undefined
    if (life.initiator === undefined) life.initiator = "local"
    return this.outbox.close(code, reason)
  }

  /** Sends an owed Close (if any) and destroys the transport: the close timeout expired. */
  destroy(): void {
    if (this.life.transportEnded) return
    this.outbox.dropHeld()
    this.core.sendOwedClose()
    this.outbox.flush()
    this.transport.destroy()
  }

  checkDeadlines(now: number): void {
    const life = this.life
    if (life.transportEnded) return
    this.retireReader(now)
    this.inbox.releaseHeld()
    if (this.core.closeExpected) return
    switch (life.deadline(now)) {
      case "ping":
        if (this.core.sendPing() === undefined) {
          life.pingOutstandingSince = life.pingSentAt = now
          this.outbox.flush()
        }
        break
      case "cut":
        this.destroy()
        break
      case "idle":
        this.startClose(1001, "idle timeout")
        break
    }
  }

  // ------------------------------------------------------------------ the handle

  get messages(): Stream.Stream<Message, ProtocolError> {
    return this.inbox.messages
  }

  // The handle's functions, each bound to this connection on first use (so that `ws.send` can
  // be passed around detached) rather than as one closure per function per connection.
  get run(): WebSocket<Data>["run"] {
    return this.boundRun ??= (onMessage) => this.runWith(onMessage)
  }
  get send(): WebSocket<Data>["send"] {
    return this.boundSend ??= (data, options) => this.sendEffect(data, options)
  }
  get sink(): WebSocket<Data>["sink"] {
    return this.boundSink ??= sinkOf(this.outbox)
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
    return Deferred.await(this.life.closedDeferred)
  }
  get bufferedAmount(): Effect.Effect<number> {
    return Effect.sync(() => this.bufferedBytes())
  }

  private runWith<_, E, R>(
    onMessage: (message: Message) => Effect.Effect<_, E, R> | void
  ): Effect.Effect<void, ProtocolError | E, R> {
    return Effect.withFiberRuntime<void, ProtocolError | E, R>((fiber) => {
      this.inbox.start(onMessage, fiber as Fiber.RuntimeFiber<unknown, unknown>)
      if (this.core.closeOwed) this.caughtUp()
      return this.life.awaitEnd()
    })
  }

  private sendEffect(data: Message, options?: SendOptions): Effect.Effect<void, WebSocketClosedError> {
    return new SendEffect(this.outbox, data, options)
  }

  private pingEffect(data?: Uint8Array): Effect.Effect<number, WebSocketClosedError | InvalidSendError> {
    return Effect.suspend(() => {
      if (this.life.transportEnded) return Effect.fail(CLOSED)
      const err = this.core.sendPing(data)
      if (err !== undefined) return Effect.fail(err.kind === "NotOpen" ? CLOSED : err)
      this.outbox.flushSoon()
      return this.life.pinged().pipe(Effect.catchAllCause(() => Effect.fail(CLOSED)))
    })
  }

  private closeEffect(code = 1000, reason = ""): Effect.Effect<CloseInfo, InvalidSendError> {
    return Effect.suspend(() => {
      const err = this.startClose(code, reason)
      if (err !== undefined) return Effect.fail(err)
      return Deferred.await(this.life.closedDeferred).pipe(
        Effect.catchAll((e) =>
          Effect.succeed<CloseInfo>({ code: e.closeCode, reason: e.reason, wasClean: false, initiatedBy: "remote" })
        )
      )
    })
  }
}

export { InvalidSendError }

// The connection fiber's and the reader fiber's Effects, made here so that the closures they keep
// for the connection's life capture the connection and nothing else.

/** What follows the handler, however it ended (uninterruptible): close, wait, close the Scope. */
const endOf = <A, E>(conn: WsConnection<any>) => ({
  onFailure: (cause: Cause.Cause<E>) => Effect.zipRight(conn.ended(Exit.failCause(cause)), Effect.failCause(cause)),
  onSuccess: (value: A) => Effect.as(conn.ended(Exit.succeed(value)), value)
})

/**
 * The reader fiber: it handles what waits, then suspends until the next transport event, which
 * resumes it with the next step (no frame stays on its stack while it waits).
 */
const startReader = (conn: WsConnection<any>): Effect.Effect<void> =>
  Effect.suspend(() => conn.drain() ? Effect.void : readerWait(conn))
const readerWait = (conn: WsConnection<any>): Effect.Effect<void> =>
  Effect.async<void>((resume) => conn.readerWaiting(resume))
const readerStep = (conn: WsConnection<any>): Effect.Effect<void> => {
  const wait = readerWait(conn)
  return Effect.suspend(() => conn.drain() ? Effect.void : wait)
}

/**
 * `ws.send(data, options)`: queues the message when run, then waits below the high-water mark.
 * One object per call, run by the fiber's own loop (its `commit`), where `Effect.suspend` would
 * add a closure: `Stream.runForEach(ws.messages, ws.send)` makes one per message.
 */
class SendEffect extends Effectable.Class<void, WebSocketClosedError> {
  constructor(
    private readonly outbox: Outbox,
    private readonly data: Message,
    private readonly options: SendOptions | undefined
  ) {
    super()
  }
  commit(): Effect.Effect<void, WebSocketClosedError> {
    const outbox = this.outbox
    if (!outbox.send(this.data, this.options)) return Effect.fail(CLOSED)
    return outbox.backpressure()
  }
}

/**
 * `ws.sink`: queues each chunk as the executor hands it over (one flush for all of it), and takes
 * an Effect step only to wait while the buffered bytes are above the high-water mark. Nothing it
 * builds refers to the chunk. With `Sink.forEachChunk`, the Effect built per chunk captured it,
 * and at 1 MiB per message that capture kept the buffers alive long enough for V8 to promote them
 * (a mark-compact every 100–150 ms: "A bare pipe is enough" in bench/README.md).
 */
const sinkOf = (outbox: Outbox): Sink.Sink<void, Message, never, WebSocketClosedError> => {
  const closed: Channel.Channel<never, unknown, WebSocketClosedError, unknown, never, unknown> = Channel.fail(CLOSED)
  const loop: Channel.Channel<never, Chunk.Chunk<Message>, WebSocketClosedError, WebSocketClosedError, void, unknown> = Channel
    .readWithCause({
      onInput: (chunk: Chunk.Chunk<Message>) => {
        for (const m of chunk) if (!outbox.send(m)) return closed
        return outbox.mustWait() ? afterWait : loop
      },
      onFailure: Channel.failCause,
      onDone: () => Channel.void
    })
  const afterWait = Channel.flatMap(Channel.fromEffect(Effect.suspend(() => outbox.backpressure())), () => loop)
  return Sink.fromChannel(loop)
}

const CONNECTION: unique symbol = Symbol("effect-websocket/connection")
interface TransportWithConnection extends Duplex {
  [CONNECTION]: WsConnection<unknown>
}
const owner = (t: Duplex): WsConnection<unknown> => (t as TransportWithConnection)[CONNECTION]
function onTransportData(this: Duplex, chunk: Buffer): void {
  owner(this).feed(chunk)
}
function onTransportEnd(this: Duplex): void {
  owner(this).feed(EOF)
}
function onTransportClose(this: Duplex): void {
  owner(this).feed(GONE)
}
function onTransportDrain(this: Duplex): void {
  owner(this).drained()
}
const noop = () => {}
