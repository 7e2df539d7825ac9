// Our server, written the way a user writes it, run from the packages' compiled output (what a
// user's `node` loads from `dist/`; `bench/run.sh` builds it first). `--mode`:
//   stream  — the Stream-of-messages handler: Stream.runForEach(ws.messages, ws.send)
//   sink    — the pipeline form: ws.messages.pipe(Stream.run(ws.sink))
//   fast    — the callback form: ws.run((m) => ws.unsafeSend(m))
//   socket  — through the @effect/platform Socket interop (SocketServer.run + Socket.run/writer)
// Limits are raised like ws's maxPayload (64 MiB) so that every scenario fits (the send buffer too:
// `large-16` keeps 16 echoes of 1 MiB plus their headers in flight, just over the 16 MiB default at
// which a connection that does not read its replies is closed); keepalive stays on its default,
// permessage-deflate is accepted.
import * as SocketServer from "@effect/platform/SocketServer"
import { NodeRuntime } from "@effect/platform-node"
import { SocketInterop, WebSocketServer } from "@effect-websocket/server"
import { Console, Context, DefaultServices, Effect, Layer, Stream, Tracer } from "effect"
import { exitWithParent, host, http2, port, tlsOptions } from "./common.mjs"

exitWithParent()
const mode = (() => {
  const i = process.argv.indexOf("--mode")
  return i >= 0 ? process.argv[i + 1] : "stream"
})()

// wss:// with BENCH_TLS_KEY/CERT; HTTP/2 extended CONNECT on the same port with BENCH_HTTP2=1
const limits = {
  host,
  port,
  maxMessageSize: 64 * 1024 * 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
  perMessageDeflate: true,
  tls: tlsOptions,
  http2: http2 && tlsOptions !== undefined
}
// --traced: a tracer that records spans is installed (bench `ours-fast-traced`), so each connection
// gets its span (`connectionSpan` "auto" makes none with Effect's built-in tracer): what tracing costs.
// It keeps nothing, as an exporter that drops every span would.
const nativeTracer = Context.get(DefaultServices.liveServices, Tracer.Tracer)
const traced = process.argv.includes("--traced")
  ? Layer.setTracer(Tracer.make({ span: (...args) => nativeTracer.span(...args), context: nativeTracer.context }))
  : Layer.empty
const ready = Console.log(`listening ${port} pid=${process.pid} mode=${mode}${tlsOptions ? (http2 ? " h2" : " tls") : ""}`)

const program = mode === "socket"
  ? Effect.gen(function*() {
    const server = yield* SocketServer.SocketServer
    yield* ready
    yield* server.run((socket) =>
      Effect.gen(function*() {
        const write = yield* socket.writer
        yield* socket.runRaw((data) => write(data))
      }).pipe(Effect.scoped)
    )
  }).pipe(Effect.provide(SocketInterop.layerSocketServer(limits)))
  : Layer.launch(
    Layer.effectDiscard(ready).pipe(Layer.provideMerge(WebSocketServer.layer({
      ...limits,
      handler: mode === "fast"
        ? (ws) => ws.run((m) => void ws.unsafeSend(m))
        : mode === "sink"
        ? (ws) => ws.messages.pipe(Stream.run(ws.sink))
        : (ws) => Stream.runForEach(ws.messages, (m) => ws.send(m))
    }))).pipe(Layer.provide(traced))
  )

NodeRuntime.runMain(program)
