import { assert, describe, it } from "@effect/vitest"
import { Connection } from "../src/Connection.js"
import type { ConnectionEvent, ConnectionOptions, MessageCompression } from "../src/Connection.js"
import { PolicyViolationError } from "../src/Errors.js"
import { Opcode } from "../src/Frame.js"
import { closePayload, frame, plain, run, splitAt } from "./helpers.js"

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

/** `n` bytes of a pattern that shifts with `seed` (so a misplaced piece shows). */
const pattern = (n: number, seed = 0): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff))

/** The one Binary message of `events`, checked against `expected`, and the size of the buffer it is a view into. */
const bufferSize = (events: ReadonlyArray<ConnectionEvent>, expected: Buffer): number => {
  assert.strictEqual(events.length, 1)
  const e = events[0]!
  assert.strictEqual(e._tag, "Binary")
  const data = (e as { readonly data: Buffer }).data
  assert.strictEqual(data.toString("hex"), expected.toString("hex"))
  assert.strictEqual(data.byteOffset, 0)
  return data.buffer.byteLength
}

// Buffers of 4 KiB and more get an ArrayBuffer of their own, of exactly their size: the
// message delivered is a view into the message buffer, whose size then shows.
describe("the message buffer", () => {
  const a = pattern(3000, 1)
  const b = pattern(3000, 2)
  const one = pattern(5000, 3)
  const cases: ReadonlyArray<[string, ReadonlyArray<Uint8Array>, ConnectionOptions, Buffer, number]> = [
    ["is the frame's length for one frame cut in two reads", splitAt(frame(Opcode.Binary, one), [8 + 1000]), {}, one, 5000],
    ["is twice the size for a second fragment", [frame(Opcode.Binary, a, { fin: false }), frame(Opcode.Continuation, b)], {}, Buffer.concat([a, b]), 12_000],
    ["stays when a later fragment fits", [frame(Opcode.Binary, a, { fin: false }), frame(Opcode.Continuation, b, { fin: false }), frame(Opcode.Continuation, pattern(100, 4))], {}, Buffer.concat([a, b, pattern(100, 4)]), 12_000],
    ["stays when a later fragment fills it exactly", [frame(Opcode.Binary, a, { fin: false }), frame(Opcode.Continuation, b, { fin: false }), frame(Opcode.Continuation, pattern(6000, 5))], {}, Buffer.concat([a, b, pattern(6000, 5)]), 12_000],
    ["doubles when a later fragment does not fit", [frame(Opcode.Binary, a, { fin: false }), frame(Opcode.Continuation, b, { fin: false }), frame(Opcode.Continuation, pattern(6001, 6))], {}, Buffer.concat([a, b, pattern(6001, 6)]), 24_000],
    ["is cut to the message limit", [frame(Opcode.Binary, a, { fin: false }), frame(Opcode.Continuation, b)], { maxMessageSize: 10_000 }, Buffer.concat([a, b]), 10_000],
    ["is twice the size for one compressed frame cut in two reads", splitAt(frame(Opcode.Binary, one, { rsv1: true }), [8 + 1000]), { compression: hook(false) }, one, 10_000],
    ["is not made for one compressed frame inflated in one piece", [frame(Opcode.Binary, one, { rsv1: true })], { compression: hook(false) }, one, 5000]
  ]
  for (const [name, chunks, options, expected, size] of cases) {
    it(name, () => {
      const r = run(chunks, options)
      assert.strictEqual(r.connection.failure, undefined)
      assert.strictEqual(bufferSize(r.events, expected), size)
    })
  }
})

describe("the decompression hook", () => {
  it("gets each piece with the room left, then the end of the message with fin", () => {
    const calls: Array<[string, boolean, number]> = []
    const compression: MessageCompression = {
      ...hook(false),
      decompress: (data, fin, maxBytes) => {
        calls.push([Buffer.from(data).toString("hex"), fin, maxBytes])
        return fin ? Buffer.from("xy") : Buffer.from(data)
      }
    }
    const r = run([frame(Opcode.Binary, "abc", { rsv1: true, fin: false }), frame(Opcode.Continuation, "de")], { maxMessageSize: 100, compression })
    assert.deepStrictEqual(calls, [["616263", false, 100], ["6465", false, 97], ["", true, 95]])
    assert.deepStrictEqual(plain(r.events), [{ _tag: "Binary", data: Buffer.from("abcdexy").toString("hex") }])
  })

  it("fails the message when what it gives at the end passes the limit", () => {
    const r = run([frame(Opcode.Binary, "a", { rsv1: true })], { maxMessageSize: 4, compression: { ...hook(false), decompress: () => Buffer.from("abc") } })
    assert.deepStrictEqual(plain(r.events), [])
    assert.strictEqual(r.connection.failure?.reason, "message too big")
    assert.strictEqual(r.sent.toString("hex"), "881103f1" + Buffer.from("message too big").toString("hex"))
  })
})

