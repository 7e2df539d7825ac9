/**
 * The public modules' own lines: the errors' messages as a user sees them (`Errors.ts`,
 * `MessageSchema.ts`), what `MessageSchema` reports for a binary message and for a long text
 * that does not decode, and the URL `WebSocketServer.make` gives for an IPv6 address (an
 * IPv4-mapped one, so that the server still listens on 127.0.0.1 only).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Schema, Stream } from "effect"
import * as net from "node:net"
import { ServerError, UpgradeRejected, WebSocketClosedError } from "../src/Errors.js"
import type { ProtocolError } from "../src/Errors.js"
import * as MessageSchema from "../src/MessageSchema.js"
import type { WebSocket as Ws } from "../src/WebSocket.js"
import * as WebSocketServer from "../src/WebSocketServer.js"
import { connect, recorder, within } from "./utils.js"

const echo = (ws: Ws<unknown>) => Stream.runForEach(ws.messages, (m) => ws.send(m))

describe("Errors: messages", () => {
  it.scopedLive("a port in use: 'WebSocket server failed to start (Listen): <cause>'", () =>
    Effect.gen(function*() {
      const taken = yield* WebSocketServer.make({ handler: echo })
      const error = yield* Effect.flip(Effect.scoped(WebSocketServer.make({ handler: echo, port: taken.address.port })))
      assert.instanceOf(error, ServerError)
      assert.strictEqual(error.message, `WebSocket server failed to start (Listen): ${String(error.cause)}`)
      assert.include(error.message, "EADDRINUSE")
    }))

  it.scopedLive("a send after the close: 'WebSocket is closed: <reason>'", () =>
    Effect.gen(function*() {
      const late = yield* Deferred.make<WebSocketClosedError>()
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            yield* ws.close(1000, "done")
            yield* Deferred.succeed(late, yield* Effect.flip(ws.send("too late")))
          })
      })
      yield* connect(server.url)
      const error = yield* Deferred.await(late).pipe(within("3 seconds", "the send after the close"))
      assert.instanceOf(error, WebSocketClosedError)
      assert.isAbove(error.reason.length, 0)
      assert.strictEqual(error.message, `WebSocket is closed: ${error.reason}`)
    }))

  it("UpgradeRejected: 'upgrade rejected with <status>'", () => {
    assert.strictEqual(new UpgradeRejected({ status: 403 }).message, "upgrade rejected with 403")
  })
})

describe("MessageSchema: what a decode or encode failure says", () => {
  const In = Schema.Struct({ n: Schema.Number })
  const Out = Schema.Struct({ n: Schema.Number.pipe(Schema.int()) })

  it.scopedLive("a binary message, a long text that does not decode, a value the outgoing schema refuses", () =>
    Effect.gen(function*() {
      const failures = [
        yield* Deferred.make<MessageSchema.MessageDecodeError | WebSocketClosedError | ProtocolError>(),
        yield* Deferred.make<MessageSchema.MessageDecodeError | WebSocketClosedError | ProtocolError>()
      ] as const
      const encoded = yield* Deferred.make<MessageSchema.MessageEncodeError | WebSocketClosedError>()
      const server = yield* WebSocketServer.make({
        handler: (ws) =>
          Effect.gen(function*() {
            const typed = MessageSchema.make(ws, { incoming: In, outgoing: Out })
            yield* Deferred.succeed(encoded, yield* Effect.flip(typed.send({ n: 1.5 })))
            // a failure ends the typed stream: one pass per message
            for (const failed of failures) yield* Deferred.succeed(failed, yield* Effect.flip(Stream.runDrain(typed.messages)))
            yield* ws.close(1000)
          })
      })
      const client = yield* connect(server.url)
      client.send(Buffer.from([1, 2, 3]), { binary: true })
      const binary = yield* Deferred.await(failures[0]).pipe(within("3 seconds", "the binary message's failure"))
      const long = `{"n":"${"x".repeat(300)}"}`
      client.send(long)
      const text = yield* Deferred.await(failures[1]).pipe(within("3 seconds", "the long text's failure"))
      const encodeError = yield* Deferred.await(encoded)

      assert.instanceOf(binary, MessageSchema.MessageDecodeError)
      assert.instanceOf(text, MessageSchema.MessageDecodeError)
      const [b, t] = [binary as MessageSchema.MessageDecodeError, text as MessageSchema.MessageDecodeError]
      assert.strictEqual(b.issue, "binary message where JSON text was expected")
      assert.strictEqual(b.raw, "")
      assert.strictEqual(b.message, "message does not match the schema: binary message where JSON text was expected")
      assert.strictEqual(t.raw, long.slice(0, 256))
      assert.strictEqual(t.message, `message does not match the schema: ${t.issue}`)

      assert.instanceOf(encodeError, MessageSchema.MessageEncodeError)
      const e = encodeError as MessageSchema.MessageEncodeError
      assert.isAbove(e.issue.length, 0)
      assert.strictEqual(e.message, `message could not be encoded: ${e.issue}`)
    }))
})

describe("WebSocketServer.make: the URL", () => {
  it.scopedLive("an IPv6 address is bracketed in the URL (an IPv4-mapped one: still 127.0.0.1)", () =>
    Effect.gen(function*() {
      const server = yield* WebSocketServer.make({ handler: echo, host: "::ffff:127.0.0.1" })
      assert.strictEqual(server.address.host, "::ffff:127.0.0.1")
      assert.isTrue(net.isIPv6(server.address.host))
      assert.strictEqual(server.url, `ws://[::ffff:127.0.0.1]:${server.address.port}`)
      const client = yield* connect(server.url)
      client.send("over v6")
      yield* recorder(client).waitMessages(1).pipe(within("3 seconds", "the echo"))
      assert.strictEqual(recorder(client).messages[0]!.data, "over v6")
    }))
})
