import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import WebSocket from "ws"
import { HandshakeError } from "../src/Errors.js"
import * as Handshake from "../src/Handshake.js"
import { assertThrowsExactly, runs } from "./helpers.js"

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

const bytes = (s: string): Buffer => Buffer.from(s, "latin1")
const text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1")

const RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
const RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/** The RFC 6455 §1.2 client handshake. */
const RFC_REQUEST = "GET /chat HTTP/1.1\r\n" +
  "Host: server.example.com\r\n" +
  "Upgrade: websocket\r\n" +
  "Connection: Upgrade\r\n" +
  `Sec-WebSocket-Key: ${RFC_KEY}\r\n` +
  "Origin: http://example.com\r\n" +
  "Sec-WebSocket-Protocol: chat, superchat\r\n" +
  "Sec-WebSocket-Version: 13\r\n" +
  "\r\n"

const assertComplete = (result: Handshake.RequestParseResult): Handshake.RequestComplete => {
  if (result === undefined) return assert.fail("expected a complete request, got undefined")
  if (result instanceof HandshakeError) return assert.fail(`expected a complete request, got ${result.message}`)
  return result
}

const assertRejected = (result: unknown, status: number, reason?: string): HandshakeError => {
  if (!(result instanceof HandshakeError)) return assert.fail(`expected HandshakeError ${status}, got ${String(result)}`)
  assert.strictEqual(result.status, status, result.reason)
  if (reason !== undefined) assert.strictEqual(result.reason, reason)
  return result
}

const assertUpgrade = (result: Handshake.UpgradeRequest | HandshakeError): Handshake.UpgradeRequest => {
  if (result instanceof HandshakeError) return assert.fail(`expected an upgrade, got ${result.message}`)
  return result
}

/** Feeds `input` split at `cuts` (sorted offsets) and returns the first non-undefined result. */
const feed = (
  parser: Handshake.RequestParser,
  input: Uint8Array,
  cuts: ReadonlyArray<number>
): { readonly result: Handshake.RequestParseResult; readonly pushes: number } => {
  let start = 0
  let pushes = 0
  for (const cut of [...cuts, input.length]) {
    if (cut < start) continue
    pushes++
    const result = parser.push(input.subarray(start, cut))
    start = cut
    if (result !== undefined) return { result, pushes }
  }
  return { result: undefined, pushes }
}

const parseOne = (request: string, limits?: Handshake.RequestParserLimits) =>
  new Handshake.RequestParser(limits).push(bytes(request))

/** Builds a request head from a request line and header lines. */
const head = (requestLine: string, headers: ReadonlyArray<string>): string =>
  requestLine + "\r\n" + headers.map((h) => h + "\r\n").join("") + "\r\n"

const baseHeaders: Record<string, string> = {
  host: "server.example.com",
  upgrade: "websocket",
  connection: "Upgrade",
  "sec-websocket-key": RFC_KEY,
  "sec-websocket-version": "13"
}

const upgradeInput = (
  overrides: Record<string, string | Array<string> | undefined> = {},
  line: { method?: string; target?: string; httpVersion?: string } = {}
): Handshake.UpgradeRequestInput => {
  const headers: Record<string, string | Array<string> | undefined> = { ...baseHeaders }
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) delete headers[name]
    else headers[name] = value
  }
  return {
    method: line.method ?? "GET",
    target: line.target ?? "/chat",
    httpVersion: line.httpVersion ?? "1.1",
    headers
  }
}

// ---------------------------------------------------------------------------
// RFC 6455 §1.3 / §4.2.2: Sec-WebSocket-Accept
// ---------------------------------------------------------------------------

describe("RFC 6455 §1.3, §4.2.2 item 5.4: Sec-WebSocket-Accept", () => {
  it("computes the RFC example", () => {
    assert.strictEqual(Handshake.acceptKey(RFC_KEY), RFC_ACCEPT)
  })

  it("matches the Autobahn seed handshake", () => {
    // /work/shared/seeds/001: key TADavibyxz5ecrQBKGRuIw== answered with YgUx...
    assert.strictEqual(Handshake.acceptKey("TADavibyxz5ecrQBKGRuIw=="), "YgUxOFaJmhv+b2MYGhkMFUoWjyU=")
  })
})

// ---------------------------------------------------------------------------
// RFC 7230 §3 (as used by RFC 6455 §4.2.1): the request head
// ---------------------------------------------------------------------------

