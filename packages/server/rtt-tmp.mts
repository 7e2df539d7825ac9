import http2 from "node:http2"
import { Effect, Layer, Stream } from "effect"
import { WebSocketServer } from "@effect-websocket/server"
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
execFileSync("openssl", ["req","-x509","-newkey","ec","-pkeyopt","ec_paramgen_curve:P-256","-nodes","-keyout","/tmp/h2exp/k.pem","-out","/tmp/h2exp/c.pem","-days","1","-subj","/CN=127.0.0.1"],{stdio:"ignore"})
const key = readFileSync("/tmp/h2exp/k.pem","utf8"), cert = readFileSync("/tmp/h2exp/c.pem","utf8")
const frame = (s: string) => { const p = Buffer.from(s); const h = Buffer.from([0x81, 0x80 | p.length, 0,0,0,0]); return Buffer.concat([h, p]) }
await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  const server = yield* WebSocketServer.make({ tls: { key, cert }, http2: true, handler: (ws) => ws.run((m) => void ws.unsafeSend(m)) })
  const s = http2.connect(`https://127.0.0.1:${server.address.port}`, { rejectUnauthorized: false })
  yield* Effect.promise(() => new Promise<void>((r) => s.once("remoteSettings", () => r())))
  const N = Number(process.env.N ?? 64), W = Number(process.env.W ?? 16)
  let total = 0; const t0 = performance.now()
  yield* Effect.promise(() => new Promise<void>((done) => {
    for (let i = 0; i < N; i++) {
      const st = s.request({ ":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": "/", ":authority": "x", "sec-websocket-version": "13" }, { endStream: false })
      st.once("response", () => { const b = []; for (let k = 0; k < W; k++) b.push(frame("0123456789012345678901234567890")); st.write(Buffer.concat(b)) })
      st.on("data", (d: Buffer) => { const n = Math.round(d.length / 33); total += n; if (total >= 20000) done(); else { const b = []; for (let k = 0; k < n; k++) b.push(frame("0123456789012345678901234567890")); st.write(Buffer.concat(b)) } })
    }
  }))
  console.log("N", N, "W", W, "msgs/s", Math.round(total / ((performance.now() - t0) / 1000)))
  s.destroy()
})))
