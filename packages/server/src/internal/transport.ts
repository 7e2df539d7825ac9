/**
 * What a connection needs of its byte stream: the `Duplex` members it uses. A TCP or TLS
 * socket (HTTP/1.1 upgrade) and an HTTP/2 stream (RFC 8441 extended CONNECT) both fit.
 */
export interface Transport {
  on(event: "data", listener: (this: Transport, chunk: Buffer) => void): unknown
  on(event: "end" | "close" | "drain", listener: (this: Transport) => void): unknown
  on(event: "error", listener: (this: Transport, error: Error) => void): unknown
  once(event: "close", listener: () => void): unknown
  listenerCount(event: "error"): number
  pause(): unknown
  resume(): unknown
  write(chunk: Uint8Array): boolean
  cork(): void
  uncork(): void
  end(): unknown
  destroy(): unknown
  readonly writableLength: number
  readonly writableEnded: boolean
}
