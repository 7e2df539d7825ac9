/**
 * Topics across processes and machines on Redis: a `TopicsBackend` over node-redis (the
 * `redis` package, an optional peer dependency loaded when the layer starts).
 *
 * ```ts
 * const Topics = Broadcast.layerRedis({ url: "redis://127.0.0.1:6379", mode: "stream" })
 * ```
 *
 * Two delivery modes:
 * - `"pubsub"`: one Redis channel per topic. A publish is delivered in this process at once
 *   and sent to the others with one `PUBLISH`. At most once: what is published while a process
 *   is disconnected from Redis never reaches it. Every message carries its publisher's
 *   sequence number per topic, so a receiver counts what it missed (`Gap` events, the
 *   `gaps` and `missed` metrics); a resubscription after a disconnection is a `Gap` too.
 * - `"stream"`: one Redis stream per topic (`XADD ... MAXLEN ~ maxLen`). Every process,
 *   the publisher's included, delivers from one `XREAD BLOCK` over its topics, from the last
 *   id it delivered, so every process sees one order, and one that lost Redis resumes where it
 *   stopped: nothing lost, nothing twice, as long as the stream still holds that id (its
 *   window is `maxLen` entries). Publishes wait in a bounded queue of this process while Redis
 *   is unreachable (`queueSize`, `onQueueFull`) and go out, in order, when it is back; one
 *   that was sent twice across a reconnection is delivered once (publisher sequence numbers).
 *   Offsets are stream ids, so a client can resume (`SubscribeOptions.since`).
 *
 * Each process holds three connections: commands, its subscription (one per process however
 * many topics and local subscribers), and a health check shared by them. A command or health
 * `PING` unanswered for `commandTimeout` counts as a lost connection: all are dropped and made
 * again on the `reconnect` schedule, while the WebSockets stay open.
 *
 * @since 0.1.0
 */
import { Data, Deferred, Duration, Effect, Fiber, FiberId, Layer, Metric, PubSub, Schedule, Stream } from "effect"
import type { Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as Broadcast from "./Broadcast.js"
import { compareOffsets } from "./internal/broadcast.js"
import type { Message } from "./WebSocket.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
  readonly url: string
  /** Prefix of every key and channel. Default `"ews:"`. */
  readonly keyPrefix?: string | undefined
  /** Default `"stream"`. */
  readonly mode?: "pubsub" | "stream" | undefined
  /** The layer fails with a `BackendError` when Redis is not ready within this. Default 5 s. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** A command (or the health `PING`) unanswered this long drops the connections. Default 2 s. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** How often the health `PING` runs. Default 1 s. */
  readonly healthInterval?: Duration.DurationInput | undefined
  /** Delays between reconnection attempts. Default: exponential from 50 ms, at most 1 s, forever. */
  readonly reconnect?: Schedule.Schedule<unknown, unknown> | undefined
  /** `"stream"`: approximate entries kept per topic (the resume window). Default 10,000. */
  readonly maxLen?: number | undefined
  /** `"stream"`: publishes held while Redis is unreachable. Default 10,000. */
  readonly queueSize?: number | undefined
  /** `"stream"`: what a publish does to a full queue. Default `"dropOldest"`. */
  readonly onQueueFull?: "dropOldest" | "dropNewest" | undefined
  /** Presence entries of a process that stopped refreshing them leave after this. Default 15 s. */
  readonly presenceTtl?: Duration.DurationInput | undefined
}

