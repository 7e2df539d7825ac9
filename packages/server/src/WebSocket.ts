/**
 * The handler's view of one accepted WebSocket connection.
 *
 * @since 0.1.0
 */
import type { PerMessageDeflateParams } from "@effect-websocket/protocol/PerMessageDeflate"
import type { Effect, Sink, Stream } from "effect"
import type { InvalidSendError, ProtocolError, WebSocketClosedError } from "./Errors.js"

/**
 * A received message: text as `string`, binary as `Uint8Array`.
 *
 * @since 0.1.0
 * @category models
 */
export type Message = string | Uint8Array

/**
 * The HTTP request that opened the connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestInfo {
  /** Request target, e.g. `/chat?room=1`. */
  readonly url: string
  /** Header fields by lowercase name. */
  readonly headers: Readonly<Record<string, string>>
  /**
   * The peer's address and port, read from the socket on first use (as Node does): read
   * them while the connection is open; after the socket closed they may be undefined.
   */
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  /**
   * How the WebSocket is carried: `"http/1.1"` (its own TCP or TLS connection, opened by an
   * upgrade) or `"h2"` (one stream of an HTTP/2 connection, opened by an RFC 8441 extended
   * CONNECT; the address is the HTTP/2 connection's).
   */
  readonly transport: "http/1.1" | "h2"
}

/**
 * How a connection ended.
 *
 * - `code` / `reason`: the peer's Close frame when it sent one (1005 when it had no code);
 *   the code we sent when we closed first and the peer answered; 1006 when TCP went away
 *   without a closing handshake.
 * - `wasClean`: both Close frames were exchanged before TCP closed.
 * - `initiatedBy`: who sent the first Close frame (`"transport"` when none was sent).
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseInfo {
  readonly code: number
  readonly reason: string
  readonly wasClean: boolean
  readonly initiatedBy: "local" | "remote" | "transport"
}

/**
 * Per-message send options.
 *
 * @since 0.1.0
 * @category models
 */
export interface SendOptions {
  /**
   * Set to false to send this message uncompressed even when permessage-deflate is on
   * (secrets next to attacker-controlled data should not share a compression context).
   */
  readonly compress?: boolean | undefined
}

/**
 * One connection, as the handler sees it. `Data` is what the upgrade hook returned.
 *
 * The functions can be passed around detached (`Stream.runForEach(ws.messages, ws.send)`).
 * The server's handle is a class instance whose members are built on first use (an idle
 * connection holds none of them), so `{ ...ws }` copies only the plain fields: a wrapper
 * should name the members it forwards.
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSocket<Data = unknown> {
  /** Process-unique connection id. */
  readonly id: number
  readonly request: RequestInfo
  /** The negotiated subprotocol, if any. */
  readonly protocol: string | undefined
  /** The negotiated `Sec-WebSocket-Extensions` response value, if any. */
  readonly extensions: string | undefined
  /**
   * The permessage-deflate parameters agreed (what `extensions` says, parsed), or
   * `undefined` without compression. `serverNoContextTakeover` / `clientNoContextTakeover`
   * tell which directions keep no state between messages (the `"shared"` memory policy).
   */
  readonly deflate: PerMessageDeflateParams | undefined
  /** Typed per-connection data from the upgrade hook. */
  readonly data: Data
  /**
   * Incoming messages. Ends after the peer's Close; fails with the protocol error (its
   * close code included) when the connection was failed. Consume it once. While it is
   * consumed, the reply to the peer's Close waits until the messages before it were
   * handled, so their answers go out first. Its chunks are reads' worth of messages; an empty
   * chunk now and then lets Effect's stream machinery drop the last batch while the peer is
   * quiet (only `Stream.chunks` shows it).
   */
  readonly messages: Stream.Stream<Message, ProtocolError>
  /**
   * Handles messages with a callback called straight from the reader, with no Effect per
   * message unless the callback returns one (forked, like `Socket.run`). Completes when
   * the connection ends; fails like `messages`.
   */
  readonly run: <_, E = never, R = never>(
    onMessage: (message: Message) => Effect.Effect<_, E, R> | void
  ) => Effect.Effect<void, ProtocolError | E, R>
  /**
   * Sends a message (string as text, bytes as binary). Suspends while the socket's
   * buffered bytes are above the high-water mark. Large binary payloads are not copied:
   * do not modify them until the send completes.
   */
  readonly send: (data: Message, options?: SendOptions) => Effect.Effect<void, WebSocketClosedError>
  /**
   * A Sink that sends what it is given: each chunk is queued whole and written with one flush,
   * and the Sink suspends while the buffered bytes are above the high-water mark. The
   * pipeline form of an echo or a transform: `ws.messages.pipe(Stream.map(f), Stream.run(ws.sink))`.
   */
  readonly sink: Sink.Sink<void, Message, never, WebSocketClosedError>
  readonly sendText: (data: string, options?: SendOptions) => Effect.Effect<void, WebSocketClosedError>
  readonly sendBinary: (data: Uint8Array, options?: SendOptions) => Effect.Effect<void, WebSocketClosedError>
  /**
   * Queues a message without suspending or allocating an Effect; for `run` callbacks.
   * Returns false when the connection is not open.
   */
  readonly unsafeSend: (data: Message, options?: SendOptions) => boolean
  /** Sends a Ping (at most 125 bytes) and waits for the next Pong; yields the round trip in ms. */
  readonly ping: (data?: Uint8Array) => Effect.Effect<number, WebSocketClosedError | InvalidSendError>
  /**
   * Starts the closing handshake (default 1000) and waits until the connection has ended.
   * A code that may not be sent or a reason over 123 bytes fails with `InvalidSendError`.
   */
  readonly close: (code?: number, reason?: string) => Effect.Effect<CloseInfo, InvalidSendError>
  /** How the connection ended; fails with the protocol error when it was failed. */
  readonly closed: Effect.Effect<CloseInfo, ProtocolError>
  /** Bytes waiting to be written (ours plus the socket's). */
  readonly bufferedAmount: Effect.Effect<number>
}
