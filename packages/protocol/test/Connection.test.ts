import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { Connection } from "../src/Connection.js"
import { Opcode } from "../src/Frame.js"
import { closePayload, frame, hex, plain, run, runs, splitAt } from "./helpers.js"

const codeOf = (r: ReturnType<typeof run>) => r.connection.failure?.closeCode

describe("RFC 6455 §5.1 masking", () => {
  it("fails an unmasked client frame with 1002", () => {
    const r = run([frame(Opcode.Text, "hi", { mask: false })])
    assert.strictEqual(codeOf(r), 1002)
    assert.deepStrictEqual(r.events, [])
    const close = closePayload(1002, "unmasked client frame")
    assert.strictEqual(r.sent.toString("hex"), "88" + close.length.toString(16).padStart(2, "0") + close.toString("hex"))
  })

  it("fails a masked frame sent to a client with 1002", () => {
    const r = run([frame(Opcode.Text, "hi")], { role: "client" })
    assert.strictEqual(codeOf(r), 1002)
  })

  it("client role accepts unmasked frames and masks what it sends", () => {
    const r = run([frame(Opcode.Text, "hi", { mask: false })], { role: "client" })
    assert.deepStrictEqual(r.events, [{ _tag: "Text", data: "hi" }])
    const c = new Connection({ role: "client" })
    c.sendText("hello")
    const out = Buffer.concat(c.dataToSend())
    assert.strictEqual(out[0], 0x81)
    assert.strictEqual(out[1], 0x80 | 5)
    const server = run([out])
    assert.deepStrictEqual(server.events, [{ _tag: "Text", data: "hello" }])
  })
})

describe("RFC 6455 §5.2 base framing", () => {
  it("decodes seed 000's masked 'Hello World!' (Autobahn 7.1.1 wire log)", () => {
    const r = run([hex("818c8a392011c25c4c7de519777ef8554430")])
    assert.deepStrictEqual(r.events, [{ _tag: "Text", data: "Hello World!" }])
  })

  it("encodes an unmasked server text frame byte for byte (seed 003's reply)", () => {
    const c = new Connection()
    c.sendText("Hello World!")
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "810c48656c6c6f20576f726c6421")
  })

  it("fails RSV1/RSV2/RSV3 without a negotiated extension", () => {
    for (const bit of [0x40, 0x20, 0x10]) {
      const f = frame(Opcode.Text, "x")
      f[0] = f[0]! | bit
      assert.strictEqual(codeOf(run([f])), 1002)
    }
  })

  it("fails reserved opcodes 3-7 and 11-15", () => {
    for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) assert.strictEqual(codeOf(run([frame(op, "")])), 1002)
  })

  it("uses 16-bit and 64-bit lengths and refuses non-minimal encodings", () => {
    const mid = Buffer.alloc(300, 7)
    const big = Buffer.alloc(70_000, 9)
    const r = run([frame(Opcode.Binary, mid), frame(Opcode.Binary, big)])
    assert.strictEqual(r.events.length, 2)
    assert.strictEqual((r.events[1] as any).data.length, 70_000)
    // 16-bit length of 5: non-minimal
    const nm = hex("82fe0005 00000000 0102030405")
    assert.strictEqual(codeOf(run([nm])), 1002)
    const nm64 = hex("82ff 0000000000000005 00000000 0102030405")
    assert.strictEqual(codeOf(run([nm64])), 1002)
  })

  it("fails a 64-bit length with the most significant bit set", () => {
    assert.strictEqual(codeOf(run([hex("82ff 8000000000000000 00000000")])), 1002)
  })

  it("fails a declared length over the limit with 1009 before any payload arrives", () => {
    const r = run([hex("82ff 0000000100000000 00000000")], { maxMessageSize: 1024 })
    assert.strictEqual(codeOf(r), 1009)
    const r2 = run([hex("82fe0401 00000000")], { maxMessageSize: 1024 })
    assert.strictEqual(codeOf(r2), 1009)
  })

  it("streams a frame's payload across chunks and decodes headers cut at every byte", () => {
    const bytes = Buffer.concat([frame(Opcode.Text, "abc"), frame(Opcode.Binary, Buffer.alloc(70_000, 1))])
    const whole = plain(run([bytes]).events)
    for (let cut = 1; cut < 20; cut++) assert.deepStrictEqual(plain(run(splitAt(bytes, [cut])).events), whole)
  })
})

