/**
 * `SocketInterop`: a connection as `@effect/platform`'s `Socket.Socket` (what `run` delivers,
 * what the writer sends, which close codes end `run` cleanly and which fail it, a protocol error
 * as a `SocketCloseError`) and the server as a `SocketServer` (the handler `run` installs, a
 * failing handler logged, the caller's services, a second `run` after the first ended). Peers
 * are `ws` clients on 127.0.0.1.
 */
import * as Socket from "@effect/platform/Socket"
import * as SocketServer from "@effect/platform/SocketServer"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Fiber, Layer, Logger, LogLevel, Queue, Scope } from "effect"
import type WebSocket from "ws"
import * as SocketInterop from "../src/SocketInterop.js"
import { connect, recorder, waitUntil, within } from "./utils.js"

const decoder = new TextDecoder()

/** The server of `layerSocketServer` in the test's scope, and its `ws://` URL. */
const serverFromLayer = Effect.gen(function*() {
  const context = yield* Layer.build(SocketInterop.layerSocketServer({}))
  const server = Context.get(context, SocketServer.SocketServer)
  assert.strictEqual(server.address._tag, "TcpAddress")
  const { hostname, port } = server.address as SocketServer.TcpAddress
  return { server, url: `ws://${hostname}:${port}` }
})

/**
 * Serves every connection with `handler` and offers how its `run` ended (an Exit) to the queue
 * the test reads.
 */
const serveExits = (
  server: SocketServer.SocketServer["Type"],
  handler: (socket: Socket.Socket) => Effect.Effect<void, Socket.SocketError, Scope.Scope>
) =>
  Effect.gen(function*() {
    const exits = yield* Queue.unbounded<Exit.Exit<void, Socket.SocketError>>()
    yield* Effect.forkScoped(server.run((socket) => Effect.flatMap(Effect.exit(handler(socket)), (e) => exits.offer(e))))
    return exits
  })

const closeError = (exit: Exit.Exit<void, Socket.SocketError>) => {
  assert.isTrue(Exit.isFailure(exit), "run should have failed")
  const error = Cause.failureOption((exit as Exit.Failure<void, Socket.SocketError>).cause)
  assert.isTrue(error._tag === "Some", `not a failure: ${String(exit)}`)
  const e = (error as { value: Socket.SocketError }).value
  assert.instanceOf(e, Socket.SocketCloseError)
  return e as Socket.SocketCloseError
}

