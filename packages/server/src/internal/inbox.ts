import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import { Cause, Channel, Chunk, Effect, FiberId, Option, Runtime, Stream } from "effect"
import type { Context, Fiber } from "effect"
import { InternalError } from "../Errors.js"
import * as Metrics from "../Metrics.js"
import { freshArray, messageChunk } from "./chunk.js"
import type { Message } from "../WebSocket.js"

/** Marks the end of the inbox: the peer's Close, a failure, or the end of the transport. */
const END: unique symbol = Symbol("end")
type Item = Message | typeof END

/** What one pull of the `messages` Stream gives: a batch, or the end of the stream. */
type Pulled = Chunk.Chunk<Message> | typeof END

/** Metric updates pass one shared tags array: Effect caches the metric hook per array. */
export const NO_TAGS: Array<never> = []

/** What a message counts for in the byte limits (UTF-16 units for text, as before encoding). */
export const messageSize = (m: Message): number => (typeof m === "string" ? m.length : m.byteLength)

/** At most this many `run` Effects run at once before reading pauses (resumes at half). */
const MAX_RUNNING = 1024

/**
 * Effect's channel executor keeps the last chunk it passed on until it passes the next one, so a
 * Stream consumer that waits would keep its last batch for as long as the connection stays
 * quiet. An empty chunk lets go of it. A consumer about to wait after a batch of at least this
 * many bytes is handed one at once; after a smaller batch, the deadline sweep hands it one if it
 * is still waiting (`releaseHeld`, within a tick), so that a load of small messages does not pay
 * a Stream step on nearly every read.
 */
export const RELEASE_BYTES = 64 * 1024
const NOTHING: Chunk.Chunk<Message> = Chunk.empty()

type Resume<A, E> = (effect: Effect.Effect<A, E>) => void

/** What the inbox needs from its connection. */
export interface InboxHost {
  readonly inboxHighWaterMark: number
  /** Pauses or resumes reading from the transport (no-op once it is closed). */
  setReading(on: boolean): void
  /** The consumer handled everything before the peer's Close: send the owed reply now. */
  caughtUp(): void
  /** How the stream ends once drained: the peer's protocol error, or none. */
  endFailure(): Option.Option<ProtocolError>
  /** A `run` Effect failed: the connection ends with 1011. */
  fail(error: ProtocolError): void
}

/**
 * Delivery of received messages, in order, to one consumer: the `messages` Stream (whole
 * batches, one Effect step per socket read's worth of messages) or a `run` callback (called
 * straight from the reader). One flow-control policy for both: reading pauses while what the
 * consumer has not finished holds more than `inboxHighWaterMark` bytes (or `MAX_RUNNING`
 * `run` Effects), and resumes at half of it.
 */
export class Inbox {
  /** Arrays made by `freshArray`, never by a literal: see `chunk.ts`. */
  private items: Array<Item> = freshArray()
  private head = 0
  /** Bytes queued for the Stream, plus those of `run` Effects still running. */
  private load = 0
  private waiter: Resume<Pulled, ProtocolError> | undefined = undefined
  /** Someone consumes (the Stream was pulled, or `run` started). */
  consumer = false
  /** A batch was handed out and the consumer has not asked for the next one yet. */
  private batchOut = false
  /** Bytes of the last batch handed out, while the Stream's executor may still hold it. */
  private heldBytes = 0
  private paused = false
  /** `run`: the callback, the runtime its Effects are forked with, and those still running. */
  private callback: ((m: Message) => unknown) | undefined = undefined
  /** The fiber that called `run`: its context and FiberRefs are those the Effects run with. */
  private caller: Fiber.RuntimeFiber<unknown, unknown> | undefined = undefined
  private runtime: Runtime.Runtime<never> | undefined = undefined
  private running: Set<Fiber.RuntimeFiber<unknown, unknown>> | undefined = undefined
  private runFailed = false
  private stream: Stream.Stream<Message, ProtocolError> | undefined = undefined