describe("RFC 7230 §3: RequestParser", () => {
  it("parses the RFC 6455 §1.2 request in one chunk", () => {
    const { request, rest } = assertComplete(parseOne(RFC_REQUEST))
    assert.strictEqual(request.method, "GET")
    assert.strictEqual(request.target, "/chat")
    assert.strictEqual(request.httpVersion, "1.1")
    assert.strictEqual(rest.length, 0)
    assert.strictEqual(Object.getPrototypeOf(request.headers), null)
    assert.deepStrictEqual({ ...request.headers }, {
      host: "server.example.com",
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": RFC_KEY,
      origin: "http://example.com",
      "sec-websocket-protocol": "chat, superchat",
      "sec-websocket-version": "13"
    })
  })

  it("lowercases names, trims OWS around values, keeps inner whitespace", () => {
    const { request } = assertComplete(
      parseOne(head("GET / HTTP/1.1", ["X-Mixed-CASE: \t a \t b \t", "Empty:", "Only-Space:   "]))
    )
    assert.strictEqual(request.headers["x-mixed-case"], "a \t b")
    assert.strictEqual(request.headers["empty"], "")
    assert.strictEqual(request.headers["only-space"], "")
  })

  it("lowercases well-known and unknown names alike, near misses included", () => {
    const { request } = assertComplete(parseOne(head("GET / HTTP/1.1", [
      "HOST: a",
      "Sec-WebSocket-KEY: b",
      "Hosts: c",
      "hos: d",
      "Upgrade-: e",
      "X-Forwarded-For: f",
      "x-forwarded-fo: g"
    ])))
    assert.deepStrictEqual({ ...request.headers }, {
      host: "a",
      "sec-websocket-key": "b",
      hosts: "c",
      hos: "d",
      "upgrade-": "e",
      "x-forwarded-for": "f",
      "x-forwarded-fo": "g"
    })
  })

  it("joins a repeated header with \", \" in arrival order", () => {
    const { request } = assertComplete(
      parseOne(head("GET / HTTP/1.1", ["Sec-WebSocket-Protocol: a", "X: 1", "sec-websocket-protocol: b, c"]))
    )
    assert.strictEqual(request.headers["sec-websocket-protocol"], "a, b, c")
  })

  it("decodes obs-text as latin1", () => {
    const input = Buffer.concat([bytes("GET /caf"), Buffer.from([0xe9]), bytes(" HTTP/1.1\r\nX: "), Buffer.from([0xff, 0x80]), bytes("\r\n\r\n")])
    const { request } = assertComplete(new Handshake.RequestParser().push(input))
    assert.strictEqual(request.target, "/caf\u00e9")
    assert.strictEqual(request.headers["x"], "\u00ff\u0080")
  })

  it("keeps __proto__ and constructor as plain header names", () => {
    const { request } = assertComplete(parseOne(head("GET / HTTP/1.1", ["__proto__: x", "constructor: y"])))
    assert.strictEqual(Object.getPrototypeOf(request.headers), null)
    assert.deepStrictEqual(Object.keys(request.headers), ["__proto__", "constructor"])
    assert.strictEqual(request.headers["__proto__"], "x")
    assert.strictEqual(request.headers["constructor"], "y")
  })

  it("reports the HTTP version as sent (validation is separate)", () => {
    assert.strictEqual(assertComplete(parseOne(head("GET / HTTP/1.0", []))).request.httpVersion, "1.0")
    assert.strictEqual(assertComplete(parseOne(head("GET / HTTP/2.7", []))).request.httpVersion, "2.7")
  })

  it("returns undefined until the blank line arrives", () => {
    const parser = new Handshake.RequestParser()
    assert.strictEqual(parser.push(bytes("GET / HTTP/1.1\r\nHost: a\r\n")), undefined)
    assert.strictEqual(parser.push(new Uint8Array(0)), undefined)
    assert.strictEqual(parser.push(bytes("\r")), undefined)
    const { request } = assertComplete(parser.push(bytes("\n")))
    assert.strictEqual(request.headers["host"], "a")
  })

  describe("rest: bytes after CRLF CRLF are the first frames", () => {
    // A masked text frame "Hello" (RFC 6455 §5.7).
    const frame = Buffer.from([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])

    it("request and frame bytes in one chunk", () => {
      const { rest } = assertComplete(new Handshake.RequestParser().push(Buffer.concat([bytes(RFC_REQUEST), frame])))
      assert.deepStrictEqual(Buffer.from(rest), frame)
    })

    it("request split, frame bytes after the terminator in the last chunk", () => {
      const all = Buffer.concat([bytes(RFC_REQUEST), frame])
      const parser = new Handshake.RequestParser()
      assert.strictEqual(parser.push(all.subarray(0, 50)), undefined)
      assert.strictEqual(parser.push(all.subarray(50, RFC_REQUEST.length - 1)), undefined)
      const { request, rest } = assertComplete(parser.push(all.subarray(RFC_REQUEST.length - 1)))
      assert.strictEqual(request.headers["origin"], "http://example.com")
      assert.deepStrictEqual(Buffer.from(rest), frame)
    })

    it("works on a plain Uint8Array", () => {
      const all = new Uint8Array(Buffer.concat([bytes(RFC_REQUEST), frame]))
      const { rest } = assertComplete(new Handshake.RequestParser().push(all))
      assert.deepStrictEqual(Array.from(rest), Array.from(frame))
    })
  })

  describe("malformed heads are 400", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["bare LF line ending", "GET / HTTP/1.1\nHost: a\r\n\r\n"],
      ["bare LF terminator", "GET / HTTP/1.1\r\nHost: a\n\n"],
      ["bare CR", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"],
      ["CR CR LF", "GET / HTTP/1.1\r\r\n\r\n"],
      ["whitespace before the colon", head("GET / HTTP/1.1", ["Host : a"])],
      ["obs-fold continuation line", head("GET / HTTP/1.1", ["X: a", " b"])],
      ["header without colon", head("GET / HTTP/1.1", ["Host"])],
      ["empty header name", head("GET / HTTP/1.1", [": a"])],
      ["non-token header name", head("GET / HTTP/1.1", ["Ho(st: a"])],
      ["NUL in a value", head("GET / HTTP/1.1", ["X: a\u0000b"])],
      ["DEL in a value", head("GET / HTTP/1.1", ["X: a\u007fb"])],
      ["control character in a value", head("GET / HTTP/1.1", ["X: a\u0001"])],
      ["empty request line", "\r\n\r\n"],
      ["leading empty line", "\r\nGET / HTTP/1.1\r\n\r\n"],
      ["missing version", head("GET /", [])],
      ["lowercase protocol name", head("GET / http/1.1", [])],
      ["two-digit version", head("GET / HTTP/1.10", [])],
      ["double space", head("GET  / HTTP/1.1", [])],
      ["trailing space", head("GET / HTTP/1.1 ", [])],
      ["empty method", head(" / HTTP/1.1", [])],
      ["non-token method", head("G@T / HTTP/1.1", [])],
      ["control character in target", head("GET /a\u0001b HTTP/1.1", [])],
      ["garbage", "\u0016\u0003\u0001\u0002\u0000\r\n\r\n"]
    ]
    for (const [name, input] of cases) {
      it(name, () => {
        assertRejected(parseOne(input), 400)
      })
    }

    it("rejects a bare LF as soon as it arrives", () => {
      const parser = new Handshake.RequestParser()
      assert.strictEqual(parser.push(bytes("GET / HTTP/1.1")), undefined)
      assertRejected(parser.push(bytes("\n")), 400)
    })
  })

  describe("single use", () => {
    it("returns the same error after a failure", () => {
      const parser = new Handshake.RequestParser()
      const error = assertRejected(parser.push(bytes("GET / HTTP/1.1\n")), 400)
      assert.strictEqual(parser.push(bytes(RFC_REQUEST)), error)
    })

    it("returns an error after a complete request instead of re-parsing", () => {
      const parser = new Handshake.RequestParser()
      assertComplete(parser.push(bytes(RFC_REQUEST)))
      assertRejected(parser.push(bytes(RFC_REQUEST)), 400)
    })
  })

  describe("limits (431)", () => {
    it("accepts a head of exactly maxHeaderBytes and refuses one byte more", () => {
      const base = head("GET / HTTP/1.1", ["X: "])
      const exact = head("GET / HTTP/1.1", ["X: " + "a".repeat(1000 - base.length)])
      assert.strictEqual(exact.length, 1000)
      assertComplete(parseOne(exact, { maxHeaderBytes: 1000 }))
      assertRejected(parseOne(head("GET / HTTP/1.1", ["X: " + "a".repeat(1001 - base.length)]), { maxHeaderBytes: 1000 }), 431)
    })

    it("counts bytes across chunks and fails once the limit is reached without the end", () => {
      const parser = new Handshake.RequestParser({ maxHeaderBytes: 64 })
      assert.strictEqual(parser.push(bytes("GET / HTTP/1.1\r\nX: " + "a".repeat(30))), undefined)
      assertRejected(parser.push(bytes("a".repeat(20))), 431)
    })

    it("refuses a 1 MB header value with the default limit, in one chunk or many", () => {
      const huge = bytes("GET / HTTP/1.1\r\nX: " + "a".repeat(1 << 20) + "\r\n\r\n")
      assertRejected(new Handshake.RequestParser().push(huge), 431)
      const { pushes, result } = feed(new Handshake.RequestParser(), huge, Array.from({ length: 256 }, (_, i) => i * 4096))
      assertRejected(result, 431)
      // 16 KiB default limit: refused on the fifth 4 KiB chunk, long before the end
      assert.strictEqual(pushes, 5)
    })

    it("accepts maxHeaders header lines and refuses one more", () => {
      const lines = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: ${i}`)
      const ok = assertComplete(parseOne(head("GET / HTTP/1.1", lines(100))))
      assert.strictEqual(Object.keys(ok.request.headers).length, 100)
      assertRejected(parseOne(head("GET / HTTP/1.1", lines(101))), 431)
      assertComplete(parseOne(head("GET / HTTP/1.1", lines(3)), { maxHeaders: 3 }))
      assertRejected(parseOne(head("GET / HTTP/1.1", lines(4)), { maxHeaders: 3 }), 431)
    })

    it("refuses 2,500 tiny headers (under the byte limit) as too many", () => {
      const input = head("GET / HTTP/1.1", Array.from({ length: 2500 }, () => "a:"))
      assert.isBelow(input.length, 16384)
      assertRejected(parseOne(input), 431)
    })

    it("refuses too many headers as soon as the extra line ends, byte by byte", () => {
      const input = bytes(head("GET / HTTP/1.1", Array.from({ length: 2500 }, () => "a:")))
      const cuts = Array.from({ length: input.length }, (_, i) => i + 1)
      const { pushes, result } = feed(new Handshake.RequestParser({ maxHeaders: 10 }), input, cuts)
      assertRejected(result, 431)
      // "GET / HTTP/1.1\r\n" (16 bytes) then 11 lines of "a:\r\n" (4 bytes each)
      assert.strictEqual(pushes, 16 + 11 * 4)
    })

    it("rejects invalid limits with a RangeError", () => {
      assert.throws(() => new Handshake.RequestParser({ maxHeaderBytes: 0 }), RangeError)
      assert.throws(() => new Handshake.RequestParser({ maxHeaderBytes: 1.5 }), RangeError)
      assert.throws(() => new Handshake.RequestParser({ maxHeaders: -1 }), RangeError)
    })
  })

  describe("linear time", () => {
    /**
     * Feeds a head of about `size` bytes one byte at a time and counts the bytes the parser
     * copies (`Uint8Array.prototype.set`, `Buffer.prototype.copy`): with buffers that double,
     * fewer than 3 per input byte; growing by what each push needs would copy n²/2.
     */
    const copiedFeedingBytewise = (size: number) => {
      const value = "v".repeat(size - 64)
      const input = bytes(head("GET / HTTP/1.1", ["X: " + value]))
      const parser = new Handshake.RequestParser({ maxHeaderBytes: 64 * 1024 })
      const set = Uint8Array.prototype.set
      const copy = Buffer.prototype.copy
      let copied = 0
      Uint8Array.prototype.set = function(this: Uint8Array, source: ArrayLike<number>, offset?: number) {
        copied += source.length
        return set.call(this, source, offset)
      }
      Buffer.prototype.copy = function(this: Buffer, target: Uint8Array, targetStart?: number, sourceStart?: number, sourceEnd?: number) {
        const n = copy.call(this, target, targetStart, sourceStart, sourceEnd)
        copied += n
        return n
      }
      let result: Handshake.RequestParseResult
      try {
        for (let i = 0; i < input.length; i++) {
          result = parser.push(input.subarray(i, i + 1))
          if (i < input.length - 1) assert.strictEqual(result, undefined)
        }
      } finally {
        Uint8Array.prototype.set = set
        Buffer.prototype.copy = copy
      }
      const { request, rest } = assertComplete(result)
      assert.strictEqual(request.headers["x"], value)
      assert.strictEqual(rest.length, 0)
      return { copied, length: input.length }
    }

    it("parses a 16 KiB head fed one byte at a time, copying each byte a bounded number of times", () => {
      const small = copiedFeedingBytewise(16 * 1024)
      const large = copiedFeedingBytewise(32 * 1024)
      assert.isAtMost(small.copied, 3 * small.length, `copied ${small.copied} bytes for ${small.length}`)
      assert.isAtMost(large.copied, 3 * large.length, `copied ${large.copied} bytes for ${large.length}`)
      // twice the input, about twice the work (quadratic copying would be four times)
      assert.isAtMost(large.copied / small.copied, 2.5)
    })

    it("parses a head of 16 KiB of spaces inside a value", () => {
      const input = head("GET / HTTP/1.1", ["X: a" + " ".repeat(16000) + "b"])
      assert.strictEqual(assertComplete(parseOne(input)).request.headers["x"], "a" + " ".repeat(16000) + "b")
    })
  })

  describe("properties", () => {
    const tokenChar = fc.constantFrom(..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    const token = fc.array(tokenChar, { minLength: 1, maxLength: 12 }).map((cs) => cs.join(""))
    const fieldValue = fc
      .array(fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f), { maxLength: 30 })
      .map((cs) => String.fromCharCode(...cs))
    const target = fc
      .array(fc.integer({ min: 0x21, max: 0xff }).filter((c) => c !== 0x7f), { minLength: 1, maxLength: 20 })
      .map((cs) => "/" + String.fromCharCode(...cs))
    const validHead = fc
      .record({
        method: token,
        target,
        minor: fc.integer({ min: 0, max: 9 }),
        headers: fc.array(fc.tuple(token, fieldValue, fc.constantFrom("", " ", "\t", "  ")), { maxLength: 20 })
      })
      .map(({ headers, method, minor, target }) =>
        head(`${method} ${target} HTTP/1.${minor}`, headers.map(([name, value, ows]) => `${name}:${ows}${value}${ows}`))
      )
    const withCuts = fc
      .tuple(validHead, fc.uint8Array({ maxLength: 16 }))
      .chain(([h, trailing]) => {
        const input = Buffer.concat([bytes(h), trailing])
        return fc.record({
          input: fc.constant(input),
          cuts: fc.oneof(
            fc.uniqueArray(fc.integer({ min: 0, max: input.length }), { maxLength: 40 }).map((c) => c.sort((a, b) => a - b)),
            fc.constant(Array.from({ length: input.length }, (_, i) => i + 1))
          ),
          trailing: fc.constant(trailing)
        })
      })

    it.prop(
      "any split of a valid request (down to single bytes) yields the same RawRequest and rest",
      [withCuts],
      ([{ cuts, input, trailing }]) => {
        const whole = assertComplete(new Handshake.RequestParser().push(input))
        assert.deepStrictEqual(Buffer.from(whole.rest), Buffer.from(trailing))
        const parser = new Handshake.RequestParser()
        let start = 0
        let result: Handshake.RequestParseResult
        const restParts: Array<Uint8Array> = []
        for (const cut of [...cuts, input.length]) {
          if (cut < start) continue
          const chunk = input.subarray(start, cut)
          start = cut
          if (result === undefined) result = parser.push(chunk)
          else restParts.push(chunk)
        }
        const split = assertComplete(result)
        assert.deepStrictEqual({ ...split.request, headers: { ...split.request.headers } }, {
          ...whole.request,
          headers: { ...whole.request.headers }
        })
        assert.deepStrictEqual(Buffer.concat([split.rest, ...restParts]), Buffer.from(trailing))
      },
      { fastCheck: { numRuns: runs(1000) } }
    )

    // Bytes drawn from the grammar's alphabet reach deep parser states; raw bytes cover the rest.
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 8 }),
      fc.constantFrom("GET ", "/ ", "HTTP/1.1", "\r\n", "\r", "\n", ":", " ", "\t", "Host", "a", "\u0000", "\u00ff").map(bytes)
    )
    const arbitraryChunks = fc.array(fc.array(piece, { maxLength: 6 }).map((ps) => Buffer.concat(ps)), { maxLength: 30 })

    it.prop(
      "arbitrary bytes in arbitrary chunks never throw",
      [arbitraryChunks, fc.integer({ min: 16, max: 300 }), fc.integer({ min: 0, max: 8 })],
      ([chunks, maxHeaderBytes, maxHeaders]) => {
        const parser = new Handshake.RequestParser({ maxHeaderBytes, maxHeaders })
        for (const chunk of chunks) {
          const result = parser.push(chunk)
          if (result === undefined) continue
          if (result instanceof HandshakeError) {
            assert.include([400, 431], result.status)
          } else {
            assert.isString(result.request.method)
            assert.isString(result.request.target)
            assert.instanceOf(result.rest, Uint8Array)
          }
          break
        }
      },
      { fastCheck: { numRuns: runs(1000) } }
    )

    it.prop(
      "validateUpgrade never throws on arbitrary header records",
      [
        fc.dictionary(
          fc.constantFrom("host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions", "content-length", "origin", "__proto__"),
          fc.oneof(fc.string({ unit: "binary", maxLength: 30 }), fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }))
        ),
        fc.constantFrom("GET", "POST", "get"),
        fc.constantFrom("1.1", "1.0", "2.0", "", "x")
      ],
      ([headers, method, httpVersion]) => {
        const result = Handshake.validateUpgrade({ method, url: "/", httpVersion, headers: { ...baseHeaders, ...headers } })
        if (result instanceof HandshakeError) assert.include([400, 405, 426], result.status)
        else assert.strictEqual(result.key.length, 24)
      },
      { fastCheck: { numRuns: runs(1000) } }
    )
  })

  describe("exact outcomes", () => {
    /** The result of feeding `input` one byte at a time, and how many bytes it took. */
    const bytewise = (input: Uint8Array, limits?: Handshake.RequestParserLimits) =>
      feed(new Handshake.RequestParser(limits), input, Array.from({ length: input.length }, (_, i) => i + 1))

    // [input, reason in one chunk, reason fed byte by byte, bytes read when refused byte by byte]
    const malformed: ReadonlyArray<readonly [string, string, string, number]> = [
      ["GET / HTTP/1.1\nHost: a\r\n\r\n", "malformed request line", "bare LF in request head", 15],
      ["GET / HTTP/1.1\r\nHost: a\n\n", "invalid character in header value", "bare LF in request head", 24],
      ["GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR in request head", "bare CR in request head", 25],
      ["GET / HTTP/1.1\r\r\n\r\n", "malformed request line", "bare CR in request head", 16],
      ["GET / HTTP/1.1\r\n\rX\r\n\r\n", "bare CR in request head", "bare CR in request head", 18],
      ["GET / HTTP/1.1\r\n\r\r\n", "bare CR in request head", "bare CR in request head", 18],
      ["GET / HTTP/1.1\t\n\r\n", "malformed request line", "bare LF in request head", 16],
      ["GET / HTTP/1.1\rX\r\n\r\n", "malformed request line", "bare CR in request head", 16],
      ["GET / HTTP/1.1\r\nHost : a\r\n\r\n", "malformed header field", "malformed header field", 28],
      ["GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "malformed header field", "malformed header field", 28],
      ["GET / HTTP/1.1\r\nX: a\u0000b\r\n\r\n", "invalid character in header value", "invalid character in header value", 26],
      // the scanner sees CRLF CRLF, but the request line is cut short
      ["GET / HTTP\r\n\r\n", "malformed request head", "malformed request head", 14],
      ["\r\n\r\n", "malformed request line", "malformed request line", 1],
      ["GET\t/ HTTP/1.1\r\n\r\n", "malformed request line", "malformed request line", 18],
      ["GET  HTTP/1.1\r\n\r\n", "malformed request line", "malformed request line", 17],
      ["GET /\tHTTP/1.1\r\n\r\n", "malformed request line", "malformed request line", 18],
      ...["XTTP/1.1", "HXTP/1.1", "HTXP/1.1", "HTTX/1.1", "HTTP-1.1", "HTTP/1,1", "HTTP/x.1", "HTTP/:.1", "HTTP/1./", "HTTP/1.:"].map(
        (version) => [`GET / ${version}\r\n\r\n`, "malformed request line", "malformed request line", 18] as const
      )
    ]
    for (const [input, whole, split, at] of malformed) {
      it(`${JSON.stringify(input)}: ${whole} in one chunk, ${split} byte by byte`, () => {
        assertRejected(parseOne(input), 400, whole)
        const { pushes, result } = bytewise(bytes(input))
        assertRejected(result, 400, split)
        assert.strictEqual(pushes, at)
      })
    }

    it("refuses a malformed request line in the first chunk before the head is complete", () => {
      assertRejected(parseOne("GET\t/ HTTP/1.1\r\n"), 400, "malformed request line")
      assertRejected(parseOne("GET /\tHTTP"), 400, "malformed request line")
      // the chunk ends right after the request line's CRLF
      assertRejected(parseOne("GET / XTTP/1.1\r\n"), 400, "malformed request line")
      assert.strictEqual(parseOne("GET / HTTP/1.1\r\n"), undefined)
    })

    it("refuses a byte after a bare CR as soon as it arrives", () => {
      for (const [before, after] of [["GET / HTTP/1.1\r\nHost: a\r", "b"], ["GET / HTTP/1.1\r\n\r", "X"]]) {
        const parser = new Handshake.RequestParser()
        assert.strictEqual(parser.push(bytes(before)), undefined)
        assertRejected(parser.push(bytes(after)), 400, "bare CR in request head")
      }
    })

    it("keeps the method as sent, GET and near misses alike", () => {
      for (const method of ["GET", "POST", "PUT", "SET", "GOT", "GEM", "GETS", "GE", "get", "Get"]) {
        assert.strictEqual(assertComplete(parseOne(head(`${method} / HTTP/1.1`, []))).request.method, method)
      }
    })

    it("keeps versions whose major or minor digit alone is 1", () => {
      for (const version of ["1.1", "2.1", "1.2", "0.9"]) {
        assert.strictEqual(assertComplete(parseOne(head(`GET / HTTP/${version}`, []))).request.httpVersion, version)
      }
    })

    it("lowercases A and Z, the ends of the uppercase range", () => {
      const { request } = assertComplete(parseOne(head("GET / HTTP/1.1", ["Accept: 1", "A: 2", "Z: 3", "zZ: 4"])))
      assert.deepStrictEqual({ ...request.headers }, { accept: "1", a: "2", z: "3", zz: "4" })
    })

    it("keeps names whose hash equals a well-known name's", () => {
      // 31-polynomial hash collisions: j1u6 with host (same length, every character different),
      // o33x-qtc with upgrade and v6d9ia3 with origin (one character longer)
      const { request } = assertComplete(parseOne(head("GET / HTTP/1.1", [
        "j1u6: 1",
        "J1U6: 2",
        "o33x-qtc: 3",
        "v6d9ia3: 4",
        "Host: 5",
        "Upgrade: 6",
        "origin: 7"
      ])))
      assert.deepStrictEqual({ ...request.headers }, {
        j1u6: "1, 2",
        "o33x-qtc": "3",
        v6d9ia3: "4",
        host: "5",
        upgrade: "6",
        origin: "7"
      })
    })

    it("names the limit, its minimum and the value in a RangeError", () => {
      assertThrowsExactly(
        () => new Handshake.RequestParser({ maxHeaderBytes: 15 }),
        RangeError,
        "RequestParser: maxHeaderBytes must be an integer >= 16, got 15"
      )
      assertThrowsExactly(
        () => new Handshake.RequestParser({ maxHeaders: -1 }),
        RangeError,
        "RequestParser: maxHeaders must be an integer >= 0, got -1"
      )
      assert.strictEqual(new Handshake.RequestParser({ maxHeaderBytes: 16, maxHeaders: 0 }).maxHeaderBytes, 16)
    })

    it("names the reason of every 431 and of a push after the request", () => {
      const lines = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: ${i}`)
      const tooMany = bytes(head("GET / HTTP/1.1", lines(4)))
      assertRejected(new Handshake.RequestParser({ maxHeaders: 3 }).push(tooMany), 431, "too many header fields")
      assertRejected(bytewise(tooMany, { maxHeaders: 3 }).result, 431, "too many header fields")
      const parser = new Handshake.RequestParser({ maxHeaderBytes: 64 })
      assert.strictEqual(parser.push(bytes("GET / HTTP/1.1\r\nX: ")), undefined)
      assertRejected(parser.push(bytes("a".repeat(100))), 431, "request head too large")
      const done = new Handshake.RequestParser()
      assertComplete(done.push(bytes(RFC_REQUEST)))
      assertRejected(done.push(bytes(RFC_REQUEST)), 400, "request head already parsed")
    })

    it("refuses a first chunk longer than maxHeaderBytes whatever follows the limit", () => {
      const limits = { maxHeaderBytes: 32 }
      for (
        const input of [
          head("M".repeat(40) + " / HTTP/1.1", []),
          head("GET /" + "a".repeat(40) + " HTTP/1.1", []),
          "GET /" + "a".repeat(40) + "\r\n\r\n",
          head("GET / HTTP/1.1", ["X:" + " ".repeat(40) + "a"])
        ]
      ) {
        assertRejected(parseOne(input, limits), 431, "request head too large")
      }
    })

    it("a head of exactly maxHeaderBytes with frame bytes after it, in every 2-way split", () => {
      const base = head("GET / HTTP/1.1", ["X: "])
      const value = "a".repeat(1000 - base.length)
      const exact = bytes(head("GET / HTTP/1.1", ["X: " + value]))
      const frame = Buffer.from([0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58])
      const input = Buffer.concat([exact, frame])
      const over = bytes(head("GET / HTTP/1.1", ["X: " + value + "a"]))
      for (let cut = 0; cut <= input.length; cut++) {
        const parser = new Handshake.RequestParser({ maxHeaderBytes: 1000 })
        const first = parser.push(input.subarray(0, cut))
        const { request, rest } = assertComplete(first ?? parser.push(input.subarray(cut)))
        assert.strictEqual(request.headers["x"], value)
        const all = first === undefined ? Buffer.from(rest) : Buffer.concat([rest, input.subarray(cut)])
        assert.deepStrictEqual(all, frame, `cut at ${cut}`)
      }
      for (let cut = 0; cut <= over.length; cut++) {
        const { result } = feed(new Handshake.RequestParser({ maxHeaderBytes: 1000 }), over, [cut])
        assertRejected(result, 431, "request head too large")
      }
    })

    it("every 2-way split of a head gives the one-chunk result", () => {
      const input = bytes(
        RFC_REQUEST.replace("\r\n\r\n", "\r\nX-Empty:\r\nX-Ows: \t v \t\r\nAccept: */*\r\n\r\n") + "tail"
      )
      const whole = assertComplete(new Handshake.RequestParser().push(input))
      assert.strictEqual(text(whole.rest), "tail")
      for (let cut = 1; cut < input.length; cut++) {
        const parser = new Handshake.RequestParser()
        const first = parser.push(input.subarray(0, cut))
        const { request, rest } = assertComplete(first ?? parser.push(input.subarray(cut)))
        assert.deepStrictEqual({ ...request, headers: { ...request.headers } }, {
          ...whole.request,
          headers: { ...whole.request.headers }
        })
        assert.strictEqual(text(rest) + (first === undefined ? "" : text(input.subarray(cut))), "tail", `cut at ${cut}`)
      }
    })

    describe("buffer growth", () => {
      /** Runs `f` and returns the sizes passed to `Buffer.allocUnsafe` meanwhile. */
      const allocations = (f: () => void): Array<number> => {
        const allocUnsafe = Buffer.allocUnsafe
        const sizes: Array<number> = []
        Buffer.allocUnsafe = (size: number) => {
          sizes.push(size)
          return allocUnsafe(size)
        }
        try {
          f()
        } finally {
          Buffer.allocUnsafe = allocUnsafe
        }
        return sizes
      }

      it("allocates nothing for empty chunks, 1 KiB first, then doubles or takes what is needed", () => {
        const input = bytes(head("GET / HTTP/1.1", ["X: " + "a".repeat(2100 - 23)]))
        assert.strictEqual(input.length, 2100)
        const parser = new Handshake.RequestParser({ maxHeaderBytes: 2500 })
        assert.deepStrictEqual(allocations(() => assert.strictEqual(parser.push(new Uint8Array(0)), undefined)), [])
        assert.deepStrictEqual(allocations(() => assert.strictEqual(parser.push(input.subarray(0, 1000)), undefined)), [1024])
        // fills the 1 KiB exactly: no growth
        assert.deepStrictEqual(allocations(() => assert.strictEqual(parser.push(input.subarray(1000, 1024)), undefined)), [])
        // 2100 bytes needed, more than twice 1024
        assert.deepStrictEqual(allocations(() => assertComplete(parser.push(input.subarray(1024)))), [2100])
      })

      it("never allocates more than maxHeaderBytes", () => {
        const input = bytes(head("GET / HTTP/1.1", ["X: " + "a".repeat(1500 - 23)]))
        assert.strictEqual(input.length, 1500)
        const parser = new Handshake.RequestParser({ maxHeaderBytes: 1500 })
        assert.deepStrictEqual(
          allocations(() => {
            assert.strictEqual(parser.push(input.subarray(0, 1000)), undefined)
            assertComplete(parser.push(input.subarray(1000)))
          }),
          [1024, 1500]
        )
      })
    })
  })
})

