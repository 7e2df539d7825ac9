import { assert, describe, it } from "@effect/vitest"
import { assertThrowsExactly, frame, jsonText, ok, run } from "./helpers.js"
import { FastCheck } from "effect"
import * as Zlib from "node:zlib"
import { HandshakeResponseError, InternalError, InvalidPayloadError, MessageTooBigError } from "../src/Errors.js"
import { parseExtensions } from "../src/Extensions.js"
import type { ExtensionOffer } from "../src/Extensions.js"
import { liveContexts } from "../src/internal/deflate.js"
import * as internal from "../src/internal/deflate.js"
import {
  acceptResponse,
  clientOffer,
  deflateMemory,
  inflateMemory,
  memoryEstimate,
  negotiate,
  PerMessageDeflate,
  releaseSharedContexts,
  resolveOptions
} from "../src/PerMessageDeflate.js"
import type {
  DeflateMeter,
  MemoryPolicy,
  PerMessageDeflateOptions,
  PerMessageDeflateParams
} from "../src/PerMessageDeflate.js"
import { runs } from "./helpers.js"

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex")
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex")

/** An offer from `name=value` / `name` strings (values already unquoted). */
const offer = (...params: Array<string>): ExtensionOffer => ({
  name: "permessage-deflate",
  params: params.map((p) => {
    const i = p.indexOf("=")
    return i < 0 ? { name: p, value: undefined } : { name: p.slice(0, i), value: p.slice(i + 1) }
  })
})

const DEFAULT_PARAMS: PerMessageDeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15
}
const params = (p: Partial<PerMessageDeflateParams> = {}): PerMessageDeflateParams => ({ ...DEFAULT_PARAMS, ...p })

const MiB = 1024 * 1024

/** Incompressible bytes, deterministic. */
const randomBytes = (n: number, seed: number): Buffer => {
  const out = Buffer.allocUnsafe(n)
  let s = seed * 2654435761 + 1
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    out[i] = s >>> 24
  }
  return out
}



/** Negotiation under the policy that accepts each offer as made (dedicated 32 KiB windows). */
const negotiateAsOffered = (offers: ReadonlyArray<ExtensionOffer>, options: PerMessageDeflateOptions = {}) =>
  negotiate(offers, { memory: "window32k", ...options })


/** `compressOffloaded`'s payload, or a failure that says so when it never calls back (5 s). */
const offloadedPayload = (pmd: PerMessageDeflate, data: Uint8Array, onDone?: (payload: Buffer) => void): Promise<Buffer> =>
  new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("compressOffloaded did not call back within 5 s")), 5000)
    pmd.compressOffloaded(data, (payload) => {
      clearTimeout(timer)
      onDone?.(payload)
      resolve(payload)
    })
  })

