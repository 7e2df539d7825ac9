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
 * for everything that crosses processes, so a later `layerRedis` (or any bus) can carry
 * publishes between processes without a change to the application's code.
 *
 * @since 0.1.0
 */
import { Context, Effect, FiberSet, Layer } from "effect"
import type { Scope } from "effect"
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
 * Options of the `Topics` layer: the default policy of every subscription.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends SlowSubscriberPolicy {}

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
  readonly subscribe: (topic: string, ws: WebSocket<any>, policy?: SlowSubscriberPolicy) => Effect.Effect<void>
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
}

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
    receive: (topic: string, message: Message, options: PublishOptions) => void
  ) => Effect.Effect<BackendConnection, never, Scope.Scope>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface BackendConnection {
  readonly publish: (topic: string, message: Message, options: PublishOptions) => Effect.Effect<void>
  readonly interest: (topic: string, subscribed: boolean) => void
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
 * No other process: publishes stay here.
 *
 * @since 0.1.0
 * @category layers
 */
export const backendLocal: Layer.Layer<TopicsBackend> = Layer.succeed(TopicsBackend, {
  connect: () => Effect.succeed({ publish: () => Effect.void, interest: () => {} })
})

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
 * Builds the registry in the current scope, connected to the `TopicsBackend`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, never, Scope.Scope | TopicsBackend> =>
  Effect.gen(function*() {
    const defaults: internal.Policy = {
      maxBufferedBytes: options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED,
      onSlow: options.onSlow ?? "drop"
    }
    const backend = yield* TopicsBackend
    const runFork = yield* FiberSet.makeRuntime<never>()
    let link: BackendConnection | undefined = undefined
    const registry: internal.Registry = new internal.Registry(
      (topic, subscribed) => link?.interest(topic, subscribed),
      (ws) => {
        runFork(Effect.ensuring(Effect.ignore(ws.closed), Effect.sync(() => registry.remove(ws))))
      }
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

    const deliver = (topic: string, message: Message, compress: boolean): Effect.Effect<internal.LocalResult> =>
      Effect.suspend(() => {
        const result = emptyResult()
        const fallbacks: Array<[internal.Member, internal.Policy]> = []
        registry.publish(topic, message, compress, result, fallbacks)
        if (fallbacks.length === 0) return Effect.succeed(result)
        return Effect.as(serveFallbacks(fallbacks, message, compress, result), result)
      })

    link = yield* backend.connect((topic, message, opts) => {
      const result = emptyResult()
      const fallbacks: Array<[internal.Member, internal.Policy]> = []
      const compress = opts.compress ?? true
      registry.publish(topic, message, compress, result, fallbacks)
      if (fallbacks.length > 0) runFork(serveFallbacks(fallbacks, message, compress, result))
    })
    const connected = link

    return Topics.of({
      subscribe: (topic, ws, policy) => Effect.sync(() => registry.subscribe(topic, ws, resolvePolicy(policy, defaults))),
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
      topicsOf: (ws) => Effect.sync(() => registry.topicsOf(ws))
    })
  })

/**
 * The registry on a backend provided separately (`layerLocal` is this with `backendLocal`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Topics, never, TopicsBackend> =>
  Layer.scoped(Topics, make(options))

/**
 * Topics within this process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerLocal = (options: Options = {}): Layer.Layer<Topics> =>
  layer(options).pipe(Layer.provide(backendLocal))

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
  policy?: SlowSubscriberPolicy
): Effect.Effect<void, never, Topics> => Effect.flatMap(Topics, (t) => t.subscribe(topic, ws, policy))

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
