/**
 * The memory policies of permessage-deflate: what each answers to the offers real clients
 * send, that the agreed parameters are what the codecs then do, and that connections
 * sharing one compressor and one pool of decompressors never see each other's bytes.
 */
import { assert, describe, it } from "@effect/vitest"
import { jsonText, ok } from "./helpers.js"
import { FastCheck } from "effect"
import { InvalidPayloadError, MessageTooBigError } from "../src/Errors.js"
import { parseExtensions } from "../src/Extensions.js"
import type { ExtensionOffer } from "../src/Extensions.js"
import { liveContexts } from "../src/internal/deflate.js"
import {
  deflateMemory,
  inflateMemory,
  memoryEstimate,
  negotiate,
  PerMessageDeflate,
  releaseSharedContexts,
  resolveOptions
} from "../src/PerMessageDeflate.js"
import type { DeflateMeter, PerMessageDeflateOptions } from "../src/PerMessageDeflate.js"

const parse = (v: string): ReadonlyArray<ExtensionOffer> => {
  const r = parseExtensions(v)
  if (!Array.isArray(r)) assert.fail(`parser rejected ${v}`)
  return r as ReadonlyArray<ExtensionOffer>
}



/** What clients send (RFC 7692 §5: several offers are alternatives in order of preference). */
const OFFERS = {
  // Chromium, ws, python-websockets (default ClientPerMessageDeflateFactory)
  chromium: "permessage-deflate; client_max_window_bits",
  // Firefox, Safari, and clients that offer the bare extension
  bare: "permessage-deflate",
  // Go: gorilla/websocket (EnableCompression)
  gorilla: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  several:
    "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10, permessage-deflate; client_max_window_bits, permessage-deflate",
  bareThenWindowed: "permessage-deflate, permessage-deflate; client_max_window_bits",
  invalidThenValid: "permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover",
  onlyInvalid: "permessage-deflate; x=1, permessage-deflate; client_max_window_bits=16"
} as const

type OfferName = keyof typeof OFFERS

const PMD = "permessage-deflate"
const SNCT = "; server_no_context_takeover"
const CNCT = "; client_no_context_takeover"
const BOTH = PMD + SNCT + CNCT

const windowed = (bits: number): Record<OfferName, string | undefined> => ({
  chromium: `${PMD}; client_max_window_bits=${bits}`,
  // the client may use 15 and cannot be held to less: served with a shared decompressor
  bare: PMD + CNCT,
  gorilla: BOTH,
  several: `${PMD}; server_max_window_bits=10; client_max_window_bits=10`,
  // the first offer cannot be held to the window; the second can
  bareThenWindowed: `${PMD}; client_max_window_bits=${bits}`,
  invalidThenValid: PMD + CNCT,
  onlyInvalid: undefined
})

const POLICIES: ReadonlyArray<[string, PerMessageDeflateOptions, Record<OfferName, string | undefined>]> = [
  ["default (shared both ways)", {}, {
    chromium: BOTH,
    bare: BOTH,
    gorilla: BOTH,
    several: `${BOTH}; server_max_window_bits=10; client_max_window_bits=10`,
    bareThenWindowed: BOTH,
    invalidThenValid: BOTH,
    onlyInvalid: undefined
  }],
  ["window1k", { memory: "window1k" }, windowed(10)],
  ["window4k", { memory: "window4k" }, windowed(12)],
  ["window8k", { memory: "window8k" }, windowed(13)],
  ["window32k (each offer as made)", { memory: "window32k" }, {
    chromium: PMD,
    bare: PMD,
    gorilla: BOTH,
    several: `${PMD}; server_max_window_bits=10; client_max_window_bits=10`,
    bareThenWindowed: PMD,
    invalidThenValid: PMD + CNCT,
    onlyInvalid: undefined
  }],
  ["shared compressor, window8k decompressor", { memory: { compressor: "shared", decompressor: "window8k" } }, {
    chromium: `${PMD}${SNCT}; client_max_window_bits=13`,
    bare: BOTH,
    gorilla: BOTH,
    several: `${PMD}${SNCT}; server_max_window_bits=10; client_max_window_bits=10`,
    bareThenWindowed: `${PMD}${SNCT}; client_max_window_bits=13`,
    invalidThenValid: BOTH,
    onlyInvalid: undefined
  }]
]