describe("RFC 7692 §5 / §7.1 negotiation (server), memory \"window32k\": each offer as made", () => {
  it("accepts a bare offer with the default response", () => {
    const r = negotiateAsOffered([offer()], {})
    assert.deepStrictEqual(r, { params: DEFAULT_PARAMS, response: "permessage-deflate" })
  })

  it("returns undefined when disabled, with no offer, or with other extensions only", () => {
    assert.isUndefined(negotiateAsOffered([offer()], { enabled: false }))
    assert.isUndefined(negotiateAsOffered([], {}))
    assert.isUndefined(negotiateAsOffered([{ name: "x-webkit-deflate-frame", params: [] }], {}))
  })

  it("§7.1.1.1 server_no_context_takeover: offered, or forced by options", () => {
    const a = negotiateAsOffered([offer("server_no_context_takeover")], {})!
    assert.strictEqual(a.response, "permessage-deflate; server_no_context_takeover")
    assert.isTrue(a.params.serverNoContextTakeover)
    const b = negotiateAsOffered([offer()], { serverNoContextTakeover: true })!
    assert.strictEqual(b.response, "permessage-deflate; server_no_context_takeover")
    assert.isTrue(b.params.serverNoContextTakeover)
  })

  it("§7.1.1.2 client_no_context_takeover: offered (echoed), or asked for by options", () => {
    const a = negotiateAsOffered([offer("client_no_context_takeover")], {})!
    assert.strictEqual(a.response, "permessage-deflate; client_no_context_takeover")
    assert.isTrue(a.params.clientNoContextTakeover)
    const b = negotiateAsOffered([offer()], { clientNoContextTakeover: true })!
    assert.strictEqual(b.response, "permessage-deflate; client_no_context_takeover")
    assert.isTrue(b.params.clientNoContextTakeover)
  })

  it("§7.1.2.1 server_max_window_bits: same or smaller value answered; absent when not offered", () => {
    for (let bits = 8; bits <= 15; bits++) {
      const r = negotiateAsOffered([offer(`server_max_window_bits=${bits}`)], {})!
      assert.strictEqual(r.response, `permessage-deflate; server_max_window_bits=${bits}`)
      assert.strictEqual(r.params.serverMaxWindowBits, bits)
    }
    const smaller = negotiateAsOffered([offer("server_max_window_bits=12")], { serverMaxWindowBits: 10 })!
    assert.strictEqual(smaller.response, "permessage-deflate; server_max_window_bits=10")
    assert.strictEqual(smaller.params.serverMaxWindowBits, 10)
    // Not offered: we may still compress with a smaller window, but must not say so.
    const quiet = negotiateAsOffered([offer()], { serverMaxWindowBits: 10 })!
    assert.strictEqual(quiet.response, "permessage-deflate")
    assert.strictEqual(quiet.params.serverMaxWindowBits, 10)
  })

  it("§7.1.2.2 client_max_window_bits: only answered when offered, with or without a value", () => {
    const bare = negotiateAsOffered([offer("client_max_window_bits")], {})!
    assert.strictEqual(bare.response, "permessage-deflate")
    assert.strictEqual(bare.params.clientMaxWindowBits, 15)
    const asked = negotiateAsOffered([offer("client_max_window_bits")], { clientMaxWindowBits: 10 })!
    assert.strictEqual(asked.response, "permessage-deflate; client_max_window_bits=10")
    assert.strictEqual(asked.params.clientMaxWindowBits, 10)
    // a value of 15 is answered too: the client gave one
    const fifteen = negotiateAsOffered([offer("client_max_window_bits=15")], {})!
    assert.strictEqual(fifteen.response, "permessage-deflate; client_max_window_bits=15")
    assert.strictEqual(fifteen.params.clientMaxWindowBits, 15)
    const valued = negotiateAsOffered([offer("client_max_window_bits=12")], {})!
    assert.strictEqual(valued.response, "permessage-deflate; client_max_window_bits=12")
    assert.strictEqual(valued.params.clientMaxWindowBits, 12)
    const lower = negotiateAsOffered([offer("client_max_window_bits=12")], { clientMaxWindowBits: 9 })!
    assert.strictEqual(lower.response, "permessage-deflate; client_max_window_bits=9")
    assert.strictEqual(lower.params.clientMaxWindowBits, 9)
    const keep = negotiateAsOffered([offer("client_max_window_bits=8")], { clientMaxWindowBits: 12 })!
    assert.strictEqual(keep.response, "permessage-deflate; client_max_window_bits=8")
    assert.strictEqual(keep.params.clientMaxWindowBits, 8)
    // Not offered: the client may use 15, and the response must not carry the parameter; a
    // smaller dedicated window cannot be had, so the client is asked to keep no context.
    const none = negotiateAsOffered([offer()], { clientMaxWindowBits: 10 })!
    assert.strictEqual(none.response, "permessage-deflate; client_no_context_takeover")
    assert.strictEqual(none.params.clientMaxWindowBits, 15)
    assert.isTrue(none.params.clientNoContextTakeover)
  })

  it("writes every parameter in a fixed order", () => {
    const r = negotiateAsOffered(
      [offer("client_max_window_bits", "server_max_window_bits=10", "client_no_context_takeover", "server_no_context_takeover")],
      { clientMaxWindowBits: 11 }
    )!
    assert.strictEqual(
      r.response,
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
    )
    assert.deepStrictEqual(r.params, {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 11
    })
  })

  it("§5 declines offers with duplicated, unknown, valueless, valued or malformed parameters", () => {
    const bad: Array<Array<string>> = [
      ["server_no_context_takeover", "server_no_context_takeover"],
      ["client_no_context_takeover", "client_no_context_takeover"],
      ["server_max_window_bits=10", "server_max_window_bits=10"],
      ["client_max_window_bits", "client_max_window_bits"],
      ["client_max_window_bits=10", "client_max_window_bits"],
      ["server_no_context_takeover=true"],
      ["client_no_context_takeover="],
      ["server_max_window_bits"],
      ["x"],
      ["client_max_window_bit"],
      ["Server_No_Context_Takeover"],
      ...["7", "16", "08", "010", "015", "+9", "9.0", "1a", "", " 9", "0x9", "-15", "99", "100", "150", "00", "20", "25", "1/"]
        .flatMap((v) => [
        [`server_max_window_bits=${v}`],
        [`client_max_window_bits=${v}`]
      ])
    ]
    for (const b of bad) assert.isUndefined(negotiateAsOffered([offer(...b)], {}), JSON.stringify(b))
  })

  it("§5 walks offers in order and accepts the first acceptable one", () => {
    const r = negotiateAsOffered(
      [
        { name: "x-webkit-deflate-frame", params: [] },
        offer("server_max_window_bits=16"),
        offer("client_max_window_bits", "server_no_context_takeover"),
        offer()
      ],
      { clientMaxWindowBits: 12 }
    )!
    assert.strictEqual(r.response, "permessage-deflate; server_no_context_takeover; client_max_window_bits=12")
    assert.isUndefined(negotiateAsOffered([offer("foo"), offer("server_max_window_bits=07")], {}))
  })

  it("§7.1.3 offer examples, through the Sec-WebSocket-Extensions parser", () => {
    const parse = (v: string) => {
      const r = parseExtensions(v)
      if (!Array.isArray(r)) assert.fail(`parser rejected ${v}`)
      return r as ReadonlyArray<ExtensionOffer>
    }
    assert.strictEqual(
      negotiateAsOffered(parse("permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits"), {})!.response,
      "permessage-deflate; server_max_window_bits=10"
    )
    assert.strictEqual(
      negotiateAsOffered(parse("permessage-deflate; server_max_window_bits=\"10\""), {})!.response,
      "permessage-deflate; server_max_window_bits=10"
    )
    assert.strictEqual(
      negotiateAsOffered(parse("permessage-deflate; server_max_window_bits=010, permessage-deflate"), {})!.response,
      "permessage-deflate"
    )
  })

  it("rejects out-of-range options as configuration errors", () => {
    assert.throws(() => resolveOptions({ serverMaxWindowBits: 8 }), RangeError)
    assert.throws(() => resolveOptions({ clientMaxWindowBits: 16 }), RangeError)
    assert.throws(() => resolveOptions({ memLevel: 0 }), RangeError)
    assert.throws(() => resolveOptions({ level: 10 }), RangeError)
    assert.throws(() => resolveOptions({ threshold: -1 }), RangeError)
    assert.throws(() => resolveOptions({ offloadThreshold: 0 }), RangeError)
    assert.throws(() => resolveOptions({ offloadConcurrency: 0 }), RangeError)
    assert.throws(() => resolveOptions({ offloadConcurrency: 1.5 }), RangeError)
    assert.throws(() => PerMessageDeflate.compressStandalone(Buffer.from("x"), 16), RangeError)
    assert.throws(() => resolveOptions({ memory: "window2k" as MemoryPolicy }), RangeError)
    assert.throws(() => resolveOptions({ memory: { compressor: "shared", decompressor: "big" as MemoryPolicy } }), RangeError)
    // the lowest offloadThreshold and threshold allowed
    assert.strictEqual(resolveOptions({ offloadThreshold: 1 }).offloadThreshold, 1)
    assert.strictEqual(resolveOptions({ threshold: 0 }).threshold, 0)
    assert.deepStrictEqual(resolveOptions({}), {
      enabled: true,
      memory: { compressor: "shared", decompressor: "shared" },
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15,
      memLevel: 8,
      level: 1,
      threshold: 1024,
      offloadThreshold: 256 * 1024,
      offloadConcurrency: undefined
    })
  })
})

