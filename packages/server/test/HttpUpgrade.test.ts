import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Scope, Stream } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import { UpgradeRejected } from "../src/Errors.js"
import * as HttpUpgrade from "../src/HttpUpgrade.js"
import type { CloseInfo, WebSocket as Ws } from "../src/WebSocket.js"
import {
  clientFrame,
  connect,
  headEnd,
  listenHttp,
  makeCertificate,
  parseServerFrames,
  rawExchange,
  rawSocket,
  recorder,
  responseHeaders,
  upgradeRequest
} from "./utils.js"

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

/** Serves an app on NodeHttpServer (127.0.0.1, any port) in `scope`, with `provide` for its requirements. */
const serveIn = <E, R>(
  scope: Scope.Scope,
  app: HttpRouter.HttpRouter<E, R>,
  provide: Layer.Layer<any> = Layer.empty as Layer.Layer<any>,
  evaluate: () => http.Server = () => http.createServer()
) =>
  Effect.gen(function*() {
    const layer = HttpServer.serve(app).pipe(
      Layer.provide(provide),
      Layer.provideMerge(NodeHttpServer.layer(evaluate, { port: 0, host: "127.0.0.1" }))
    ) as Layer.Layer<HttpServer.HttpServer>
    const context = yield* Layer.buildWithScope(layer, scope)
    return (Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress).port
  })

const serve = <E, R>(app: HttpRouter.HttpRouter<E, R>, provide?: Layer.Layer<any>, evaluate?: () => http.Server) =>
  Effect.flatMap(Effect.scope, (scope) => serveIn(scope, app, provide, evaluate))

const get = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url)
    return { status: res.status, headers: res.headers, body: await res.text() }
  })

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false

class Greeter extends Context.Tag("test/Greeter")<Greeter, { readonly greet: (name: string) => string }>() {}

