/**
 * The sans-I/O RFC 6455 + RFC 7692 core, one namespace per module. Each module is also
 * reachable on its own (`@effect-websocket/protocol/Connection`, ...).
 *
 * @since 0.1.0
 */
export * as Connection from "./Connection.js"
/** @since 0.1.0 */
export * as Errors from "./Errors.js"
/** @since 0.1.0 */
export * as Extensions from "./Extensions.js"
/** @since 0.1.0 */
export * as Frame from "./Frame.js"
/** @since 0.1.0 */
export * as Handshake from "./Handshake.js"
/** @since 0.1.0 */
export * as PerMessageDeflate from "./PerMessageDeflate.js"
/** @since 0.1.0 */
export * as Utf8 from "./Utf8.js"
