import { assert, describe, it } from "@effect/vitest"
import { Connection } from "../src/Connection.js"
import type { ConnectionOptions, MessageCompression } from "../src/Connection.js"
import { PolicyViolationError } from "../src/Errors.js"
import { Opcode } from "../src/Frame.js"
import { closePayload, frame, plain, run } from "./helpers.js"

const hook = (offloaded: boolean): MessageCompression => ({
  decompress: (data) => Buffer.from(data),
  compress: (data) => Buffer.from(data),
  shouldCompress: () => false,
  shouldOffload: (n) => n >= 10,
  ...(offloaded ? { compressOffloaded: (data: Uint8Array, done: (p: Buffer) => void) => done(Buffer.from(data)) } : {}),
  close: () => {}
})

describe("a failure's Close reason over 123 bytes", () => {
  const cases: ReadonlyArray<[string, string, string]> = [
    ["is cut before the code point that crosses byte 123 (2-byte é at 122-123)", "a".repeat(122) + "é", "a".repeat(122)],
    ["is cut before a 4-byte code point at 120-123", "b".repeat(120) + "😀z", "b".repeat(120)],
    ["is cut at byte 123 when a code point starts there", "c".repeat(123) + "é", "c".repeat(123)]
  ]
  for (const [name, reason, sent] of cases) {
    it(name, () => {
      const c = new Connection()
      c.fail(new PolicyViolationError({ reason }))
      assert.deepStrictEqual(c.closeSent, { code: 1008, reason: sent })
      const out = Buffer.concat(c.dataToSend())
      const length = (2 + sent.length).toString(16)
      assert.strictEqual(out.toString("hex"), "88" + length + "03f0" + Buffer.from(sent).toString("hex"))
    })
  }
})

describe("offloads", () => {
  it("says yes only with compression wanted, an offloading hook, OPEN and a size the hook offloads", () => {
    const c = new Connection({ compression: hook(true) })
    assert.strictEqual(c.offloads("0123456789", true), true)
    assert.strictEqual(c.offloads(Buffer.alloc(10), true), true)
    assert.strictEqual(c.offloads("012345678", true), false)
    assert.strictEqual(c.offloads("0123456789", false), false)
    assert.strictEqual(c.sendClose(), undefined)
    assert.strictEqual(c.offloads("0123456789", true), false)
  })

  it("says no without compressOffloaded or without compression", () => {
    assert.strictEqual(new Connection({ compression: hook(false) }).offloads("0123456789", true), false)
    assert.strictEqual(new Connection().offloads("0123456789", true), false)
    assert.strictEqual(new Connection().offloads("0123456789", false), false)
  })
})

describe("sendCompressed", () => {
  it("queues a final frame with RSV1 set, text or binary, while OPEN", () => {
    const c = new Connection({ compression: hook(true) })
    assert.strictEqual(c.sendCompressed(true, Buffer.from("abc")), undefined)
    assert.strictEqual(c.sendCompressed(false, Buffer.from([1, 2])), undefined)
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "c103616263" + "c2020102")
  })

  it("refuses once closing, and queues nothing", () => {
    const c = new Connection({ compression: hook(true) })
    assert.strictEqual(c.sendClose(), undefined)
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "880203e8")
    const err = c.sendCompressed(true, Buffer.from("abc"))
    assert.strictEqual(err?._tag, "InvalidSendError")
    assert.strictEqual(err?.kind, "NotOpen")
    assert.strictEqual(err?.reason, "connection is CLOSING")
    assert.deepStrictEqual(c.dataToSend(), [])
  })
})