  constructor(private readonly host: InboxHost) {}

  // ------------------------------------------------------------------ from the reader

  /** A message from the reader: to the callback, or queued for the Stream. */
  push(m: Message): void {
    const cb = this.callback
    if (cb !== undefined) {
      // the connection is failing (1011): what came after the failure is not handled
      if (this.runFailed) return
      let r: unknown
      try {
        r = cb(m)
      } catch (defect) {
        // a callback that throws fails the connection as a failing Effect would (1011), and the
        // reader it was called from goes on
        this.failRun(Cause.die(defect))
        return
      }
      if (r !== undefined && Effect.isEffect(r)) this.fork(r as Effect.Effect<unknown, unknown, any>, messageSize(m))
      return
    }
    this.items.push(m)
    this.load += messageSize(m)
  }

  /** Nothing more will arrive. */
  end(): void {
    if (this.items[this.items.length - 1] !== END) this.items.push(END)
  }

  /** Whether the consumer has nothing left from before the end (the owed Close may go now). */
  get drained(): boolean {
    return !this.consumer || (this.head >= this.items.length - 1 && !this.batchOut)
  }

  /** After a read: apply the flow policy and wake a waiting Stream. */
  settle(): void {
    this.flow()
    const w = this.waiter
    if (w !== undefined && this.head < this.items.length) {
      this.waiter = undefined
      w(this.pull!)
    }
  }

  /** The one pause/resume policy. */
  private flow(): void {
    const hwm = this.host.inboxHighWaterMark
    const running = this.running === undefined ? 0 : this.running.size
    if (!this.paused) {
      if (this.load > hwm || running > MAX_RUNNING) {
        this.paused = true
        this.host.setReading(false)
        Metrics.backpressureEvents.unsafeUpdate(1, NO_TAGS)
      }
    } else if (this.load <= hwm >>> 1 && running <= MAX_RUNNING >>> 1) {
      this.paused = false
      this.host.setReading(true)
    }
  }

  // ------------------------------------------------------------------ the Stream

  /**
   * Built on first use: a connection handled with `run` never pays for a Stream. A channel that
   * pulls a batch and writes it, then loops: `Stream.repeatEffectChunkOption` would add an
   * `Option` failure, a map and a catch to every pull, which cost a third of the Stream's own
   * share of a batch (see "Which form costs what" in the server README).
   */
  get messages(): Stream.Stream<Message, ProtocolError> {
    if (this.stream !== undefined) return this.stream
    const pull = Effect.suspend(() => this.take())
    const loop: Channel.Channel<Chunk.Chunk<Message>, unknown, ProtocolError, unknown, void, unknown> = Channel
      .flatMap(Channel.fromEffect(pull), (r: Pulled) => r === END ? Channel.void : Channel.flatMap(Channel.write(r), () => loop))
    this.pull = pull
    return this.stream = Stream.fromChannel(loop)
  }

  /** The Stream's pull (resumes a waiting consumer), made with the Stream. */
  private pull: Effect.Effect<Pulled, ProtocolError> | undefined = undefined

  private take(): Effect.Effect<Pulled, ProtocolError> {
    this.consumer = true
    this.batchOut = false
    const items = this.items
    const start = this.head
    if (start < items.length) {
      if (items[start] === END) {
        this.host.caughtUp()
        const failure = this.host.endFailure()
        return failure._tag === "Some" ? Effect.fail(failure.value) : Effect.succeed(END)
      }
      let end = start
      let bytes = 0
      while (end < items.length && items[end] !== END) {
        bytes += messageSize(items[end] as Message)
        end++
      }
      const batch = (start === 0 && end === items.length ? items : items.slice(start, end)) as Array<Message>
      if (end === items.length) {
        this.items = freshArray()
        this.head = 0
      } else {
        this.head = end
      }
      this.load -= bytes
      this.batchOut = true
      this.heldBytes = bytes
      this.flow()
      return Effect.succeed(messageChunk(batch))
    }
    if (this.heldBytes >= RELEASE_BYTES) {
      this.heldBytes = 0
      return Effect.succeed(NOTHING)
    }
    return this.wait ??= Effect.async<Pulled, ProtocolError>((resume) => {
      this.waiter = resume
    })
  }