describe("configuration errors", () => {
  const option = (name: string, range: string, got: string) =>
    `permessage-deflate option ${name} must be an integer in ${range}, got ${got}`

  it("name the option, its range and the value given", () => {
    const cases: ReadonlyArray<[PerMessageDeflateOptions, string]> = [
      [{ serverMaxWindowBits: 8 }, option("serverMaxWindowBits", "9..15", "8")],
      [{ clientMaxWindowBits: 16 }, option("clientMaxWindowBits", "9..15", "16")],
      [{ clientMaxWindowBits: 10.5 }, option("clientMaxWindowBits", "9..15", "10.5")],
      [{ memLevel: 0 }, option("memLevel", "1..9", "0")],
      [{ memory: "window32k", memLevel: 10 }, option("memLevel", "1..9", "10")],
      [{ level: 10 }, option("level", "0..9", "10")],
      [{ offloadConcurrency: 0 }, option("offloadConcurrency", "1..1024", "0")],
      [{ offloadConcurrency: 1.5 }, option("offloadConcurrency", "1..1024", "1.5")],
      [{ threshold: -1 }, "permessage-deflate option threshold must be >= 0, got -1"],
      [{ threshold: NaN }, "permessage-deflate option threshold must be >= 0, got NaN"],
      [{ offloadThreshold: 0 }, "permessage-deflate option offloadThreshold must be >= 1, got 0"],
      [{ offloadThreshold: 0.5 }, "permessage-deflate option offloadThreshold must be >= 1, got 0.5"],
      [
        { memory: "window2k" as MemoryPolicy },
        "permessage-deflate option memory must be one of shared, window1k, window4k, window8k, window32k (or one per direction), got \"window2k\""
      ],
      [
        { memory: { compressor: "shared", decompressor: "big" as MemoryPolicy } },
        "permessage-deflate option memory must be one of shared, window1k, window4k, window8k, window32k (or one per direction), got {\"compressor\":\"shared\",\"decompressor\":\"big\"}"
      ]
    ]
    for (const [options, message] of cases) assertThrowsExactly(() => resolveOptions(options), RangeError, message)
  })

  it("compressStandalone names its argument, its range and the value given", () => {
    const m = Buffer.from("Hello")
    assertThrowsExactly(() => PerMessageDeflate.compressStandalone(m, 16), RangeError, option("windowBits", "8..15", "16"))
    assertThrowsExactly(() => PerMessageDeflate.compressStandalone(m, 7), RangeError, option("windowBits", "8..15", "7"))
    assertThrowsExactly(() => PerMessageDeflate.compressStandalone(m, 15, 10), RangeError, option("level", "0..9", "10"))
    assertThrowsExactly(() => PerMessageDeflate.compressStandalone(m, 15, -1), RangeError, option("level", "0..9", "-1"))
    assertThrowsExactly(() => PerMessageDeflate.compressStandalone(m, 15, 1, 10), RangeError, option("memLevel", "1..9", "10"))
    assertThrowsExactly(() => PerMessageDeflate.compressStandalone(m, 15, 1, 0), RangeError, option("memLevel", "1..9", "0"))
    // window 8 is raised to 9 and every bound itself is accepted
    assert.strictEqual(toHex(PerMessageDeflate.compressStandalone(m, 8, 0, 1)), toHex(PerMessageDeflate.compressStandalone(m, 9, 0, 1)))
    assert.strictEqual(toHex(PerMessageDeflate.compressStandalone(m, 15, 9, 9)), "f248cdc9c90700")
  })
})

