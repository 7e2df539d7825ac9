import type { ProtocolError } from "@effect-websocket/protocol/Errors"
import type { PerMessageDeflateParams, ResolvedPerMessageDeflateOptions } from "@effect-websocket/protocol/PerMessageDeflate"
import type { Effect, Scope } from "effect"
import { Predicate } from "effect"
import type { Message, SendOptions } from "../WebSocket.js"

/**
 * The narrow internal port of a connection: everything the engine and broadcast may do with
 * one. Nothing outside `connection.ts` and its three rooms (inbox, outbox, lifecycle) reads a
 * connection's socket, protocol core or options.
 */
export interface ConnectionPort {
  readonly id: number
  /** The connection's Scope: closed when the connection has ended (its handler too). */
  readonly scope: Scope.Scope
  /** Open and not closing either way: takes data frames. */
  readonly accepting: boolean
  /** The transport (TCP, TLS) is closed. */
  readonly transportEnded: boolean
  /** Completes when the transport is closed. */
  readonly transportClosed: Effect.Effect<void>
  /** Completes when the connection's Scope has closed (its handler ended, its finalizers ran). */
  readonly released: Effect.Effect<void>
  /** The server's permessage-deflate options and what this connection agreed (broadcast's delivery class). */
  readonly compression: {
    readonly options: ResolvedPerMessageDeflateOptions
    readonly params: PerMessageDeflateParams
  } | undefined
  /** Bytes waiting to be written: held back, queued in the core, in the socket's buffer. */
  bufferedBytes(): number
  /** Queues a message without suspending; false when the connection is not open. */
  sendNow(data: Message, options?: SendOptions): boolean
  /**
   * Writes a complete, final, unmasked data frame built elsewhere (broadcast), after what the
   * connection queued before, with the transport corked until the next tick (what one tick
   * publishes to a connection is one write); fails the connection (1008) when its send buffer
   * is over the limit.
   */
  writeFrame(frame: Uint8Array): void
  /** Starts the closing handshake with our code (no-op when closing already). */
  startClose(code: number, reason: string): void
  /** Fails the connection from our side (its Close carries the error's code). */
  terminate(error: ProtocolError): void
  /** Keepalive and idle deadlines, checked by the engine's timer. */
  checkDeadlines(now: number): void
  /** Cuts the transport (an owed Close is written first). */
  destroy(): void
  /** Interrupts the handler if it is still running. */
  interruptHandler(): boolean
}

/** @internal the symbol under which a handle exposes its port. */
export const PortId: unique symbol = Symbol.for("@effect-websocket/server/ConnectionPort")

/** The port behind a handle, when the handle is one of the engine's connections (not a wrapper). */
export const portOf = (u: unknown): ConnectionPort | undefined =>
  Predicate.hasProperty(u, PortId) ? u[PortId] as ConnectionPort : undefined
