import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { HandshakeError } from "../src/Errors.js"
import * as Extensions from "../src/Extensions.js"
import { runs } from "./helpers.js"

const offers = (value: string): ReadonlyArray<Extensions.ExtensionOffer> => {
  const result = Extensions.parseExtensions(value)
  if (result instanceof HandshakeError) return assert.fail(`expected offers for ${JSON.stringify(value)}, got ${result.message}`)
  return result
}

const protocols = (value: string): ReadonlyArray<string> => {
  const result = Extensions.parseProtocols(value)
  if (result instanceof HandshakeError) return assert.fail(`expected protocols for ${JSON.stringify(value)}, got ${result.message}`)
  return result
}

const assertBadRequest = (result: unknown): void => {
  if (!(result instanceof HandshakeError)) return assert.fail(`expected HandshakeError 400, got ${JSON.stringify(result)}`)
  assert.strictEqual(result.status, 400)
  assert.strictEqual(result.headers, undefined)
}

const p = (name: string, value?: string): Extensions.ExtensionParam => ({ name, value })

describe("RFC 6455 §9.1: Sec-WebSocket-Extensions grammar", () => {
  it("a single extension without parameters", () => {
    assert.deepStrictEqual(offers("permessage-deflate"), [{ name: "permessage-deflate", params: [] }])
  })

  it("several offers of the same extension keep their order (RFC 7692 §5 example)", () => {
    assert.deepStrictEqual(
      offers(
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits"
      ),
      [
        {
          name: "permessage-deflate",
          params: [p("client_max_window_bits"), p("server_max_window_bits", "10")]
        },
        { name: "permessage-deflate", params: [p("client_max_window_bits")] }
      ]
    )
  })

  it("different extensions, token values and parameters without values", () => {
    assert.deepStrictEqual(offers("foo, bar; baz=2;qux, x-webkit-deflate-frame"), [
      { name: "foo", params: [] },
      { name: "bar", params: [p("baz", "2"), p("qux")] },
      { name: "x-webkit-deflate-frame", params: [] }
    ])
  })

  it("optional whitespace (SP and HTAB) around `,`, `;` and `=`", () => {
    assert.deepStrictEqual(offers(" \tfoo \t; \ta \t= \t1 \t;b\t,\tbar\t"), [
      { name: "foo", params: [p("a", "1"), p("b")] },
      { name: "bar", params: [] }
    ])
  })

  it("quoted values are unquoted", () => {
    assert.deepStrictEqual(offers("foo; a=\"10\"; b = \"x-y\""), [
      { name: "foo", params: [p("a", "10"), p("b", "x-y")] }
    ])
  })

  it("quoted-pair escapes are removed", () => {
    assert.deepStrictEqual(offers("foo; a=\"1\\0\"; b=\"\\a\\b\\c\""), [
      { name: "foo", params: [p("a", "10"), p("b", "abc")] }
    ])
  })

  it("separators inside a quoted value, escaped or not, are not a token: 400", () => {
    assertBadRequest(Extensions.parseExtensions("foo; a=\"x,y\""))
    assertBadRequest(Extensions.parseExtensions("foo; a=\"x\\,y\""))
  })

  it("RFC 7230 §7: empty list elements are ignored", () => {
    assert.deepStrictEqual(offers(", foo ,, , bar,"), [
      { name: "foo", params: [] },
      { name: "bar", params: [] }
    ])
    assert.deepStrictEqual(offers(""), [])
    assert.deepStrictEqual(offers(" , \t,"), [])
  })

  it("names and values are kept as sent (case-sensitive)", () => {
    assert.deepStrictEqual(offers("PerMessage-Deflate; A=B"), [{ name: "PerMessage-Deflate", params: [p("A", "B")] }])
  })

  describe("malformed values are 400, with what was wrong and where", () => {
    // [case, value, what the reason says after "malformed Sec-WebSocket-Extensions header: "]
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      ["a lone semicolon", ";", "expected an extension name at offset 0"],
      ["parameters without a name", "; a=1", "expected an extension name at offset 0"],
      ["empty parameter name (`;;`)", "foo;;a", "expected a parameter name at offset 4"],
      ["trailing semicolon", "foo;", "expected a parameter name at offset 4"],
      ["empty parameter name before `=`", "foo; =1", "expected a parameter name at offset 5"],
      ["`=` without a value", "foo; a=", "expected a parameter value at offset 7"],
      ["`=` without a value before a comma", "foo; a=, bar", "expected a parameter value at offset 7"],
      ["double `=`", "foo; a==1", "expected a parameter value at offset 7"],
      ["value with a space", "foo; a=1 2", "unexpected character at offset 9"],
      ["name with a space", "foo bar", "unexpected character at offset 4"],
      ["separator in a name", "foo/bar", "unexpected character at offset 3"],
      ["`@` in a name", "f@o", "unexpected character at offset 1"],
      ["non-ASCII in a name", "d\u00e9flate", "unexpected character at offset 1"],
      ["NUL", "foo\u0000", "unexpected character at offset 3"],
      ["CR LF", "foo\r\n; a", "unexpected character at offset 3"],
      ["unterminated quoted value", "foo; a=\"10", "unterminated quoted string at offset 10"],
      ["unterminated quote at the end", "foo; a=\"", "unterminated quoted string at offset 8"],
      ["escape at the end", "foo; a=\"1\\", "unterminated quoted string at offset 10"],
      ["empty quoted value", "foo; a=\"\"", "quoted parameter value is empty at offset 8"],
      ["space in a quoted value", "foo; a=\"1 0\"", "quoted parameter value is not a token at offset 9"],
      ["escaped quote makes a non-token", "foo; a=\"\\\"\"", "quoted parameter value is not a token at offset 9"],
      ["text after a quoted value", "foo; a=\"1\"2", "unexpected character at offset 10"],
      ["quoted extension name", "\"foo\"", "expected an extension name at offset 0"],
      ["quoted parameter name", "foo; \"a\"=1", "expected a parameter name at offset 5"],
      ["comma then semicolon", "foo, ;a", "expected an extension name at offset 5"]
    ]
    for (const [name, value, what] of cases) {
      it(name, () => {
        const result = Extensions.parseExtensions(value)
        assertBadRequest(result)
        assert.strictEqual((result as HandshakeError).reason, `malformed Sec-WebSocket-Extensions header: ${what}`)
      })
    }
  })

  it("__proto__ and constructor are plain data", () => {
    const result = offers("__proto__; __proto__=constructor; constructor, constructor; prototype=\"__proto__\"")
    assert.deepStrictEqual(result, [
      { name: "__proto__", params: [p("__proto__", "constructor"), p("constructor")] },
      { name: "constructor", params: [p("prototype", "__proto__")] }
    ])
    assert.isTrue(Array.isArray(result))
    assert.strictEqual(Object.getPrototypeOf(result[0]), Object.prototype)
    assert.deepStrictEqual(Object.keys(result[0]), ["name", "params"])
    assert.strictEqual(({} as Record<string, unknown>)["constructor"], Object)
  })

  /**
   * The parser reads its input with `charCodeAt` only (and `slice` for results): a String
   * object that counts those reads measures its work without a clock.
   */
  class CountingString extends String {
    reads = 0
    override charCodeAt(index: number): number {
      this.reads++
      return super.charCodeAt(index)
    }
  }
  const parseCounting = (value: string) => {
    const input = new CountingString(value)
    const result = Extensions.parseExtensions(input as unknown as string)
    return { result, reads: input.reads }
  }

  describe("linear time on adversarial input: reads per input character, counted", () => {
    const families: Array<[string, (n: number) => string, (result: unknown, n: number) => void]> = [
      ["spaces", (n) => " ".repeat(n), (r) => assert.deepStrictEqual(r, [])],
      ["commas", (n) => ",".repeat(n), (r) => assert.deepStrictEqual(r, [])],
      ["an unclosed quoted string", (n) => "foo; a=\"" + "x".repeat(n), assertBadRequest],
      ["an unclosed quoted string of escapes", (n) => "foo; a=\"" + "\\x".repeat(n / 2), assertBadRequest],
      ["a closed quoted string of escapes", (n) => "foo; a=\"" + "\\x".repeat(n / 2) + "\"", (r, n) =>
        assert.strictEqual((r as ReadonlyArray<Extensions.ExtensionOffer>)[0]!.params[0]!.value, "x".repeat(n / 2))],
      ["many offers", (n) => "a, ".repeat(n / 3), (r, n) => assert.strictEqual((r as Array<unknown>).length, n / 3)],
      ["many parameters", (n) => "a" + "; b".repeat(n / 3), (r, n) =>
        assert.strictEqual((r as ReadonlyArray<Extensions.ExtensionOffer>)[0]!.params.length, n / 3)],
      ["spaces before a bad character", (n) => "foo;" + " ".repeat(n) + "@", assertBadRequest],
      ["spaces and tabs after '='", (n) => "foo; a =" + " \t".repeat(n / 2), assertBadRequest]
    ]
    for (const [name, make, check] of families) {
      it(`${name}: at most 3 reads per character, and twice the input is twice the work`, () => {
        const n = 3_000
        const small = parseCounting(make(n))
        const large = parseCounting(make(2 * n))
        check(small.result, n)
        check(large.result, 2 * n)
        assert.isAtLeast(small.reads, make(n).length / 2, "the parser reads through charCodeAt")
        assert.isAtMost(small.reads, 3 * make(n).length, `${small.reads} reads`)
        assert.isAtMost(large.reads, 2.2 * small.reads + 100, `${small.reads} then ${large.reads} reads`)
      })
    }
  })
})