describe("memory policies: negotiation (RFC 7692 §5, §7.1)", () => {
  for (const [name, options, expected] of POLICIES) {
    it(`${name}: the response to each client's offer`, () => {
      for (const offer of Object.keys(OFFERS) as Array<OfferName>) {
        assert.strictEqual(negotiate(parse(OFFERS[offer]), options)?.response, expected[offer], offer)
      }
    })

    it(`${name}: the agreed parameters are what the codecs do, both ways`, () => {
      for (const offer of Object.keys(OFFERS) as Array<OfferName>) {
        const agreed = negotiate(parse(OFFERS[offer]), options)
        if (agreed === undefined) continue
        const server = new PerMessageDeflate(agreed.params, options)
        const client = new PerMessageDeflate(agreed.params, {}, "client")
        for (let i = 0; i < 4; i++) {
          const m = jsonText(3000, i % 2) // repeated messages: context takeover would refer back
          assert.isTrue(ok(client.decompress(server.compress(m), true, m.length)).equals(m), offer)
          assert.isTrue(ok(server.decompress(client.compress(m), true, m.length)).equals(m), offer)
        }
        server.close()
        client.close()
      }
    })
  }

  it("the default keeps nothing per idle connection; a dedicated window keeps what its size says", () => {
    const chromium = parse(OFFERS.chromium)
    const estimate = (options: PerMessageDeflateOptions) =>
      memoryEstimate(negotiate(chromium, options)!.params, options)
    assert.strictEqual(estimate({}), 0)
    assert.strictEqual(estimate({ memory: "window1k" }), deflateMemory(10, 3) + inflateMemory(10))
    assert.strictEqual(estimate({ memory: "window4k" }), deflateMemory(12, 5) + inflateMemory(12))
    assert.strictEqual(estimate({ memory: "window8k" }), deflateMemory(13, 6) + inflateMemory(13))
    assert.strictEqual(estimate({ memory: "window32k" }), deflateMemory(15, 8) + inflateMemory(15))
  })

  it("connections that agree the same parameters share one agreement (kept for their life)", () => {
    const o = resolveOptions({})
    const a = negotiate(parse(OFFERS.chromium), o)
    assert.strictEqual(negotiate(parse(OFFERS.chromium), o), a)
    // a different offer shape is a different agreement, even with the same response
    const b = negotiate(parse(OFFERS.bare), o)
    assert.notStrictEqual(b, a)
    assert.deepStrictEqual(b, a)
    const c = negotiate(parse("permessage-deflate; client_max_window_bits=9"), o)
    assert.strictEqual(c?.response, `${BOTH}; client_max_window_bits=9`)
    assert.strictEqual(negotiate(parse("permessage-deflate; client_max_window_bits=9"), o), c)
  })

  it("offers of different shapes never share an agreement, whatever was agreed before", () => {
    // e.g. server_max_window_bits=8 and client_no_context_takeover, in either order
    const pairs: ReadonlyArray<[string, string, string]> = [
      [`${PMD}; server_max_window_bits=8`, `${PMD}${CNCT}`, `${PMD}; server_max_window_bits=8`],
      [`${PMD}${CNCT}`, `${PMD}; server_max_window_bits=8`, `${PMD}${CNCT}`],
      [
        `${PMD}; server_max_window_bits=12; client_max_window_bits=9`,
        `${PMD}${SNCT}${CNCT}; server_max_window_bits=10; client_max_window_bits=9`,
        `${PMD}; server_max_window_bits=12; client_max_window_bits=9`
      ]
    ]
    for (const [first, second, firstResponse] of pairs) {
      const o = resolveOptions({ memory: "window32k" })
      assert.strictEqual(negotiate(parse(first), o)?.response, firstResponse)
      assert.strictEqual(negotiate(parse(second), o)?.response, second, `${second} after ${first}`)
    }
    // every valid shape, one after the other on one options object: each answered as on its own
    const shared = resolveOptions({ memory: "window32k" })
    for (const snct of ["", SNCT]) {
      for (const cnct of ["", CNCT]) {
        for (const server of ["", ...[8, 9, 10, 11, 12, 13, 14, 15].map((b) => `; server_max_window_bits=${b}`)]) {
          for (const client of ["", "; client_max_window_bits", ...[8, 9, 15].map((b) => `; client_max_window_bits=${b}`)]) {
            const value = PMD + snct + cnct + server + client
            assert.deepStrictEqual(negotiate(parse(value), shared), negotiate(parse(value), { memory: "window32k" }), value)
          }
        }
      }
    }
  })

  it("a shared decompressor, or a client that resets its own, takes the first offer even without client_max_window_bits", () => {
    // a shared decompressor inflates whatever window the client uses: the bare offer is served as made
    assert.deepStrictEqual(negotiate(parse(OFFERS.bareThenWindowed), { clientMaxWindowBits: 10 }), {
      params: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 15, clientMaxWindowBits: 15 },
      response: BOTH
    })
    // a dedicated 8 KiB window cannot be held to an offer without the parameter, unless the
    // client announced it keeps no context anyway
    const offers = parse(`${PMD}${CNCT}, ${PMD}; client_max_window_bits`)
    assert.deepStrictEqual(negotiate(offers, { memory: "window8k" }), {
      params: { serverNoContextTakeover: false, clientNoContextTakeover: true, serverMaxWindowBits: 13, clientMaxWindowBits: 15 },
      response: PMD + CNCT
    })
    assert.strictEqual(
      negotiate(parse(OFFERS.bareThenWindowed), { memory: "window8k" })?.response,
      `${PMD}; client_max_window_bits=13`
    )
  })

  it("an explicit no-context-takeover makes that direction shared; explicit windows cap the policy's", () => {
    const a = resolveOptions({ memory: "window32k", serverNoContextTakeover: true })
    assert.deepStrictEqual(a.memory, { compressor: "shared", decompressor: "window32k" })
    const b = resolveOptions({ memory: "window8k", clientMaxWindowBits: 10, serverMaxWindowBits: 15, memLevel: 9 })
    assert.deepStrictEqual([b.serverMaxWindowBits, b.clientMaxWindowBits, b.memLevel], [13, 10, 9])
    // resolving a resolved value changes nothing (the server resolves once, negotiates per handshake)
    for (const o of [a, b, resolveOptions({}), resolveOptions({ memory: "window1k" })]) {
      assert.deepStrictEqual(resolveOptions({ ...o }), o)
    }
  })
})