describe("state getters", () => {
  it("a fresh connection expects no close, owes none and has not seen EOF", () => {
    const c = new Connection()
    assert.strictEqual(c.closeExpected, false)
    assert.strictEqual(c.closeOwed, false)
    assert.strictEqual(c.eofReceived, false)
    c.receiveEof()
    assert.strictEqual(c.eofReceived, true)
    assert.strictEqual(c.state, "CLOSED")
  })

  it("the handshake is not done while our Close is held back, nor after a failure", () => {
    const c = new Connection({ deferClose: true })
    c.receiveData(frame(Opcode.Close, closePayload(1000, "bye")))
    assert.deepStrictEqual(c.closeReceived, { code: 1000, reason: "bye" })
    assert.strictEqual(c.closeOwed, true)
    assert.strictEqual(c.closeHandshakeDone, false)
    c.sendOwedClose()
    assert.strictEqual(c.closeHandshakeDone, true)
    c.fail(new PolicyViolationError({ reason: "late" }))
    assert.strictEqual(c.closeHandshakeDone, false)
  })

  it("a client that sends its owed Close leaves closing TCP to the server, unless it failed", () => {
    const ok = new Connection({ role: "client", deferClose: true })
    ok.receiveData(frame(Opcode.Close, closePayload(1000), { mask: false }))
    ok.sendOwedClose()
    assert.strictEqual(Buffer.concat(ok.dataToSend()).length, 8)
    assert.strictEqual(ok.state, "CLOSED")
    assert.strictEqual(ok.closeTransport, false)
    const failed = new Connection({ role: "client", deferClose: true })
    failed.fail(new PolicyViolationError({ reason: "x" }))
    assert.strictEqual(failed.closeTransport, false)
    failed.sendOwedClose()
    assert.strictEqual(failed.closeTransport, true)
  })
})

describe("sendPing / sendPong", () => {
  it("take 125 bytes, refuse 126, and refuse when not OPEN", () => {
    const c = new Connection()
    assert.strictEqual(c.sendPing(Buffer.alloc(125, 1)), undefined)
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "897d" + "01".repeat(125))
    const big = c.sendPong(Buffer.alloc(126))
    assert.strictEqual(big?.kind, "ControlPayload")
    assert.strictEqual(big?.reason, "control frame payload over 125 bytes")
    assert.deepStrictEqual(c.dataToSend(), [])
    c.sendClose(1001, "away")
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "880603e961776179")
    const late = c.sendPing()
    assert.strictEqual(late?.kind, "NotOpen")
    assert.strictEqual(late?.reason, "connection is CLOSING")
    assert.deepStrictEqual(c.dataToSend(), [])
  })
})

const inflating = (size: number): MessageCompression => ({ ...hook(false), decompress: (data) => Buffer.alloc(data.length === 0 ? 0 : size, 0x61) })

describe("the whole reason of each input failure", () => {
  const cases: ReadonlyArray<[string, ReadonlyArray<Buffer>, ConnectionOptions, number, string]> = [
    ["continuation first", [frame(Opcode.Continuation, "x")], {}, 1002, "continuation frame without a message"],
    ["RSV1 on a continuation", [frame(Opcode.Text, "a", { fin: false }), frame(Opcode.Continuation, "b", { rsv1: true })], { compression: hook(false) }, 1002, "RSV1 set on a continuation frame"],
    ["a third fragment of 2", [frame(Opcode.Text, "a", { fin: false }), frame(Opcode.Continuation, "b", { fin: false }), frame(Opcode.Continuation, "c")], { maxFragments: 2 }, 1008, "too many fragments"],
    ["a data frame inside a message", [frame(Opcode.Text, "a", { fin: false }), frame(Opcode.Text, "b")], {}, 1002, "data frame inside a fragmented message"],
    ["a 5-byte frame over a 4-byte limit", [frame(Opcode.Binary, "abcde")], { maxMessageSize: 4, maxFrameSize: 100 }, 1009, "message too big"],
    ["fragments over the limit", [frame(Opcode.Binary, "abc", { fin: false }), frame(Opcode.Continuation, "de")], { maxMessageSize: 4, maxFrameSize: 100 }, 1009, "message too big"],
    ["text ending inside a code point", [frame(Opcode.Text, Buffer.of(0x61, 0xc3))], {}, 1007, "text message ends inside a code point"],
    ["invalid UTF-8", [frame(Opcode.Text, Buffer.of(0x61, 0xff))], {}, 1007, "invalid UTF-8 in a text message"],
    ["invalid UTF-8 in a later fragment", [frame(Opcode.Text, "a", { fin: false }), frame(Opcode.Continuation, Buffer.of(0xff))], {}, 1007, "invalid UTF-8 in a text message"],
    ["inflated over the limit", [frame(Opcode.Binary, "a", { rsv1: true })], { maxMessageSize: 4, compression: inflating(5) }, 1009, "message too big"],
    ["inflated fragments over the limit", [frame(Opcode.Binary, "a", { rsv1: true, fin: false }), frame(Opcode.Continuation, "b")], { maxMessageSize: 4, compression: inflating(3) }, 1009, "message too big"],
    ["compressed bytes over the limit on the wire", [frame(Opcode.Binary, "abcde", { rsv1: true })], { maxMessageSize: 4, maxFrameSize: 100, compression: inflating(1) }, 1009, "message too big"],
    ["compressed fragments over the limit on the wire", [frame(Opcode.Binary, "abc", { rsv1: true, fin: false }), frame(Opcode.Continuation, "de")], { maxMessageSize: 4, maxFrameSize: 100, compression: inflating(1) }, 1009, "message too big"],
    ["a 1-byte Close", [frame(Opcode.Close, Buffer.of(3))], {}, 1002, "close frame with a 1-byte payload"],
    ["close code 999", [frame(Opcode.Close, closePayload(999))], {}, 1002, "invalid close code 999"],
    ["a Close reason not UTF-8", [frame(Opcode.Close, closePayload(1000, Buffer.of(0xff)))], {}, 1007, "close reason is not UTF-8"]
  ]
  for (const [name, chunks, options, code, reason] of cases) {
    it(name, () => {
      const r = run(chunks, options)
      assert.deepStrictEqual(plain(r.events), [])
      assert.strictEqual(r.connection.failure?.closeCode, code)
      assert.strictEqual(r.connection.failure?.reason, reason)
      const close = closePayload(code, reason)
      assert.strictEqual(r.sent.toString("hex"), "88" + close.length.toString(16).padStart(2, "0") + close.toString("hex"))
    })
  }

  it("a message of exactly the limit is accepted, on the wire and inflated", () => {
    assert.deepStrictEqual(plain(run([frame(Opcode.Binary, "abcd")], { maxMessageSize: 4, maxFrameSize: 100 }).events), [{ _tag: "Binary", data: "61626364" }])
    const r = run([frame(Opcode.Binary, "a", { rsv1: true, fin: false }), frame(Opcode.Continuation, "b")], { maxMessageSize: 4, compression: inflating(2) })
    assert.deepStrictEqual(plain(r.events), [{ _tag: "Binary", data: "61616161" }])
    assert.strictEqual(r.connection.failure, undefined)
  })
})

