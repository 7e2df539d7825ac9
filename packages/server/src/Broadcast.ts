/**
 * Publish/subscribe over WebSocket connections: topics as a service.
 *
 * ```ts
 * import { Broadcast, WebSocketServer } from "@effect-websocket/server"
 * import { Effect, Layer } from "effect"
 *
 * const Server = WebSocketServer.layer({
 *   port: 8080,
 *   handler: (ws) =>
 *     Effect.gen(function*() {
 *       const topics = yield* Broadcast.Topics
 *       yield* topics.subscribe("news", ws) // unsubscribed automatically when it closes
 *       yield* ws.run((text) => topics.publish("news", text))
 *     })
 * }).pipe(Layer.provide(Broadcast.layerLocal()))
 * ```
 *
 * A publish frames the message once: every subscriber without permessage-deflate, and every
 * one below the compression threshold, gets the same bytes. With permessage-deflate the cost
 * depends on what each connection agreed:
 * - `server_no_context_takeover` (offered by the client, or forced with the server option
 *   `perMessageDeflate: { serverNoContextTakeover: true }`): each message is compressed on a
 *   fresh context, so the compressed frame is built once per publish and per compression
 *   setting (window bits, level, memLevel) and shared by all those subscribers;
 * - context takeover (the default of browsers and of the server): a connection's deflater
 *   holds the history of everything it sent, and the peer inflates with that history, so each
 *   copy must be compressed by that connection's own deflater: one compression per
 *   subscriber. Servers that broadcast much should set `serverNoContextTakeover: true`, which
 *   also frees the per-connection deflate memory (see `PerMessageDeflate`).
 *
 * Every subscriber has its own backpressure policy: when more than `maxBufferedBytes` wait to
 * be written to it, a publish skips it (`onSlow: "drop"`, the default) or closes it with 1008
 * (`onSlow: "close"`). A publish never waits for a subscriber, and a slow one never holds more
 * than its limit plus one message.
 *
 * Topics are local to the process with `layerLocal`. The registry talks to a `TopicsBackend`
 * for everything that crosses processes, so `layerRedis` (or any bus) carries publishes,
 * presence and history between processes without a change to the application's code.
 *
 * The frames one event-loop turn publishes to a connection leave in one socket write.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect, FiberSet, Layer, Stream } from "effect"
import type { Scope } from "effect"
import type { Options as RedisOptions } from "./BroadcastRedis.js"
import * as internal from "./internal/broadcast.js"
import type { Message, WebSocket } from "./WebSocket.js"

/**
 * What happens to a subscriber that reads too slowly.
 *
 * @since 0.1.0
 * @category models
 */
export interface SlowSubscriberPolicy {
  /**
   * A subscriber is slow while more than this many bytes wait to be written to it (the
   * connection's queue plus its socket's buffer). Default 1 MiB.
   */
  readonly maxBufferedBytes?: number | undefined
  /**
   * `"drop"`: the message is skipped for that subscriber (it stays subscribed and gets later
   * messages once it caught up). `"close"`: it is closed with 1008 (policy violation) and
   * unsubscribed. Default `"drop"`.
   */
  readonly onSlow?: "drop" | "close" | undefined
}

/**
 * How a connection subscribes: its slow-subscriber policy, and optionally where it resumes and
 * under which name it shows in the topic's presence.
 *
 * @since 0.1.0
 * @category models
 */
export interface SubscribeOptions extends SlowSubscriberPolicy {
  /**
   * The last offset this client saw (what `Options.withOffset` put in a message it got): it is
   * sent what the topic carried after that offset first, then live messages, with no gap and no
   * duplicate between the two, as far as the backend's window reaches (`layerRedis` in
   * `"stream"` mode: the stream's `maxLen`; `layerLocal`: `historySize`). Ignored by backends
   * without history.
   */
  readonly since?: string | undefined
  /**
   * The name this subscriber shows under in `members(topic)` (every process the backend
   * reaches). Not set: it is a subscriber but not listed.
   */
  readonly presence?: string | undefined
}