describe("memory policies: connections sharing zlib state", () => {
  const SHARED = negotiate(parse(OFFERS.chromium), {})!.params

  it.prop(
    "many connections interleaving pieces of their messages through the shared compressor and decompressor decode exactly",
    [
      FastCheck.array(
        FastCheck.array(FastCheck.tuple(FastCheck.nat({ max: 6000 }), FastCheck.nat({ max: 1000 })), {
          minLength: 1,
          maxLength: 4
        }),
        { minLength: 2, maxLength: 6 }
      ),
      FastCheck.array(FastCheck.nat(), { minLength: 1, maxLength: 200 })
    ],
    ([plans, schedule]) => {
      // Per connection: messages (size, seed) made by its client, cut into pieces.
      const conns = plans.map((plan) => {
        const client = new PerMessageDeflate(SHARED, {}, "client")
        const pieces: Array<{ bytes: Buffer; fin: boolean; message: number }> = []
        const messages = plan.map(([size, seed], message) => {
          const m = jsonText(size, seed + 1)
          const c = client.compress(m)
          const cut = Math.max(1, Math.ceil(c.length / (1 + (seed % 4))))
          for (let at = 0; at < c.length || at === 0; at += cut) {
            pieces.push({ bytes: c.subarray(at, at + cut), fin: at + cut >= c.length, message })
          }
          return m
        })
        return { client, server: new PerMessageDeflate(SHARED), messages, pieces, next: 0, got: [] as Array<Buffer> }
      })
      let current: Array<Buffer> = conns.map(() => Buffer.alloc(0))
      const step = (i: number) => {
        const c = conns[i]!
        const p = c.pieces[c.next++]!
        const out = ok(c.server.decompress(p.bytes, p.fin, 1 << 20))
        current[i] = Buffer.concat([current[i]!, out])
        if (p.fin) {
          c.got.push(current[i]!)
          current[i] = Buffer.alloc(0)
          // the echo goes back through the shared compressor, between other connections' pieces
          const m = c.messages[c.got.length - 1]!
          assert.isTrue(ok(c.client.decompress(c.server.compress(m), true, m.length)).equals(m))
        }
      }
      for (const pick of schedule) {
        const open = conns.map((c, i) => (c.next < c.pieces.length ? i : -1)).filter((i) => i >= 0)
        if (open.length === 0) break
        step(open[pick % open.length]!)
      }
      conns.forEach((c, i) => {
        while (c.next < c.pieces.length) step(i)
        assert.strictEqual(c.got.length, c.messages.length)
        c.got.forEach((g, k) => assert.isTrue(g.equals(c.messages[k]!)))
        c.client.close()
        c.server.close()
      })
      current = []
    },
    { fastCheck: { numRuns: 200 } }
  )

  it("a connection that fails mid-message leaves every other connection's stream intact", () => {
    releaseSharedContexts()
    const base = liveContexts()
    const client = new PerMessageDeflate(SHARED, {}, "client")
    const [a, b, c] = [new PerMessageDeflate(SHARED), new PerMessageDeflate(SHARED), new PerMessageDeflate(SHARED)]
    const m = jsonText(20_000, 7)
    const z = client.compress(m)
    const half = z.length >> 1
    // a and b are each in the middle of a message on a pooled inflater
    const a1 = ok(a.decompress(z.subarray(0, half), false, m.length))
    const b1 = ok(b.decompress(z.subarray(0, half), false, m.length))
    assert.isTrue(a1.equals(b1))
    // a gets garbage: 1007, its inflater is dropped, not returned to the pool
    const junk = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24))
    assert.instanceOf(a.decompress(junk, true, 1 << 30), InvalidPayloadError)
    // b's stream goes on where it was
    assert.isTrue(Buffer.concat([b1, ok(b.decompress(z.subarray(half), true, m.length))]).equals(m))
    // the pool hands c a clean inflater, and a's next call keeps failing
    assert.isTrue(ok(c.decompress(z, true, m.length)).equals(m))
    assert.instanceOf(a.decompress(z, true, m.length), InvalidPayloadError)
    // a bomb on one connection: 1009 for it, nothing for the others
    const bomb = client.compress(Buffer.alloc(4 * 1024 * 1024))
    assert.instanceOf(c.decompress(bomb, true, 64 * 1024), MessageTooBigError)
    assert.isTrue(ok(b.decompress(z, true, m.length)).equals(m))
    for (const x of [a, b, c, client]) x.close()
    releaseSharedContexts()
    assert.strictEqual(liveContexts(), base)
  })

  it("reports compressed and uncompressed bytes each way to its meter", () => {
    const seen = { out: [0, 0], in: [0, 0] }
    const meter: DeflateMeter = {
      compressed: (u, c) => {
        seen.out[0] += u
        seen.out[1] += c
      },
      inflated: (c, u) => {
        seen.in[0] += c
        seen.in[1] += u
      }
    }
    const server = new PerMessageDeflate(SHARED, {}, "server", meter)
    const client = new PerMessageDeflate(SHARED, {}, "client")
    const m = jsonText(8000, 3)
    const sent = server.compress(m)
    const received = client.compress(m)
    ok(server.decompress(received.subarray(0, 100), false, m.length))
    ok(server.decompress(received.subarray(100), true, m.length))
    assert.deepStrictEqual(seen, { out: [m.length, sent.length], in: [received.length, m.length] })
    assert.isBelow(sent.length, m.length / 2)
    server.close()
    client.close()
  })
})