describe("SocketInterop.toSocket", () => {
  it.scopedLive("run gets bytes (text UTF-8 encoded); the writer sends binary, text, and a Close with its code and reason", () =>
    Effect.gen(function*() {
      const { server, url } = yield* serverFromLayer
      const got: Array<Uint8Array> = []
      const exits = yield* serveExits(server, (socket) =>
        Effect.gen(function*() {
          const write = yield* socket.writer
          yield* socket.run((data) => {
            got.push(data)
            return decoder.decode(data) === "bye"
              ? write(new Socket.CloseEvent(4001, "see you"))
              : Effect.zipRight(write(data), write(`echo ${decoder.decode(data)}`))
          })
        }))
      const client = yield* connect(url)
      const rec = recorder(client)
      client.send("héllo")
      yield* rec.waitMessages(2).pipe(within("3 seconds", "the two echoes"))
      assert.deepStrictEqual(got.map((d) => [...d]), [[...new TextEncoder().encode("héllo")]])
      assert.instanceOf(got[0], Uint8Array)
      assert.deepStrictEqual(rec.messages[0], { data: Buffer.from("héllo"), isBinary: true })
      assert.deepStrictEqual(rec.messages[1], { data: "echo héllo", isBinary: false })
      client.send("bye")
      assert.deepStrictEqual(yield* rec.waitClose.pipe(within("3 seconds", "the server's Close")), {
        code: 4001,
        reason: "see you"
      })
      // the closing handshake ended with 4001: not a clean code, so run fails with it
      const error = closeError(yield* Queue.take(exits).pipe(within("3 seconds", "run's end")))
      assert.strictEqual(error.code, 4001)
      assert.strictEqual(error.closeReason, "see you")
    }))

  it.scopedLive("runRaw gets text as strings; a Close without a reason is sent with an empty one", () =>
    Effect.gen(function*() {
      const { server, url } = yield* serverFromLayer
      const got: Array<string | Uint8Array> = []
      yield* serveExits(server, (socket) =>
        Effect.gen(function*() {
          const write = yield* socket.writer
          yield* socket.runRaw((data) => {
            got.push(data)
            return write(new Socket.CloseEvent(4002))
          })
        }))
      const client = yield* connect(url)
      client.send("plain")
      const closed = yield* recorder(client).waitClose.pipe(within("3 seconds", "the server's Close"))
      assert.deepStrictEqual(got, ["plain"])
      assert.deepStrictEqual(closed, { code: 4002, reason: "" })
    }))

  it.scopedLive("run ends without an error when the peer closes with 1000 or goes away (1006); other codes fail it with the code and reason", () =>
    Effect.gen(function*() {
      const { server, url } = yield* serverFromLayer
      const exits = yield* serveExits(server, (socket) => socket.run(() => {}))
      const end = (close: (c: WebSocket) => void) =>
        Effect.gen(function*() {
          const client = yield* connect(url)
          close(client)
          return yield* Queue.take(exits).pipe(within("3 seconds", "run's end"))
        })
      assert.isTrue(Exit.isSuccess(yield* end((c) => c.close(1000))), "1000 is clean")
      assert.isTrue(Exit.isSuccess(yield* end((c) => c.terminate())), "a peer gone without a Close (1006) is clean")
      const away = closeError(yield* end((c) => c.close(1001, "tab closed")))
      assert.deepStrictEqual([away.code, away.closeReason], [1001, "tab closed"])
      const app = closeError(yield* end((c) => c.close(4000, "app")))
      assert.deepStrictEqual([app.code, app.closeReason], [4000, "app"])
    }))

  it.scopedLive("a protocol error (invalid UTF-8 in a text message) fails run with a SocketCloseError carrying 1007", () =>
    Effect.gen(function*() {
      const { server, url } = yield* serverFromLayer
      const exits = yield* serveExits(server, (socket) => socket.runRaw(() => {}))
      const client = yield* connect(url)
      client.send(Buffer.from([0x68, 0xff, 0x69]), { binary: false })
      const error = closeError(yield* Queue.take(exits).pipe(within("3 seconds", "run's end")))
      assert.strictEqual(error.code, 1007)
      assert.strictEqual((yield* recorder(client).waitClose.pipe(within("3 seconds", "the 1007"))).code, 1007)
    }))
})

describe("SocketInterop.makeSocketServer", () => {
  it.scopedLive("a handler that fails is logged at debug level as 'socket handler failed', with its cause", () => {
    const logs: Array<{ message: unknown; level: LogLevel.LogLevel; cause: Cause.Cause<unknown> }> = []
    const capture = Logger.make(({ cause, logLevel, message }) => void logs.push({ message, level: logLevel, cause }))
    const said = (l: { message: unknown }) =>
      (Array.isArray(l.message) ? l.message[0] : l.message) === "socket handler failed"
    return Effect.gen(function*() {
      const { server, url } = yield* serverFromLayer
      yield* Effect.forkScoped(server.run(() => Effect.fail("handler gave up")))
      yield* connect(url)
      yield* waitUntil(() => logs.some(said), "the handler's failure in the log", "3 seconds")
      const entry = logs.find(said)!
      assert.strictEqual(entry.level, LogLevel.Debug)
      assert.deepStrictEqual([...Cause.failures(entry.cause)], ["handler gave up"])
    }).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )
  })

  it.scopedLive("the caller's services reach the handler; after one run ends, the next run's handler serves the new connections", () =>
    Effect.gen(function*() {
      class Greeting extends Context.Tag("test/Greeting")<Greeting, string>() {}
      const { server, url } = yield* serverFromLayer
      const serve = (greeting: string) =>
        Effect.forkScoped(
          server.run((socket) =>
            Effect.gen(function*() {
              const write = yield* socket.writer
              yield* write(yield* Greeting)
              yield* socket.run(() => {})
            })
          ).pipe(Effect.provideService(Greeting, greeting))
        )
      const first = yield* serve("first")
      const a = yield* connect(url)
      yield* recorder(a).waitMessages(1).pipe(within("3 seconds", "the first handler's greeting"))
      assert.strictEqual(recorder(a).messages[0]!.data, "first")
      yield* Fiber.interrupt(first)
      // a connection that arrives between two runs waits for the next one
      const b = yield* connect(url)
      yield* serve("second")
      yield* recorder(b).waitMessages(1).pipe(within("3 seconds", "the second handler's greeting"))
      assert.strictEqual(recorder(b).messages[0]!.data, "second")
    }))
})