/**
 * Options of the `Topics` layer: the default policy of every subscription.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends SlowSubscriberPolicy {
  /**
   * Builds what subscribers receive from a published message and its topic offset, once per
   * publish and process (not per subscriber). The offset is the backend's position of the
   * message in its topic (a Redis stream id in `"stream"` mode; with `layerLocal`, when it keeps
   * a `historySize`, the topic's publish count), the value a resuming client passes as `since`.
   * Backends without offsets (`"pubsub"`) deliver the message as published, as does this
   * option left unset.
   */
  readonly withOffset?: ((message: Message, offset: string, topic: string) => Message) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PublishOptions {
  /**
   * Set to false to send this message uncompressed even where permessage-deflate was agreed
   * (secrets next to attacker-controlled data should not share a compression context).
   * Default true: compressed where agreed and above the server's threshold.
   */
  readonly compress?: boolean | undefined
}

/**
 * What a publish did in this process (copies for other processes are the backend's).
 *
 * @since 0.1.0
 * @category models
 */
export interface PublishResult {
  /** Local subscribers of the topic when it was published. */
  readonly subscribers: number
  /** Copies handed to connections. */
  readonly sent: number
  /** Subscribers skipped by the `"drop"` policy. */
  readonly dropped: number
  /** Subscribers closed (1008) by the `"close"` policy. */
  readonly closed: number
  /** Shared compressions done (at most one per compression setting). */
  readonly compressions: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Subscribes a connection to a topic (again: updates its policy). It is unsubscribed from
   * everything when its connection closes. A connection that is already closed is ignored.
   */
  readonly subscribe: (topic: string, ws: WebSocket<any>, options?: SubscribeOptions) => Effect.Effect<void>
  readonly unsubscribe: (topic: string, ws: WebSocket<any>) => Effect.Effect<void>
  readonly unsubscribeAll: (ws: WebSocket<any>) => Effect.Effect<void>
  /**
   * Sends a message (string as text, bytes as binary) to every subscriber of the topic, in
   * every process the backend reaches. Never waits for a subscriber. Bytes are not copied
   * for connections that compress on their own: do not modify them afterwards.
   */
  readonly publish: (topic: string, message: Message, options?: PublishOptions) => Effect.Effect<PublishResult>
  /** Subscribers of a topic in this process. */
  readonly subscriberCount: (topic: string) => Effect.Effect<number>
  /** The topics a connection is subscribed to. */
  readonly topicsOf: (ws: WebSocket<any>) => Effect.Effect<ReadonlyArray<string>>
  /**
   * The presence names of a topic's subscribers in every process the backend reaches, sorted,
   * one entry per subscriber (a name subscribed twice shows twice). A crashed process's entries
   * leave on their own (`layerRedis`: after `presenceTtl`).
   */
  readonly members: (topic: string) => Effect.Effect<ReadonlyArray<string>>
  /** What happened to the link between processes (gaps, disconnections); empty for `layerLocal`. */
  readonly events: Stream.Stream<BackendEvent>
}

/**
 * What the backend tells the application about the link between processes.
 * - `Gap`: messages of a topic published elsewhere did not reach this process (at-most-once
 *   delivery over Pub/Sub after a disconnection, or a stream trimmed past where this process
 *   stopped reading); `missed` is the count when it is known.
 * - `Disconnected` / `Reconnected`: the backend lost and found its server again.
 *
 * @since 0.1.0
 * @category models
 */
export type BackendEvent =
  | { readonly _tag: "Gap"; readonly topic: string; readonly missed: number | undefined }
  | { readonly _tag: "Disconnected"; readonly reason: string }
  | { readonly _tag: "Reconnected" }

/**
 * The topics registry.
 *
 * @since 0.1.0
 * @category tags
 */
export class Topics extends Context.Tag("@effect-websocket/server/Broadcast/Topics")<Topics, Service>() {}

/**
 * The link between processes, as the registry sees it. `connect` is called once when the
 * `Topics` layer is built, with `receive`, which delivers a message published elsewhere to
 * this process's subscribers.
 *
 * The contract a backend keeps:
 * - `publish` is called after a publish was delivered locally: carry it to the *other*
 *   processes (never back to this one through `receive`, or local subscribers get it twice);
 * - `interest(topic, true)` comes when this process gets its first subscriber of a topic,
 *   `interest(topic, false)` when it lost its last one: subscribe and unsubscribe upstream
 *   (e.g. Redis `SUBSCRIBE` / `UNSUBSCRIBE`). Called synchronously, in order; queue the work;
 * - `publish` failures are the backend's to retry, log and count: a publish's caller only sees
 *   the local result, so switching backends does not change the application's types.
 *
 * @since 0.1.0
 * @category models
 */