describe("HttpUpgrade.handler: a WebSocket route of an @effect/platform app on NodeHttpServer", () => {
  it.scopedLive("serves plain HTTP routes and the WebSocket route on one port", () =>
    Effect.gen(function*() {
      const port = yield* serve(HttpRouter.empty.pipe(
        HttpRouter.get("/", HttpServerResponse.text("hello over http")),
        HttpRouter.get("/ws", HttpUpgrade.handler({ handler: echo, perMessageDeflate: true }))
      ))
      const page = yield* get(`http://127.0.0.1:${port}/`)
      assert.deepStrictEqual([page.status, page.body], [200, "hello over http"])

      const client = yield* connect(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: true })
      assert.include(responseHeaders(client)["sec-websocket-extensions"], "permessage-deflate")
      const rec = recorder(client)
      const big = "compressible ".repeat(400)
      client.send("hi")
      client.send(big)
      yield* rec.waitMessages(2)
      assert.deepStrictEqual(rec.messages.map((m) => m.data), ["hi", big])

      const again = yield* get(`http://127.0.0.1:${port}/`)
      assert.strictEqual(again.body, "hello over http")
    }))

  it.scopedLive("is a route of HttpLayerRouter as well", () =>
    Effect.gen(function*() {
      const routes = HttpLayerRouter.add("GET", "/ws", HttpUpgrade.handler({ handler: echo }))
      const context = yield* Layer.build(
        HttpLayerRouter.serve(routes, { disableLogger: true, disableListenLog: true }).pipe(
          Layer.provideMerge(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
        )
      )
      const { port } = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
      const client = yield* connect(`ws://127.0.0.1:${port}/ws`)
      client.send("layer router")
      const rec = recorder(client)
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "layer router")
    }))

  it.scopedLive("a plain GET of the WebSocket route gets 426 with Upgrade: websocket (RFC 7231 §6.5.15)", () =>
    Effect.gen(function*() {
      const port = yield* serve(HttpRouter.empty.pipe(HttpRouter.get("/ws", HttpUpgrade.handler({ handler: echo }))))
      const res = yield* get(`http://127.0.0.1:${port}/ws`)
      assert.strictEqual(res.status, 426)
      assert.strictEqual(res.headers.get("upgrade"), "websocket")
      assert.strictEqual(res.headers.get("sec-websocket-version"), "13")
    }))

  it.scopedLive("an upgrade that breaks RFC 6455 §4.2.1 is refused with its status on the socket", () =>
    Effect.gen(function*() {
      const port = yield* serve(HttpRouter.empty.pipe(HttpRouter.get("/ws", HttpUpgrade.handler({ handler: echo }))))
      const noKey = yield* rawExchange(port, upgradeRequest({ "Sec-WebSocket-Key": null }, "GET /ws HTTP/1.1"))
      assert.match(noKey, /^HTTP\/1\.1 400 /)
      const oldVersion = yield* rawExchange(port, upgradeRequest({ "Sec-WebSocket-Version": "8" }, "GET /ws HTTP/1.1"))
      assert.match(oldVersion, /^HTTP\/1\.1 426 /)
      assert.match(oldVersion, /\r\nSec-WebSocket-Version: 13\r\n/i)
      // the server still serves
      const client = yield* connect(`ws://127.0.0.1:${port}/ws`)
      client.send("still here")
      yield* recorder(client).waitMessages(1)
    }))

  it.scopedLive("the hook's typed data reaches the handler; the route requires the handler's services", () =>
    Effect.gen(function*() {
      const route = HttpUpgrade.handler({
        onUpgrade: (request) => {
          const name = new URL(request.url, "http://x").searchParams.get("name")
          return name === null
            ? Effect.fail(new UpgradeRejected({ status: 403, body: "a name is required" }))
            : Effect.succeed({ data: { name } })
        },
        handler: (ws) =>
          Effect.gen(function*() {
            const greeter = yield* Greeter
            yield* ws.send(greeter.greet(ws.data.name))
            yield* ws.closed
          })
      })
      // a compile-time check (`pnpm typecheck` fails when the route's requirements differ);
      // at run time the route gets Greeter from the layer below and the message proves it was used
      const requirements: Equals<Effect.Effect.Context<typeof route>, HttpServerRequest.HttpServerRequest | Greeter> =
        true
      void requirements
      const port = yield* serve(
        HttpRouter.empty.pipe(HttpRouter.get("/ws", route)),
        Layer.succeed(Greeter, { greet: (name) => `hello ${name}` })
      )
      const client = yield* connect(`ws://127.0.0.1:${port}/ws?name=ada`)
      const rec = recorder(client)
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "hello ada")

      const refused = yield* rawExchange(port, upgradeRequest({}, "GET /ws HTTP/1.1"))
      assert.match(refused, /^HTTP\/1\.1 403 /)
      assert.isTrue(refused.endsWith("a name is required"))
    }))

  it.scopedLive("a hook that fails with another error answers 500", () =>
    Effect.gen(function*() {
      const port = yield* serve(HttpRouter.empty.pipe(HttpRouter.get(
        "/ws",
        HttpUpgrade.handler({ onUpgrade: () => Effect.fail("database down"), handler: echo })
      )))
      const res = yield* rawExchange(port, upgradeRequest({}, "GET /ws HTTP/1.1"))
      assert.match(res, /^HTTP\/1\.1 500 /)
    }))

  it.scopedLive("the engine's limits apply: a message over maxMessageSize closes with 1009", () =>
    Effect.gen(function*() {
      const port = yield* serve(
        HttpRouter.empty.pipe(HttpRouter.get("/ws", HttpUpgrade.handler({ handler: echo, maxMessageSize: 16 })))
      )
      const client = yield* connect(`ws://127.0.0.1:${port}/ws`)
      client.send("x".repeat(17))
      const closed = yield* recorder(client).waitClose
      assert.strictEqual(closed.code, 1009)
    }))

  it.scopedLive("a peer that drops TCP ends its connection; the handler still sees closed (1006)", () =>
    Effect.gen(function*() {
      const outcome = yield* Deferred.make<CloseInfo>()
      const port = yield* serve(HttpRouter.empty.pipe(HttpRouter.get(
        "/ws",
        HttpUpgrade.handler({
          handler: (ws) => Effect.flatMap(Effect.orDie(ws.closed), (info) => Deferred.succeed(outcome, info))
        })
      )))
      const client = yield* connect(`ws://127.0.0.1:${port}/ws`)
      client.terminate()
      const info = yield* Deferred.await(outcome)
      assert.strictEqual(info.code, 1006)
      assert.isFalse(info.wasClean)
    }))

  it.scopedLive("releasing the server's Layer closes every WebSocket with 1001, then stops HTTP", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const seen: Array<CloseInfo> = []
      const port = yield* serveIn(
        scope,
        HttpRouter.empty.pipe(
          HttpRouter.get("/", HttpServerResponse.text("up")),
          HttpRouter.get(
            "/ws",
            HttpUpgrade.handler({
              handler: (ws) =>
                Effect.zipRight(
                  ws.run(() => {}),
                  Effect.flatMap(Effect.orDie(ws.closed), (info) => Effect.sync(() => seen.push(info)))
                )
            })
          )
        )
      )
      const clients = yield* Effect.forEach([1, 2, 3], () => connect(`ws://127.0.0.1:${port}/ws`))
      assert.strictEqual((yield* get(`http://127.0.0.1:${port}/`)).body, "up")
      yield* Scope.close(scope, Exit.void)
      for (const client of clients) {
        const closed = yield* recorder(client).waitClose
        assert.strictEqual(closed.code, 1001)
      }
      assert.deepStrictEqual(seen.map((i) => [i.code, i.wasClean, i.initiatedBy]), [
        [1001, true, "local"],
        [1001, true, "local"],
        [1001, true, "local"]
      ])
      const after = yield* Effect.either(Effect.tryPromise(() => fetch(`http://127.0.0.1:${port}/`)))
      assert.strictEqual(after._tag, "Left")
    }))

  it.scopedLive("recordHead keeps frames a client pipelined behind its request", () =>
    Effect.gen(function*() {
      const port = yield* serve(
        HttpRouter.empty.pipe(HttpRouter.get("/ws", HttpUpgrade.handler({ handler: echo }))),
        undefined,
        () => HttpUpgrade.recordHead(http.createServer())
      )
      const raw = yield* rawSocket(port)
      raw.socket.write(Buffer.concat([
        Buffer.from(upgradeRequest({}, "GET /ws HTTP/1.1")),
        clientFrame(0x1, "early bird")
      ]))
      const ok = yield* raw.waitFor((b) => {
        const end = headEnd(b)
        return end > 0 && parseServerFrames(b.subarray(end)).length > 0
      })
      assert.isTrue(ok)
      const received = raw.received()
      assert.match(received.toString("latin1"), /^HTTP\/1\.1 101 /)
      const [frame] = parseServerFrames(received.subarray(headEnd(received)))
      assert.strictEqual(frame!.opcode, 0x1)
      assert.strictEqual(frame!.payload.toString(), "early bird")
    }))
})

