/**
 * The RFC 6455 connection state machine, sans I/O (python-websockets' model):
 * `receiveData` / `receiveEof` in, `eventsReceived` / `dataToSend` / `closeExpected` /
 * `closeTransport` out. No sockets, no timers, no Effect runtime on the per-frame path.
 *
 * @since 0.1.0
 */
export {
  /** @since 0.1.0 @category validation */
  checkClose,
  /** @since 0.1.0 @category constructors */
  Connection,
  /** @since 0.1.0 @category models */
  ConnectionState,
  /** @since 0.1.0 @category validation */
  isValidCloseCode
} from "./internal/connection.js"
export type {
  /** @since 0.1.0 @category models */
  ConnectionEvent,
  /** @since 0.1.0 @category models */
  ConnectionOptions,
  /** @since 0.1.0 @category models */
  MessageCompression
} from "./internal/connection.js"
