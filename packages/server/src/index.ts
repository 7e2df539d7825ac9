/**
 * @since 0.1.0
 */
export * as Errors from "./Errors.js"
/** @since 0.1.0 */
export * as Metrics from "./Metrics.js"
/** @since 0.1.0 */
export * as WebSocket from "./WebSocket.js"
/** @since 0.1.0 */
export * as WebSocketServer from "./WebSocketServer.js"
/** @since 0.1.0 */
export * as MessageSchema from "./MessageSchema.js"
/** @since 0.1.0 */
export * as SocketInterop from "./SocketInterop.js"
/** @since 0.1.0 */
export * as HttpUpgrade from "./HttpUpgrade.js"
/** @since 0.1.0 */
export * as Broadcast from "./Broadcast.js"
/** @since 0.1.0 */
export * as Cluster from "./Cluster.js"
/** @since 0.1.0 */
export * as BroadcastRedis from "./BroadcastRedis.js"