  /**
   * From the deadline sweep: a Stream consumer waiting while Effect's executor still holds its
   * last batch is handed an empty chunk, so that a quiet connection keeps nothing it received.
   */
  releaseHeld(): void {
    const w = this.waiter
    if (w === undefined || this.heldBytes === 0) return
    this.waiter = undefined
    this.heldBytes = 0
    w(Effect.succeed(NOTHING))
  }

  /**
   * The consumer's wait for the next batch, built once. It registers no canceler, which spares
   * every wait the interruption bookkeeping Effect wraps around one: a consumer interrupted
   * while waiting leaves its resume behind, and calling it later does nothing (a fiber ignores
   * a resume once it has been interrupted), and a new pull replaces it.
   */
  private wait: Effect.Effect<Pulled, ProtocolError> | undefined = undefined

  // ------------------------------------------------------------------ run

  /**
   * Switches delivery to a callback called from the reader. Messages already queued go first,
   * in order. Effects the callback returns are forked with the runtime around `run` (its
   * logger, tracer, annotations and services), each tracked until it ends, and interrupted
   * when the connection ends (`interruptAll`).
   */
  start(onMessage: (m: Message) => unknown, caller: Fiber.RuntimeFiber<unknown, unknown>): void {
    this.caller = caller
    const items = this.items
    const ended = items.includes(END, this.head)
    const pending = items.slice(this.head).filter((m): m is Message => m !== END)
    this.items = ended ? [END] : []
    this.head = 0
    this.load = 0
    this.consumer = true
    // a batch the Stream handed out before is the handler's business now: the owed Close waits
    // for what run has not delivered, not for a pull that will never come
    this.batchOut = false
    this.callback = onMessage
    for (const m of pending) this.push(m)
    this.flow()
  }

  private fork(effect: Effect.Effect<unknown, unknown, any>, size: number): void {
    const running = this.running ??= new Set()
    this.load += size
    const fiber = Runtime.runFork(this.callerRuntime())(effect as Effect.Effect<unknown, unknown>)
    running.add(fiber)
    this.flow()
    fiber.addObserver((exit) => {
      running.delete(fiber)
      this.load -= size
      this.flow()
      if (exit._tag === "Failure" && !Cause.isInterruptedOnly(exit.cause)) this.failRun(exit.cause)
    })
  }

  /**
   * The runtime around `run` (its logger, tracer, annotations and services), made on first use: a
   * `run` whose callback returns no Effect and never fails never pays for one.
   */
  private callerRuntime(): Runtime.Runtime<never> {
    return this.runtime ??= Runtime.make({
      context: this.caller!.currentContext as Context.Context<never>,
      runtimeFlags: Runtime.defaultRuntimeFlags,
      fiberRefs: this.caller!.getFiberRefs()
    })
  }

  /**
   * A `run` callback threw or an Effect it returned failed: the connection fails with 1011 (once),
   * and the cause is logged with the logger around `run`, as a failing handler's is.
   */
  private failRun(cause: Cause.Cause<unknown>): void {
    if (this.runFailed) return
    this.runFailed = true
    this.host.fail(new InternalError({ reason: "handler failed", cause }))
    Runtime.runFork(this.callerRuntime())(Effect.logError("WebSocket run callback failed", cause))
  }

  /** The connection ended: interrupts the `run` Effects still running (returns when they have). */
  interruptAll(): Effect.Effect<void> {
    const running = this.running
    if (running === undefined || running.size === 0) return Effect.void
    const fibers = [...running]
    for (const f of fibers) f.unsafeInterruptAsFork(FiberId.none)
    return Effect.forEach(fibers, (f) => f.await, { discard: true })
  }
}