// ---------------------------------------------------------------------------
// RFC 6455 §4.2.1: reading the client's opening handshake
// ---------------------------------------------------------------------------

describe("RFC 6455 §4.2.1: validateUpgrade", () => {
  it("accepts the RFC 6455 §1.2 request", () => {
    const { request } = assertComplete(parseOne(RFC_REQUEST))
    const upgrade = assertUpgrade(Handshake.validateUpgrade(request))
    assert.strictEqual(upgrade.method, "GET")
    assert.strictEqual(upgrade.url, "/chat")
    assert.strictEqual(upgrade.host, "server.example.com")
    assert.strictEqual(upgrade.origin, "http://example.com")
    assert.strictEqual(upgrade.key, RFC_KEY)
    assert.deepStrictEqual(upgrade.protocols, ["chat", "superchat"])
    assert.deepStrictEqual(upgrade.extensions, [])
    assert.strictEqual(upgrade.headers, request.headers)
  })

  it("has no origin when the header is absent", () => {
    assert.strictEqual(assertUpgrade(Handshake.validateUpgrade(upgradeInput())).origin, undefined)
  })

  it("returns a record of string headers as is, and copies one holding arrays with them joined", () => {
    const input = upgradeInput({ cookie: "a=b" })
    const upgrade = assertUpgrade(Handshake.validateUpgrade(input))
    assert.strictEqual(upgrade.headers, input.headers)
    const withArray = upgradeInput({ cookie: ["a=b", "c=d"] })
    const copied = assertUpgrade(Handshake.validateUpgrade({ ...withArray, headers: { ...withArray.headers, "x-none": undefined } }))
    assert.deepStrictEqual({ ...copied.headers }, { ...baseHeaders, cookie: "a=b, c=d" })
  })

  it("reads the target from `url` when there is no `target`, and refuses a missing or empty one", () => {
    const upgrade = assertUpgrade(Handshake.validateUpgrade({ method: "GET", url: "/u", httpVersion: "1.1", headers: baseHeaders }))
    assert.strictEqual(upgrade.url, "/u")
    assertRejected(
      Handshake.validateUpgrade({ method: "GET", httpVersion: "1.1", headers: baseHeaders }),
      400,
      "missing request target"
    )
    assertRejected(Handshake.validateUpgrade(upgradeInput({}, { target: "" })), 400, "missing request target")
  })

  describe("item 1: the method must be GET", () => {
    for (const method of ["POST", "HEAD", "get", "CONNECT"]) {
      it(`${method} is 405 with Allow: GET`, () => {
        const error = assertRejected(
          Handshake.validateUpgrade(upgradeInput({}, { method })),
          405,
          "method not allowed: a WebSocket upgrade must be a GET"
        )
        assert.deepStrictEqual(error.headers, { Allow: "GET" })
      })
    }
    it("a missing method is 400", () => {
      assertRejected(
        Handshake.validateUpgrade({ url: "/", httpVersion: "1.1", headers: baseHeaders }),
        400,
        "missing request method"
      )
    })
  })

  describe("item 1: HTTP/1.1 or a later 1.x", () => {
    it("accepts 1.1, 1.2 and 1.9", () => {
      for (const httpVersion of ["1.1", "1.2", "1.9"]) {
        assertUpgrade(Handshake.validateUpgrade(upgradeInput({}, { httpVersion })))
      }
    })
    for (const httpVersion of ["1.0", "0.9", "2.0", "", "11", "1.10", "1.1 ", "101", "1,1", "1.:", "1.a"]) {
      it(`refuses "${httpVersion}" with 400`, () => {
        assertRejected(
          Handshake.validateUpgrade(upgradeInput({}, { httpVersion })),
          400,
          "a WebSocket upgrade requires HTTP/1.1"
        )
      })
    }
    it("refuses a parsed HTTP/1.0 request", () => {
      const { request } = assertComplete(parseOne(RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0")))
      assertRejected(Handshake.validateUpgrade(request), 400, "a WebSocket upgrade requires HTTP/1.1")
    })
  })

  describe("item 2: Host", () => {
    it("missing is 400", () => {
      assertRejected(Handshake.validateUpgrade(upgradeInput({ host: undefined })), 400, "missing Host header")
    })
    it("empty is 400", () => {
      assertRejected(Handshake.validateUpgrade(upgradeInput({ host: "" })), 400, "missing Host header")
    })
    it("repeated is 400 (RFC 7230 §5.4)", () => {
      const { request } = assertComplete(parseOne(RFC_REQUEST.replace("Host:", "Host: evil.example\r\nHost:")))
      assertRejected(Handshake.validateUpgrade(request), 400, "more than one Host header")
      assertRejected(Handshake.validateUpgrade(upgradeInput({ host: ["a", "b"] })), 400, "more than one Host header")
    })
  })

  describe("items 3-4: Upgrade: websocket and Connection: Upgrade", () => {
    for (
      const upgrade of [
        "websocket",
        "WebSocket",
        "WEBSOCKET",
        "h2c, websocket",
        " websocket , foo",
        "h2c,\twebsocket",
        "websocket\t, h2c",
        "websocket ,x",
        "websocket \t"
      ]
    ) {
      it(`Upgrade: ${JSON.stringify(upgrade)} is accepted`, () => {
        assertUpgrade(Handshake.validateUpgrade(upgradeInput({ upgrade })))
      })
    }
    for (const connection of ["Upgrade", "upgrade", "keep-alive, Upgrade", "Upgrade,keep-alive", "close,,upgrade"]) {
      it(`Connection: "${connection}" is accepted`, () => {
        assertUpgrade(Handshake.validateUpgrade(upgradeInput({ connection })))
      })
    }
    const refused: ReadonlyArray<readonly [string, Record<string, string | undefined>]> = [
      ["missing Upgrade", { upgrade: undefined }],
      ["Upgrade: h2c", { upgrade: "h2c" }],
      ["Upgrade: websocket/13", { upgrade: "websocket/13" }],
      ["Upgrade: web socket", { upgrade: "web socket" }],
      ["Upgrade: websockex (same length)", { upgrade: "websockex" }],
      ["Upgrade: h2c, xebsocket (same length, first letter differs)", { upgrade: "h2c, xebsocket" }],
      ["missing Connection", { connection: undefined }],
      ["Connection: keep-alive", { connection: "keep-alive" }],
      ["Connection: upgraded", { connection: "upgraded" }],
      ["Connection: Upgrade-Insecure", { connection: "Upgrade-Insecure" }],
      ["Connection: upgradx (same length)", { connection: "upgradx" }]
    ]
    for (const [name, overrides] of refused) {
      it(`${name} is 426 naming the protocol`, () => {
        const reason = "connection" in overrides ? "missing Connection: Upgrade" : "missing Upgrade: websocket"
        const error = assertRejected(Handshake.validateUpgrade(upgradeInput(overrides)), 426, reason)
        assert.deepStrictEqual(error.headers, { Upgrade: "websocket", "Sec-WebSocket-Version": "13" })
      })
    }
  })

  describe("item 6 / §4.4: Sec-WebSocket-Version must be 13", () => {
    for (const version of [undefined, "8", "12", "14", "13, 8", "", " 13x"]) {
      it(`${JSON.stringify(version)} is 426 with Sec-WebSocket-Version: 13`, () => {
        const error = assertRejected(
          Handshake.validateUpgrade(upgradeInput({ "sec-websocket-version": version })),
          426,
          "unsupported Sec-WebSocket-Version (13 is required)"
        )
        assert.strictEqual(error.headers?.["Sec-WebSocket-Version"], "13")
      })
    }
  })

  describe("item 5: Sec-WebSocket-Key is base64 of 16 bytes", () => {
    it("accepts keys made of every base64 character", () => {
      for (
        const key of [
          "AAAAAAAAAAAAAAAAAAAAAA==",
          "+/+/+/+/+/+/+/+/+/+/+w==",
          "zzzzzzzzzzzzzzzzzzzzzw==",
          "0123456789abcdefghijkA==",
          "ZZZZZZZZZZZZZZZZZZZZZQ==",
          Buffer.alloc(16, 0xab).toString("base64")
        ]
      ) {
        assert.strictEqual(assertUpgrade(Handshake.validateUpgrade(upgradeInput({ "sec-websocket-key": key }))).key, key)
      }
    })
    const bad: ReadonlyArray<readonly [string, string | Array<string> | undefined]> = [
      ["missing", undefined],
      ["empty", ""],
      ["15 bytes", Buffer.alloc(15).toString("base64")],
      ["17 bytes", Buffer.alloc(17).toString("base64")],
      ["no padding", "dGhlIHNhbXBsZSBub25jZQ"],
      ["base64url alphabet", "dGhlIHNhbXBsZSBub25jZ-_=="],
      ["inner space", "dGhlIHNhbXBsZSB ub25jZQ=="],
      ["three pads", "dGhlIHNhbXBsZSBub25jZ==="],
      ["24 characters ending \"=A\"", "AAAAAAAAAAAAAAAAAAAAAA=A"],
      ["24 characters with \"-\"", "dGhlIHNhbXBsZSBub25jZ-=="],
      ["24 characters with \"_\"", "dGhlIHNhbXBsZSBub25jZ_=="],
      ["24 characters with \"[\"", "dGhlIHNhbXBsZSBub25jZ[=="],
      ["24 characters with \"~\"", "dGhlIHNhbXBsZSBub25jZ~=="],
      ["24 characters with \"{\"", "dGhlIHNhbXBsZSBub25jZ{=="],
      ["repeated header", [RFC_KEY, RFC_KEY]]
    ]
    for (const [name, key] of bad) {
      it(`${name} is 400`, () => {
        assertRejected(
          Handshake.validateUpgrade(upgradeInput({ "sec-websocket-key": key })),
          400,
          "missing or invalid Sec-WebSocket-Key"
        )
      })
    }
  })

  describe("no request body", () => {
    it("Content-Length: 0 is fine", () => {
      assertUpgrade(Handshake.validateUpgrade(upgradeInput({ "content-length": "0" })))
    })
    it("Content-Length: 5 is 400", () => {
      assertRejected(
        Handshake.validateUpgrade(upgradeInput({ "content-length": "5" })),
        400,
        "an upgrade request cannot have a body"
      )
    })
    it("Transfer-Encoding is 400", () => {
      assertRejected(
        Handshake.validateUpgrade(upgradeInput({ "transfer-encoding": "chunked" })),
        400,
        "an upgrade request cannot have a body"
      )
    })
  })

  describe("items 8-9: Sec-WebSocket-Protocol and Sec-WebSocket-Extensions", () => {
    it("parses both", () => {
      const upgrade = assertUpgrade(Handshake.validateUpgrade(upgradeInput({
        "sec-websocket-protocol": "chat , v2.json",
        "sec-websocket-extensions": "permessage-deflate; client_max_window_bits, x-foo"
      })))
      assert.deepStrictEqual(upgrade.protocols, ["chat", "v2.json"])
      assert.deepStrictEqual(upgrade.extensions, [
        { name: "permessage-deflate", params: [{ name: "client_max_window_bits", value: undefined }] },
        { name: "x-foo", params: [] }
      ])
    })
    it("joins repeated protocol headers given as an array", () => {
      const upgrade = assertUpgrade(Handshake.validateUpgrade(upgradeInput({ "sec-websocket-protocol": ["a", "b, c"] })))
      assert.deepStrictEqual(upgrade.protocols, ["a", "b", "c"])
      assert.deepStrictEqual(upgrade.headers["sec-websocket-protocol"], "a, b, c")
    })
    it("malformed Sec-WebSocket-Protocol is 400", () => {
      assertRejected(Handshake.validateUpgrade(upgradeInput({ "sec-websocket-protocol": "chat superchat" })), 400)
    })
    it("malformed Sec-WebSocket-Extensions is 400", () => {
      assertRejected(Handshake.validateUpgrade(upgradeInput({ "sec-websocket-extensions": "permessage-deflate;;x" })), 400)
    })
  })

  it("accepts a node:http IncomingMessage end to end (ws client, 127.0.0.1)", async () => {
    const server = Http.createServer()
    const seen: Array<Handshake.UpgradeRequest> = []
    const sockets: Array<{ destroy(): void }> = []
    server.on("upgrade", (req: Http.IncomingMessage, socket, headBytes: Buffer) => {
      sockets.push(socket)
      const upgrade = Handshake.validateUpgrade(req)
      if (upgrade instanceof HandshakeError) {
        socket.end(Handshake.rejectResponse(upgrade))
        return
      }
      seen.push(upgrade)
      assert.strictEqual(headBytes.length, 0)
      socket.write(Handshake.acceptResponse({ key: upgrade.key, protocol: upgrade.protocols[1] }))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const { port } = server.address() as AddressInfo
      const protocol = await new Promise<string>((resolve, reject) => {
        const client = new WebSocket(`ws://127.0.0.1:${port}/path?q=1`, ["chat", "superchat"], { perMessageDeflate: false })
        client.on("open", () => {
          resolve(client.protocol)
          client.terminate()
        })
        client.on("error", reject)
      })
      assert.strictEqual(protocol, "superchat")
      assert.strictEqual(seen.length, 1)
      assert.strictEqual(seen[0].url, "/path?q=1")
      assert.strictEqual(seen[0].host, `127.0.0.1:${port}`)
      assert.deepStrictEqual(seen[0].protocols, ["chat", "superchat"])

      // A refused handshake reaches the client as the HTTP status.
      const status = await new Promise<number>((resolve, reject) => {
        const client = new WebSocket(`ws://127.0.0.1:${port}/`, { protocolVersion: 8 })
        client.on("unexpected-response", (_req, res) => {
          resolve(res.statusCode ?? 0)
          res.resume()
          client.terminate()
        })
        client.on("open", () => reject(new Error("unexpected open")))
        client.on("error", () => undefined)
      })
      assert.strictEqual(status, 426)
    } finally {
      // upgraded sockets leave the http server's bookkeeping: close them ourselves
      for (const socket of sockets) socket.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})

// ---------------------------------------------------------------------------
// RFC 6455 §4.2.2: the server's opening handshake
// ---------------------------------------------------------------------------

describe("RFC 6455 §4.2.2: acceptResponse", () => {
  it("writes the RFC §1.3 response byte for byte", () => {
    assert.strictEqual(
      text(Handshake.acceptResponse({ key: RFC_KEY })),
      "HTTP/1.1 101 Switching Protocols\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${RFC_ACCEPT}\r\n` +
        "\r\n"
    )
  })

  it("adds the selected subprotocol, extensions and extra headers", () => {
    assert.strictEqual(
      text(Handshake.acceptResponse({
        key: RFC_KEY,
        protocol: "chat",
        extensions: "permessage-deflate; server_no_context_takeover",
        headers: { "Set-Cookie": "a=b", "X-Id": "\u00e9 7" }
      })),
      "HTTP/1.1 101 Switching Protocols\r\n" +
        "Upgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${RFC_ACCEPT}\r\n` +
        "Sec-WebSocket-Protocol: chat\r\n" +
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n" +
        "Set-Cookie: a=b\r\n" +
        "X-Id: \u00e9 7\r\n" +
        "\r\n"
    )
  })

  it("omits an empty extensions value", () => {
    assert.notInclude(text(Handshake.acceptResponse({ key: RFC_KEY, extensions: "" })), "Extensions")
  })

  it("accepts obs-text up to 0xff in a header value, and tabs", () => {
    const response = text(Handshake.acceptResponse({ key: RFC_KEY, headers: { "X-A": "\u00ff\t\u0080" } }))
    assert.include(response, "\r\nX-A: \u00ff\t\u0080\r\n")
  })

  describe("refuses header injection and conflicts with a TypeError", () => {
    const cases: ReadonlyArray<readonly [string, Handshake.AcceptOptions, string]> = [
      ["CRLF in a value", { key: RFC_KEY, headers: { "X-A": "a\r\nSet-Cookie: evil" } }, "invalid value for header X-A"],
      ["LF in a value", { key: RFC_KEY, headers: { "X-A": "a\nb" } }, "invalid value for header X-A"],
      ["NUL in a value", { key: RFC_KEY, headers: { "X-A": "a\u0000" } }, "invalid value for header X-A"],
      ["non-latin1 value", { key: RFC_KEY, headers: { "X-A": "\u2603" } }, "invalid value for header X-A"],
      [
        "a value that is not a string",
        { key: RFC_KEY, headers: { "X-A": 7 as unknown as string } },
        "invalid value for header X-A"
      ],
      ["CRLF in a name", { key: RFC_KEY, headers: { "X-A\r\nX-B": "b" } }, "invalid header name: \"X-A\\r\\nX-B\""],
      ["empty name", { key: RFC_KEY, headers: { "": "b" } }, "invalid header name: \"\""],
      ["space in a name", { key: RFC_KEY, headers: { "X A": "b" } }, "invalid header name: \"X A\""],
      [
        "a second Sec-WebSocket-Accept",
        { key: RFC_KEY, headers: { "sec-websocket-accept": "x" } },
        "header sec-websocket-accept is set by the handshake and cannot be given"
      ],
      [
        "a second Connection",
        { key: RFC_KEY, headers: { Connection: "close" } },
        "header Connection is set by the handshake and cannot be given"
      ],
      ["CRLF in extensions", { key: RFC_KEY, extensions: "x\r\nSet-Cookie: evil" }, "invalid Sec-WebSocket-Extensions value"],
      ["non-token protocol", { key: RFC_KEY, protocol: "chat\r\nX: y" }, "Sec-WebSocket-Protocol must be a token"],
      ["empty protocol", { key: RFC_KEY, protocol: "" }, "Sec-WebSocket-Protocol must be a token"]
    ]
    for (const [name, options, message] of cases) {
      it(name, () => {
        assertThrowsExactly(() => Handshake.acceptResponse(options), TypeError, message)
      })
    }
  })
})

describe("RFC 6455 §4.2.2 item 4, §4.4: rejectResponse", () => {
  it("writes a complete 400 for a HandshakeError", () => {
    const error = new HandshakeError({ status: 400, reason: "missing Host header" })
    assert.strictEqual(
      text(Handshake.rejectResponse(error)),
      "HTTP/1.1 400 Bad Request\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        "Content-Length: 19\r\n" +
        "Connection: close\r\n" +
        "\r\n" +
        "missing Host header"
    )
  })

  it("a version 426 carries Sec-WebSocket-Version: 13 and the Upgrade it requires", () => {
    const error = assertRejected(Handshake.validateUpgrade(upgradeInput({ "sec-websocket-version": "8" })), 426)
    const reason = error.reason
    assert.strictEqual(
      text(Handshake.rejectResponse(error)),
      "HTTP/1.1 426 Upgrade Required\r\n" +
        "Upgrade: websocket\r\n" +
        "Sec-WebSocket-Version: 13\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        `Content-Length: ${reason.length}\r\n` +
        "Connection: Upgrade, close\r\n" +
        "\r\n" +
        reason
    )
  })

  it("a 405 carries Allow: GET, and no Upgrade in Connection", () => {
    const error = assertRejected(Handshake.validateUpgrade(upgradeInput({}, { method: "POST" })), 405)
    assert.strictEqual(
      text(Handshake.rejectResponse(error)),
      "HTTP/1.1 405 Method Not Allowed\r\n" +
        "Allow: GET\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        `Content-Length: ${error.reason.length}\r\n` +
        "Connection: close\r\n" +
        "\r\n" +
        error.reason
    )
  })

  it("accepts the edge statuses 300 and 599 (an unknown status has an empty reason phrase)", () => {
    assert.strictEqual(
      text(Handshake.rejectResponse({ status: 300 })),
      "HTTP/1.1 300 Multiple Choices\r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        "Content-Length: 16\r\n" +
        "Connection: close\r\n" +
        "\r\n" +
        "Multiple Choices"
    )
    assert.strictEqual(
      text(Handshake.rejectResponse({ status: 599 })),
      "HTTP/1.1 599 \r\n" +
        "Content-Type: text/plain; charset=utf-8\r\n" +
        "Content-Length: 0\r\n" +
        "Connection: close\r\n" +
        "\r\n"
    )
  })

  it("a 431 from the parser has its status text", () => {
    const error = assertRejected(parseOne(head("GET / HTTP/1.1", ["a: b", "c: d"]), { maxHeaders: 1 }), 431)
    assert.isTrue(text(Handshake.rejectResponse(error)).startsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
  })

  it("counts Content-Length in UTF-8 bytes and lets Content-Type be replaced", () => {
    const out = Buffer.from(Handshake.rejectResponse({
      status: 403,
      body: "{\"error\":\"d\u00e9fendu \u2603\"}",
      headers: { "content-type": "application/json" }
    }))
    const body = Buffer.from("{\"error\":\"d\u00e9fendu \u2603\"}", "utf8")
    const expectedHead = "HTTP/1.1 403 Forbidden\r\n" +
      "content-type: application/json\r\n" +
      `Content-Length: ${body.length}\r\n` +
      "Connection: close\r\n" +
      "\r\n"
    assert.deepStrictEqual(out, Buffer.concat([bytes(expectedHead), body]))
  })

  it("defaults the body to the status text", () => {
    assert.isTrue(text(Handshake.rejectResponse({ status: 503 })).endsWith("Content-Length: 19\r\nConnection: close\r\n\r\nService Unavailable"))
  })

  it("refuses header injection, reserved headers and bad statuses", () => {
    assert.throws(() => Handshake.rejectResponse({ status: 400, headers: { X: "a\r\nb" } }), TypeError)
    assert.throws(() => Handshake.rejectResponse({ status: 400, headers: { "X\n": "a" } }), TypeError)
    assert.throws(() => Handshake.rejectResponse({ status: 400, headers: { connection: "keep-alive" } }), TypeError)
    for (const status of [101, 200, 299, 304, 600, 400.5, Number.NaN]) {
      assertThrowsExactly(() => Handshake.rejectResponse({ status }), RangeError, `rejectResponse: unsupported status ${status}`)
    }
    assertThrowsExactly(
      () => Handshake.rejectResponse({ status: 400, headers: { "Content-Length": "1" } }),
      TypeError,
      "header Content-Length is set by the handshake and cannot be given"
    )
  })
})

// ---------------------------------------------------------------------------
// RFC 8441: WebSockets over HTTP/2
// ---------------------------------------------------------------------------

/** The RFC 8441 §5.1 request, as a node:http2 stream's header block. */
const connectHeaders = (
  overrides: Record<string, string | undefined> = {}
): Record<string, string | undefined> => ({
  ":method": "CONNECT",
  ":protocol": "websocket",
  ":scheme": "https",
  ":path": "/chat",
  ":authority": "server.example.com",
  "sec-websocket-protocol": "chat, superchat",
  "sec-websocket-extensions": "permessage-deflate",
  "sec-websocket-version": "13",
  "origin": "http://www.example.com",
  ...overrides
})

describe("RFC 8441 §4-5: validateExtendedConnect", () => {
  it("accepts the RFC 8441 §5.1 request: url from :path, host from :authority, no key", () => {
    const upgrade = assertUpgrade(Handshake.validateExtendedConnect(connectHeaders()))
    assert.strictEqual(upgrade.method, "CONNECT")
    assert.strictEqual(upgrade.url, "/chat")
    assert.strictEqual(upgrade.host, "server.example.com")
    assert.strictEqual(upgrade.origin, "http://www.example.com")
    assert.strictEqual(upgrade.key, "")
    assert.deepStrictEqual(upgrade.protocols, ["chat", "superchat"])
    assert.deepStrictEqual(upgrade.extensions.map((e) => e.name), ["permessage-deflate"])
  })

  it("headers keep the regular fields and drop the pseudo-header fields", () => {
    const upgrade = assertUpgrade(Handshake.validateExtendedConnect(connectHeaders({ "cookie": "a=b" })))
    assert.strictEqual(upgrade.headers["cookie"], "a=b")
    assert.strictEqual(upgrade.headers["sec-websocket-version"], "13")
    assert.deepStrictEqual(Object.keys(upgrade.headers).filter((k) => k.startsWith(":")), [])
  })

  it("ignores a sec-websocket-key (RFC 8441 §5: not used over HTTP/2)", () => {
    const upgrade = assertUpgrade(Handshake.validateExtendedConnect(connectHeaders({ "sec-websocket-key": "x" })))
    assert.strictEqual(upgrade.key, "")
  })

  it("a :protocol of another case is websocket", () => {
    assertUpgrade(Handshake.validateExtendedConnect(connectHeaders({ ":protocol": "WebSocket" })))
  })

  it("a method other than CONNECT is 405 with allow: CONNECT", () => {
    for (const method of ["GET", "POST", "connect", undefined]) {
      const error = assertRejected(
        Handshake.validateExtendedConnect(connectHeaders({ ":method": method })),
        405,
        "method not allowed: a WebSocket over HTTP/2 is opened with an extended CONNECT"
      )
      assert.deepStrictEqual(error.headers, { allow: "CONNECT" })
    }
  })

  it("a CONNECT without :protocol (a tunnel) is 501", () => {
    assertRejected(
      Handshake.validateExtendedConnect({ ":method": "CONNECT", ":authority": "example.com:443" }),
      501,
      "CONNECT tunnels are not supported"
    )
  })

  it("a :protocol other than websocket is 501", () => {
    for (const protocol of ["webtransport", "websocket2", "websocket, h2", ""]) {
      assertRejected(
        Handshake.validateExtendedConnect(connectHeaders({ ":protocol": protocol })),
        501,
        "unsupported :protocol (websocket is supported)"
      )
    }
  })

  it("§4: :scheme and :path must be present, :scheme the server's", () => {
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ ":scheme": undefined })), 400, "missing :scheme")
    assertRejected(
      Handshake.validateExtendedConnect(connectHeaders({ ":scheme": undefined }), { scheme: "http" }),
      400,
      "missing :scheme"
    )
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ ":path": undefined })), 400, "missing :path")
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ ":path": "" })), 400, "missing :path")
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ ":scheme": "http" })), 400, "wrong :scheme")
    assertUpgrade(Handshake.validateExtendedConnect(connectHeaders({ ":scheme": "http" }), { scheme: "http" }))
  })

  it("a missing or empty :authority is 400", () => {
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ ":authority": undefined })), 400, "missing :authority")
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ ":authority": "" })), 400, "missing :authority")
  })

  it("a version other than 13 is 400 naming version 13 (no 426: HTTP/2 has no Upgrade field)", () => {
    for (const version of ["8", "14", "", undefined]) {
      const error = assertRejected(
        Handshake.validateExtendedConnect(connectHeaders({ "sec-websocket-version": version })),
        400,
        "unsupported sec-websocket-version (13 is required)"
      )
      assert.deepStrictEqual(error.headers, { "sec-websocket-version": "13" })
    }
  })

  it("malformed subprotocols or extensions are 400", () => {
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ "sec-websocket-protocol": "a b" })), 400)
    assertRejected(Handshake.validateExtendedConnect(connectHeaders({ "sec-websocket-extensions": "a;;" })), 400)
  })

  it.prop("never throws on any header block", [fc.dictionary(fc.constantFrom(
    ":method", ":protocol", ":scheme", ":path", ":authority", "sec-websocket-version",
    "sec-websocket-protocol", "sec-websocket-extensions", "origin"
  ), fc.oneof(fc.string(), fc.constantFrom("CONNECT", "websocket", "https", "/", "13")))], ([headers]) => {
    const result = Handshake.validateExtendedConnect(headers)
    assert.isTrue(result instanceof HandshakeError || typeof result.url === "string")
  })
})

