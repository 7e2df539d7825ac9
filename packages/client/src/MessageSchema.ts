/**
 * Typed messages over a client connection with `effect/Schema`, the same module the server
 * uses: JSON text in and out, a message that does not decode is a `MessageDecodeError` in
 * the stream.
 *
 * ```ts
 * const typed = MessageSchema.make(ws, { incoming: ServerMessage, outgoing: ClientMessage })
 * yield* typed.send({ _tag: "Subscribe", topic: "prices" })
 * ```
 *
 * @since 0.1.0
 */
export {
  /** @since 0.1.0 @category constructors */
  make,
  /** @since 0.1.0 @category errors */
  MessageDecodeError,
  /** @since 0.1.0 @category errors */
  MessageEncodeError
} from "@effect-websocket/server/MessageSchema"
export type {
  /** @since 0.1.0 @category models */
  TypedSocket
} from "@effect-websocket/server/MessageSchema"