describe("masked bytes joining a message", () => {
  it("are unmasked into the message buffer, leaving the input as it was", () => {
    const c = new Connection()
    c.receiveData(frame(Opcode.Binary, "abc", { fin: false }))
    const next = frame(Opcode.Continuation, "def")
    const copy = Buffer.from(next)
    c.receiveData(next)
    assert.strictEqual(next.toString("hex"), copy.toString("hex"))
    assert.deepStrictEqual(plain(c.eventsReceived()), [{ _tag: "Binary", data: Buffer.from("abcdef").toString("hex") }])
  })

  it("a Close inside a fragmented message keeps its own payload", () => {
    const r = run([frame(Opcode.Binary, "ab", { fin: false }), frame(Opcode.Close, closePayload(1000, "bye"))])
    assert.deepStrictEqual(plain(r.events), [{ _tag: "Close", code: 1000, reason: "bye" }])
    assert.strictEqual(r.sent.toString("hex"), "880503e8627965")
  })
})

describe("checkClose through sendClose", () => {
  it("refuses a reason of 124 bytes with its kind and reason, and takes one of 123", () => {
    const c = new Connection()
    const err = c.sendClose(1000, "r".repeat(124))
    assert.strictEqual(err?.kind, "CloseReason")
    assert.strictEqual(err?.reason, "close reason over 123 bytes")
    assert.deepStrictEqual(c.dataToSend(), [])
    assert.strictEqual(c.sendClose(1000, "r".repeat(123)), undefined)
    assert.deepStrictEqual(c.closeSent, { code: 1000, reason: "r".repeat(123) })
  })
})

describe("the peer's Close answering ours", () => {
  const cases: ReadonlyArray<["server" | "client", boolean]> = [["server", true], ["client", false]]
  for (const [role, closeTransport] of cases) {
    it(`closes TCP on the ${role} side: ${closeTransport}`, () => {
      const c = new Connection({ role })
      assert.strictEqual(c.sendClose(), undefined)
      c.dataToSend()
      c.receiveData(frame(Opcode.Close, closePayload(1000), role === "server" ? {} : { mask: false }))
      assert.strictEqual(c.state, "CLOSED")
      assert.strictEqual(c.closeHandshakeDone, true)
      assert.strictEqual(c.closeTransport, closeTransport)
      assert.deepStrictEqual(c.dataToSend(), [])
    })
  }
})

describe("fail", () => {
  it("keeps the first failure", () => {
    const c = new Connection()
    const first = new PolicyViolationError({ reason: "first" })
    c.fail(first)
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "880703f0" + Buffer.from("first").toString("hex"))
    c.fail(new PolicyViolationError({ reason: "second" }))
    assert.strictEqual(c.failure, first)
    assert.deepStrictEqual(c.closeOutcome(), { code: 1008, reason: "first", wasClean: false })
    assert.deepStrictEqual(c.dataToSend(), [])
  })

  it("after our Close, sends no second one and closes TCP", () => {
    const c = new Connection()
    assert.strictEqual(c.sendClose(1001), undefined)
    c.dataToSend()
    assert.strictEqual(c.closeTransport, false)
    c.fail(new PolicyViolationError({ reason: "late" }))
    assert.deepStrictEqual(c.dataToSend(), [])
    assert.strictEqual(c.state, "CLOSED")
    assert.strictEqual(c.closeTransport, true)
    assert.deepStrictEqual(c.closeSent, { code: 1001, reason: "" })
  })

  it("while a Close reply is held back, closes and keeps the reply owed to the peer", () => {
    const c = new Connection({ deferClose: true })
    c.receiveData(frame(Opcode.Close, closePayload(1000, "bye")))
    c.fail(new PolicyViolationError({ reason: "late" }))
    assert.strictEqual(c.state, "CLOSED")
    assert.strictEqual(c.closeTransport, true)
    assert.strictEqual(c.closeOwed, true)
    c.sendOwedClose()
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "880503e8627965")
  })
})

