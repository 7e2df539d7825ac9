import { HandshakeResponseError } from "@effect-websocket/protocol/Errors"
import type { RawResponse } from "@effect-websocket/protocol/Handshake"
import { ResponseParser } from "@effect-websocket/protocol/Handshake"
import { Effect } from "effect"
import * as Dns from "node:dns"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { ConnectError, DnsError, HttpStatusError, ProxyError, TlsError } from "../Errors.js"
import type { ConnectionError } from "../Errors.js"
import type { ResolvedOptions, Target, TlsOptions } from "./options.js"

/** A socket that has received a complete upgrade response with status 101. */
export interface Opened {
  readonly socket: Net.Socket
  readonly response: RawResponse
  /** Bytes after the response head: the first frames. */
  readonly rest: Uint8Array
}

const MAX_ERROR_BODY = 64 * 1024

const isTlsAlert = (e: unknown): boolean => /^ERR_SSL_|^ERR_TLS_/.test(codeOf(e) ?? "")

const codeOf = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && typeof (e as { code?: unknown }).code === "string"
    ? (e as { code: string }).code
    : undefined

/**
 * Opens the transport and does the opening handshake, step by step, each failure typed by
 * the step it happened in: DNS (`DnsError`), TCP (`ConnectError`), the proxy's `CONNECT`
 * (`ProxyError`), TLS (`TlsError`), the HTTP exchange (`ConnectError` when the server
 * closes before answering, `HttpStatusError` for another status than 101, with the body,
 * `HandshakeResponseError` for a malformed head). On interruption (the handshake timeout)
 * the socket is destroyed. The socket is handed over paused.
 */
export const open = (
  target: Target,
  o: ResolvedOptions,
  request: Uint8Array
): Effect.Effect<Opened, ConnectionError> =>
  Effect.async<Opened, ConnectionError>((resume) => {
    let socket: Net.Socket | undefined = undefined
    let done = false
    let onError: (e: unknown) => void = () => {}
    const fail = (error: ConnectionError) => {
      if (done) return
      done = true
      socket?.destroy()
      resume(Effect.fail(error))
    }
    const connectFailure = (host: string, port: number) => (e: unknown) =>
      fail(new ConnectError({ host, port, code: codeOf(e), cause: e }))

    const proxy = o.proxy
    const hop = proxy ?? target
    const lookup: Net.LookupFunction = o.lookup ?? Dns.lookup
    lookup(hop.hostname, { family: o.family ?? 0 }, (err, address, family) => {
      if (done) return
      if (err !== null) return fail(new DnsError({ host: hop.hostname, code: codeOf(err), cause: err }))
      const s = socket = Net.connect({ host: address as string, port: hop.port, family, noDelay: true })
      onError = connectFailure(hop.hostname, hop.port)
      s.on("error", (e) => onError(e))
      s.once("connect", () => {
        if (done) return
        if (proxy === undefined) return afterTcp()
        if (proxy.secure) return startTls(proxy.tls, proxy.hostname, startProxy)
        startProxy()
      })
    })

    const afterTcp = () => (target.secure ? startTls(o.tls, target.hostname, startHttp) : startHttp())

    const startTls = (tls: TlsOptions | undefined, hostname: string, next: () => void) => {
      const plain = socket!
      onError = (e) => fail(new TlsError({ code: codeOf(e), cause: e }))
      const servername = tls?.servername ?? (Net.isIP(hostname) === 0 ? hostname : undefined)
      const secure = Tls.connect({ ...tls, socket: plain, servername, ALPNProtocols: ["http/1.1"] })
      socket = secure
      secure.on("error", (e) => onError(e))
      secure.once("secureConnect", () => {
        if (!done) next()
      })
    }

    /** Reads one response head; `onHead` gets it, or the failure is typed by `bad`. */
    const readHead = (
      onHead: (response: RawResponse, rest: Uint8Array) => void,
      bad: (e: HandshakeResponseError) => ConnectionError,
      closed: () => ConnectionError
    ) => {
      const s = socket!
      const parser = new ResponseParser({ maxHeaderBytes: o.maxHeaderBytes, maxHeaders: o.maxHeaders })
      const onData = (chunk: Buffer) => {
        const r = parser.push(chunk)
        if (r === undefined) return
        s.off("data", onData)
        s.off("end", onEnd)
        s.pause()
        if (r instanceof HandshakeResponseError) return fail(bad(r))
        onHead(r.response, r.rest)
      }
      const onEnd = () => fail(closed())
      s.on("data", onData)
      s.once("end", onEnd)
    }

    const startProxy = () => {
      const s = socket!
      const authority = (Net.isIPv6(target.hostname) ? `[${target.hostname}]` : target.hostname) + ":" + target.port
      let head = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n`
      for (const [name, value] of Object.entries(proxy!.headers)) head += `${name}: ${value}\r\n`
      onError = (e) => fail(new ProxyError({ status: undefined, detail: `${codeOf(e) ?? ""} ${String(e)}`.trim() }))
      readHead(
        (response, rest) => {
          if (response.status < 200 || response.status > 299) {
            return fail(new ProxyError({ status: response.status, detail: response.statusText }))
          }
          if (rest.length > 0) s.unshift(Buffer.from(rest))
          s.resume()
          onError = connectFailure(target.hostname, target.port)
          afterTcp()
        },
        (e) => new ProxyError({ status: undefined, detail: e.detail }),
        () => new ProxyError({ status: undefined, detail: "the proxy closed the connection" })
      )
      s.write(head + "\r\n")
    }

    const startHttp = () => {
      const s = socket!
      const tcpFailure = connectFailure(target.hostname, target.port)
      // TLS 1.3 reports a refused client certificate as an alert after the handshake
      onError = (e) => (isTlsAlert(e) ? fail(new TlsError({ code: codeOf(e), cause: e })) : tcpFailure(e))
      readHead(
        (response, rest) => {
          if (response.status === 101) {
            done = true // the 'error' listener stays: later errors reach `fail`, a no-op now
            resume(Effect.succeed({ socket: s, response, rest }))
            return
          }
          readBody(response, rest)
        },
        (e) => e,
        () =>
          new ConnectError({
            host: target.hostname,
            port: target.port,
            code: "ECONNRESET",
            cause: "the server closed the connection before answering the upgrade"
          })
      )
      s.write(request)
    }

    /** Reads a refusal's body (at most 64 KiB; by Content-Length or to the end). */
    const readBody = (response: RawResponse, first: Uint8Array) => {
      const s = socket!
      const declared = Number(response.headers["content-length"])
      const want = Math.min(Number.isFinite(declared) && declared >= 0 ? declared : MAX_ERROR_BODY, MAX_ERROR_BODY)
      const chunks: Array<Buffer> = []
      let size = 0
      const finish = () =>
        fail(
          new HttpStatusError({
            status: response.status,
            statusText: response.statusText,
            headers: response.headers,
            body: Buffer.concat(chunks).subarray(0, want).toString("utf8")
          })
        )
      const add = (chunk: Uint8Array) => {
        chunks.push(Buffer.from(chunk))
        size += chunk.length
        if (size >= want) finish()
      }
      onError = finish
      s.on("end", finish)
      s.on("data", add)
      if (first.length > 0 || want === 0) add(first)
      s.resume()
    }

    return Effect.sync(() => {
      done = true
      socket?.destroy()
    })
  })