describe("RFC 7692 §5 / §7.1 negotiation (client)", () => {
  const refusal = (r: PerMessageDeflateParams | HandshakeResponseError): string => {
    assert.instanceOf(r, HandshakeResponseError)
    assert.strictEqual((r as HandshakeResponseError).reason, "Extensions")
    return (r as HandshakeResponseError).message
  }
  const refused = (detail: string) => `invalid handshake response (Extensions): ${detail}`

  it("a memory policy given to the client is the one it offers (no classic default then)", () => {
    assert.strictEqual(clientOffer(), "permessage-deflate; client_max_window_bits")
    assert.strictEqual(
      clientOffer({ memory: "shared" }),
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
    )
    assert.strictEqual(
      clientOffer({ memory: "window8k" }),
      "permessage-deflate; server_max_window_bits=13; client_max_window_bits=13"
    )
    // and the answer is checked against it
    assert.strictEqual(
      refusal(acceptResponse(offer(), { memory: "shared" })),
      refused("the server did not agree to server_no_context_takeover")
    )
    assert.deepStrictEqual(acceptResponse(offer("server_no_context_takeover"), { memory: "shared" }), {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15
    })
  })

  it("says why it refuses a response", () => {
    const cases: ReadonlyArray<[ExtensionOffer, PerMessageDeflateOptions, string]> = [
      [{ name: "x-webkit-deflate-frame", params: [] }, {}, "x-webkit-deflate-frame is not permessage-deflate"],
      [offer("foo"), {}, "permessage-deflate response with invalid parameters"],
      [offer("server_max_window_bits=100"), {}, "permessage-deflate response with invalid parameters"],
      [offer("client_max_window_bits"), {}, "client_max_window_bits without a value in a response"],
      [offer("client_no_context_takeover"), { serverNoContextTakeover: true }, "the server did not agree to server_no_context_takeover"],
      [offer("server_max_window_bits=12"), { serverMaxWindowBits: 10 }, "server_max_window_bits above the one offered"],
      [offer("server_max_window_bits=14"), { memory: "window8k" }, "server_max_window_bits above the one offered"],
      [offer("client_max_window_bits=12"), { clientMaxWindowBits: 10 }, "client_max_window_bits above the one offered"]
    ]
    for (const [response, options, detail] of cases) {
      assert.strictEqual(refusal(acceptResponse(response, options)), refused(detail), detail)
    }
    // at the limits: accepted
    assert.deepStrictEqual(acceptResponse(offer("server_max_window_bits=10", "client_max_window_bits=10"), {
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 10
    }), { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 10, clientMaxWindowBits: 10 })
  })
})

describe("RFC 7692 §7.2.3 golden vectors", () => {
  it("§7.2.3.1 compresses \"Hello\" on a fresh context to f2 48 cd c9 c9 07 00", () => {
    const pmd = new PerMessageDeflate(params())
    assert.strictEqual(toHex(pmd.compress(Buffer.from("Hello"))), "f248cdc9c90700")
    assert.strictEqual(toHex(PerMessageDeflate.compressStandalone(new TextEncoder().encode("Hello"))), "f248cdc9c90700")
    pmd.close()
  })

  it("§7.2.3.2 a second \"Hello\" with a shared sliding window is f2 00 11 00 00", () => {
    const pmd = new PerMessageDeflate(params())
    pmd.compress(Buffer.from("Hello"))
    assert.strictEqual(toHex(pmd.compress(Buffer.from("Hello"))), "f200110000")
    pmd.close()
    // Without context takeover the second message is compressed afresh.
    const fresh = new PerMessageDeflate(params({ serverNoContextTakeover: true }))
    fresh.compress(Buffer.from("Hello"))
    assert.strictEqual(toHex(fresh.compress(Buffer.from("Hello"))), "f248cdc9c90700")
    fresh.close()
  })

  it("§7.2.3.1-2 inflates both messages, the second through the kept window", () => {
    const pmd = new PerMessageDeflate(params())
    assert.strictEqual(ok(pmd.decompress(hex("f248cdc9c90700"), true, 100)).toString(), "Hello")
    assert.strictEqual(ok(pmd.decompress(hex("f200110000"), true, 100)).toString(), "Hello")
    pmd.close()
  })

  it("§7.2.3.3 inflates a DEFLATE block with no compression", () => {
    const pmd = new PerMessageDeflate(params())
    assert.strictEqual(ok(pmd.decompress(hex("0005 00faff 48656c6c6f"), true, 100)).toString(), "Hello")
    pmd.close()
  })

  it("§7.2.3.4 inflates a block with BFINAL set, and the stream goes on afterwards", () => {
    const pmd = new PerMessageDeflate(params())
    assert.strictEqual(ok(pmd.decompress(hex("f348cdc9c90700 00"), true, 100)).toString(), "Hello")
    assert.strictEqual(ok(pmd.decompress(hex("f248cdc9c90700"), true, 100)).toString(), "Hello")
    // BFINAL without the trailing 0x00: the rest of the appended tail is dropped.
    assert.strictEqual(ok(pmd.decompress(hex("f348cdc9c90700"), true, 100)).toString(), "Hello")
    assert.strictEqual(ok(pmd.decompress(hex("f248cdc9c90700"), true, 100)).toString(), "Hello")
    // Two complete streams inside one message.
    assert.strictEqual(ok(pmd.decompress(hex("f348cdc9c90700 f348cdc9c90700"), true, 100)).toString(), "HelloHello")
    pmd.close()
  })

  it("§7.2.3.6 an empty message compresses to 00 and inflates back to nothing", () => {
    const pmd = new PerMessageDeflate(params())
    assert.strictEqual(toHex(pmd.compress(Buffer.alloc(0))), "00")
    pmd.compress(Buffer.from("Hello"))
    assert.strictEqual(toHex(pmd.compress(Buffer.alloc(0))), "00")
    assert.strictEqual(toHex(pmd.compress(Buffer.from("Hello"))), "f200110000")
    const rx = new PerMessageDeflate(params())
    assert.strictEqual(ok(rx.decompress(hex("00"), true, 0)).length, 0)
    assert.strictEqual(ok(rx.decompress(Buffer.alloc(0), true, 0)).length, 0)
    pmd.close()
    rx.close()
  })

  it("stored-block fallback matches §7.2.3.3 and round-trips past 64 KiB", () => {
    assert.strictEqual(toHex(internal.storedBlocks(Buffer.from("Hello"))), "0005" + "00faff" + "48656c6c6f" + "00")
    const big = jsonText(150_000)
    const rx = new PerMessageDeflate(params())
    assert.isTrue(ok(rx.decompress(internal.storedBlocks(big), true, big.length)).equals(big))
    // and the window stays usable afterwards (the trailing 00 closed the stream cleanly)
    assert.strictEqual(ok(rx.decompress(hex("f248cdc9c90700"), true, 100)).toString(), "Hello")
    rx.close()
  })
})