/**
 * Metrics of the Redis backend.
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = {
  gaps: Metric.counter("websocket_broadcast_redis_gaps_total", {
    description: "Gaps: topics for which this process may have missed messages (resubscription, trimmed stream, sequence jump)",
    incremental: true
  }),
  missed: Metric.counter("websocket_broadcast_redis_missed_total", {
    description: "Messages known to be missed, from the publishers' sequence numbers",
    incremental: true
  }),
  duplicates: Metric.counter("websocket_broadcast_redis_duplicates_total", {
    description: "Messages received twice (a publish retried across a reconnection) and delivered once",
    incremental: true
  }),
  queued: Metric.gauge("websocket_broadcast_redis_queued", {
    description: "Publishes waiting for Redis in this process (\"stream\" mode)"
  }),
  queueDropped: Metric.counter("websocket_broadcast_redis_queue_dropped_total", {
    description: "Publishes dropped because the local queue was full (\"stream\" mode)",
    incremental: true
  }),
  publishFailures: Metric.counter("websocket_broadcast_redis_publish_failures_total", {
    description: "Publishes that could not be sent to Redis (\"pubsub\" mode: lost for the other processes)",
    incremental: true
  }),
  reconnects: Metric.counter("websocket_broadcast_redis_reconnects_total", {
    description: "Connections to Redis made again after a loss",
    incremental: true
  })
} as const

/** A lost or failed connection while running (absorbed by the reconnection loop). */
class LinkError extends Data.TaggedError("LinkError")<{
  readonly detail: string
  /** Redis answered with an error reply: the connection itself is fine. */
  readonly answered?: boolean | undefined
}> {}

/** The part of node-redis's client this backend uses. */
interface Client {
  connect(): Promise<unknown>
  destroy(): void
  on(event: string, listener: (...args: Array<any>) => void): unknown
  sendCommand(args: ReadonlyArray<string | Buffer>, options?: object): Promise<unknown>
  subscribe(channels: string | Array<string>, listener: (message: Buffer, channel: Buffer) => void, buffers: true): Promise<void>
  unsubscribe(channels: string | Array<string>): Promise<void>
}

interface RedisModule {
  readonly createClient: (options: object) => unknown
  readonly RESP_TYPES: { readonly BLOB_STRING: number }
  /** The class of Redis's error replies. */
  readonly ErrorReply: abstract new(...args: never) => Error
}

// ---------------------------------------------------------------------------------------
// Wire format of one message (a Pub/Sub payload or a stream entry's field "m")
// ---------------------------------------------------------------------------------------
// [flags: 1][seq: 8, float64 BE][publisher id length: 1][publisher id][message bytes]
// flags: 1 = binary message, 2 = compress off

/** @internal */
export const encodeMessage = (publisher: Buffer, seq: number, message: Message, compress: boolean): Buffer => {
  const body = typeof message === "string" ? Buffer.from(message, "utf8") : message
  const out = Buffer.allocUnsafe(10 + publisher.length + body.length)
  out[0] = (typeof message === "string" ? 0 : 1) | (compress ? 0 : 2)
  out.writeDoubleBE(seq, 1)
  out[9] = publisher.length
  publisher.copy(out, 10)
  out.set(body, 10 + publisher.length)
  return out
}

/** @internal */
export interface Decoded {
  readonly publisher: string
  readonly seq: number
  readonly message: Message
  readonly compress: boolean
}

/** @internal */
export const decodeMessage = (b: Buffer): Decoded | undefined => {
  if (b.length < 10 || b.length < 10 + b[9]!) return undefined
  const flags = b[0]!
  const end = 10 + b[9]!
  const body = b.subarray(end)
  return {
    publisher: b.toString("latin1", 10, end),
    seq: b.readDoubleBE(1),
    message: (flags & 1) === 0 ? body.toString("utf8") : new Uint8Array(body),
    compress: (flags & 2) === 0
  }
}

const classify = (e: unknown): Broadcast.BackendError => {
  const text = e instanceof Error ? e.message : String(e)
  if (/WRONGPASS|NOAUTH|NOPERM|AUTH|invalid password|invalid username/i.test(text)) {
    return new Broadcast.BackendError({ reason: "Auth", detail: text })
  }
  return new Broadcast.BackendError({ reason: "Connect", detail: text })
}

const validateUrl = (url: string): Effect.Effect<void, Broadcast.BackendError> =>
  Effect.try({
    try: () => {
      const u = new URL(url)
      if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new Error(`protocol ${u.protocol}`)
      if (u.hostname === "") throw new Error("no host")
    },
    catch: (e) => new Broadcast.BackendError({ reason: "InvalidUrl", detail: `${url}: ${(e as Error).message}` })
  })