describe("sendClose and the output queue", () => {
  it("sends the owed Close instead of a new one, refuses a code that may not be sent, echoes an empty Close as 1005", () => {
    const owed = new Connection({ deferClose: true })
    owed.receiveData(frame(Opcode.Close, closePayload(1000, "bye")))
    assert.strictEqual(owed.sendClose(4000, "mine"), undefined)
    assert.strictEqual(Buffer.concat(owed.dataToSend()).toString("hex"), "880503e8627965")
    const bad = new Connection()
    assert.strictEqual(bad.sendClose(1005)?.reason, "close code 1005 may not be sent")
    assert.deepStrictEqual(bad.dataToSend(), [])
    assert.strictEqual(bad.state, "OPEN")
    const empty = new Connection()
    empty.receiveData(frame(Opcode.Close))
    assert.deepStrictEqual(empty.closeSent, { code: 1005, reason: "" })
    assert.strictEqual(Buffer.concat(empty.dataToSend()).toString("hex"), "8800")
    const twice = new Connection()
    assert.strictEqual(twice.sendClose(), undefined)
    assert.strictEqual(twice.sendClose()?.reason, "connection is CLOSING")
    assert.strictEqual(Buffer.concat(twice.dataToSend()).toString("hex"), "880203e8")
  })

  it("counts queued bytes and sends a 4096-byte payload next to its header", () => {
    const c = new Connection()
    c.sendBinary(Buffer.alloc(4096, 7))
    assert.strictEqual(c.bufferedAmount, 4100)
    const out = c.dataToSend()
    assert.strictEqual(out.length, 1)
    assert.strictEqual(Buffer.from(out[0]!).toString("hex"), "827e1000" + "07".repeat(4096))
    assert.strictEqual(c.bufferedAmount, 0)
  })
})

describe("a client's large payload", () => {
  it("goes out masked in a copy after its header, and the caller's bytes are left alone", () => {
    const c = new Connection({ role: "client" })
    const data = Buffer.alloc(5000, 9)
    assert.strictEqual(c.sendBinary(data), undefined)
    const out = c.dataToSend()
    assert.strictEqual(out.length, 2)
    assert.strictEqual(Buffer.from(out[0]!).subarray(0, 4).toString("hex"), "82fe1388")
    assert.strictEqual(out[1]!.length, 5000)
    assert.deepStrictEqual(plain(run(out).events), [{ _tag: "Binary", data: data.toString("hex") }])
    assert.strictEqual(data.equals(Buffer.alloc(5000, 9)), true)
  })
})