describe("RFC 6455 §5.4 fragmentation", () => {
  it("reassembles seed 002's fragments with pings in between (Autobahn 5.20)", () => {
    const chunks = [
      "018983b53f5be5c75e3ceed0512fb2",
      "008931d99d0557abfc625cbcf37103",
      "8989e20d193d9262775a8f68390cc3",
      "00892fe1b3214993d2464284dd551c",
      "0089690a307d0f78511a046f5e095d",
      "8989ca318529ba5eeb4ea754a51beb",
      "80897abcd1741cceb01317d9bf004f"
    ].map(hex)
    const r = run(chunks)
    assert.deepStrictEqual(r.events.map((e) => e._tag), ["Ping", "Ping", "Text"])
    assert.deepStrictEqual(r.events[2], { _tag: "Text", data: "fragment1fragment2fragment3fragment4fragment5" })
    // both pings were answered with pongs carrying their payloads, as in the wire log
    assert.strictEqual(r.sent.toString("hex"), "8a09706f6e676d652031218a09706f6e676d65203221")
  })

  it("fails a continuation frame without a message with 1002", () => {
    assert.strictEqual(codeOf(run([frame(Opcode.Continuation, "x")])), 1002)
  })

  it("fails a new data frame inside a fragmented message with 1002", () => {
    assert.strictEqual(codeOf(run([frame(Opcode.Text, "a", { fin: false }), frame(Opcode.Text, "b")])), 1002)
  })

  it("caps the number of fragments with 1008 and accepts exactly the cap", () => {
    const frames = (n: number) => [
      frame(Opcode.Binary, "a", { fin: false }),
      ...Array.from({ length: n - 2 }, () => frame(Opcode.Continuation, "", { fin: false })),
      frame(Opcode.Continuation, "b")
    ]
    const ok = run([Buffer.concat(frames(100))], { maxFragments: 100 })
    assert.strictEqual(ok.events.length, 1)
    assert.strictEqual(codeOf(run([Buffer.concat(frames(101))], { maxFragments: 100 })), 1008)
  })

  it("fails a fragmented message whose sum passes the limit with 1009", () => {
    const r = run([frame(Opcode.Binary, Buffer.alloc(600), { fin: false }), frame(Opcode.Continuation, Buffer.alloc(600))], {
      maxMessageSize: 1000
    })
    assert.strictEqual(codeOf(r), 1009)
  })

  it("accepts 65,536 fragments of one message within the size limit (Autobahn 9.3.1 shape)", () => {
    const n = 65_536
    const parts: Array<Buffer> = [frame(Opcode.Binary, Buffer.alloc(4, 1), { fin: false })]
    for (let i = 1; i < n - 1; i++) parts.push(frame(Opcode.Continuation, Buffer.alloc(4, 1), { fin: false }))
    parts.push(frame(Opcode.Continuation, Buffer.alloc(4, 1)))
    const r = run([Buffer.concat(parts)])
    assert.strictEqual(r.connection.failure, undefined)
    assert.strictEqual((r.events[0] as any).data.length, 4 * n)
  })
})

