/**
 * @since 0.1.0
 */
export * as Errors from "./Errors.js"
/** @since 0.1.0 */
export * as WebSocketClient from "./WebSocketClient.js"
/** @since 0.1.0 */
export * as MessageSchema from "./MessageSchema.js"
/** @since 0.1.0 */
export * as SocketInterop from "./SocketInterop.js"
