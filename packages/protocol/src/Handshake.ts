/**
 * The server side of the WebSocket opening handshake (RFC 6455 §4.2), sans I/O.
 *
 * 1. Feed the socket's bytes to a {@link RequestParser} until it returns the
 *    request head (or a `HandshakeError`: 400 malformed, 431 too large). Keep
 *    `rest`: those bytes are the first frames.
 * 2. {@link validateUpgrade} applies the RFC 6455 §4.2.1 rules and parses
 *    `Sec-WebSocket-Protocol` / `Sec-WebSocket-Extensions`. It also accepts a
 *    `node:http` `IncomingMessage`.
 * 3. Write {@link acceptResponse} (101 with `Sec-WebSocket-Accept`) or
 *    {@link rejectResponse} (any `HandshakeError`, or your own 403/404/503) and close.
 *
 * ```ts
 * import { HandshakeError } from "@effect-websocket/protocol/Errors"
 * import * as Handshake from "@effect-websocket/protocol/Handshake"
 *
 * const parser = new Handshake.RequestParser()
 * const onData = (chunk: Uint8Array) => {
 *   const parsed = parser.push(chunk)
 *   if (parsed === undefined) return // need more bytes
 *   if (parsed instanceof HandshakeError) return write(Handshake.rejectResponse(parsed)) // then close
 *   const upgrade = Handshake.validateUpgrade(parsed.request)
 *   if (upgrade instanceof HandshakeError) return write(Handshake.rejectResponse(upgrade))
 *   write(Handshake.acceptResponse({ key: upgrade.key }))
 *   startFrames(parsed.rest)
 * }
 * ```
 *
 * Header values are decoded as latin1. Nothing here throws on peer bytes; the
 * response builders throw only on invalid arguments from the application
 * (header injection, a non-token subprotocol, an unsupported status).
 *
 * @since 0.1.0
 */
export {
  /**
   * `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (RFC 6455 §1.3).
   *
   * @since 0.1.0
   * @category constructors
   */
  acceptKey,
  /**
   * The complete `101 Switching Protocols` response bytes.
   *
   * @since 0.1.0
   * @category constructors
   */
  acceptResponse,
  /**
   * A complete HTTP/1.1 refusal with `Connection: close`; `rejectResponse(error)`
   * works for a `HandshakeError`.
   *
   * @since 0.1.0
   * @category constructors
   */
  rejectResponse,
  /**
   * Incremental, linear-time HTTP/1.1 request-head parser with size limits.
   *
   * @since 0.1.0
   * @category parsing
   */
  RequestParser,
  /**
   * RFC 6455 §4.2.1 validation of an upgrade request.
   *
   * @since 0.1.0
   * @category validation
   */
  validateUpgrade,
  /**
   * RFC 8441 §4-5 validation of an HTTP/2 extended CONNECT (WebSockets over HTTP/2).
   *
   * @since 0.1.0
   * @category validation
   */
  validateExtendedConnect,
  /**
   * The `:status 200` header block that accepts an extended CONNECT.
   *
   * @since 0.1.0
   * @category constructors
   */
  extendedConnectResponse
} from "./internal/handshake.js"

/**
 * The client side (RFC 6455 §4.1): {@link generateKey}, {@link upgradeRequest}, a
 * {@link ResponseParser} for the answer, and {@link validateResponse} for a 101.
 *
 * @since 0.1.0
 */
export {
  /** @since 0.1.0 @category constructors */
  generateKey,
  /** @since 0.1.0 @category parsing */
  ResponseParser,
  /** @since 0.1.0 @category constructors */
  upgradeRequest,
  /** @since 0.1.0 @category validation */
  validateResponse
} from "./internal/clientHandshake.js"
export type {
  AcceptedUpgrade,
  ClientOffer,
  RawResponse,
  ResponseComplete,
  ResponseParserLimits,
  UpgradeRequestOptions
} from "./internal/clientHandshake.js"

export type {
  AcceptOptions,
  ExtendedConnectAcceptOptions,
  ExtendedConnectOptions,
  RawRequest,
  RejectOptions,
  RequestComplete,
  RequestParseResult,
  RequestParserLimits,
  UpgradeRequest,
  UpgradeRequestInput
} from "./internal/handshake.js"