describe("RFC 6455 §5.5 control frames", () => {
  it("answers a ping with a pong carrying the same payload (seed 004, Autobahn 2.9)", () => {
    const r = run([hex("8a981fb91ab36ad769dc73d079da6bdc7e936fd674d43fc97bca73d67bd7"), hex("898c9b871409ebee7a6ebbf77570f7e8756d")])
    assert.deepStrictEqual(r.events.map((e) => e._tag), ["Pong", "Ping"])
    assert.strictEqual(r.sent.toString("hex"), "8a0c70696e67207061796c6f6164")
  })

  it("fails a control frame over 125 bytes and a fragmented control frame with 1002", () => {
    assert.strictEqual(codeOf(run([frame(Opcode.Ping, Buffer.alloc(126))])), 1002)
    assert.strictEqual(codeOf(run([frame(Opcode.Ping, "x", { fin: false })])), 1002)
  })
})

describe("RFC 6455 §5.6 / §8.1 UTF-8", () => {
  it("fails invalid UTF-8 at the first bad byte, inside a frame that is still arriving", () => {
    // 1 MiB text frame whose 10th byte is invalid: only the first 64 bytes are delivered
    const payload = Buffer.alloc(1 << 20, 0x61)
    payload[10] = 0xff
    const f = frame(Opcode.Text, payload)
    const c = new Connection({ maxMessageSize: 2 << 20 })
    const err = c.receiveData(Buffer.from(f.subarray(0, 64)))
    assert.strictEqual(err?.closeCode, 1007)
  })

  it("fails an impossible sequence as soon as it is impossible, even if incomplete (F4 90)", () => {
    const f = frame(Opcode.Text, hex("cebae1bdb9cf83cebcceb5f490"), { fin: false })
    assert.strictEqual(codeOf(run([f])), 1007)
  })

  it("accepts a code point split across fragments and fails a message ending inside one", () => {
    const euro = Buffer.from("€", "utf8")
    const ok = run([frame(Opcode.Text, euro.subarray(0, 1), { fin: false }), frame(Opcode.Continuation, euro.subarray(1))])
    assert.deepStrictEqual(ok.events, [{ _tag: "Text", data: "€" }])
    assert.strictEqual(codeOf(run([frame(Opcode.Text, euro.subarray(0, 2))])), 1007)
  })
})