describe("RFC 7692 §7.2.1-7.2.2 compression and decompression", () => {
  const messages = [
    jsonText(3000, 1),
    jsonText(5000, 2),
    Buffer.alloc(0),
    jsonText(3000, 1),
    Buffer.from("x"),
    jsonText(70_000, 3),
    randomBytes(200_000, 1) // compressed output spans several 64 KiB chunks
  ]

  for (const [name, p] of [
    ["context takeover", params()],
    ["no context takeover", params({ serverNoContextTakeover: true, clientNoContextTakeover: true })],
    ["small windows", params({ serverMaxWindowBits: 9, clientMaxWindowBits: 10 })]
  ] as const) {
    it(`round-trips several messages both ways (${name})`, () => {
      const server = new PerMessageDeflate(p)
      const client = new PerMessageDeflate(p, {}, "client")
      for (const m of messages) {
        assert.isTrue(ok(client.decompress(server.compress(m), true, m.length)).equals(m))
        assert.isTrue(ok(server.decompress(client.compress(m), true, m.length)).equals(m))
      }
      server.close()
      client.close()
    })
  }

  it("context takeover shortens a repeated message; no takeover does not", () => {
    const m = jsonText(4000, 9)
    const keep = new PerMessageDeflate(params())
    const first = keep.compress(m).length
    const second = keep.compress(m).length
    assert.isBelow(second, first / 4)
    const reset = new PerMessageDeflate(params({ serverNoContextTakeover: true }))
    assert.strictEqual(reset.compress(m).length, reset.compress(m).length)
    assert.strictEqual(reset.compress(m).length, first)
    keep.close()
    reset.close()
  })

  it("client_no_context_takeover: the server resets its inflater after each message", () => {
    const reset = new PerMessageDeflate(params({ clientNoContextTakeover: true }))
    assert.strictEqual(ok(reset.decompress(hex("f248cdc9c90700"), true, 100)).toString(), "Hello")
    // f2 00 11 00 00 refers back into the previous message: invalid on a fresh window.
    const r = reset.decompress(hex("f200110000"), true, 100)
    assert.instanceOf(r, InvalidPayloadError)
    assert.strictEqual((r as InvalidPayloadError).closeCode, 1007)
    reset.close()
  })

  it("server_max_window_bits=8: output is readable with a real 256-byte window", () => {
    const agreed = negotiate([offer("server_max_window_bits=8")], {})!.params
    assert.strictEqual(agreed.serverMaxWindowBits, 8)
    const server = new PerMessageDeflate(agreed)
    const client = new PerMessageDeflate(agreed, {}, "client") // inflates with an 8-bit window
    // Repeats at distances up to ~600 bytes, within and across messages (context takeover).
    const phrase = randomBytes(300, 5)
    for (let i = 0; i < 40; i++) {
      const m = Buffer.concat([phrase.subarray(i % 50, 100 + (i % 50)), randomBytes(60 + i * 7, i), phrase.subarray(0, 120)])
      assert.isTrue(ok(client.decompress(server.compress(m), true, m.length)).equals(m), `message ${i}`)
    }
    server.close()
    client.close()
    // Control: a 15-bit window's back-reference 500 bytes into the previous message breaks
    // the 8-bit inflater, so the check above can fail.
    const wide = new PerMessageDeflate(params())
    const narrow = new PerMessageDeflate(params({ serverMaxWindowBits: 8 }), {}, "client")
    const noise = randomBytes(500, 42)
    ok(narrow.decompress(wide.compress(noise.subarray(0, 300)), true, 1000))
    const r = narrow.decompress(wide.compress(Buffer.concat([noise.subarray(300), noise.subarray(0, 100)])), true, 1000)
    assert.instanceOf(r, InvalidPayloadError)
    wide.close()
    narrow.close()
  })

  it("threshold decides what is compressed", () => {
    const pmd = new PerMessageDeflate(params(), { threshold: 100 })
    assert.isFalse(pmd.shouldCompress(99))
    assert.isTrue(pmd.shouldCompress(100))
    assert.isTrue(new PerMessageDeflate(params()).shouldCompress(1024))
    assert.isFalse(new PerMessageDeflate(params()).shouldCompress(1023))
  })

  it("compressStandalone equals what a no-context-takeover connection sends", () => {
    const m = jsonText(5000, 4)
    const pmd = new PerMessageDeflate(params({ serverNoContextTakeover: true }))
    const once = PerMessageDeflate.compressStandalone(m)
    assert.isTrue(pmd.compress(m).equals(once))
    assert.isTrue(PerMessageDeflate.compressStandalone(m).equals(once))
    const small = PerMessageDeflate.compressStandalone(m, 10, 6, 4)
    const rx = new PerMessageDeflate(params({ serverMaxWindowBits: 10 }), {}, "client")
    assert.isTrue(ok(rx.decompress(small, true, m.length)).equals(m))
    pmd.close()
    rx.close()
  })

  it.prop(
    "any split of the compressed payload inflates like one piece",
    [
      FastCheck.array(FastCheck.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 3 }),
      FastCheck.array(FastCheck.nat(), { maxLength: 6 }),
      FastCheck.boolean(),
      FastCheck.boolean()
    ],
    ([texts, cuts, takeover, emptyFin]) => {
      const p = params({ serverNoContextTakeover: !takeover, clientNoContextTakeover: !takeover })
      const tx = new PerMessageDeflate(p, {}, "client")
      const whole = new PerMessageDeflate(p)
      const split = new PerMessageDeflate(p)
      for (const raw of texts) {
        // Make some inputs compressible: repeat a prefix.
        const m = Buffer.concat([raw, raw.subarray(0, raw.length >> 1)])
        const c = tx.compress(m)
        const expected = ok(whole.decompress(c, true, m.length))
        assert.isTrue(expected.equals(m))
        const points = [...new Set(cuts.map((x) => x % (c.length + 1)))].sort((a, b) => a - b)
        const parts: Array<Buffer> = []
        let prev = 0
        for (const at of points) {
          parts.push(c.subarray(prev, at))
          prev = at
        }
        parts.push(c.subarray(prev))
        if (emptyFin) parts.push(Buffer.alloc(0))
        const got: Array<Buffer> = []
        let produced = 0
        parts.forEach((part, i) => {
          const out = ok(split.decompress(part, i === parts.length - 1, m.length - produced))
          produced += out.length
          got.push(out)
        })
        assert.isTrue(Buffer.concat(got).equals(expected))
      }
      tx.close()
      whole.close()
      split.close()
    },
    { fastCheck: { numRuns: runs(1000) } }
  )

  it.prop(
    "arbitrary bytes never throw: bytes or a 1007/1009 error",
    [FastCheck.uint8Array({ maxLength: 64 }), FastCheck.nat({ max: 64 })],
    ([bytes, cut]) => {
      const pmd = new PerMessageDeflate(params())
      const a = pmd.decompress(bytes.subarray(0, Math.min(cut, bytes.length)), false, 256)
      const b = Buffer.isBuffer(a) ? pmd.decompress(bytes.subarray(Math.min(cut, bytes.length)), true, 256) : a
      assert.isTrue(Buffer.isBuffer(b) || b instanceof InvalidPayloadError || b instanceof MessageTooBigError)
      pmd.close()
    },
    { fastCheck: { numRuns: runs(500) } }
  )
})