describe("HttpUpgrade.attach: the 'upgrade' event of a plain node:http / node:https server", () => {
  it.scopedLive("serves upgrades on its path next to the server's own requests; other paths get 404", () =>
    Effect.gen(function*() {
      const server = http.createServer((_req, res) => res.end("plain http"))
      const port = yield* listenHttp(server)
      const attached = yield* HttpUpgrade.attach(server, { path: "/ws", handler: echo })
      assert.strictEqual((yield* get(`http://127.0.0.1:${port}/`)).body, "plain http")
      const client = yield* connect(`ws://127.0.0.1:${port}/ws?x=1`)
      client.send("over attach")
      const rec = recorder(client)
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "over attach")
      assert.strictEqual(yield* attached.connections, 1)
      const other = yield* rawExchange(port, upgradeRequest({}, "GET /elsewhere HTTP/1.1"))
      assert.match(other, /^HTTP\/1\.1 404 /)
    }))

  it.scopedLive("closing its scope removes the listener and closes connections with 1001", () =>
    Effect.gen(function*() {
      const server = http.createServer((_req, res) => res.end("plain http"))
      const port = yield* listenHttp(server)
      const scope = yield* Scope.make()
      yield* HttpUpgrade.attach(server, { handler: echo }).pipe(Scope.extend(scope))
      assert.strictEqual(server.listenerCount("upgrade"), 1)
      const clients = yield* Effect.forEach([1, 2], () => connect(`ws://127.0.0.1:${port}/`))
      yield* Scope.close(scope, Exit.void)
      for (const client of clients) assert.strictEqual((yield* recorder(client).waitClose).code, 1001)
      assert.strictEqual(server.listenerCount("upgrade"), 0)
      // the HTTP server itself is the caller's and still serves
      assert.strictEqual((yield* get(`http://127.0.0.1:${port}/`)).body, "plain http")
    }))

  it.scopedLive("serves wss:// on a node:https server", () =>
    Effect.gen(function*() {
      const server = https.createServer(makeCertificate(), (_req, res) => res.end("tls"))
      const port = yield* listenHttp(server)
      yield* HttpUpgrade.attach(server, { handler: echo })
      const client = yield* connect(`wss://127.0.0.1:${port}/`, { rejectUnauthorized: false })
      client.send("secret")
      const rec = recorder(client)
      yield* rec.waitMessages(1)
      assert.strictEqual(rec.messages[0]!.data, "secret")
    }))
})