describe("RFC 6455 §7 closing", () => {
  it("echoes the peer's close code and asks to close TCP (seed 000)", () => {
    const r = run([hex("8882c561694fc689")])
    assert.deepStrictEqual(r.events, [{ _tag: "Close", code: 1000, reason: "" }])
    assert.strictEqual(r.sent.toString("hex"), "880203e8")
    assert.strictEqual(r.connection.state, "CLOSED")
    assert.isTrue(r.connection.closeTransport)
    assert.isTrue(r.connection.closeHandshakeDone)
  })

  it("echoes the peer's reason with its code (what a browser shows as CloseEvent.reason)", () => {
    const r = run([frame(Opcode.Close, closePayload(4001, "bye ✓"))])
    assert.deepStrictEqual(r.events, [{ _tag: "Close", code: 4001, reason: "bye ✓" }])
    const sent = r.sent
    assert.strictEqual(sent[0], 0x88)
    assert.strictEqual(sent.readUInt16BE(2), 4001)
    assert.strictEqual(sent.subarray(4).toString("utf8"), "bye ✓")
    assert.deepStrictEqual(r.connection.closeSent, { code: 4001, reason: "bye ✓" })
  })

  it("answers an empty Close with an empty Close (code 1005 reported)", () => {
    const r = run([frame(Opcode.Close, "")])
    assert.deepStrictEqual(r.events, [{ _tag: "Close", code: 1005, reason: "" }])
    assert.strictEqual(r.sent.toString("hex"), "8800")
  })

  it("fails a close frame whose reason is not UTF-8 with 1007 (seed 001, Autobahn 7.5.1)", () => {
    const r = run([hex("889692e911d19101df6b7354a81e1127ad1f2704b151f78d78a5f78d")])
    assert.strictEqual(codeOf(r), 1007)
    assert.strictEqual(r.sent.readUInt16BE(2), 1007)
  })

  it("fails a 1-byte close payload with 1002", () => {
    assert.strictEqual(codeOf(run([frame(Opcode.Close, Buffer.of(3))])), 1002)
  })

  it("accepts the valid close codes and fails the invalid ones with 1002 (Autobahn 7.7 / 7.9 / 7.13)", () => {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]) {
      const r = run([frame(Opcode.Close, closePayload(code))])
      assert.strictEqual(r.connection.failure, undefined, `code ${code}`)
      assert.strictEqual(r.sent.readUInt16BE(2), code)
    }
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
      assert.strictEqual(codeOf(run([frame(Opcode.Close, closePayload(code))])), 1002, `code ${code}`)
    }
  })

  it("discards everything after a Close", () => {
    const r = run([Buffer.concat([frame(Opcode.Close, closePayload(1000)), frame(Opcode.Text, "late"), hex("ff")])])
    assert.deepStrictEqual(r.events.map((e) => e._tag), ["Close"])
    assert.strictEqual(r.connection.failure, undefined)
  })

  it("discards everything after a failure", () => {
    const r = run([Buffer.concat([frame(Opcode.Text, "x", { mask: false }), frame(Opcode.Text, "later")])])
    assert.deepStrictEqual(r.events, [])
    const again = r.connection.receiveData(frame(Opcode.Text, "more"))
    assert.strictEqual(again, undefined)
    assert.deepStrictEqual(r.connection.eventsReceived(), [])
  })

  it("local close: OPEN -> CLOSING -> CLOSED when the peer answers", () => {
    const c = new Connection()
    assert.strictEqual(c.sendClose(1001, "going away"), undefined)
    assert.strictEqual(c.state, "CLOSING")
    assert.isTrue(c.closeExpected)
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "880c03e9" + Buffer.from("going away").toString("hex"))
    // messages still arrive while closing; pings are no longer answered
    c.receiveData(frame(Opcode.Text, "in flight"))
    c.receiveData(frame(Opcode.Ping, "p"))
    c.receiveData(frame(Opcode.Close, closePayload(1001)))
    assert.deepStrictEqual(c.eventsReceived().map((e) => e._tag), ["Text", "Ping", "Close"])
    assert.deepStrictEqual(c.dataToSend(), [])
    assert.strictEqual(c.state, "CLOSED")
    assert.isTrue(c.closeHandshakeDone)
    assert.isTrue(c.closeTransport)
  })

  it("deferClose holds the Close reply back so earlier messages can still be answered", () => {
    const c = new Connection({ deferClose: true })
    c.receiveData(Buffer.concat([frame(Opcode.Text, "hello"), frame(Opcode.Close, closePayload(1000))]))
    assert.deepStrictEqual(c.eventsReceived().map((e) => e._tag), ["Text", "Close"])
    assert.isTrue(c.closeOwed)
    assert.isTrue(c.closeExpected)
    assert.isFalse(c.closeTransport)
    assert.deepStrictEqual(c.dataToSend(), [])
    assert.strictEqual(c.sendText("hello"), undefined)
    c.sendOwedClose()
    assert.strictEqual(Buffer.concat(c.dataToSend()).toString("hex"), "810568656c6c6f880203e8")
    assert.isTrue(c.closeTransport)
    assert.strictEqual(c.state, "CLOSED")
    assert.strictEqual(c.sendText("late")?._tag, "InvalidSendError")
  })

  it("deferClose also holds back the Close of a failure (Autobahn 4.1.3 strict: echo first)", () => {
    const c = new Connection({ deferClose: true })
    const err = c.receiveData(Buffer.concat([frame(Opcode.Text, "hi"), frame(5, ""), frame(Opcode.Ping, "")]))
    assert.strictEqual(err?.closeCode, 1002)
    assert.deepStrictEqual(c.eventsReceived(), [{ _tag: "Text", data: "hi" }])
    c.sendText("hi")
    c.sendOwedClose()
    const out = Buffer.concat(c.dataToSend())
    assert.strictEqual(out.subarray(0, 4).toString("hex"), "81026869")
    assert.strictEqual(out[4], 0x88)
    assert.strictEqual(out.readUInt16BE(6), 1002)
  })

  it("refuses a close reason over 123 bytes and codes that may not be sent", () => {
    const c = new Connection()
    assert.strictEqual(c.sendClose(1000, "x".repeat(124))?._tag, "InvalidSendError")
    assert.strictEqual(c.sendClose(1005)?._tag, "InvalidSendError")
    assert.strictEqual(c.sendClose(1000, "x".repeat(123)), undefined)
    assert.strictEqual(c.sendText("after close")?._tag, "InvalidSendError")
  })

  it("an EOF without a Close leaves the connection CLOSED without a handshake (1006)", () => {
    const c = new Connection()
    c.receiveEof()
    assert.strictEqual(c.state, "CLOSED")
    assert.isFalse(c.closeHandshakeDone)
    assert.isTrue(c.closeTransport)
  })
})