describe("formatExtension", () => {
  it("writes a token-only offer as is", () => {
    assert.strictEqual(
      Extensions.formatExtension({
        name: "permessage-deflate",
        params: [p("server_no_context_takeover"), p("client_max_window_bits", "10")]
      }),
      "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    )
    assert.strictEqual(Extensions.formatExtension({ name: "x", params: [] }), "x")
  })

  it("quotes values only when they are not tokens, escaping `\"` and `\\`", () => {
    assert.strictEqual(
      Extensions.formatExtension({ name: "x", params: [p("a", "b c"), p("d", "e\"f\\g"), p("h", ""), p("i", "j")] }),
      "x; a=\"b c\"; d=\"e\\\"f\\\\g\"; h=\"\"; i=j"
    )
  })

  const tokenChar = fc.constantFrom(..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  const token = fc.array(tokenChar, { minLength: 1, maxLength: 10 }).map((cs) => cs.join(""))
  const offer = fc.record({
    name: token,
    params: fc.array(fc.record({ name: token, value: fc.option(token, { nil: undefined }) }), { maxLength: 5 })
  })

  it.prop(
    "parseExtensions inverts formatExtension for token offers",
    [fc.array(offer, { minLength: 1, maxLength: 4 })],
    ([list]) => {
      assert.deepStrictEqual(offers(list.map(Extensions.formatExtension).join(", ")), list)
    },
    { fastCheck: { numRuns: runs(1000) } }
  )
})

describe("RFC 6455 §4.1 item 10: Sec-WebSocket-Protocol", () => {
  it("a comma-separated list of tokens in order", () => {
    assert.deepStrictEqual(protocols("chat, superchat"), ["chat", "superchat"])
    assert.deepStrictEqual(protocols("v2.json.example.com"), ["v2.json.example.com"])
  })

  it("OWS and empty elements are ignored; case is kept", () => {
    assert.deepStrictEqual(protocols(" \t,Chat ,\t, superchat,"), ["Chat", "superchat"])
    assert.deepStrictEqual(protocols(""), [])
    assert.deepStrictEqual(protocols(",".repeat(100_000)), [])
    assert.deepStrictEqual(protocols(" ".repeat(100_000)), [])
  })

  it("__proto__ is a plain string", () => {
    assert.deepStrictEqual(protocols("__proto__, constructor"), ["__proto__", "constructor"])
  })

  // [value, what the reason says after "malformed Sec-WebSocket-Protocol header: "]
  const bad: ReadonlyArray<readonly [string, string]> = [
    ["chat superchat", "unexpected character at offset 5"],
    ["chat;q=1", "unexpected character at offset 4"],
    ["a/b", "unexpected character at offset 1"],
    ["\"chat\"", "expected a token at offset 0"],
    ["chat\u00e9", "unexpected character at offset 4"],
    ["a,\u0000", "expected a token at offset 2"],
    ["a," + " ".repeat(100_000) + "@", "expected a token at offset 100002"]
  ]
  for (const [value, what] of bad) {
    it(`${JSON.stringify(value.slice(0, 20))} is 400: ${what}`, () => {
      const result = Extensions.parseProtocols(value)
      assertBadRequest(result)
      assert.strictEqual((result as HandshakeError).reason, `malformed Sec-WebSocket-Protocol header: ${what}`)
    })
  }
})

describe("properties: the parsers never throw", () => {
  const grammarPiece = fc.oneof(
    fc.constantFrom(",", ";", "=", "\"", "\\", " ", "\t", "a", "b1", "x-y", "__proto__", "\u00e9", "\u0000", "\r\n"),
    fc.string({ maxLength: 3 })
  )
  const grammarString = fc.array(grammarPiece, { maxLength: 30 }).map((ps) => ps.join(""))
  const anyString = fc.oneof(grammarString, fc.string({ unit: "binary", maxLength: 60 }))

  const check = (result: unknown) => {
    if (result instanceof HandshakeError) assert.strictEqual(result.status, 400)
    else assert.isTrue(Array.isArray(result))
  }

  it.prop("parseExtensions returns offers or a 400 for any string", [anyString], ([value]) => {
    const result = Extensions.parseExtensions(value)
    check(result)
    if (!(result instanceof HandshakeError)) {
      // whatever parsed re-formats and re-parses to the same offers
      assert.deepStrictEqual(offers(result.map(Extensions.formatExtension).join(", ")), result)
    }
  }, { fastCheck: { numRuns: runs(1000) } })

  it.prop("parseProtocols returns tokens or a 400 for any string", [anyString], ([value]) => {
    const result = Extensions.parseProtocols(value)
    check(result)
    if (!(result instanceof HandshakeError)) assert.strictEqual(protocols(result.join(",")).join(","), result.join(","))
  }, { fastCheck: { numRuns: runs(1000) } })
})
