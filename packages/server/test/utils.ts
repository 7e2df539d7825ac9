import { Effect } from "effect"
import type { Scope } from "effect"
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import WebSocket from "ws"

/** A `ws` client (an independent implementation), closed with the scope. */
export const connect = (
  url: string,
  options: WebSocket.ClientOptions & { protocols?: string | Array<string> } = {}
): Effect.Effect<WebSocket, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<WebSocket, Error>((resume) => {
      const ws = new WebSocket(url, options.protocols ?? [], { perMessageDeflate: false, ...options })
      recorders.set(ws, makeRecorder(ws))
      ws.once("upgrade", (res) => upgradeHeaders.set(ws, res.headers as Record<string, string>))
      ws.once("open", () => resume(Effect.succeed(ws)))
      ws.once("error", (e) => resume(Effect.fail(e)))
      ws.once("unexpected-response", (_req, res) =>
        resume(Effect.fail(new Error(`unexpected response ${res.statusCode}`))))
    }),
    (ws) => Effect.sync(() => ws.terminate())
  )

const upgradeHeaders = new WeakMap<WebSocket, Record<string, string>>()

/** The headers of the 101 response a `ws` client got. */
export const responseHeaders = (ws: WebSocket): Record<string, string> => upgradeHeaders.get(ws) ?? {}

const recorders = new WeakMap<WebSocket, ReturnType<typeof makeRecorder>>()

/** Every message and the close of a `ws` client, recorded from its creation on. */
export const recorder = (ws: WebSocket) => recorders.get(ws) ?? makeRecorder(ws)

const makeRecorder = (ws: WebSocket) => {
  const messages: Array<{ data: string | Buffer; isBinary: boolean }> = []
  let waiters: Array<() => void> = []
  let closed: { code: number; reason: string } | undefined
  const notify = () => {
    const w = waiters
    waiters = []
    for (const f of w) f()
  }
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    messages.push({ data: isBinary ? data : data.toString("utf8"), isBinary })
    notify()
  })
  ws.on("close", (code: number, reason: Buffer) => {
    closed = { code, reason: reason.toString() }
    notify()
  })
  const until = (pred: () => boolean): Effect.Effect<void> =>
    Effect.async<void>((resume) => {
      const check = () => {
        if (pred()) resume(Effect.void)
        else waiters.push(check)
      }
      check()
    })
  return {
    messages,
    get closed() {
      return closed
    },
    waitMessages: (n: number) => until(() => messages.length >= n),
    waitClose: until(() => closed !== undefined).pipe(Effect.map(() => closed!))
  }
}

/** A raw TCP client that performs the upgrade itself and records every byte after it. */
export const rawConnect = (
  port: number,
  extraHeaders = ""
): Effect.Effect<{ socket: net.Socket; received: () => Buffer; ended: Effect.Effect<void> }, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ socket: net.Socket; received: () => Buffer; ended: Effect.Effect<void> }, Error>((resume) => {
      const socket = net.connect(port, "127.0.0.1")
      let buf = Buffer.alloc(0)
      let upgraded = false
      let endWaiters: Array<() => void> = []
      let isEnded = false
      socket.on("error", () => {})
      socket.on("close", () => {
        isEnded = true
        for (const w of endWaiters) w()
        endWaiters = []
      })
      socket.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        if (!upgraded) {
          const i = buf.indexOf("\r\n\r\n")
          if (i < 0) return
          const head = buf.subarray(0, i).toString()
          buf = buf.subarray(i + 4)
          upgraded = true
          if (!head.startsWith("HTTP/1.1 101")) return resume(Effect.fail(new Error(head)))
          resume(Effect.succeed({
            socket,
            received: () => buf,
            ended: Effect.async<void>((r) => {
              if (isEnded) r(Effect.void)
              else endWaiters.push(() => r(Effect.void))
            })
          }))
        }
      })
      socket.write(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extraHeaders + "\r\n"
      )
    }),
    ({ socket }) => Effect.sync(() => socket.destroy())
  )

/** Sends raw bytes and returns the full response (until the server closes). */
export const rawExchange = (port: number, bytes: string | Buffer): Effect.Effect<string> =>
  Effect.async<string>((resume) => {
    const socket = net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    socket.on("data", (d) => chunks.push(d))
    socket.on("error", () => {})
    socket.on("close", () => resume(Effect.succeed(Buffer.concat(chunks).toString("latin1"))))
    socket.write(bytes)
  })

/** A self-signed certificate for 127.0.0.1, made at test time with openssl. */
export const makeCertificate = (): { key: string; cert: string } => {
  const dir = mkdtempSync(join(tmpdir(), "ws-cert-"))
  try {
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"
    ], { stdio: "ignore" })
    return { key: readFileSync(join(dir, "key.pem"), "utf8"), cert: readFileSync(join(dir, "cert.pem"), "utf8") }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A masked client frame. */
export const clientFrame = (opcode: number, payload: Buffer | string, fin = true): Buffer => {
  const p = typeof payload === "string" ? Buffer.from(payload) : payload
  const mask = Buffer.from([1, 2, 3, 4])
  const len = p.length
  const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len]) :
    len < 65536 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, len >> 8, len & 255]) :
    (() => {
      const h = Buffer.alloc(10)
      h[0] = (fin ? 0x80 : 0) | opcode
      h[1] = 0x80 | 127
      h.writeBigUInt64BE(BigInt(len), 2)
      return h
    })()
  const masked = Buffer.from(p)
  for (let i = 0; i < masked.length; i++) masked[i]! ^= mask[i % 4]!
  return Buffer.concat([head, mask, masked])
}