describe("RFC 6455 §10.4 / RFC 7692 §8 limits and failures", () => {
  it("corrupt data fails with InvalidPayloadError (1007), and stays failed", () => {
    const pmd = new PerMessageDeflate(params())
    const r = pmd.decompress(hex("ffffffff"), false, 1000)
    assert.instanceOf(r, InvalidPayloadError)
    assert.strictEqual((r as InvalidPayloadError).closeCode, 1007)
    assert.strictEqual(pmd.decompress(hex("f248cdc9c90700"), true, 1000), r)
    const far = new PerMessageDeflate(params())
    assert.instanceOf(far.decompress(hex("f200110000"), true, 1000), InvalidPayloadError) // distance too far back
    pmd.close()
    far.close()
  })

  it("inflated size is capped exactly at maxBytes", () => {
    const m = jsonText(10_000, 3)
    const c = PerMessageDeflate.compressStandalone(m)
    const exact = new PerMessageDeflate(params({ clientNoContextTakeover: true }))
    assert.isTrue(ok(exact.decompress(c, true, m.length)).equals(m))
    const r = exact.decompress(c, true, m.length - 1)
    assert.instanceOf(r, MessageTooBigError)
    assert.strictEqual((r as MessageTooBigError).closeCode, 1009)
    assert.strictEqual((r as MessageTooBigError).limit, m.length - 1)
    exact.close()
  })

  it("a decompression bomb (256 MiB of zeros in ~256 KB) stops at 1 MiB without growing memory", () => {
    // 256 copies of one sync-flushed, non-final raw stream of 1 MiB of zeros form one valid
    // stream (each copy refers only to itself), so the bomb is built without 256 MiB in memory.
    const unit = Zlib.deflateRawSync(Buffer.alloc(MiB), { finishFlush: Zlib.constants.Z_SYNC_FLUSH })
    assert.strictEqual(unit.subarray(-4).toString("hex"), "0000ffff")
    const bomb = Buffer.concat(Array.from({ length: 256 }, () => unit)).subarray(0, -4)
    assert.isBelow(bomb.length, 512 * 1024)
    const control = new PerMessageDeflate(params())
    assert.strictEqual(ok(control.decompress(bomb.subarray(0, unit.length * 2), false, 3 * MiB)).length, 2 * MiB)
    control.close()

    globalThis.gc?.()
    const before = process.memoryUsage()
    const peakBefore = process.resourceUsage().maxRSS * 1024
    const oneShot = new PerMessageDeflate(params())
    const r = oneShot.decompress(bomb, true, MiB)
    assert.instanceOf(r, MessageTooBigError)
    assert.strictEqual((r as MessageTooBigError).limit, MiB)
    // Streamed in 4 KB pieces, with the allowance shrinking as output arrives.
    const streamed = new PerMessageDeflate(params())
    let produced = 0
    let failure: unknown
    for (let off = 0; off < bomb.length && failure === undefined; off += 4096) {
      const piece = bomb.subarray(off, off + 4096)
      const out = streamed.decompress(piece, off + 4096 >= bomb.length, MiB - produced)
      if (Buffer.isBuffer(out)) produced += out.length
      else failure = out
    }
    assert.instanceOf(failure, MessageTooBigError)
    assert.isAtMost(produced, MiB)
    const after = process.memoryUsage()
    const peakAfter = process.resourceUsage().maxRSS * 1024
    const limit = 64 * MiB
    assert.isBelow(after.rss - before.rss, limit, "rss growth")
    assert.isBelow(after.external + after.arrayBuffers - before.external - before.arrayBuffers, limit, "external growth")
    assert.isBelow(peakAfter - Math.max(peakBefore, before.rss), limit, "peak rss growth")
    oneShot.close()
    streamed.close()
  })

  it("a connection whose maxMessageSize is not a whole number counts whole bytes", () => {
    // 70,000 random bytes inflate into two 64 KiB scratch buffers (a fractional limit once threw there)
    const m = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 2654435761) >>> 24))
    const wire = frame(0x2, PerMessageDeflate.compressStandalone(m), { rsv1: true })
    for (const [maxMessageSize, fits] of [[70_000.5, true], [69_999.5, false]] as const) {
      const compression = new PerMessageDeflate(params())
      const { connection, events } = run([wire], { role: "server", maxMessageSize, compression })
      if (fits) {
        assert.strictEqual(events.length, 1)
        const e = events[0]!
        assert.strictEqual(e._tag, "Binary")
        assert.isTrue(Buffer.from((e as { data: Uint8Array }).data).equals(m))
        assert.isUndefined(connection.failure)
      } else {
        assert.instanceOf(connection.failure, MessageTooBigError)
        assert.strictEqual(connection.failure.closeCode, 1009)
      }
      compression.close()
    }
  })

  it("fails at one byte past the allowance, around the 64 KiB output-chunk boundaries too", () => {
    const m = Buffer.alloc(100_000, 0x61)
    const c = PerMessageDeflate.compressStandalone(m)
    for (const allowance of [0, 1, 65_535, 65_536, 65_537, 99_999]) {
      const pmd = new PerMessageDeflate(params())
      const r = pmd.decompress(c, true, allowance)
      assert.instanceOf(r, MessageTooBigError, `allowance ${allowance}`)
      pmd.close()
    }
    const pmd = new PerMessageDeflate(params())
    assert.isTrue(ok(pmd.decompress(c, true, 100_000)).equals(m))
    pmd.close()
  })
})