describe("output", () => {
  it("sends large payloads as views (no copy) after a small header", () => {
    const c = new Connection()
    const big = Buffer.alloc(100_000, 3)
    c.sendBinary(big)
    const out = c.dataToSend()
    assert.strictEqual(out.length, 2)
    assert.strictEqual(out[1], big)
    assert.strictEqual(Buffer.from(out[0]!).toString("hex"), "827f00000000000186a0")
  })

  it("gathers many small frames into one contiguous buffer", () => {
    const c = new Connection()
    for (let i = 0; i < 100; i++) c.sendText("msg " + i)
    const out = c.dataToSend()
    assert.strictEqual(out.length, 1)
    const r = run([out[0]!], { role: "client" })
    assert.strictEqual(r.events.length, 100)
    assert.deepStrictEqual(r.events[99], { _tag: "Text", data: "msg 99" })
  })

  it("connections sharing the output slab keep their own bytes when their writes interleave", () => {
    const a = new Connection()
    const b = new Connection()
    for (let i = 0; i < 2000; i++) {
      a.sendText("a" + i)
      b.sendText("b" + i)
    }
    const ra = run(a.dataToSend(), { role: "client" })
    const rb = run(b.dataToSend(), { role: "client" })
    assert.deepStrictEqual(ra.events.map((e: any) => e.data), Array.from({ length: 2000 }, (_, i) => "a" + i))
    assert.deepStrictEqual(rb.events.map((e: any) => e.data), Array.from({ length: 2000 }, (_, i) => "b" + i))
  })

  it("large-payload headers land in the new slab when the shared slab fills up", () => {
    // 4-byte headers of 16 KiB payloads: the 64 KiB slab fills after 16,384 of them
    const conns = [new Connection(), new Connection(), new Connection()]
    const outs: Array<Array<Uint8Array>> = [[], [], []]
    const payload = Buffer.alloc(5000, 7)
    for (let i = 0; i < 40_000; i++) {
      conns[i % 3]!.sendBinary(payload)
      if (i % 7 === 0) conns.forEach((c, k) => outs[k]!.push(...c.dataToSend()))
    }
    conns.forEach((c, k) => outs[k]!.push(...c.dataToSend()))
    for (const out of outs) {
      const client = new Connection({ role: "client" })
      let messages = 0
      for (const b of out) {
        assert.strictEqual(client.receiveData(Buffer.from(b)), undefined)
        messages += client.eventsReceived().length
      }
      assert.isAtLeast(messages, 13_333)
    }
  })

  it("does not overwrite bytes already handed out", () => {
    const c = new Connection()
    c.sendText("first")
    const first = c.dataToSend()
    const copy = Buffer.concat(first)
    for (let i = 0; i < 5000; i++) c.sendText("x".repeat(50))
    c.dataToSend()
    assert.deepStrictEqual(Buffer.concat(first), copy)
  })
})

// ------------------------------------------------------------------ properties

