/**
 * Fuzzing the sans-I/O core with fast-check: the frame decoder (Connection.receiveData),
 * the handshake parser (RequestParser + validateUpgrade) and the extension parser, on
 * arbitrary bytes cut at arbitrary points. CI runs FUZZ_RUNS iterations of each property
 * (default 2,000); `pnpm fuzz` runs the long campaign in fuzz/run.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { decode, encode, parseHeaderValue, parseRequest, properties, split } from "../fuzz/properties.js"
import type { PropertyName } from "../fuzz/properties.js"

const RUNS = Math.max(1, Number(process.env["FUZZ_RUNS"] ?? 2_000) || 2_000)
/** Room for large FUZZ_RUNS values (about 5 ms per run, at least the default 30 s). */
const TIMEOUT = Math.max(30_000, RUNS * 5)

const run = (name: PropertyName, runs = RUNS) => () => {
  FastCheck.assert(properties[name] as FastCheck.IRawProperty<unknown>, { numRuns: runs })
}

describe("fuzz: frame decoder (RFC 6455 §5, RFC 7692 §7.2)", () => {
  it("arbitrary bytes, arbitrary cuts, both roles, with and without permessage-deflate", run("frames: events or a typed error"), TIMEOUT)
  it("any chunking of the same bytes decodes to the same events and failure", run("frames: chunking does not change the outcome"), TIMEOUT)
  it("64 KiB inputs at the default limits return well-typed results", run("frames: 64 KiB inputs", Math.max(1, Math.ceil(RUNS / 10))), TIMEOUT)

  // the checks themselves can fail: known inputs with known outcomes
  it("the checker sees events, failures and their codes", () => {
    const mask = [0x11, 0x22, 0x33, 0x44]
    const masked = (b0: number, payload: Array<number>) =>
      Buffer.from([b0, 0x80 | payload.length, ...mask, ...payload.map((p, i) => p ^ mask[i % 4]!)])
    const ok = decode([masked(0x81, [0x68, 0x69]), masked(0x89, [1])], "server", undefined)
    assert.deepStrictEqual(ok, { events: [{ _tag: "Text", data: "hi" }, { _tag: "Ping", data: "01" }], error: undefined })
    assert.strictEqual(decode([Buffer.from([0x81, 0x02, 0x68, 0x69])], "server", undefined).error, 1002)
    assert.strictEqual(decode([masked(0x81, [0xff])], "server", undefined).error, 1007)
    assert.strictEqual(decode(split(masked(0x88, [3]), [1, 2, 3]), "server", undefined).error, 1002)
  })
})

describe("fuzz: opening handshake (RFC 6455 §4.2.1)", () => {
  it("RequestParser + validateUpgrade on any bytes cut anywhere", run("handshake: request head"), TIMEOUT)
  it("Sec-WebSocket-Extensions / Sec-WebSocket-Protocol parsers on any string", run("handshake: extension and protocol parsers"), TIMEOUT)

  it("the checker sees accepted and refused requests", () => {
    const good = Buffer.from(
      "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nrest"
    )
    const r = parseRequest(split(good, [5, 17, 40]), 16384, 100)
    assert.strictEqual(r.status, 200)
    assert.strictEqual(r.rest, Buffer.from("rest").toString("hex"))
    assert.strictEqual(parseRequest([good], 40, 100).status, 431)
    assert.strictEqual(parseRequest([Buffer.from("GET / HTTP/1.1\nHost: x\n\n")], 16384, 100).status, 400)
    assert.doesNotThrow(() => parseHeaderValue(`permessage-deflate; x="\\"`))
  })
})

describe("fuzz: frames we send (RFC 6455 §5.2)", () => {
  it("the encoder's output stays intact across connections sharing the output slab", run("frames: the encoder's output stays intact"), TIMEOUT)

  // found by the soak (6 connections of 14,567 failed by the client): a frame over 4 KiB
  // whose header does not fit at the end of the shared slab gets a garbage header, and the
  // header lands at the start of the old slab, over bytes another connection was handed
  it("regression: a large frame's header at the very end of the shared slab", () => {
    for (let left = 0; left <= 12; left++) {
      for (const send of [{ conn: 0, kind: "binary", size: 5000 }, { conn: 1, kind: "text", size: 70_000 }] as const) {
        try {
          encode(left, [send], 0)
        } catch (e) {
          assert.fail(`${send.kind} of ${send.size} bytes, ${left} bytes left in the slab: ${e}`)
        }
      }
    }
  })
})