describe("resources", () => {
  it("creates zlib contexts lazily and close() frees them, idempotently", () => {
    releaseSharedContexts()
    const base = liveContexts()
    const pmd = new PerMessageDeflate(params())
    assert.strictEqual(liveContexts(), base)
    pmd.compress(Buffer.from("Hello"))
    assert.strictEqual(liveContexts(), base + 1)
    ok(pmd.decompress(hex("f248cdc9c90700"), true, 10))
    assert.strictEqual(liveContexts(), base + 2)
    pmd.close()
    assert.strictEqual(liveContexts(), base)
    pmd.close()
    assert.strictEqual(liveContexts(), base)
    const closed = pmd.decompress(hex("f248cdc9c90700"), true, 10)
    assert.instanceOf(closed, InternalError)
    assert.strictEqual((closed as InternalError).message, "internal error (1011): permessage-deflate used after close")
    // compress after close keeps nothing and still produces a valid payload
    const rx = new PerMessageDeflate(params(), {}, "client")
    assert.strictEqual(ok(rx.decompress(pmd.compress(Buffer.from("Hello")), true, 10)).toString(), "Hello")
    rx.close()
    releaseSharedContexts()
    assert.strictEqual(liveContexts(), base)
  })

  it("without context takeover a connection keeps no zlib context between messages", () => {
    releaseSharedContexts()
    const base = liveContexts()
    const p = params({ serverNoContextTakeover: true, clientNoContextTakeover: true })
    const conns = Array.from({ length: 5 }, () => new PerMessageDeflate(p))
    const tx = new PerMessageDeflate(p, {}, "client")
    const c = tx.compress(jsonText(2000))
    for (const pmd of conns) {
      pmd.compress(jsonText(2000))
      ok(pmd.decompress(c, true, 2000))
    }
    // one shared deflater (tx and the five connections) and one pooled inflater
    assert.strictEqual(liveContexts(), base + 2)
    // a message in progress holds an inflater until its last frame
    ok(conns[0]!.decompress(c.subarray(0, 10), false, 2000))
    ok(conns[1]!.decompress(c.subarray(0, 10), false, 2000))
    assert.strictEqual(liveContexts(), base + 3)
    ok(conns[0]!.decompress(c.subarray(10), true, 2000))
    for (const pmd of conns) pmd.close()
    tx.close()
    releaseSharedContexts()
    assert.strictEqual(liveContexts(), base)
  })

  it("memory estimates follow zlib's formulas", () => {
    assert.strictEqual(deflateMemory(15, 8), (1 << 17) + (1 << 16) + (1 << 16) + 6 * 1024)
    assert.strictEqual(inflateMemory(15), 32 * 1024 + 7 * 1024)
    assert.strictEqual(memoryEstimate(params()), deflateMemory(15, 8) + inflateMemory(15))
    assert.strictEqual(memoryEstimate(params({ serverNoContextTakeover: true, clientNoContextTakeover: true })), 0)
    assert.strictEqual(memoryEstimate(params({ clientMaxWindowBits: 10 }), { memLevel: 8 }), deflateMemory(15, 8) + inflateMemory(10))
  })

  it("memory estimates in bytes: the hash table floors at 64 KiB, the pending buffer does not", () => {
    assert.strictEqual(deflateMemory(15, 8), 268_288)
    assert.strictEqual(deflateMemory(10, 3), 4096 + 65_536 + 2048 + 6144)
    assert.strictEqual(deflateMemory(9, 1), 2048 + 65_536 + 512 + 6144)
    assert.strictEqual(deflateMemory(15, 9), 131_072 + 131_072 + 131_072 + 6144)
    assert.strictEqual(inflateMemory(10), 8192)
    // each role counts its own compressor and the peer's decompressor
    const asymmetric = params({ serverNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 12 })
    assert.strictEqual(memoryEstimate(asymmetric, {}, "server"), 4096 + 7168)
    assert.strictEqual(memoryEstimate(asymmetric, {}, "client"), 16_384 + 65_536 + 65_536 + 6144)
    assert.strictEqual(memoryEstimate(params({ clientMaxWindowBits: 12 }), { memLevel: 3 }, "client"), 16_384 + 65_536 + 2048 + 6144 + 32_768 + 7168)
  })
})