const messageArb = FastCheck.oneof(
  FastCheck.record({ kind: FastCheck.constant("text" as const), text: FastCheck.string({ unit: "grapheme", maxLength: 40 }) }),
  FastCheck.record({ kind: FastCheck.constant("binary" as const), bytes: FastCheck.uint8Array({ maxLength: 300 }) }),
  FastCheck.record({ kind: FastCheck.constant("ping" as const), bytes: FastCheck.uint8Array({ maxLength: 125 }) })
)

const encodeMessages = (msgs: ReadonlyArray<typeof messageArb extends FastCheck.Arbitrary<infer T> ? T : never>, fragment: number) => {
  const frames: Array<Buffer> = []
  for (const m of msgs) {
    if (m.kind === "ping") {
      frames.push(frame(Opcode.Ping, m.bytes))
      continue
    }
    const bytes = m.kind === "text" ? Buffer.from(m.text, "utf8") : Buffer.from(m.bytes)
    const op = m.kind === "text" ? Opcode.Text : Opcode.Binary
    if (fragment <= 0 || bytes.length <= fragment) {
      frames.push(frame(op, bytes))
      continue
    }
    for (let i = 0; i < bytes.length; i += fragment) {
      const last = i + fragment >= bytes.length
      frames.push(frame(i === 0 ? op : Opcode.Continuation, bytes.subarray(i, i + fragment), { fin: last }))
    }
  }
  return Buffer.concat(frames)
}

describe("properties", () => {
  it.prop(
    "any chunking of a valid stream yields the same events as one chunk",
    [FastCheck.array(messageArb, { maxLength: 8 }), FastCheck.integer({ min: 0, max: 17 }), FastCheck.array(FastCheck.nat(4000), { maxLength: 12 })],
    ([msgs, fragment, cuts]) => {
      const bytes = encodeMessages(msgs, fragment)
      const whole = run([bytes])
      const split = run(splitAt(bytes, cuts))
      assert.deepStrictEqual(plain(split.events), plain(whole.events))
      assert.deepStrictEqual(split.sent, whole.sent)
      assert.strictEqual(whole.connection.failure, undefined)
      const expected = msgs.map((m) =>
        m.kind === "text" ? { _tag: "Text", data: m.text } : { _tag: m.kind === "ping" ? "Ping" : "Binary", data: Buffer.from(m.bytes).toString("hex") }
      )
      assert.deepStrictEqual(plain(whole.events), expected)
    },
    { fastCheck: { numRuns: runs(1000) } }
  )

  it.prop(
    "messages of tens of KiB split across reads and frames arrive whole (unmasked while copied)",
    [
      FastCheck.array(
        FastCheck.oneof(
          FastCheck.record({ kind: FastCheck.constant("binary" as const), bytes: FastCheck.uint8Array({ minLength: 300, maxLength: 40_000 }) }),
          FastCheck.record({
            kind: FastCheck.constant("text" as const),
            text: FastCheck.string({ unit: "grapheme", minLength: 100, maxLength: 6_000 })
          })
        ),
        { minLength: 1, maxLength: 3 }
      ),
      FastCheck.constantFrom(0, 700, 17_000),
      FastCheck.array(FastCheck.nat(130_000), { maxLength: 10 })
    ],
    ([msgs, fragment, cuts]) => {
      const bytes = encodeMessages(msgs, fragment)
      const split = run(splitAt(bytes, cuts))
      assert.strictEqual(split.connection.failure, undefined)
      const expected = msgs.map((m) =>
        m.kind === "text" ? { _tag: "Text", data: m.text } : { _tag: "Binary", data: Buffer.from(m.bytes).toString("hex") }
      )
      assert.deepStrictEqual(plain(split.events), expected)
    },
    { fastCheck: { numRuns: runs(150) } }
  )

  it("invalid UTF-8 in a later read of a text message fails with 1007", () => {
    const text = Buffer.from("é".repeat(3000), "utf8")
    text[5000] = 0xff
    const bytes = frame(Opcode.Text, text)
    const c = new Connection()
    assert.strictEqual(c.receiveData(Buffer.from(bytes.subarray(0, 1000))), undefined)
    const err = c.receiveData(Buffer.from(bytes.subarray(1000)))
    assert.strictEqual(err?.closeCode, 1007)
    assert.deepStrictEqual(c.eventsReceived(), [])
  })

  it.prop(
    "1-byte chunks yield the same events as one chunk",
    [FastCheck.array(messageArb, { maxLength: 4 })],
    ([msgs]) => {
      const bytes = encodeMessages(msgs, 3)
      const ones = Array.from(bytes, (b) => Uint8Array.of(b))
      assert.deepStrictEqual(plain(run(ones).events), plain(run([bytes]).events))
    },
    { fastCheck: { numRuns: runs(1000) } }
  )

  it.prop(
    "encode then decode is the identity (server -> client role)",
    [FastCheck.array(messageArb, { maxLength: 8 })],
    ([msgs]) => {
      const server = new Connection()
      for (const m of msgs) {
        if (m.kind === "text") server.sendText(m.text)
        else if (m.kind === "binary") server.sendBinary(m.bytes)
        else server.sendPing(m.bytes)
      }
      const r = run(server.dataToSend(), { role: "client" })
      const expected = msgs.map((m) =>
        m.kind === "text" ? { _tag: "Text", data: m.text } : { _tag: m.kind === "ping" ? "Ping" : "Binary", data: Buffer.from(m.bytes).toString("hex") }
      )
      assert.deepStrictEqual(plain(r.events), expected)
    },
    { fastCheck: { numRuns: runs(1000) } }
  )

  it.prop(
    "arbitrary bytes never throw: events or a typed error with a close code",
    [FastCheck.array(FastCheck.uint8Array({ maxLength: 64 }), { maxLength: 8 }), FastCheck.constantFrom("server" as const, "client" as const)],
    ([chunks, role]) => {
      const c = new Connection({ role, maxMessageSize: 4096 })
      for (const chunk of chunks) {
        const err = c.receiveData(chunk)
        if (err !== undefined) assert.include([1002, 1007, 1008, 1009], err.closeCode)
        c.eventsReceived()
      }
      c.dataToSend()
    },
    { fastCheck: { numRuns: runs(2000) } }
  )
})