export interface Backend {
  readonly connect: (
    receive: (topic: string, message: Message, options: PublishOptions, offset: string | undefined) => void
  ) => Effect.Effect<BackendConnection, BackendError, Scope.Scope>
}

/**
 * A backend that could not start (wrong URL, refused credentials, a server that does not
 * answer within its connect timeout).
 *
 * @since 0.1.0
 * @category errors
 */
export class BackendError extends Data.TaggedError("BackendError")<{
  readonly reason: "InvalidUrl" | "Auth" | "Timeout" | "Connect"
  readonly detail: string
}> {
  override get message(): string {
    return `topics backend: ${this.reason}: ${this.detail}`
  }
}

/**
 * One message of a topic's history, for a subscriber that resumes.
 *
 * @since 0.1.0
 * @category models
 */
export interface HistoryEntry {
  readonly offset: string
  readonly message: Message
  readonly compress: boolean
}

/**
 * @since 0.1.0
 * @category models
 */
export interface BackendConnection {
  readonly publish: (topic: string, message: Message, options: PublishOptions) => Effect.Effect<void>
  readonly interest: (topic: string, subscribed: boolean) => void
  /**
   * True: `publish` is not delivered locally by the registry; the backend hands every message,
   * this process's own included, to `receive` with its offset, so every process sees one order.
   */
  readonly loopback?: boolean | undefined
  /**
   * The messages of a topic after `since`, up to the last one this process delivered (a
   * resuming subscriber gets these first). Absent: no history.
   */
  readonly history?: ((topic: string, since: string) => Effect.Effect<ReadonlyArray<HistoryEntry>>) | undefined
  /** The offset of the last message of the topic delivered in this process (with `history`). */
  readonly position?: ((topic: string) => string | undefined) | undefined
  /** This process's presence names for a topic changed (called synchronously; queue the work). */
  readonly presence?: ((topic: string, names: ReadonlyArray<string>) => void) | undefined
  /**
   * The offset of a message published in this process, before it is delivered locally (a
   * backend that keeps history without `loopback`). Absent: local deliveries carry no offset.
   */
  readonly stamp?: ((topic: string, message: Message, compress: boolean) => string) | undefined
  /** Presence names of the topic in every process. Absent: this process's only. */
  readonly members?: ((topic: string) => Effect.Effect<ReadonlyArray<string>>) | undefined
  readonly events?: Stream.Stream<BackendEvent> | undefined
}

/**
 * @since 0.1.0
 * @category tags
 */
export class TopicsBackend extends Context.Tag("@effect-websocket/server/Broadcast/TopicsBackend")<
  TopicsBackend,
  Backend
>() {}

/**
 * No other process: publishes stay here. Each topic keeps its last `historySize` messages
 * (default 0: none) for subscribers that resume with `since`; offsets count the topic's
 * publishes from 1.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBackendLocal = (options: { readonly historySize?: number | undefined } = {}): Backend => ({
  connect: () =>
    Effect.sync(() => {
      const size = options.historySize ?? 0
      const topics = new Map<string, { next: number; ring: Array<HistoryEntry> }>()
      const topicOf = (topic: string) => {
        let t = topics.get(topic)
        if (t === undefined) topics.set(topic, t = { next: 1, ring: [] })
        return t
      }
      const connection: BackendConnection = {
        publish: () => Effect.void,
        interest: (topic, subscribed) => {
          if (!subscribed && size === 0) topics.delete(topic)
        },
        ...(size > 0 ?
          {
            stamp: (topic: string, message: Message, compress: boolean) => {
              const t = topicOf(topic)
              const offset = String(t.next++)
              t.ring.push({ offset, message, compress })
              if (t.ring.length > size) t.ring.shift()
              return offset
            },
            position: (topic: string) => {
              const t = topics.get(topic)
              return t === undefined ? undefined : String(t.next - 1)
            },
            history: (topic: string, since: string) =>
              Effect.sync(() => {
                const from = Number(since)
                return topics.get(topic)?.ring.filter((e) => Number(e.offset) > from) ?? []
              })
          } :
          {})
      }
      return connection
    })
})

/**
 * No other process: publishes stay here.
 *
 * @since 0.1.0
 * @category layers
 */