describe("compression off the event loop (offloadThreshold, offloadConcurrency)", () => {
  const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])
  /** Text that compresses, different in every call, `n` bytes. */
  const text = (n: number, seed: number): Buffer => {
    let s = ""
    for (let i = 0; s.length < n; i++) s += `{"id":${seed * 100000 + i},"name":"user-${(i * 7919 + seed) % 1009}"},`
    return Buffer.from(s.slice(0, n))
  }
  const offloaded = (data: Uint8Array, bits = 15) =>
    new Promise<Buffer>((resolve) => internal.deflateOffloaded(data, bits, 1, 8, resolve))

  it("compresses a whole message for a frame: sync flush, tail removed, inflatable alone", async () => {
    const data = text(300 * 1024, 1)
    const out = await offloaded(data)
    assert.isBelow(out.length, data.length / 2)
    assert.notDeepEqual(out.subarray(out.length - 4), TAIL)
    assert.deepStrictEqual(Zlib.inflateRawSync(Buffer.concat([out, TAIL]), { finishFlush: Zlib.constants.Z_SYNC_FLUSH }), data)
  })

  it("runs at most the process-wide limit at once; the rest wait in order; the smallest limit applies", async () => {
    internal.resetOffload()
    internal.limitOffloadConcurrency(1)
    internal.limitOffloadConcurrency(3) // a larger value asked for later does not raise it
    const inputs = Array.from({ length: 5 }, (_, i) => text(200 * 1024, i + 2))
    const finished: Array<number> = []
    const all = Promise.all(inputs.map((d, i) =>
      offloaded(d).then((out) => {
        finished.push(i)
        return out
      })
    ))
    const during = internal.offloadStats()
    assert.deepStrictEqual([during.limit, during.running, during.queued], [1, 1, 4])
    const outs = await all
    assert.deepStrictEqual(finished, [0, 1, 2, 3, 4])
    outs.forEach((out, i) => assert.deepStrictEqual(Zlib.inflateRawSync(Buffer.concat([out, TAIL]), { finishFlush: Zlib.constants.Z_SYNC_FLUSH }), inputs[i]))
    const after = internal.offloadStats()
    assert.deepStrictEqual([after.peak, after.jobs, after.running, after.queued], [1, 5, 0, 0])
    internal.resetOffload()
    internal.limitOffloadConcurrency(3)
    assert.strictEqual(internal.offloadStats().limit, 3)
    internal.resetOffload()
  })

  it("offloads exactly the messages of at least offloadThreshold bytes that are compressed at all", () => {
    const low = new PerMessageDeflate(params(), { threshold: 0, offloadThreshold: 1000 })
    assert.deepStrictEqual([999, 1000, 1001].map((n) => low.shouldOffload(n)), [false, true, true])
    // below threshold a message is not compressed, so not offloaded either
    const high = new PerMessageDeflate(params(), { threshold: 5000, offloadThreshold: 1000 })
    assert.deepStrictEqual([999, 1000, 4999, 5000].map((n) => high.shouldOffload(n)), [false, false, false, true])
    const defaults = new PerMessageDeflate(params())
    assert.deepStrictEqual([256 * 1024 - 1, 256 * 1024].map((n) => defaults.shouldOffload(n)), [false, true])
  })

  it("reports an offloaded message to the meter, then hands over its payload", async () => {
    const calls: Array<string> = []
    const meter: DeflateMeter = {
      compressed: (u, c) => calls.push(`compressed ${u} ${c}`),
      inflated: (c, u) => calls.push(`inflated ${c} ${u}`)
    }
    const server = new PerMessageDeflate(params(), { threshold: 0, offloadThreshold: 1 }, "server", meter)
    const data = text(20 * 1024, 9)
    const payload = await offloadedPayload(server, data, (p) => calls.push(`done ${p.length}`))
    assert.deepStrictEqual(calls, [`compressed ${data.length} ${payload.length}`, `done ${payload.length}`])
    assert.isBelow(payload.length, data.length / 2)
    const client = new PerMessageDeflate(params(), {}, "client")
    assert.isTrue(ok(client.decompress(payload, true, data.length)).equals(data))
    server.close()
    client.close()
  })

  it("with context takeover, the message after an offloaded one refers to nothing before it", async () => {
    const params: PerMessageDeflateParams = {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15
    }
    const server = new PerMessageDeflate(params, { threshold: 0, offloadThreshold: 64 * 1024 })
    const client = new PerMessageDeflate(params, {}, "client")
    const small = text(2000, 7)
    const big = text(100 * 1024, 8) // more than the 32 KiB window: the peer's window holds only it
    assert.isFalse(server.shouldOffload(small.length))
    assert.isTrue(server.shouldOffload(big.length))
    const first = server.compress(small)
    const second = await offloadedPayload(server, big)
    const third = server.compress(small) // would point back at the first message without the reset
    for (const [payload, expected] of [[first, small], [second, big], [third, small]] as const) {
      const out = client.decompress(payload, true, 1 << 30)
      assert.ok(Buffer.isBuffer(out))
      assert.deepStrictEqual(out, expected)
    }
    server.close()
    client.close()
  })
})
