/**
 * The Autobahn echo testee: the same `WebSocketServer` Layer applications use, with no
 * special code path. Text is echoed as text, binary as binary; the limits are raised to
 * what the suite sends (9.x: messages up to 16 MiB, 4 MiB in 65,536 fragments) and
 * permessage-deflate is accepted with every parameter as offered (12.x, 13.x: 13.* checks
 * exactly that), with a dedicated 32 KiB window each way. With `deflate: "default"` it runs
 * the server's default memory policy instead (shared compressor and decompressor), which
 * `pnpm autobahn` runs 12.* against as well.
 *
 * @since 0.1.0
 */
import { WebSocketServer } from "@effect-websocket/server"
import type { ServerError } from "@effect-websocket/server/Errors"
import type { WebSocket } from "@effect-websocket/server/WebSocket"
import { Effect, Layer, Stream } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export interface TesteeOptions {
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly tls?: { readonly key: string; readonly cert: string } | undefined
  /**
   * `"as-offered"` (default): every offer accepted as made, dedicated 32 KiB windows.
   * `"default"`: the server's default permessage-deflate memory policy.
   */
  readonly deflate?: "as-offered" | "default" | undefined
}

/**
 * What the suite needs beyond the safe defaults.
 *
 * @since 0.1.0
 * @category options
 */
export const limits = {
  maxMessageSize: 64 * 1024 * 1024,
  maxFragments: 1 << 20,
  highWaterMark: 16 * 1024 * 1024,
  maxBufferedBytes: 256 * 1024 * 1024,
  inboxHighWaterMark: 64 * 1024 * 1024,
  keepaliveInterval: 0,
  closeTimeout: 3_000
} as const

/**
 * The echo handler, as a user would write it.
 *
 * @since 0.1.0
 * @category handlers
 */
export const echo = (ws: WebSocket): Effect.Effect<void, unknown> => Stream.runForEach(ws.messages, (m) => ws.send(m))

/**
 * The testee's server options.
 *
 * @since 0.1.0
 * @category options
 */
export const options = (o: TesteeOptions = {}): WebSocketServer.Options<undefined, unknown, never> => ({
  host: o.host ?? "127.0.0.1",
  port: o.port ?? 9001,
  tls: o.tls,
  ...limits,
  perMessageDeflate: o.deflate === "default" ? { threshold: 0 } : {
    memory: "window32k",
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
    threshold: 0
  },
  handler: echo
})

/**
 * The testee as a Layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (o: TesteeOptions = {}): Layer.Layer<WebSocketServer.WebSocketServer, ServerError> =>
  WebSocketServer.layer(options(o))