describe("closeOutcome: the code and reason an application reports", () => {
  it("the peer's Close, once answered: its code and reason, clean", () => {
    const r = run([frame(Opcode.Close, closePayload(4001, "bye"))])
    assert.deepStrictEqual(r.connection.closeOutcome(), { code: 4001, reason: "bye", wasClean: true })
  })

  it("ours first, answered by the peer: the peer's code and reason, clean", () => {
    const c = new Connection()
    c.sendClose(4000, "ours")
    c.receiveData(frame(Opcode.Close, closePayload(1000, "theirs")))
    assert.deepStrictEqual(c.closeOutcome(), { code: 1000, reason: "theirs", wasClean: true })
  })

  it("ours, answered with an empty Close: 1005 (no status) from the peer, clean", () => {
    const c = new Connection()
    c.sendClose(4000, "ours")
    c.receiveData(frame(Opcode.Close, Buffer.alloc(0)))
    assert.deepStrictEqual(c.closeOutcome(), { code: 1005, reason: "", wasClean: true })
  })

  it("ours, never answered (the peer closed TCP): 1006, not clean; our code is not reported", () => {
    const c = new Connection()
    c.sendClose(4000, "ours")
    c.receiveEof()
    assert.deepStrictEqual(c.closeOutcome(), { code: 1006, reason: "", wasClean: false })
  })

  it("no closing handshake at all: 1006, not clean", () => {
    const c = new Connection()
    c.receiveEof()
    assert.deepStrictEqual(c.closeOutcome(), { code: 1006, reason: "", wasClean: false })
  })

  it("a failure: its code and reason, not clean", () => {
    const r = run([frame(Opcode.Text, "hi", { mask: false })])
    assert.deepStrictEqual(r.connection.closeOutcome(), { code: 1002, reason: "unmasked client frame", wasClean: false })
  })
})