export const backendLocal: Layer.Layer<TopicsBackend> = Layer.succeed(TopicsBackend, makeBackendLocal())

const DEFAULT_MAX_BUFFERED = 1024 * 1024

const resolvePolicy = (
  p: SlowSubscriberPolicy | undefined,
  fallback: internal.Policy
): internal.Policy => {
  if (p === undefined || (p.maxBufferedBytes === undefined && p.onSlow === undefined)) return fallback
  return { maxBufferedBytes: p.maxBufferedBytes ?? fallback.maxBufferedBytes, onSlow: p.onSlow ?? fallback.onSlow }
}

const emptyResult = (): internal.LocalResult => ({ subscribers: 0, sent: 0, dropped: 0, closed: 0, compressions: 0 })

/**
 * Builds the registry in the current scope, connected to the `TopicsBackend`; fails when the
 * backend cannot start.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, BackendError, Scope.Scope | TopicsBackend> =>
  Effect.gen(function*() {
    const defaults: internal.Policy = {
      maxBufferedBytes: options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED,
      onSlow: options.onSlow ?? "drop"
    }
    const withOffset = options.withOffset
    const backend = yield* TopicsBackend
    const runFork = yield* FiberSet.makeRuntime<never>()
    let link: BackendConnection | undefined = undefined
    const registry: internal.Registry = new internal.Registry(
      (topic, subscribed) => link?.interest(topic, subscribed),
      (ws) => {
        runFork(Effect.ensuring(Effect.ignore(ws.closed), Effect.sync(() => registry.remove(ws))))
      },
      (topic, names) => link?.presence?.(topic, names)
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => registry.close()))

    /** Wrapped handles (not the engine's connections) go through the public API. */
    const serveFallbacks = (
      fallbacks: ReadonlyArray<[internal.Member, internal.Policy]>,
      message: Message,
      compress: boolean,
      result: internal.LocalResult
    ): Effect.Effect<void> =>
      Effect.forEach(fallbacks, ([member, policy]) =>
        Effect.flatMap(member.ws.bufferedAmount, (buffered) => {
          if (buffered > policy.maxBufferedBytes) {
            if (policy.onSlow === "drop") {
              result.dropped++
              internal.dropped.unsafeUpdate(1, internal.NO_TAGS)
              return Effect.void
            }
            result.closed++
            internal.slowClosed.unsafeUpdate(1, internal.NO_TAGS)
            registry.unsubscribeAll(member.ws)
            runFork(Effect.ignore(member.ws.close(1008, "subscriber too slow")))
            return Effect.void
          }
          if (member.ws.unsafeSend(message, { compress })) {
            result.sent++
            internal.delivered.unsafeUpdate(1, internal.NO_TAGS)
          }
          return Effect.void
        }), { discard: true })

    /** Local fan-out of one message (with its offset, when the backend gave one). */
    const deliverNow = (
      topic: string,
      message: Message,
      compress: boolean,
      offset: string | undefined,
      result: internal.LocalResult
    ): ReadonlyArray<[internal.Member, internal.Policy]> => {
      const fallbacks: Array<[internal.Member, internal.Policy]> = []
      const framed = withOffset !== undefined && offset !== undefined ? withOffset(message, offset, topic) : message
      registry.publish(topic, framed, compress, offset, result, fallbacks)
      if (fallbacks.length > 0) runFork(serveFallbacks(fallbacks, framed, compress, result))
      return fallbacks
    }

    link = yield* backend.connect((topic, message, opts, offset) => {
      deliverNow(topic, message, opts.compress ?? true, offset, emptyResult())
    })
    const connected = link

    const deliver = (topic: string, message: Message, compress: boolean): Effect.Effect<internal.LocalResult> =>
      Effect.sync(() => {
        const result = emptyResult()
        if (connected.loopback === true) {
          result.subscribers = registry.subscriberCount(topic)
          return result
        }
        deliverNow(topic, message, compress, connected.stamp?.(topic, message, compress), result)
        return result
      })

    /** A resuming subscriber: held (live messages queued for it) until its history was sent. */
    const resume = (topic: string, ws: WebSocket<any>, policy: internal.Policy, since: string) => {
      const history = connected.history!
      if (!registry.subscribe(topic, ws, policy, true)) return Effect.void
      return history(topic, since).pipe(
        Effect.map((entries) =>
          entries.map((e) => ({
            ...e,
            message: withOffset !== undefined ? withOffset(e.message, e.offset, topic) : e.message
          }))
        ),
        Effect.orElseSucceed(() => []),
        Effect.flatMap((entries) => Effect.sync(() => registry.release(topic, ws, entries, connected.position?.(topic))))
      )
    }

    const members = (topic: string) =>
      connected.members !== undefined ? connected.members(topic) : Effect.sync(() => registry.presence(topic))

    return Topics.of({
      subscribe: (topic, ws, opts) => {
        const policy = resolvePolicy(opts, defaults)
        if (opts?.presence !== undefined) registry.setPresence(ws, topic, opts.presence)
        if (opts?.since !== undefined && connected.history !== undefined) return resume(topic, ws, policy, opts.since)
        return Effect.sync(() => {
          registry.subscribe(topic, ws, policy, false)
        })
      },
      unsubscribe: (topic, ws) => Effect.sync(() => registry.unsubscribe(topic, ws)),
      unsubscribeAll: (ws) => Effect.sync(() => registry.unsubscribeAll(ws)),
      publish: (topic, message, publishOptions) => {
        const compress = publishOptions?.compress ?? true
        return Effect.tap(
          deliver(topic, message, compress),
          () => connected.publish(topic, message, { compress })
        )
      },
      subscriberCount: (topic) => Effect.sync(() => registry.subscriberCount(topic)),
      topicsOf: (ws) => Effect.sync(() => registry.topicsOf(ws)),
      members,
      events: connected.events ?? Stream.empty
    })
  })