/**
 * The Redis backend. Building it connects every connection it needs, or fails with a
 * `BackendError` (`InvalidUrl`, `Auth`, `Timeout`, `Connect`) within `connectTimeout`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeBackend = (options: Options): Broadcast.Backend => ({
  connect: (receive) => connectRedis(options, receive)
})

/**
 * `Broadcast.Topics` on Redis: the same service as `Broadcast.layerLocal`, across processes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options & Broadcast.Options
): Layer.Layer<Broadcast.Topics, Broadcast.BackendError> =>
  Broadcast.layer(options).pipe(Layer.provide(Layer.succeed(Broadcast.TopicsBackend, makeBackend(options))))

type Receive = (topic: string, message: Message, options: Broadcast.PublishOptions, offset: string | undefined) => void

interface Pending {
  readonly topic: string
  readonly payload: Buffer
}

const connectRedis = (
  options: Options,
  receive: Receive
): Effect.Effect<Broadcast.BackendConnection, Broadcast.BackendError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* validateUrl(options.url)
    const redis = yield* Effect.tryPromise({
      try: () => import("redis") as Promise<unknown> as Promise<RedisModule>,
      catch: (e) => new Broadcast.BackendError({ reason: "Connect", detail: `the redis package: ${String(e)}` })
    })
    const prefix = options.keyPrefix ?? "ews:"
    const mode = options.mode ?? "stream"
    const connectTimeout = Duration.decode(options.connectTimeout ?? "5 seconds")
    const commandTimeout = Duration.decode(options.commandTimeout ?? "2 seconds")
    const commandMs = Duration.toMillis(commandTimeout)
    const healthInterval = Duration.decode(options.healthInterval ?? "1 second")
    const reconnect = options.reconnect ??
      Schedule.exponential("50 millis", 2).pipe(Schedule.union(Schedule.spaced("1 second")), Schedule.jittered)
    const maxLen = options.maxLen ?? 10_000
    const queueSize = options.queueSize ?? 10_000
    const onQueueFull = options.onQueueFull ?? "dropOldest"
    const presenceTtlMs = Duration.toMillis(Duration.decode(options.presenceTtl ?? "15 seconds"))
    const processId = randomBytes(8).toString("hex")
    const publisher = Buffer.from(processId, "latin1")
    const BUFFERS = { typeMapping: { [redis.RESP_TYPES.BLOB_STRING]: Buffer } }

    const channelOf = (topic: string) => `${prefix}t:${topic}`
    const streamOf = channelOf
    const topicOfKey = (key: string) => key.slice(prefix.length + 2)
    const presenceSet = (topic: string) => `${prefix}p:${topic}`
    const presenceKey = (topic: string, pid: string) => `${prefix}p:${topic}:${pid}`

    const events = yield* PubSub.sliding<Broadcast.BackendEvent>(1024)
    const emit = (event: Broadcast.BackendEvent) => {
      if (event._tag === "Gap") {
        metrics.gaps.unsafeUpdate(1, [])
        if (event.missed !== undefined) metrics.missed.unsafeUpdate(event.missed, [])
      }
      Effect.runSync(PubSub.publish(events, event))
    }

    // ---------------------------------------------------------------- state of this process

    /** Topics with local subscribers. Stream mode: the last id delivered (undefined: being resolved). */
    const interested = new Map<string, string | undefined>()
    /** Topic → publisher → last sequence number delivered. */
    const seen = new Map<string, Map<string, number>>()
    /** Topic → next sequence number of this process's publishes. */
    const sequence = new Map<string, number>()
    /** This process's presence names per topic. */
    const presence = new Map<string, ReadonlyArray<string>>()
    const presenceDirty = new Set<string>()

    /** Whether a message is new from its publisher; counts gaps and duplicates. */
    const admit = (topic: string, d: Decoded): boolean => {
      let bySender = seen.get(topic)
      if (bySender === undefined) seen.set(topic, bySender = new Map())
      const last = bySender.get(d.publisher)
      if (last !== undefined && d.seq <= last) {
        metrics.duplicates.unsafeUpdate(1, [])
        return false
      }
      if (last !== undefined && d.seq > last + 1) emit({ _tag: "Gap", topic, missed: d.seq - last - 1 })
      bySender.set(d.publisher, d.seq)
      return true
    }

    const nextSeq = (topic: string): number => {
      const n = (sequence.get(topic) ?? 0) + 1
      sequence.set(topic, n)
      return n
    }

    // ---------------------------------------------------------------- connections

    interface Link {
      readonly client: Client
      readonly lost: Deferred.Deferred<never, LinkError>
    }

    /** Every connection currently open, so that the health check can drop them all. */
    const open = new Set<Link>()
    const drop = (link: Link, detail: string) => {
      open.delete(link)
      Deferred.unsafeDone(link.lost, Effect.fail(new LinkError({ detail })))
      try {
        link.client.destroy()
      } catch {
        // already closed
      }
    }

    const openClient = (role: string): Effect.Effect<Link, Broadcast.BackendError, Scope.Scope> =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const client = redis.createClient({
            url: options.url,
            name: `${prefix}${processId}:${role}`,
            disableOfflineQueue: true,
            socket: { connectTimeout: Duration.toMillis(connectTimeout), reconnectStrategy: false }
          }) as Client
          const link: Link = { client, lost: Deferred.unsafeMake<never, LinkError>(FiberId.none) }
          client.on("error", (e: unknown) => drop(link, String(e)))
          client.on("end", () => drop(link, "connection closed"))
          open.add(link)
          return link
        }),
        (link) => Effect.sync(() => drop(link, "released"))
      ).pipe(
        Effect.tap((link) =>
          Effect.raceFirst(
            Effect.tryPromise({ try: () => link.client.connect(), catch: classify }),
            // node-redis reports some failures of its handshake (AUTH) only as an "error" event.
            Effect.mapError(Deferred.await(link.lost), (e) => classify(e.detail))
          ).pipe(
            Effect.timeoutFail({
              duration: connectTimeout,
              onTimeout: () =>
                new Broadcast.BackendError({ reason: "Timeout", detail: `no answer within ${Duration.format(connectTimeout)}` })
            })
          )
        )
      )

    /**
     * One command with the command timeout; a timeout or failure drops the connection, and so
     * does an error reply unless `replyKeeps` (a reply the caller expects, such as "no such key").
     */
    const command = <A = unknown>(link: Link, args: ReadonlyArray<string | Buffer>, extraMs = 0, replyKeeps = false) =>
      Effect.tryPromise({
        try: () => link.client.sendCommand(args, BUFFERS) as Promise<A>,
        catch: (e) => new LinkError({ detail: String(e), answered: e instanceof redis.ErrorReply })
      }).pipe(
        Effect.timeoutFail({
          duration: commandMs + extraMs,
          onTimeout: () => new LinkError({ detail: `${String(args[0])} unanswered` })
        }),
        Effect.tapError((e) => Effect.sync(() => (replyKeeps && e.answered ? undefined : drop(link, e.detail))))
      )

    /**
     * A connection kept open: `setup` runs on each new connection, then `run` until the link is
     * lost; the first attempt's failure fails the layer, later ones are retried on the schedule.
     */
    const keep = (
      role: string,
      setup: (link: Link, again: boolean) => Effect.Effect<void, LinkError | Broadcast.BackendError>,
      run: (link: Link) => Effect.Effect<void, LinkError>
    ) =>
      Effect.gen(function*() {
        const ready = yield* Deferred.make<void, Broadcast.BackendError>()
        const driver = yield* Schedule.driver(reconnect)
        let again = false
        let up = false
        const session = Effect.scoped(Effect.gen(function*() {
          const link = yield* openClient(role)
          yield* setup(link, again)
          if (again) metrics.reconnects.unsafeUpdate(1, [])
          again = true
          up = true
          yield* driver.reset
          yield* Deferred.succeed(ready, undefined)
          yield* Effect.raceFirst(Effect.zipRight(run(link), Effect.never), Deferred.await(link.lost))
        }))
        const loop: Effect.Effect<void> = session.pipe(
          Effect.catchAll((e) =>
            Effect.gen(function*() {
              if (yield* Deferred.isDone(ready)) {
                if (up) emit({ _tag: "Disconnected", reason: `${role}: ${e.detail}` })
                up = false
                yield* Effect.orElse(driver.next(undefined), () => Effect.never)
                return yield* loop
              }
              const error = e._tag === "BackendError" ?
                e :
                new Broadcast.BackendError({ reason: "Connect", detail: e.detail })
              yield* Deferred.fail(ready, error)
              return yield* Effect.never
            })
          )
        )
        const fiber = yield* Effect.forkScoped(loop)
        return { ready: Deferred.await(ready), fiber }
      })

    // ---------------------------------------------------------------- commands, health, presence

    let cmd: Link | undefined = undefined
    const wake = { writer: () => {}, reader: () => {} }
    let readerId: string | undefined = undefined
    let blocked = false

    const ignore = (p: Promise<unknown>) => void p.catch(() => {})

    /** A blocked XREAD is woken (through `link`, a command connection) so that it reads the new set of streams. */
    const unblockReader = (link: Link | undefined = cmd) => {
      if (blocked && link !== undefined && readerId !== undefined) {
        ignore(link.client.sendCommand(["CLIENT", "UNBLOCK", readerId]))
      }
    }

    const presenceWrite = (link: Link, topic: string) => {
      const names = presence.get(topic) ?? []
      const key = presenceKey(topic, processId)
      if (names.length === 0) {
        return Effect.zipRight(command(link, ["DEL", key]), command(link, ["SREM", presenceSet(topic), processId]))
      }
      return Effect.zipRight(
        command(link, ["SET", key, JSON.stringify(names), "PX", String(presenceTtlMs)]),
        command(link, ["SADD", presenceSet(topic), processId])
      )
    }
    const presenceFlush = (link: Link, all: boolean) =>
      Effect.suspend(() => {
        const topics = all ? [...presence.keys()] : [...presenceDirty]
        presenceDirty.clear()
        return Effect.forEach(topics, (t) => presenceWrite(link, t), { discard: true })
      })

    /** Resolves where a newly interesting topic's stream starts for this process (its last id now). */
    const resolvePositions = (link: Link) =>
      Effect.suspend(() => {
        // each topic asked once at a time: a later resolution must not move a position the reader
        // has started from (a failure ends the link, and the next one's setup asks again)
        const pending = [...interested].filter(([t, id]) => id === undefined && !resolving.has(t)).map(([t]) => t)
        for (const t of pending) resolving.add(t)
        return Effect.forEach(pending, (topic) =>
          command<Array<[Buffer, unknown]>>(link, ["XREVRANGE", streamOf(topic), "+", "-", "COUNT", "1"]).pipe(
            Effect.map((r) => {
              if (interested.has(topic) && interested.get(topic) === undefined) {
                interested.set(topic, r.length > 0 ? r[0]![0].toString() : "0-0")
              }
            })
          ), { discard: true }).pipe(
            Effect.tap(() => {
              if (pending.length === 0) return
              // a reader idle for want of streams starts; one blocked on the others reads these too
              wake.reader()
              unblockReader(link)
            }),
            Effect.ensuring(Effect.sync(() => pending.forEach((t) => resolving.delete(t))))
          )
      })
    /** Topics whose position is being asked for. */
    const resolving = new Set<string>()

    // ---------------------------------------------------------------- stream mode: the queue and its writer

    const queue: Array<Pending> = []
    const enqueue = (p: Pending) => {
      if (queue.length >= queueSize) {
        metrics.queueDropped.unsafeUpdate(1, [])
        if (onQueueFull === "dropNewest") return
        queue.shift()
      }
      queue.push(p)
      metrics.queued.unsafeUpdate(queue.length, [])
      wake.writer()
    }

    const signal = () => {
      let waiter: (() => void) | undefined
      let flagged = false
      return {
        notify: () => {
          flagged = true
          const w = waiter
          waiter = undefined
          w?.()
        },
        wait: Effect.async<void>((resume) => {
          if (flagged) {
            flagged = false
            return resume(Effect.void)
          }
          waiter = () => {
            flagged = false
            resume(Effect.void)
          }
          return Effect.sync(() => {
            waiter = undefined
          })
        })
      }
    }

    const presenceSignal = signal()
    const writerSignal = signal()
    wake.writer = writerSignal.notify
    const writer = (link: Link): Effect.Effect<void, LinkError> =>
      Effect.forever(Effect.gen(function*() {
        if (queue.length === 0) yield* writerSignal.wait
        yield* resolvePositions(link)
        const batch = queue.slice(0, 256)
        if (batch.length === 0) return
        // One pipeline, in queue order.
        yield* Effect.tryPromise({
          try: () =>
            Promise.all(batch.map((p) =>
              link.client.sendCommand(["XADD", streamOf(p.topic), "MAXLEN", "~", String(maxLen), "*", "m", p.payload])
            )),
          catch: (e) => new LinkError({ detail: String(e) })
        }).pipe(
          Effect.timeoutFail({ duration: commandMs, onTimeout: () => new LinkError({ detail: "XADD unanswered" }) }),
          Effect.tapError((e) => Effect.sync(() => drop(link, e.detail)))
        )
        // Sent: those of the batch the queue still holds, at its head (dropOldest may have shifted
        // some of the batch out meanwhile, never anything behind it).
        const sent = new Set(batch)
        let n = 0
        while (n < queue.length && sent.has(queue[n]!)) n++
        queue.splice(0, n)
        metrics.queued.unsafeUpdate(queue.length, [])
      }))

    const cmdKeeper = yield* keep("cmd", (link) =>
      Effect.gen(function*() {
        yield* command(link, ["PING"])
        if (mode === "stream") yield* resolvePositions(link)
        yield* presenceFlush(link, true)
        cmd = link
      }), (link) => {
      const health = Effect.forever(Effect.zipRight(Effect.sleep(healthInterval), command(link, ["PING"]))).pipe(
        // Redis frozen or gone: every connection is dropped and made again.
        Effect.tapError((e) => Effect.sync(() => [...open].forEach((l) => drop(l, e.detail))))
      )
      const heartbeat = Effect.forever(
        Effect.zipRight(Effect.sleep(Duration.millis(presenceTtlMs / 3)), presenceFlush(link, true))
      )
      const presenceLoop = Effect.forever(Effect.zipRight(presenceSignal.wait, presenceFlush(link, false)))
      return Effect.ensuring(
        Effect.raceAll([health, heartbeat, presenceLoop, ...(mode === "stream" ? [writer(link)] : [])]),
        Effect.sync(() => {
          if (cmd === link) cmd = undefined
        })
      )
    })

    // ---------------------------------------------------------------- the subscription

    const onPubSub = (payload: Buffer, channel: Buffer) => {
      const d = decodeMessage(payload)
      if (d === undefined || d.publisher === processId) return
      const topic = topicOfKey(channel.toString())
      if (!interested.has(topic) || !admit(topic, d)) return
      receive(topic, d.message, { compress: d.compress }, undefined)
    }

    let sub: Link | undefined = undefined
    const readerSignal = signal()
    wake.reader = readerSignal.notify

    const readEntries = (streams: Array<[Buffer, Array<[Buffer, Array<Buffer>]>]> | null) => {
      if (streams === null) return
      for (const [key, entries] of streams) {
        const topic = topicOfKey(key.toString())
        if (!interested.has(topic)) continue
        for (const [idBuf, fields] of entries) {
          const id = idBuf.toString()
          interested.set(topic, id)
          const d = fields[1] === undefined ? undefined : decodeMessage(fields[1])
          if (d === undefined || !admit(topic, d)) continue
          receive(topic, d.message, { compress: d.compress }, id)
        }
      }
    }

    /** After a reconnection: whether the stream was trimmed past where this process stopped. */
    const checkTrimmed = (link: Link) =>
      Effect.forEach([...interested], ([topic, last]) =>
        last === undefined ? Effect.void : command<Array<Buffer | unknown>>(link, ["XINFO", "STREAM", streamOf(topic)], 0, true).pipe(
          Effect.map((info) => {
            const i = info.findIndex((x) => Buffer.isBuffer(x) && x.toString() === "max-deleted-entry-id")
            const deleted = i >= 0 ? String(info[i + 1]) : "0-0"
            if (compareOffsets(deleted, last) > 0) emit({ _tag: "Gap", topic, missed: undefined })
          }),
          Effect.catchAll(() => Effect.void) // no stream yet
        ), { discard: true })

    const BLOCK_MS = 5_000
    const reader = (link: Link): Effect.Effect<void, LinkError> =>
      Effect.forever(Effect.gen(function*() {
        const ready = [...interested].filter(([, id]) => id !== undefined) as Array<[string, string]>
        if (ready.length === 0) return yield* readerSignal.wait
        blocked = true
        const r = yield* command<Array<[Buffer, Array<[Buffer, Array<Buffer>]>]> | null>(link, [
          "XREAD", "COUNT", "512", "BLOCK", String(BLOCK_MS), "STREAMS",
          ...ready.map(([t]) => streamOf(t)),
          ...ready.map(([, id]) => id)
        ], BLOCK_MS).pipe(Effect.ensuring(Effect.sync(() => (blocked = false))))
        readEntries(r)
      }))

    const subKeeper = yield* keep(mode === "stream" ? "reader" : "sub", (link, again) =>
      Effect.gen(function*() {
        if (mode === "pubsub") {
          const channels = [...interested.keys()].map(channelOf)
          if (channels.length > 0) {
            yield* Effect.tryPromise({
              try: () => link.client.subscribe(channels, onPubSub, true),
              catch: (e) => new LinkError({ detail: String(e) })
            })
          }
          if (again) for (const topic of interested.keys()) emit({ _tag: "Gap", topic, missed: undefined })
        } else {
          readerId = String(yield* command<number>(link, ["CLIENT", "ID"]))
          if (again) yield* checkTrimmed(link)
        }
        if (again) emit({ _tag: "Reconnected" })
        sub = link
      }), (link) =>
      Effect.ensuring(
        mode === "stream" ? reader(link) : Effect.never,
        Effect.sync(() => {
          if (sub === link) sub = undefined
        })
      ))

    yield* Effect.all([cmdKeeper.ready, subKeeper.ready], { concurrency: "unbounded", discard: true }).pipe(
      Effect.timeoutFail({
        duration: connectTimeout,
        onTimeout: () =>
          new Broadcast.BackendError({ reason: "Timeout", detail: `not ready within ${Duration.format(connectTimeout)}` })
      }),
      Effect.onError(() => Effect.all([Fiber.interrupt(cmdKeeper.fiber), Fiber.interrupt(subKeeper.fiber)]))
    )

    // ---------------------------------------------------------------- the backend's face

    const connection: Broadcast.BackendConnection = {
      loopback: mode === "stream",
      publish: (topic, message, opts) =>
        Effect.sync(() => {
          const payload = encodeMessage(publisher, nextSeq(topic), message, opts.compress ?? true)
          if (mode === "stream") return enqueue({ topic, payload })
          const link = cmd
          if (link === undefined) return metrics.publishFailures.unsafeUpdate(1, [])
          link.client.sendCommand(["PUBLISH", channelOf(topic), payload]).catch(() =>
            metrics.publishFailures.unsafeUpdate(1, [])
          )
        }),
      interest: (topic, subscribed) => {
        if (subscribed && mode === "pubsub") {
          interested.set(topic, "") // Pub/Sub has no position
          if (sub !== undefined) ignore(sub.client.subscribe(channelOf(topic), onPubSub, true))
        } else if (subscribed) {
          // resolved on the command connection, before later XADDs; the reader is woken then
          interested.set(topic, undefined)
          if (cmd !== undefined) Effect.runFork(Effect.ignore(resolvePositions(cmd)))
        } else {
          interested.delete(topic)
          seen.delete(topic)
          if (mode === "pubsub" && sub !== undefined) {
            // node-redis forgets a channel when Redis answers its UNSUBSCRIBE, and takes a SUBSCRIBE
            // asked for before that answer as a no-op: a topic taken again meanwhile is subscribed
            // once the answer is in (a new connection subscribes every topic itself)
            const link = sub
            ignore(link.client.unsubscribe(channelOf(topic)).then(() => {
              if (sub === link && interested.has(topic)) return link.client.subscribe(channelOf(topic), onPubSub, true)
            }))
          }
          if (mode === "stream") unblockReader()
        }
      },
      position: (topic) => interested.get(topic),
      history: mode === "stream" ?
        (topic, since) =>
          Effect.gen(function*() {
            // Wait (bounded) until this process knows where it reads the topic from.
            for (let i = 0; i < commandMs / 10 && interested.get(topic) === undefined; i++) yield* Effect.sleep(10)
            const link = cmd
            if (link === undefined) return []
            const r = yield* command<Array<[Buffer, Array<Buffer>]>>(link, [
              "XRANGE", streamOf(topic), `(${since}`, "+", "COUNT", String(maxLen)
            ])
            const out: Array<Broadcast.HistoryEntry> = []
            const bySender = new Map<string, number>()
            for (const [id, fields] of r) {
              const d = fields[1] === undefined ? undefined : decodeMessage(fields[1])
              if (d === undefined) continue
              const last = bySender.get(d.publisher)
              if (last !== undefined && d.seq <= last) continue
              bySender.set(d.publisher, d.seq)
              out.push({ offset: id.toString(), message: d.message, compress: d.compress })
            }
            return out
          }).pipe(Effect.orElseSucceed(() => [])) :
        undefined,
      presence: (topic, names) => {
        if (names.length === 0 && !presence.has(topic)) return
        if (names.length === 0) presence.set(topic, [])
        else presence.set(topic, names)
        presenceDirty.add(topic)
        presenceSignal.notify()
      },
      members: (topic) =>
        Effect.gen(function*() {
          const link = cmd
          if (link === undefined) return [...(presence.get(topic) ?? [])].sort()
          const pids = (yield* command<Array<Buffer>>(link, ["SMEMBERS", presenceSet(topic)])).map(String)
          const values = pids.length === 0 ?
            [] :
            yield* command<Array<Buffer | null>>(link, ["MGET", ...pids.map((p) => presenceKey(topic, p))])
          const names: Array<string> = []
          const gone: Array<string> = []
          values.forEach((v, i) => {
            if (v === null) gone.push(pids[i]!)
            else if (pids[i] !== processId) names.push(...(JSON.parse(v.toString()) as Array<string>))
          })
          // This process's own names as they are now (its write to Redis may still be on the way).
          names.push(...(presence.get(topic) ?? []))
          if (gone.length > 0) ignore(link.client.sendCommand(["SREM", presenceSet(topic), ...gone]))
          return names.sort()
        }).pipe(Effect.orElseSucceed(() => [...(presence.get(topic) ?? [])].sort())),
      events: Stream.fromPubSub(events)
    }
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        // Leave the presence of every topic before going.
        const link = cmd
        if (link === undefined) return
        for (const topic of presence.keys()) presence.set(topic, [])
        yield* Effect.ignore(presenceFlush(link, true))
      })
    )
    return connection
  })
