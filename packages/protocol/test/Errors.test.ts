/**
 * The error types: each failure says its close code (or status) and reason in its message, and
 * `isProtocolError` tells the five protocol failures from everything else by type.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  HandshakeError,
  HandshakeResponseError,
  InternalError,
  InvalidPayloadError,
  InvalidSendError,
  isProtocolError,
  MessageTooBigError,
  PolicyViolationError,
  ProtocolViolationError
} from "../src/Errors.js"

const protocolErrors = [
  [new ProtocolViolationError({ reason: "reserved bit set" }), 1002, "protocol error (1002): reserved bit set"],
  [new InvalidPayloadError({ reason: "invalid UTF-8" }), 1007, "invalid payload data (1007): invalid UTF-8"],
  [new PolicyViolationError({ reason: "origin" }), 1008, "policy violation (1008): origin"],
  [new MessageTooBigError({ reason: "over 16 bytes", limit: 16 }), 1009, "message too big (1009): over 16 bytes"],
  [new InternalError({ reason: "handler failed" }), 1011, "internal error (1011): handler failed"]
] as const

describe("protocol errors", () => {
  for (const [error, code, message] of protocolErrors) {
    it(`${error._tag}: close code ${code}, and a message with the code and the reason`, () => {
      assert.strictEqual(error.closeCode, code)
      assert.strictEqual(error.message, message)
      assert.isTrue(isProtocolError(error), `${error._tag} is a protocol error`)
    })
  }

  it("isProtocolError is false for the other errors and for look-alikes", () => {
    const others: ReadonlyArray<unknown> = [
      new HandshakeError({ status: 400, reason: "x" }),
      new InvalidSendError({ kind: "CloseCode", reason: "x" }),
      new HandshakeResponseError({ reason: "Accept", detail: "x" }),
      new Error("protocol error (1002): x"),
      { _tag: "ProtocolViolationError", reason: "x", closeCode: 1002 },
      undefined,
      null
    ]
    for (const u of others) assert.isFalse(isProtocolError(u), JSON.stringify(u))
  })
})

describe("the other errors say what went wrong in their message", () => {
  it("HandshakeError: the status and the reason", () => {
    assert.strictEqual(
      new HandshakeError({ status: 426, reason: "unsupported version" }).message,
      "handshake rejected (426): unsupported version"
    )
  })

  it("InvalidSendError: the reason", () => {
    assert.strictEqual(
      new InvalidSendError({ kind: "CloseReason", reason: "reason over 123 bytes" }).message,
      "invalid send: reason over 123 bytes"
    )
  })

  it("HandshakeResponseError: which check failed and the detail", () => {
    assert.strictEqual(
      new HandshakeResponseError({ reason: "Accept", detail: "Sec-WebSocket-Accept does not match" }).message,
      "invalid handshake response (Accept): Sec-WebSocket-Accept does not match"
    )
  })
})
