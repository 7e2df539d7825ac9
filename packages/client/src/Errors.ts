/**
 * Errors of the client package: one class per way opening a connection can fail, plus the
 * protocol failures (with their close codes) and the send errors shared with the server.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

export {
  /** @since 0.1.0 @category errors */
  HandshakeResponseError,
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
export {
  /** @since 0.1.0 @category errors */
  WebSocketClosedError
} from "@effect-websocket/server/Errors"
import type { HandshakeResponseError } from "@effect-websocket/protocol/Errors"

/**
 * The URL or an option cannot be used: not `ws:`/`wss:` (or `http:`/`https:`), a fragment,
 * a bad header, a subprotocol that is not a token.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptionsError extends Data.TaggedError("InvalidOptionsError")<{
  readonly detail: string
}> {
  override get message(): string {
    return `invalid WebSocket client options: ${this.detail}`
  }
}

/**
 * The host name did not resolve (`ENOTFOUND`, `EAI_AGAIN`, ...).
 *
 * @since 0.1.0
 * @category errors
 */
export class DnsError extends Data.TaggedError("DnsError")<{
  readonly host: string
  readonly code: string | undefined
  readonly cause: unknown
}> {
  override get message(): string {
    return `could not resolve ${this.host}${this.code === undefined ? "" : ` (${this.code})`}`
  }
}

/**
 * The TCP connection failed (`ECONNREFUSED`, `ECONNRESET`, `EHOSTUNREACH`, ...), or the
 * server closed it before answering the upgrade.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectError extends Data.TaggedError("ConnectError")<{
  readonly host: string
  readonly port: number
  readonly code: string | undefined
  readonly cause: unknown
}> {
  override get message(): string {
    return `could not connect to ${this.host}:${this.port}${this.code === undefined ? "" : ` (${this.code})`}`
  }
}

/**
 * The TLS handshake failed: an untrusted or expired certificate, a name mismatch, a
 * protocol alert. `code` is Node's (`DEPTH_ZERO_SELF_SIGNED_CERT`,
 * `ERR_TLS_CERT_ALTNAME_INVALID`, ...).
 *
 * @since 0.1.0
 * @category errors
 */
export class TlsError extends Data.TaggedError("TlsError")<{
  readonly code: string | undefined
  readonly cause: unknown
}> {
  override get message(): string {
    return `TLS handshake failed${this.code === undefined ? "" : ` (${this.code})`}: ${String(this.cause)}`
  }
}

/**
 * The HTTP proxy refused the `CONNECT` (its status, e.g. 407 or 502) or answered with
 * something that is not HTTP.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProxyError extends Data.TaggedError("ProxyError")<{
  readonly status: number | undefined
  readonly detail: string
}> {
  override get message(): string {
    return `proxy CONNECT failed${this.status === undefined ? "" : ` (${this.status})`}: ${this.detail}`
  }
}

/**
 * No complete upgrade response within `handshakeTimeout` (DNS, TCP, proxy, TLS and the
 * HTTP exchange together).
 *
 * @since 0.1.0
 * @category errors
 */
export class HandshakeTimeoutError extends Data.TaggedError("HandshakeTimeoutError")<{
  readonly timeout: number
}> {
  override get message(): string {
    return `no WebSocket handshake within ${this.timeout} ms`
  }
}

/**
 * The server answered the upgrade with another status than 101 (a 403, a 404, a redirect).
 * `body` holds the response body, at most 64 KiB of it, decoded as UTF-8.
 *
 * @since 0.1.0
 * @category errors
 */
export class HttpStatusError extends Data.TaggedError("HttpStatusError")<{
  readonly status: number
  readonly statusText: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}> {
  override get message(): string {
    return `the server answered the upgrade with ${this.status} ${this.statusText}`
  }
}

/**
 * Every way `connect` can fail.
 *
 * @since 0.1.0
 * @category models
 */
export type ConnectionError =
  | InvalidOptionsError
  | DnsError
  | ConnectError
  | TlsError
  | ProxyError
  | HandshakeTimeoutError
  | HttpStatusError
  | HandshakeResponseError

/**
 * A send on a reconnecting client while disconnected found the buffer full.
 *
 * @since 0.1.0
 * @category errors
 */
export class BufferFullError extends Data.TaggedError("BufferFullError")<{
  readonly limit: number
}> {
  override get message(): string {
    return `reconnecting client: the send buffer is full (${this.limit} messages)`
  }
}