describe("dispose", () => {
  it("closes the compression hook and ignores later input", () => {
    let closed = 0
    const c = new Connection({ compression: { ...hook(false), close: () => void closed++ } })
    c.receiveData(frame(Opcode.Binary, "ab", { fin: false }))
    c.dispose()
    assert.strictEqual(closed, 1)
    assert.strictEqual(c.receiveData(frame(Opcode.Continuation, "cd")), undefined)
    assert.deepStrictEqual(c.eventsReceived(), [])
    assert.deepStrictEqual(c.dataToSend(), [])
  })
})

const compressing: MessageCompression = { ...hook(false), shouldCompress: (n) => n >= 3, compress: (data) => Buffer.concat([Buffer.from("z"), data]) }

describe("sendText / sendBinary with compression", () => {
  it("compress by default when the hook wants it, and not when told not to or under its threshold", () => {
    const c = new Connection({ compression: compressing })
    assert.strictEqual(c.sendText("abc"), undefined)
    assert.strictEqual(c.sendBinary(Buffer.from("abc")), undefined)
    assert.strictEqual(c.sendText("abc", false), undefined)
    assert.strictEqual(c.sendBinary(Buffer.from("abc"), false), undefined)
    assert.strictEqual(c.sendText("ab"), undefined)
    assert.strictEqual(
      Buffer.concat(c.dataToSend()).toString("hex"),
      "c1047a616263" + "c2047a616263" + "8103616263" + "8203616263" + "81026162"
    )
  })

  it("sendBinary refuses once closing, and queues nothing", () => {
    const c = new Connection()
    c.sendClose()
    c.dataToSend()
    const err = c.sendBinary(Buffer.from("abc"))
    assert.strictEqual(err?.kind, "NotOpen")
    assert.strictEqual(err?.reason, "connection is CLOSING")
    assert.deepStrictEqual(c.dataToSend(), [])
  })
})

describe("a server's text", () => {
  const cases: ReadonlyArray<[number, number]> = [[3, 5], [125, 127], [4096, 4100], [4097, 4101]]
  for (const [length, queued] of cases) {
    it(`of ${length} bytes counts ${queued} queued bytes, in ${length > 4096 ? "two pieces" : "one piece"}`, () => {
      const c = new Connection()
      const text = "é".repeat(length >> 1) + (length % 2 === 1 ? "t" : "")
      assert.strictEqual(c.sendText(text), undefined)
      assert.strictEqual(c.bufferedAmount, queued)
      const out = c.dataToSend()
      assert.strictEqual(out.length, length > 4096 ? 2 : 1)
      assert.strictEqual(Buffer.concat(out).subarray(queued - length).toString("utf8"), text)
      assert.deepStrictEqual(plain(run(out, { role: "client" }).events), [{ _tag: "Text", data: text }])
      assert.strictEqual(c.bufferedAmount, 0)
    })
  }
})

describe("the shared output slab", () => {
  it("a frame that fills its last bytes exactly stays in the same run; the next one starts a new slab", () => {
    const c = new Connection()
    // 4,100-byte frames until one lands at the start of a fresh 64 KiB slab
    let fresh = false
    for (let i = 0; i < 20 && !fresh; i++) {
      c.sendBinary(pattern(4096, i))
      const out = c.dataToSend()
      assert.strictEqual(out.length, 1)
      assert.strictEqual(Buffer.from(out[0]!).toString("hex"), "827e1000" + pattern(4096, i).toString("hex"))
      fresh = out[0]!.byteOffset === 0
    }
    assert.strictEqual(fresh, true)
    // 14 more frames of 4,100 bytes and one of 4,036 fill the other 61,436 bytes of the slab
    const expected: Array<Buffer> = []
    for (let i = 0; i < 14; i++) {
      c.sendBinary(pattern(4096, i))
      expected.push(Buffer.from("827e1000", "hex"), pattern(4096, i))
    }
    c.sendBinary(pattern(4032, 99))
    expected.push(Buffer.from("827e0fc0", "hex"), pattern(4032, 99))
    const out = c.dataToSend()
    assert.strictEqual(out.length, 1)
    assert.strictEqual(out[0]!.length, 61_436)
    assert.strictEqual(Buffer.from(out[0]!).equals(Buffer.concat(expected)), true)
    c.sendBinary(Buffer.from("ab"))
    const next = c.dataToSend()
    assert.strictEqual(next.length, 1)
    assert.strictEqual(next[0]!.byteOffset, 0)
    assert.strictEqual(Buffer.from(next[0]!).toString("hex"), "82026162")
  })
})
