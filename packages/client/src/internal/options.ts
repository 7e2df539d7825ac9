import type { PerMessageDeflateOptions } from "@effect-websocket/protocol/PerMessageDeflate"
import { clientOffer } from "@effect-websocket/protocol/PerMessageDeflate"
import type { Limits } from "@effect-websocket/server/WebSocketServer"
import { Defaults } from "@effect-websocket/server/WebSocketServer"
import type * as Net from "node:net"
import type * as Tls from "node:tls"
import { InvalidOptionsError } from "../Errors.js"

/** `node:tls` options for wss:// (and for an https:// proxy). */
export type TlsOptions = Pick<
  Tls.ConnectionOptions,
  | "ca"
  | "cert"
  | "key"
  | "pfx"
  | "passphrase"
  | "servername"
  | "rejectUnauthorized"
  | "checkServerIdentity"
  | "minVersion"
  | "maxVersion"
  | "ciphers"
  | "secureContext"
>

/** An HTTP(S) proxy reached with `CONNECT` (RFC 9110 §9.3.6). */
export interface ProxyOptions {
  /** `http://[user:password@]host:port` or `https://...`; credentials go in `Proxy-Authorization: Basic`. */
  readonly url: string
  /** Extra headers of the `CONNECT` request. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** TLS options towards an `https://` proxy. */
  readonly tls?: TlsOptions | undefined
}

/** Options of `WebSocketClient.connect`; defaults as on the server (see the README). */
export interface ConnectOptions extends Limits {
  /** Subprotocols offered, in order of preference. */
  readonly protocols?: ReadonlyArray<string> | undefined
  /** Extra headers of the upgrade request (`Origin`, `Authorization`, cookies...). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** TLS options for wss://: `ca`, client `cert`/`key`, `servername`, `rejectUnauthorized`... */
  readonly tls?: TlsOptions | undefined
  /** Connect through an HTTP(S) proxy with `CONNECT`. */
  readonly proxy?: string | ProxyOptions | undefined
  /**
   * Offer permessage-deflate (RFC 7692), with the parameters read from the client's side
   * (`serverNoContextTakeover` asks the server not to keep its context, ...). Default off.
   */
  readonly perMessageDeflate?: boolean | PerMessageDeflateOptions | undefined
  /** IP family for DNS (4 or 6); default any. */
  readonly family?: 4 | 6 | undefined
  /** The resolver, as `node:net`'s `lookup` option. Default `dns.lookup`. */
  readonly lookup?: Net.LookupFunction | undefined
}

export interface Target {
  readonly secure: boolean
  readonly host: string
  /** The host name without IPv6 brackets, for DNS, SNI and the proxy's CONNECT. */
  readonly hostname: string
  readonly port: number
  /** `Host` header value. */
  readonly hostHeader: string
  readonly path: string
  readonly href: string
}

export interface ResolvedProxy {
  readonly secure: boolean
  readonly hostname: string
  readonly port: number
  readonly headers: Readonly<Record<string, string>>
  readonly tls: TlsOptions | undefined
}

export interface ResolvedOptions {
  readonly maxMessageSize: number
  readonly maxFrameSize: number
  readonly maxFragments: number
  readonly maxHeaderBytes: number
  readonly maxHeaders: number
  readonly handshakeTimeout: number
  readonly closeTimeout: number
  readonly keepaliveInterval: number
  readonly keepaliveTimeout: number
  readonly idleTimeout: number
  readonly highWaterMark: number
  readonly maxBufferedBytes: number
  readonly inboxHighWaterMark: number
  readonly protocols: ReadonlyArray<string>
  readonly headers: Readonly<Record<string, string>>
  readonly tls: TlsOptions | undefined
  readonly proxy: ResolvedProxy | undefined
  /** With `offloadThreshold: Infinity`: the client compresses on its own event loop. */
  readonly perMessageDeflate: PerMessageDeflateOptions | undefined
  readonly deflateOffer: string | undefined
  readonly family: 4 | 6 | undefined
  readonly lookup: Net.LookupFunction | undefined
}

const stripBrackets = (host: string) => (host.startsWith("[") ? host.slice(1, -1) : host)