describe("RFC 8441 §5: extendedConnectResponse", () => {
  it("is :status 200 with the subprotocol and extensions, and no sec-websocket-accept", () => {
    assert.deepStrictEqual(
      Handshake.extendedConnectResponse({
        protocol: "chat",
        extensions: "permessage-deflate; server_no_context_takeover",
        headers: { "Set-Cookie": "a=b" }
      }),
      {
        ":status": 200,
        "sec-websocket-protocol": "chat",
        "sec-websocket-extensions": "permessage-deflate; server_no_context_takeover",
        "set-cookie": "a=b"
      }
    )
    assert.deepStrictEqual(Handshake.extendedConnectResponse({ extensions: "" }), { ":status": 200 })
  })

  it("refuses connection-specific fields (RFC 9113 §8.2.2), the handshake's own and injection", () => {
    for (const name of ["Connection", "upgrade", "keep-alive", "transfer-encoding", "sec-websocket-accept"]) {
      assert.throws(() => Handshake.extendedConnectResponse({ headers: { [name]: "x" } }), TypeError)
    }
    assert.throws(() => Handshake.extendedConnectResponse({ headers: { "x-a": "b\r\nc: d" } }), TypeError)
    assertThrowsExactly(
      () => Handshake.extendedConnectResponse({ protocol: "a b" }),
      TypeError,
      "sec-websocket-protocol must be a token"
    )
    assertThrowsExactly(
      () => Handshake.extendedConnectResponse({ extensions: "permessage-deflate\r\nx-a: b" }),
      TypeError,
      "invalid sec-websocket-extensions value"
    )
  })
})
