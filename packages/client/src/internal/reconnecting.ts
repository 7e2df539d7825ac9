import type { CloseInfo, Message, SendOptions } from "@effect-websocket/server/WebSocket"
import { Effect, Fiber, Option, Queue, Schedule, Stream, SubscriptionRef } from "effect"
import type { Duration, Scope } from "effect"
import type { ConnectionError } from "../Errors.js"
import { BufferFullError, WebSocketClosedError } from "../Errors.js"
import type { ConnectOptions } from "./options.js"

/** What `connect` yields; passed in to avoid an import cycle with WebSocketClient.ts. */
export interface Connected {
  readonly send: (data: Message, options?: SendOptions) => Effect.Effect<void, WebSocketClosedError>
  readonly messages: Stream.Stream<Message, unknown>
  readonly closed: Effect.Effect<CloseInfo, unknown>
  readonly close: (code?: number, reason?: string) => Effect.Effect<CloseInfo, unknown>
}

/** The states of a reconnecting connection, in the order they can follow each other. */
export type ReconnectState<C> =
  | { readonly _tag: "Connecting"; readonly attempt: number }
  | { readonly _tag: "Open"; readonly connection: C }
  | { readonly _tag: "Disconnected"; readonly cause: ConnectionError | CloseInfo | unknown }
  | { readonly _tag: "Closed" }

export interface ReconnectOptions<C, E, R> extends ConnectOptions {
  /**
   * When to try again after a failed attempt or a dropped connection. Default: exponential
   * backoff from 100 ms with jitter, at most 30 s apart, forever; reset after a minute
   * without a retry. When the schedule ends, the connection is Closed.
   */
  readonly schedule?: Schedule.Schedule<unknown, unknown> | undefined
  /** Runs on every new connection before buffered sends go out (resubscribe, resume...). */
  readonly onConnect?: ((connection: C) => Effect.Effect<void, E, R>) | undefined
  /** Messages `send` may buffer while disconnected. Default 1,024; 0 fails every such send. */
  readonly bufferSize?: number | undefined
  /** Messages received and not yet consumed from `messages` before reading pauses. Default 1,024. */
  readonly inboxSize?: number | undefined
}

export interface Reconnecting<C> {
  /** Messages of every connection in turn; ends when the connection is Closed. */
  readonly messages: Stream.Stream<Message>
  /**
   * Sends on the open connection, or buffers while there is none (in order, sent after
   * `onConnect` on the next connection); fails with `BufferFullError` when the buffer is
   * full and `WebSocketClosedError` once Closed. A message already handed to a connection
   * that then drops is not sent again.
   */
  readonly send: (data: Message, options?: SendOptions) => Effect.Effect<void, BufferFullError | WebSocketClosedError>
  /** The current state. */
  readonly state: Effect.Effect<ReconnectState<C>>
  /** The current state, then every change. */
  readonly states: Stream.Stream<ReconnectState<C>>
  /** Stops reconnecting, closes the open connection (default 1000) and ends `messages`. */
  readonly close: (code?: number, reason?: string) => Effect.Effect<void>
}

export const defaultSchedule: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.union(Schedule.spaced("30 seconds")),
  Schedule.resetAfter("1 minute" as Duration.DurationInput)
)

export const make = <C extends Connected, E, R>(
  connect: Effect.Effect<C, ConnectionError, Scope.Scope>,
  options: ReconnectOptions<C, E, R>
): Effect.Effect<Reconnecting<C>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const bufferSize = options.bufferSize ?? 1024
    const inbox = yield* Queue.bounded<Option.Option<Message>>(options.inboxSize ?? 1024)
    const stateRef = yield* SubscriptionRef.make<ReconnectState<C>>({ _tag: "Connecting", attempt: 1 })
    const buffer: Array<{ readonly data: Message; readonly options: SendOptions | undefined }> = []
    let current: C | undefined = undefined
    let closed = false
    let stopping = false
    let attempt = 0

    const setState = (s: ReconnectState<C>) => SubscriptionRef.set(stateRef, s)

    /** One connection, from connect to its end; fails (to be retried) when it could not open or when it ended. */
    const session: Effect.Effect<never, unknown, R> = Effect.scoped(
      Effect.gen(function*() {
        attempt++
        yield* setState({ _tag: "Connecting", attempt })
        const conn = yield* connect
        if (options.onConnect !== undefined) yield* options.onConnect(conn)
        // buffered sends go first, in order; sends made meanwhile join the buffer's end
        while (buffer.length > 0) {
          const next = buffer.shift()!
          yield* conn.send(next.data, next.options)
        }
        current = conn
        attempt = 0
        yield* setState({ _tag: "Open", connection: conn })
        yield* Stream.runForEach(conn.messages, (m) => Queue.offer(inbox, Option.some(m))).pipe(Effect.ignore)
        const info = yield* Effect.either(conn.closed)
        current = undefined
        if (stopping) return yield* Effect.never // close() ends the loop
        return yield* Effect.fail(info._tag === "Right" ? info.right : info.left)
      }).pipe(
        Effect.onExit(() => Effect.sync(() => (current = undefined))),
        Effect.tapError((cause) => setState({ _tag: "Disconnected", cause }))
      )
    )

    const loop = session.pipe(
      Effect.retry({ schedule: options.schedule ?? defaultSchedule, while: () => !stopping }),
      Effect.exit,
      Effect.flatMap(() => finish)
    )
    const finish = Effect.suspend(() => {
      closed = true
      current = undefined
      buffer.length = 0
      return Effect.zipRight(setState({ _tag: "Closed" }), Queue.offer(inbox, Option.none()))
    })
    const fiber = yield* Effect.forkScoped(loop)
    yield* Effect.addFinalizer(() => Effect.zipRight(Fiber.interrupt(fiber), finish))

    const CLOSED = new WebSocketClosedError({ reason: "the reconnecting connection is closed" })
    const send = (data: Message, sendOptions?: SendOptions): Effect.Effect<void, BufferFullError | WebSocketClosedError> =>
      Effect.suspend((): Effect.Effect<void, BufferFullError | WebSocketClosedError> => {
        if (closed) return Effect.fail(CLOSED)
        const conn = current
        if (conn !== undefined) {
          return conn.send(data, sendOptions).pipe(Effect.catchAll(() => enqueue(data, sendOptions)))
        }
        return enqueue(data, sendOptions)
      })
    const enqueue = (data: Message, sendOptions?: SendOptions): Effect.Effect<void, BufferFullError | WebSocketClosedError> =>
      Effect.suspend((): Effect.Effect<void, BufferFullError | WebSocketClosedError> => {
        if (closed) return Effect.fail(CLOSED)
        if (buffer.length >= bufferSize) return Effect.fail(new BufferFullError({ limit: bufferSize }))
        buffer.push({ data, options: sendOptions })
        return Effect.void
      })

    return {
      messages: Stream.fromQueue(inbox).pipe(Stream.takeWhile(Option.isSome), Stream.map((o) => o.value)),
      send,
      state: SubscriptionRef.get(stateRef),
      states: stateRef.changes,
      close: (code = 1000, reason = "") =>
        Effect.gen(function*() {
          stopping = true
          const conn = current
          if (conn !== undefined) yield* Effect.ignore(conn.close(code, reason))
          yield* Fiber.interrupt(fiber)
          yield* finish
        })
    }
  })

