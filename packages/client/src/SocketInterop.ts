/**
 * Interop with `@effect/platform`: a `Socket.WebSocketConstructor` backed by this client, so
 * `Socket.makeWebSocket` (and everything built on it: `Socket.toChannel`, RPC clients over
 * sockets) runs on it unchanged; and a client connection viewed as a `Socket.Socket`.
 *
 * @since 0.1.0
 */
import * as Socket from "@effect/platform/Socket"
import { toSocket as serverToSocket } from "@effect-websocket/server/SocketInterop"
import { Cause, Effect, Exit, Fiber, Layer, Scope } from "effect"
import type { ConnectOptions, WebSocketConnection } from "./WebSocketClient.js"
import { connect } from "./WebSocketClient.js"

/**
 * A connection as an `@effect/platform` `Socket.Socket` (the same view the server gives
 * its connections): `run` gets bytes, `runRaw` text as strings; a clean close (1000) ends
 * them, another code fails with `SocketCloseError`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toSocket = (connection: WebSocketConnection): Socket.Socket => serverToSocket(connection)

const CONNECTING = 0
const OPEN = 1
const CLOSING = 2
const CLOSED = 3

/** `CloseEvent` is not a global before Node 23. */
class WsCloseEvent extends Event {
  constructor(readonly code: number, readonly reason: string, readonly wasClean: boolean) {
    super("close")
  }
}

/**
 * The subset of the WHATWG `WebSocket` that `Socket.fromWebSocket` uses, over
 * `WebSocketClient.connect`: `readyState`, `protocol`, `extensions`, `send`, `close`, and
 * `open` / `message` / `error` / `close` events (`addEventListener` or `on*`). Binary
 * messages arrive as `Uint8Array`, as with `ws`.
 */
class ClientWebSocket extends EventTarget {
  static readonly CONNECTING = CONNECTING
  static readonly OPEN = OPEN
  static readonly CLOSING = CLOSING
  static readonly CLOSED = CLOSED
  readonly CONNECTING = CONNECTING
  readonly OPEN = OPEN
  readonly CLOSING = CLOSING
  readonly CLOSED = CLOSED
  readyState = CONNECTING
  protocol = ""
  extensions = ""
  binaryType: "arraybuffer" | "blob" = "arraybuffer"
  onopen: ((e: Event) => void) | null = null
  onmessage: ((e: MessageEvent) => void) | null = null
  onerror: ((e: Event) => void) | null = null
  onclose: ((e: Event) => void) | null = null
  private connection: WebSocketConnection | undefined = undefined
  private readonly fiber: Fiber.RuntimeFiber<void, unknown>

  constructor(readonly url: string, protocols: string | Array<string> | undefined, options: ConnectOptions) {
    super()
    const offered = protocols === undefined ? [] : typeof protocols === "string" ? [protocols] : protocols
    const session = Effect.gen(this, function*() {
      const scope = yield* Scope.make()
      const opened = yield* Effect.exit(Scope.extend(connect(url, { ...options, protocols: offered }), scope))
      if (Exit.isFailure(opened)) {
        this.readyState = CLOSED
        this.emit(new Event("error"))
        this.emit(new WsCloseEvent(1006, "", false))
        return
      }
      const ws = opened.value
      this.connection = ws
      this.protocol = ws.protocol ?? ""
      this.extensions = ws.extensions ?? ""
      this.readyState = OPEN
      this.emit(new Event("open"))
      const ended = yield* Effect.exit(ws.run((data) => {
        this.emit(new MessageEvent("message", { data }))
      }))
      const info = yield* Effect.either(ws.closed)
      this.readyState = CLOSED
      if (Exit.isFailure(ended) && !Cause.isInterruptedOnly(ended.cause)) this.emit(new Event("error"))
      if (info._tag === "Right") this.emit(new WsCloseEvent(info.right.code, info.right.reason, info.right.wasClean))
      else this.emit(new WsCloseEvent(info.left.closeCode, info.left.reason, false))
      yield* Scope.close(scope, Exit.void)
    })
    this.fiber = Effect.runFork(session)
  }

  get bufferedAmount(): number {
    return 0
  }

  private emit(event: Event): void {
    this.dispatchEvent(event)
    const handler = (this as any)["on" + event.type]
    if (typeof handler === "function") handler.call(this, event)
  }

  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    if (this.readyState === CONNECTING) throw new DOMException("WebSocket is still connecting", "InvalidStateError")
    const ws = this.connection
    if (ws === undefined || this.readyState !== OPEN) return
    const message = typeof data === "string"
      ? data
      : ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data)
    ws.unsafeSend(message)
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === CLOSING || this.readyState === CLOSED) return
    const ws = this.connection
    if (ws === undefined) {
      // still connecting: give up on the connection (close event with 1006)
      this.readyState = CLOSING
      Effect.runFork(Fiber.interrupt(this.fiber)).addObserver(() => {
        if (this.readyState === CLOSED) return
        this.readyState = CLOSED
        this.emit(new WsCloseEvent(1006, "", false))
      })
      return
    }
    this.readyState = CLOSING
    Effect.runFork(Effect.ignore(ws.close(code, reason)))
  }
}

/**
 * `@effect/platform`'s `Socket.WebSocketConstructor` backed by this client, with these
 * options for every connection (the `protocols` given to the constructor are added).
 *
 * ```ts
 * import * as Socket from "@effect/platform/Socket"
 * const socket = Socket.makeWebSocket("ws://127.0.0.1:8080").pipe(
 *   Effect.provide(SocketInterop.layerWebSocketConstructor())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWebSocketConstructor = (
  options: ConnectOptions = {}
): Layer.Layer<Socket.WebSocketConstructor> =>
  Layer.succeed(
    Socket.WebSocketConstructor,
    (url, protocols) => new ClientWebSocket(url, protocols, options) as unknown as globalThis.WebSocket
  )

/**
 * `Socket.makeWebSocket` on this client, as a Layer providing `Socket.Socket`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWebSocket = (
  url: string,
  options: ConnectOptions = {}
): Layer.Layer<Socket.Socket> =>
  Layer.effect(Socket.Socket, Socket.makeWebSocket(url)).pipe(Layer.provide(layerWebSocketConstructor(options)))