export const parseTarget = (url: string | URL): Target | InvalidOptionsError => {
  let u: URL
  try {
    u = typeof url === "string" ? new URL(url) : url
  } catch {
    return new InvalidOptionsError({ detail: `not a URL: ${String(url)}` })
  }
  const scheme = u.protocol
  const secure = scheme === "wss:" || scheme === "https:"
  if (!secure && scheme !== "ws:" && scheme !== "http:") {
    return new InvalidOptionsError({ detail: `unsupported scheme ${scheme} (ws:, wss:, http:, https:)` })
  }
  if (u.hash !== "") return new InvalidOptionsError({ detail: "a WebSocket URL cannot have a fragment" })
  if (u.hostname === "") return new InvalidOptionsError({ detail: "the URL has no host" })
  return {
    secure,
    host: u.host,
    hostname: stripBrackets(u.hostname),
    port: u.port === "" ? (secure ? 443 : 80) : Number(u.port),
    hostHeader: u.host,
    path: (u.pathname === "" ? "/" : u.pathname) + u.search,
    href: u.href
  }
}

const resolveProxy = (proxy: string | ProxyOptions): ResolvedProxy | InvalidOptionsError => {
  const o = typeof proxy === "string" ? { url: proxy } : proxy
  let u: URL
  try {
    u = new URL(o.url)
  } catch {
    return new InvalidOptionsError({ detail: `proxy is not a URL: ${o.url}` })
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    return new InvalidOptionsError({ detail: `unsupported proxy scheme ${u.protocol} (http:, https:)` })
  }
  const secure = u.protocol === "https:"
  const headers: Record<string, string> = { ...o.headers }
  if (u.username !== "" || u.password !== "") {
    const credentials = decodeURIComponent(u.username) + ":" + decodeURIComponent(u.password)
    headers["Proxy-Authorization"] = "Basic " + Buffer.from(credentials, "utf8").toString("base64")
  }
  return {
    secure,
    hostname: stripBrackets(u.hostname),
    port: u.port === "" ? (secure ? 443 : 80) : Number(u.port),
    headers,
    tls: o.tls
  }
}

const nonNegative = (name: string, value: number | undefined, fallback: number): number | InvalidOptionsError => {
  if (value === undefined) return fallback
  if (!(value >= 0)) return new InvalidOptionsError({ detail: `${name} must be a number >= 0, got ${value}` })
  return value
}

export const resolveOptions = (o: ConnectOptions = {}): ResolvedOptions | InvalidOptionsError => {
  const numbers: Record<string, number> = {}
  const maxMessageSize = o.maxMessageSize ?? Defaults.maxMessageSize
  const fields: ReadonlyArray<readonly [keyof Limits, number]> = [
    ["maxMessageSize", Defaults.maxMessageSize],
    ["maxFrameSize", maxMessageSize],
    ["maxFragments", Defaults.maxFragments],
    ["maxHeaderBytes", Defaults.maxHeaderBytes],
    ["maxHeaders", Defaults.maxHeaders],
    ["handshakeTimeout", Defaults.handshakeTimeout],
    ["closeTimeout", Defaults.closeTimeout],
    ["keepaliveInterval", Defaults.keepaliveInterval],
    ["keepaliveTimeout", Defaults.keepaliveTimeout],
    ["idleTimeout", Defaults.idleTimeout],
    ["highWaterMark", Defaults.highWaterMark],
    ["maxBufferedBytes", Defaults.maxBufferedBytes],
    ["inboxHighWaterMark", Defaults.inboxHighWaterMark]
  ]
  for (const [name, fallback] of fields) {
    const v = nonNegative(name, o[name], fallback)
    if (typeof v !== "number") return v
    numbers[name] = v
  }
  const proxy = o.proxy === undefined ? undefined : resolveProxy(o.proxy)
  if (proxy instanceof InvalidOptionsError) return proxy
  let perMessageDeflate: PerMessageDeflateOptions | undefined = undefined
  let deflateOffer: string | undefined = undefined
  if (o.perMessageDeflate !== undefined && o.perMessageDeflate !== false) {
    // The client keeps a context per direction unless told otherwise: its offer is the classic one
    // (the server decides what it answers; its memory policy is a server concern).
    perMessageDeflate = {
      memory: "window32k",
      ...(o.perMessageDeflate === true ? {} : o.perMessageDeflate),
      offloadThreshold: Infinity
    }
    try {
      deflateOffer = clientOffer(perMessageDeflate)
    } catch (e) {
      return new InvalidOptionsError({ detail: String(e) })
    }
    if (deflateOffer === undefined) perMessageDeflate = undefined
  }
  return {
    ...(numbers as Omit<ResolvedOptions, "protocols" | "headers" | "tls" | "proxy" | "perMessageDeflate" | "deflateOffer" | "family" | "lookup">),
    protocols: o.protocols ?? [],
    headers: o.headers ?? {},
    tls: o.tls,
    proxy,
    perMessageDeflate,
    deflateOffer,
    family: o.family,
    lookup: o.lookup
  }
}
