/**
 * Errors of the server package. Protocol failures (1002, 1007, 1008, 1009, 1011) are the
 * protocol package's classes, re-exported here.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

export {
  /** @since 0.1.0 @category errors */
  HandshakeError,
  /** @since 0.1.0 @category errors */
  InternalError,
  /** @since 0.1.0 @category errors */
  InvalidPayloadError,
  /** @since 0.1.0 @category errors */
  InvalidSendError,
  /** @since 0.1.0 @category errors */
  MessageTooBigError,
  /** @since 0.1.0 @category errors */
  PolicyViolationError,
  /** @since 0.1.0 @category errors */
  ProtocolViolationError
} from "@effect-websocket/protocol/Errors"
export type {
  /** @since 0.1.0 @category errors */
  ProtocolError
} from "@effect-websocket/protocol/Errors"

/**
 * The server could not start: the address is in use, the TLS material is invalid, ...
 *
 * @since 0.1.0
 * @category errors
 */
export class ServerError extends Data.TaggedError("ServerError")<{
  readonly reason: "Listen" | "Tls"
  readonly cause: unknown
}> {
  override get message(): string {
    return `WebSocket server failed to start (${this.reason}): ${String(this.cause)}`
  }
}

/**
 * A send on a connection that is closing or closed.
 *
 * @since 0.1.0
 * @category errors
 */
export class WebSocketClosedError extends Data.TaggedError("WebSocketClosedError")<{
  readonly reason: string
}> {
  override get message(): string {
    return `WebSocket is closed: ${this.reason}`
  }
}

/**
 * Returned by an upgrade hook to refuse a connection with an HTTP response.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpgradeRejected extends Data.TaggedError("UpgradeRejected")<{
  /** HTTP status, 300-599. */
  readonly status: number
  readonly body?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
}> {
  override get message(): string {
    return `upgrade rejected with ${this.status}`
  }
}
