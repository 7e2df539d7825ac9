/**
 * Protocol failures as values. Every class carries the close code it maps to
 * (RFC 6455 §7.4.1) and a short reason that is safe to put on the wire. The core
 * returns these; it never throws on input bytes.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * Close codes the core can fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type FailureCloseCode = 1002 | 1007 | 1008 | 1009 | 1011

/**
 * 1002: the peer broke a framing or protocol rule (RFC 6455 §7.4.1).
 *
 * @since 0.1.0
 * @category errors
 */
export class ProtocolViolationError extends Data.TaggedError("ProtocolViolationError")<{
  readonly reason: string
}> {
  readonly closeCode = 1002 as const
  override get message(): string {
    return `protocol error (1002): ${this.reason}`
  }
}

/**
 * 1007: a text message or close reason that is not UTF-8, or compressed data that
 * does not inflate.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidPayloadError extends Data.TaggedError("InvalidPayloadError")<{
  readonly reason: string
}> {
  readonly closeCode = 1007 as const
  override get message(): string {
    return `invalid payload data (1007): ${this.reason}`
  }
}

/**
 * 1008: a policy limit that is not about size, such as the fragment-count cap.
 *
 * @since 0.1.0
 * @category errors
 */
export class PolicyViolationError extends Data.TaggedError("PolicyViolationError")<{
  readonly reason: string
}> {
  readonly closeCode = 1008 as const
  override get message(): string {
    return `policy violation (1008): ${this.reason}`
  }
}

/**
 * 1009: a frame or message (after inflation) larger than the configured limit.
 *
 * @since 0.1.0
 * @category errors
 */
export class MessageTooBigError extends Data.TaggedError("MessageTooBigError")<{
  readonly reason: string
  readonly limit: number
}> {
  readonly closeCode = 1009 as const
  override get message(): string {
    return `message too big (1009): ${this.reason}`
  }
}

/**
 * 1011: an internal fault. The detail stays in `cause` and never reaches the wire.
 *
 * @since 0.1.0
 * @category errors
 */
export class InternalError extends Data.TaggedError("InternalError")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  readonly closeCode = 1011 as const
  override get message(): string {
    return `internal error (1011): ${this.reason}`
  }
}

/**
 * Any failure that closes a WebSocket connection with a code.
 *
 * @since 0.1.0
 * @category models
 */
export type ProtocolError =
  | ProtocolViolationError
  | InvalidPayloadError
  | PolicyViolationError
  | MessageTooBigError
  | InternalError

/**
 * HTTP statuses an upgrade request can be rejected with.
 *
 * @since 0.1.0
 * @category models
 */
export type HandshakeStatus = 400 | 403 | 404 | 405 | 426 | 431 | 501 | 503

/**
 * The opening handshake was refused. `status` is the HTTP status of the response,
 * `headers` any extra response headers it requires (426 carries
 * `Sec-WebSocket-Version: 13`).
 *
 * @since 0.1.0
 * @category errors
 */
export class HandshakeError extends Data.TaggedError("HandshakeError")<{
  readonly status: HandshakeStatus
  readonly reason: string
  readonly headers?: Readonly<Record<string, string>>
}> {
  override get message(): string {
    return `handshake rejected (${this.status}): ${this.reason}`
  }
}

/**
 * Type guard for the close-code carrying failures.
 *
 * @since 0.1.0
 * @category guards
 */
export const isProtocolError = (u: unknown): u is ProtocolError =>
  u instanceof ProtocolViolationError ||
  u instanceof InvalidPayloadError ||
  u instanceof PolicyViolationError ||
  u instanceof MessageTooBigError ||
  u instanceof InternalError

/**
 * A local call was refused before anything reached the wire: a close code that may not be
 * sent, a close reason over 123 bytes, or a send after the connection left OPEN.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidSendError extends Data.TaggedError("InvalidSendError")<{
  /**
   * What was refused, as a literal to match on: `"NotOpen"` (the connection left OPEN),
   * `"CloseCode"` (a code that may not be sent), `"CloseReason"` (over 123 bytes),
   * `"ControlPayload"` (a Ping or Pong over 125 bytes).
   */
  readonly kind: "NotOpen" | "CloseCode" | "CloseReason" | "ControlPayload"
  readonly reason: string
}> {
  override get message(): string {
    return `invalid send: ${this.reason}`
  }
}

/**
 * Why a client refuses the server's answer to its upgrade request (RFC 6455 §4.1, §4.2.2;
 * RFC 7692 §5 for extensions).
 *
 * - `Malformed`: the response head is not valid HTTP/1.1.
 * - `TooLarge`: the response head is over the size or header-count limit.
 * - `Upgrade`: `Upgrade: websocket` or `Connection: Upgrade` missing.
 * - `Accept`: `Sec-WebSocket-Accept` missing or not the value for our key.
 * - `Protocol`: a subprotocol we did not offer, or more than one.
 * - `Extensions`: an extension we did not offer, or parameters RFC 7692 does not allow.
 *
 * @since 0.1.0
 * @category errors
 */
export class HandshakeResponseError extends Data.TaggedError("HandshakeResponseError")<{
  readonly reason: "Malformed" | "TooLarge" | "Upgrade" | "Accept" | "Protocol" | "Extensions"
  readonly detail: string
}> {
  override get message(): string {
    return `invalid handshake response (${this.reason}): ${this.detail}`
  }
}
