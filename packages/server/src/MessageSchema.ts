/**
 * Typed messages over a connection with `effect/Schema`: JSON text in, JSON text out.
 *
 * The choice: a message that does not decode is a `MessageDecodeError` in the stream, so the
 * handler can catch it (skip, answer with an error message, ...). Left unhandled, the handler
 * fails with it and the server closes the connection with 1007 (invalid payload data): the
 * peer sent data that is not what the endpoint accepts, which is 1007's meaning in RFC 6455
 * §7.4.1. A binary frame where JSON text was expected is a decode error too.
 *
 * @since 0.1.0
 */
import { Data, Effect, ParseResult, Schema, Stream } from "effect"
import type { ProtocolError, WebSocketClosedError } from "./Errors.js"
import type { SendOptions, WebSocket } from "./WebSocket.js"

/**
 * @since 0.1.0
 * @category errors
 */
export class MessageDecodeError extends Data.TaggedError("MessageDecodeError")<{
  /** Why decoding failed (a formatted ParseError, or "binary message"). */
  readonly issue: string
  /** The raw message (text), cut to 256 characters. */
  readonly raw: string
}> {
  override get message(): string {
    return `message does not match the schema: ${this.issue}`
  }
}

/**
 * @since 0.1.0
 * @category errors
 */
export class MessageEncodeError extends Data.TaggedError("MessageEncodeError")<{
  readonly issue: string
}> {
  override get message(): string {
    return `message could not be encoded: ${this.issue}`
  }
}

/**
 * A connection with typed messages.
 *
 * @since 0.1.0
 * @category models
 */
export interface TypedSocket<In, Out> {
  readonly messages: Stream.Stream<In, ProtocolError | MessageDecodeError>
  readonly send: (message: Out, options?: SendOptions) => Effect.Effect<void, WebSocketClosedError | MessageEncodeError>
}

/**
 * Views a connection through two schemas: `incoming` decodes each text message (parsed as
 * JSON), `outgoing` encodes what is sent (as JSON text).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <In, InEncoded, Out, OutEncoded>(
  socket: WebSocket<any>,
  schemas: {
    readonly incoming: Schema.Schema<In, InEncoded, never>
    readonly outgoing: Schema.Schema<Out, OutEncoded, never>
  }
): TypedSocket<In, Out> => {
  const decode = Schema.decodeUnknownEither(Schema.parseJson(schemas.incoming))
  const encode = Schema.encodeEither(Schema.parseJson(schemas.outgoing))
  return {
    messages: Stream.mapEffect(socket.messages, (raw) => {
      if (typeof raw !== "string") {
        return Effect.fail(new MessageDecodeError({ issue: "binary message where JSON text was expected", raw: "" }))
      }
      const result = decode(raw)
      return result._tag === "Right"
        ? Effect.succeed(result.right)
        : Effect.fail(
          new MessageDecodeError({
            issue: ParseResult.TreeFormatter.formatErrorSync(result.left),
            raw: raw.slice(0, 256)
          })
        )
    }),
    send: (message, options) => {
      const result = encode(message)
      return result._tag === "Right"
        ? socket.send(result.right, options)
        : Effect.fail(new MessageEncodeError({ issue: ParseResult.TreeFormatter.formatErrorSync(result.left) }))
    }
  }
}
