import { randomBytes } from "node:crypto"
import { mkdtempSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Certificate from "../src/Certificate.js"
import * as TlsTunnel from "../src/TlsTunnel.js"

/** The testee side: TLS over a TCP socket we hold, so a test can reset it. */
type OnSecure = (secure: tls.TLSSocket, raw: net.Socket) => void

const tlsServer = (cert: Certificate.Certificate, onSecure: OnSecure): Effect.Effect<number, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: net.Server; readonly open: Set<net.Socket> }>((resume) => {
      const context = tls.createSecureContext({ cert: cert.certPem, key: cert.keyPem })
      const open = new Set<net.Socket>()
      const server = net.createServer({ allowHalfOpen: true }, (raw) => {
        open.add(raw)
        raw.once("close", () => open.delete(raw))
        const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context })
        secure.on("error", () => raw.destroy())
        secure.once("secure", () => onSecure(secure, raw))
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, open })))
    }),
    ({ open, server }) =>
      Effect.async<void>((resume) => {
        for (const socket of open) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ server }) => (server.address() as net.AddressInfo).port))

const certificate = (backend?: Certificate.Backend) =>
  Certificate.generate(mkdtempSync(join(tmpdir(), "tunnel-test-")), { backend })

const deferred = <A>() => {
  let resolve!: (a: A) => void
  const promise = new Promise<A>((r) => (resolve = r))
  return { promise, resolve }
}

const setup = (onSecure: OnSecure, trust?: string) =>
  Effect.gen(function*() {
    const cert = yield* certificate()
    const port = yield* tlsServer(cert, onSecure)
    const tunnel = yield* TlsTunnel.make({ targetHost: "127.0.0.1", targetPort: port, ca: trust ?? cert.certPem })
    return { tunnel, cert }
  })

const connect = (port: number): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => resolve(socket))
    socket.once("error", reject)
  })

/** Collects what a socket receives until it ends, errors or closes. */
const drain = (socket: net.Socket) =>
  new Promise<{ readonly data: Buffer; readonly ended: boolean; readonly error: string | undefined }>((resolve) => {
    const chunks: Array<Buffer> = []
    let ended = false
    let error: string | undefined
    socket.on("data", (d: Buffer) => chunks.push(d))
    socket.on("end", () => {
      ended = true
      resolve({ data: Buffer.concat(chunks), ended, error })
    })
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message
    })
    socket.on("close", () => resolve({ data: Buffer.concat(chunks), ended, error }))
  })

describe("TLS tunnel (kosoku cannot speak wss://)", () => {
  it.scopedLive("carries bytes both ways, in order", () =>
    Effect.gen(function*() {
      const { tunnel } = yield* setup((secure) => secure.pipe(secure))
      const payload = randomBytes(256 * 1024)
      const received = yield* Effect.promise(async () => {
        const client = await connect(tunnel.port)
        const done = drain(client)
        client.end(payload)
        return done
      })
      assert.isTrue(received.ended)
      assert.isTrue(received.data.equals(payload))
      assert.strictEqual(tunnel.accepted(), 1)
    }))

  it.scopedLive("propagates the client's FIN, and the testee can still answer (half-close)", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const { tunnel } = yield* setup((secure) => {
        const chunks: Array<Buffer> = []
        secure.on("data", (d: Buffer) => chunks.push(d))
        secure.on("end", () => {
          seen.push(`end after ${Buffer.concat(chunks).toString()}`)
          secure.end("answer after FIN")
        })
      })
      const received = yield* Effect.promise(async () => {
        const client = await connect(tunnel.port)
        const done = drain(client)
        client.end("request")
        return done
      })
      assert.deepStrictEqual(seen, ["end after request"])
      assert.strictEqual(received.data.toString(), "answer after FIN")
      assert.isTrue(received.ended)
    }))

  it.scopedLive("propagates the testee's close (close_notify + FIN) while the client can still send", () =>
    Effect.gen(function*() {
      let late = ""
      const lateDone = deferred<void>()
      const { tunnel } = yield* setup((secure) => {
        secure.on("data", (d: Buffer) => (late += d.toString()))
        secure.on("end", () => lateDone.resolve())
        secure.end("server closes first")
      })
      const received = yield* Effect.promise(async () => {
        const client = await connect(tunnel.port)
        const result = await drain(client)
        client.end("sent after the server's FIN")
        await lateDone.promise
        return result
      })
      assert.strictEqual(received.data.toString(), "server closes first")
      assert.isTrue(received.ended)
      assert.strictEqual(late, "sent after the server's FIN")
    }))

  it.scopedLive("turns the client's RST into an RST towards the testee", () =>
    Effect.gen(function*() {
      const outcome = deferred<string>()
      const { tunnel } = yield* setup((secure) => {
        secure.on("data", () => {})
        secure.on("error", (e: NodeJS.ErrnoException) => outcome.resolve(e.code ?? e.message))
        secure.on("end", () => outcome.resolve("FIN"))
        secure.write("ready")
      })
      const code = yield* Effect.promise(async () => {
        const client = await connect(tunnel.port)
        client.once("data", () => client.resetAndDestroy())
        return outcome.promise
      })
      assert.strictEqual(code, "ECONNRESET")
    }))

  it.scopedLive("turns the testee's RST into an RST towards the client", () =>
    Effect.gen(function*() {
      const { tunnel } = yield* setup((secure, raw) => {
        secure.once("data", () => raw.resetAndDestroy())
      })
      const received = yield* Effect.promise(async () => {
        const client = await connect(tunnel.port)
        const done = drain(client)
        client.write("trigger")
        return done
      })
      assert.strictEqual(received.error, "ECONNRESET")
      assert.isFalse(received.ended)
    }))

  it.scopedLive("trusts only the given certificate: a handshake with another one fails and resets the client", () =>
    Effect.gen(function*() {
      const other = yield* certificate()
      const { tunnel } = yield* setup((secure) => secure.pipe(secure), other.certPem)
      const received = yield* Effect.promise(async () => {
        const client = await connect(tunnel.port)
        const done = drain(client)
        client.write("hello")
        return done
      })
      assert.strictEqual(received.error, "ECONNRESET")
      assert.strictEqual(received.data.length, 0)
      assert.strictEqual(tunnel.handshakeFailures(), 1)
    }))
})

describe("run-time certificate", () => {
  it.scopedLive("the selfsigned fallback (no openssl) makes a certificate a TLS client accepts for 127.0.0.1", () =>
    Effect.gen(function*() {
      const cert = yield* certificate("selfsigned")
      assert.strictEqual(cert.backend, "selfsigned")
      const port = yield* tlsServer(cert, (secure) => secure.end("over TLS"))
      const text = yield* Effect.promise(() =>
        new Promise<string>((resolve, reject) => {
          const socket = tls.connect({ host: "127.0.0.1", port, ca: cert.certPem }, () => {
            let data = ""
            socket.on("data", (d: Buffer) => (data += d.toString()))
            socket.on("end", () => resolve(data))
          })
          socket.once("error", reject)
        })
      )
      assert.strictEqual(text, "over TLS")
    }))
})