/**
 * The registry on a backend provided separately (`layerLocal` is this with `backendLocal`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Topics, BackendError, TopicsBackend> =>
  Layer.scoped(Topics, make(options))

/**
 * Topics within this process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerLocal = (
  options: Options & { readonly historySize?: number | undefined } = {}
): Layer.Layer<Topics> =>
  Layer.orDie(layer(options).pipe(Layer.provide(Layer.succeed(TopicsBackend, makeBackendLocal(options)))))

/**
 * Topics across processes on Redis (see `BroadcastRedis`): the same service as `layerLocal`.
 * Needs the `redis` package (an optional peer dependency), loaded when the layer is built.
 * Fails with a `BackendError` when Redis cannot be reached within `connectTimeout`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRedis = (options: RedisOptions & Options): Layer.Layer<Topics, BackendError> =>
  layer(options).pipe(Layer.provide(Layer.unwrapEffect(
    Effect.map(
      Effect.promise(() => import("./BroadcastRedis.js")),
      (redis) => Layer.succeed(TopicsBackend, redis.makeBackend(options))
    )
  )))

/**
 * Publishes with the service from the context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const publish = (
  topic: string,
  message: Message,
  options?: PublishOptions
): Effect.Effect<PublishResult, never, Topics> => Effect.flatMap(Topics, (t) => t.publish(topic, message, options))

/**
 * Subscribes with the service from the context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const subscribe = (
  topic: string,
  ws: WebSocket<any>,
  options?: SubscribeOptions
): Effect.Effect<void, never, Topics> => Effect.flatMap(Topics, (t) => t.subscribe(topic, ws, options))

/**
 * Metrics of the registry, updated synchronously per publish (never per subscriber):
 * `publishes` (counter), `fanOut` (histogram of local subscribers per publish), `delivered`,
 * `dropped` and `slowClosed` (counters of copies), `compressions` (shared compressions).
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = {
  publishes: internal.publishes,
  fanOut: internal.fanOut,
  delivered: internal.delivered,
  dropped: internal.dropped,
  slowClosed: internal.slowClosed,
  compressions: internal.compressions
} as const
