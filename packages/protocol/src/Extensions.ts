/**
 * `Sec-WebSocket-Extensions` offers (RFC 6455 §9.1), parsed in linear time.
 *
 * @since 0.1.0
 */
export * from "./internal/extensions.js"
