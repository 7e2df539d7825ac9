import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { HandshakeResponseError } from "../src/Errors.js"
import { parseExtensions } from "../src/Extensions.js"
import type { ExtensionOffer } from "../src/Extensions.js"
import * as Handshake from "../src/Handshake.js"
import * as PerMessageDeflate from "../src/PerMessageDeflate.js"
import { assertThrowsExactly } from "./helpers.js"

const text = (b: Uint8Array): string => Buffer.from(b).toString("latin1")
const RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
const RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

const response = (lines: ReadonlyArray<string>, status = "101 Switching Protocols") =>
  Buffer.from([`HTTP/1.1 ${status}`, ...lines, "", ""].join("\r\n"), "latin1")

const RFC_RESPONSE = response(["Upgrade: websocket", "Connection: Upgrade", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`])

const parse = (bytes: Uint8Array): Handshake.ResponseComplete => {
  const r = new Handshake.ResponseParser().push(bytes)
  if (r === undefined || r instanceof HandshakeResponseError) return assert.fail(`not parsed: ${String(r)}`)
  return r
}

const refused = (r: unknown, reason: HandshakeResponseError["reason"]) => {
  if (!(r instanceof HandshakeResponseError)) return assert.fail(`expected ${reason}, got ${JSON.stringify(r)}`)
  assert.strictEqual(r.reason, reason, r.detail)
}

const refusedWith = (r: unknown, reason: HandshakeResponseError["reason"], detail: string) => {
  refused(r, reason)
  assert.strictEqual((r as HandshakeResponseError).detail, detail)
}

const throwsTypeError = (f: () => unknown, message: string) => assertThrowsExactly(f, TypeError, message)

const pushAll = (parser: Handshake.ResponseParser, chunks: ReadonlyArray<Uint8Array>) => {
  let r: ReturnType<Handshake.ResponseParser["push"]>
  for (const c of chunks) r = parser.push(c)
  return r
}

describe("RFC 6455 §4.1 client request", () => {
  it("generateKey is base64 of 16 random bytes", () => {
    const a = Handshake.generateKey()
    assert.match(a, /^[A-Za-z0-9+/]{22}==$/)
    assert.strictEqual(Buffer.from(a, "base64").length, 16)
    assert.notStrictEqual(a, Handshake.generateKey())
  })

  it("upgradeRequest writes the request line and every required header", () => {
    const req = text(Handshake.upgradeRequest({
      host: "server.example.com",
      path: "/chat?x=1",
      key: RFC_KEY,
      protocols: ["chat", "superchat"],
      extensions: "permessage-deflate; client_max_window_bits",
      headers: { Origin: "http://example.com" }
    }))
    assert.strictEqual(
      req,
      "GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Key: ${RFC_KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n` +
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin: http://example.com\r\n\r\n"
    )
  })

  it("upgradeRequest refuses header injection, reserved headers, bad subprotocols and paths", () => {
    const base = { host: "h", path: "/", key: RFC_KEY }
    assert.throws(() => Handshake.upgradeRequest({ ...base, headers: { "X-A": "a\r\nEvil: 1" } }), TypeError)
    assert.throws(() => Handshake.upgradeRequest({ ...base, headers: { "Bad Name": "a" } }), TypeError)
    assert.throws(() => Handshake.upgradeRequest({ ...base, headers: { "sec-websocket-key": "a" } }), TypeError)
    assert.throws(() => Handshake.upgradeRequest({ ...base, protocols: ["a b"] }), TypeError)
    assert.throws(() => Handshake.upgradeRequest({ ...base, protocols: ["a", "a"] }), TypeError)
    assert.throws(() => Handshake.upgradeRequest({ ...base, path: "/a b" }), TypeError)
    assert.throws(() => Handshake.upgradeRequest({ ...base, host: "h\r\nX: 1" }), TypeError)
  })

  it("upgradeRequest names what is wrong in each TypeError", () => {
    const base = { host: "h", path: "/", key: RFC_KEY }
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, path: "" }), "invalid request path")
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, path: "/a b" }), "invalid request path")
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, path: "/\x7f" }), "invalid request path")
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, host: "" }), "invalid Host")
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, host: "h\r\nX: 1" }), "invalid Host")
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, protocols: ["a b"] }), `subprotocol "a b" is not a token`)
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, protocols: ["chat", "chat"] }), `subprotocol "chat" offered twice`)
    throwsTypeError(
      () => Handshake.upgradeRequest({ ...base, extensions: "permessage-deflate\r\nEvil: 1" }),
      "invalid Sec-WebSocket-Extensions value"
    )
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, headers: { "Bad Name": "a" } }), `invalid header name: "Bad Name"`)
    throwsTypeError(() => Handshake.upgradeRequest({ ...base, headers: { "X-A": "a\r\nEvil: 1" } }), "invalid value for header X-A")
    throwsTypeError(
      () => Handshake.upgradeRequest({ ...base, headers: { "X-N": 1 as unknown as string } }),
      "invalid value for header X-N"
    )
    throwsTypeError(
      () => Handshake.upgradeRequest({ ...base, headers: { "sec-websocket-key": "a" } }),
      "header sec-websocket-key is set by the handshake and cannot be given"
    )
    throwsTypeError(
      () => Handshake.upgradeRequest({ ...base, headers: { Host: "other" } }),
      "header Host is set by the handshake and cannot be given"
    )
  })

  it("upgradeRequest leaves out the subprotocol and extension headers for an empty offer", () => {
    const req = text(Handshake.upgradeRequest({ host: "h:8080", path: "/", key: RFC_KEY, protocols: [], extensions: "" }))
    assert.strictEqual(
      req,
      "GET / HTTP/1.1\r\nHost: h:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Key: ${RFC_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`
    )
  })
})

describe("ResponseParser", () => {
  it("parses the RFC 6455 §1.2 response and keeps the bytes after it", () => {
    const frame = Buffer.from([0x81, 0x02, 0x68, 0x69])
    const r = parse(Buffer.concat([RFC_RESPONSE, frame]))
    assert.strictEqual(r.response.status, 101)
    assert.strictEqual(r.response.statusText, "Switching Protocols")
    assert.strictEqual(r.response.headers["sec-websocket-accept"], RFC_ACCEPT)
    assert.deepStrictEqual(Buffer.from(r.rest), frame)
  })

  it.prop("any chunking parses the same head and rest", [fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 30 })], ([cuts]) => {
    const all = Buffer.concat([RFC_RESPONSE, Buffer.from("tail")])
    const parser = new Handshake.ResponseParser()
    let pos = 0
    let result: Handshake.ResponseComplete | undefined
    const rest: Array<Buffer> = []
    for (const cut of [...cuts, all.length]) {
      if (pos >= all.length) break
      const chunk = all.subarray(pos, Math.min(all.length, pos + cut))
      pos += chunk.length
      if (result !== undefined) {
        rest.push(chunk)
        continue
      }
      const r = parser.push(chunk)
      if (r instanceof HandshakeResponseError) return false
      if (r !== undefined) {
        result = r
        rest.push(Buffer.from(r.rest))
      }
    }
    return result !== undefined && result.response.status === 101 && Buffer.concat(rest).toString() === "tail"
  })

  it("joins repeated fields and lowercases names", () => {
    const r = parse(response(["X-A: 1", "x-a:  2 ", "Set-Cookie: c=1"], "403 Forbidden"))
    assert.strictEqual(r.response.status, 403)
    assert.strictEqual(r.response.headers["x-a"], "1, 2")
    assert.strictEqual(r.response.headers["set-cookie"], "c=1")
  })

  it("refuses malformed heads and heads over the limits", () => {
    refused(new Handshake.ResponseParser().push(Buffer.from("HTTX/1.1 101 OK\r\n\r\n")), "Malformed")
    refused(new Handshake.ResponseParser().push(Buffer.from("HTTP/1.1 101 OK\r\nA\nB: 1\r\n\r\n")), "Malformed")
    refused(new Handshake.ResponseParser().push(Buffer.from("HTTP/1.1 101 OK\r\n folded\r\n\r\n")), "Malformed")
    refused(new Handshake.ResponseParser().push(Buffer.from("HTTP/1.1 101 OK\r\nA: \x01\r\n\r\n")), "Malformed")
    const big = new Handshake.ResponseParser({ maxHeaderBytes: 64 })
    assert.isUndefined(big.push(Buffer.from("HTTP/1.1 101 OK\r\n")))
    refused(big.push(Buffer.alloc(100, 0x61)), "TooLarge")
    const many = new Handshake.ResponseParser({ maxHeaders: 2 })
    refused(many.push(response(["A: 1", "B: 2", "C: 3"])), "TooLarge")
  })

  it("finds the end of the head when split in two at every position, and in single bytes", () => {
    const all = Buffer.concat([RFC_RESPONSE, Buffer.from("tail")])
    for (let cut = 0; cut <= all.length; cut++) {
      const parser = new Handshake.ResponseParser()
      const first = parser.push(all.subarray(0, cut))
      const done = first !== undefined ? first : parser.push(all.subarray(cut))
      if (done === undefined || done instanceof HandshakeResponseError) return assert.fail(`cut at ${cut}: ${String(done)}`)
      assert.strictEqual(done.response.headers["sec-websocket-accept"], RFC_ACCEPT)
      const rest = first !== undefined ? Buffer.concat([done.rest, all.subarray(cut)]) : Buffer.from(done.rest)
      assert.strictEqual(rest.toString(), "tail", `cut at ${cut}`)
    }
    const parser = new Handshake.ResponseParser()
    for (let i = 0; i < RFC_RESPONSE.length - 1; i++) assert.isUndefined(parser.push(RFC_RESPONSE.subarray(i, i + 1)))
    const last = parser.push(RFC_RESPONSE.subarray(RFC_RESPONSE.length - 1))
    assert.strictEqual((last as Handshake.ResponseComplete).response.status, 101)
    assert.strictEqual((last as Handshake.ResponseComplete).rest.length, 0)
  })

  it("grows its buffer for heads longer than 1024 bytes, in small chunks or in one", () => {
    const long = "v".repeat(3000)
    const head = response(["Upgrade: websocket", `X-Long: ${long}`, "Connection: Upgrade"])
    const whole = parse(head)
    assert.strictEqual(whole.response.headers["x-long"], long)
    assert.strictEqual(whole.response.headers["connection"], "Upgrade")
    const parser = new Handshake.ResponseParser()
    const chunks: Array<Uint8Array> = []
    for (let i = 0; i < head.length; i += 100) chunks.push(head.subarray(i, i + 100))
    const r = pushAll(parser, chunks)
    if (r === undefined || r instanceof HandshakeResponseError) return assert.fail(String(r))
    assert.strictEqual(r.response.headers["x-long"], long)
    assert.strictEqual(r.response.headers["connection"], "Upgrade")
  })

  it("refuses a head that reaches maxHeaderBytes without its blank line", () => {
    const parser = new Handshake.ResponseParser({ maxHeaderBytes: 2048 })
    assert.isUndefined(parser.push(Buffer.from("HTTP/1.1 101 OK\r\n")))
    refusedWith(parser.push(Buffer.alloc(4000, 0x61)), "TooLarge", "response head too large")
    const exact = new Handshake.ResponseParser({ maxHeaderBytes: RFC_RESPONSE.length })
    assert.strictEqual((exact.push(RFC_RESPONSE) as Handshake.ResponseComplete).response.status, 101)
  })

  it("answers every push after the head with the same outcome", () => {
    const ok = new Handshake.ResponseParser()
    assert.isDefined(ok.push(RFC_RESPONSE))
    refusedWith(ok.push(RFC_RESPONSE), "Malformed", "response already parsed")
    const bad = new Handshake.ResponseParser()
    const error = bad.push(Buffer.from("HTTX/1.1 101 OK\r\n\r\n"))
    refusedWith(error, "Malformed", "malformed status line")
    assert.strictEqual(bad.push(RFC_RESPONSE), error)
  })

  it("does not take a bare CR or LF next to CRLF for the end of the head", () => {
    for (
      const head of [
        "HTTP/1.1 101 OK\r\nA: 1\n\r\nB: 2\r\n\r\n",
        "HTTP/1.1 101 OK\r\nA: 1\rx\r\nB: 2\r\n\r\n",
        "HTTP/1.1 101 OK\r\n\rA: 1\r\n\r\n"
      ]
    ) {
      refusedWith(new Handshake.ResponseParser().push(Buffer.from(head, "latin1")), "Malformed", "bare CR or LF in response head")
    }
  })

  it("names each kind of malformed head", () => {
    const push = (head: string) => new Handshake.ResponseParser().push(Buffer.from(head, "latin1"))
    refusedWith(push("HTTP/1.1 101 OK\r\nA: 1\r2\r\n\r\n"), "Malformed", "bare CR or LF in response head")
    refusedWith(push("HTTP/1.1 101 OK\r\nA: 1\n\r\n\r\n"), "Malformed", "bare CR or LF in response head")
    refusedWith(push("HTTP/1.1 101 OK\r\nA\nB: 1\r\n\r\n"), "Malformed", "bare CR or LF in response head")
    refusedWith(push("HTTX/1.1 101 OK\r\n\r\n"), "Malformed", "malformed status line")
    refusedWith(push("HTTP/1.1 1010 OK\r\n\r\n"), "Malformed", "malformed status line")
    refusedWith(push("HTTP/1.1 101 OK\r\nNoColon\r\n\r\n"), "Malformed", "malformed header field")
    refusedWith(push("HTTP/1.1 101 OK\r\n: empty name\r\n\r\n"), "Malformed", "malformed header field")
    refusedWith(push("HTTP/1.1 101 OK\r\nA B: 1\r\n\r\n"), "Malformed", "malformed header field")
    refusedWith(push("HTTP/1.1 101 OK\r\n folded\r\n\r\n"), "Malformed", "malformed header field")
    refusedWith(push("HTTP/1.1 101 OK\r\nA: \x01\r\n\r\n"), "Malformed", "invalid character in header value")
  })

  it("allows exactly maxHeaders header fields", () => {
    const lines = ["A: 1", "B: 2", "C: 3"]
    const ok = new Handshake.ResponseParser({ maxHeaders: 3 }).push(response(lines))
    assert.strictEqual((ok as Handshake.ResponseComplete).response.headers["c"], "3")
    refusedWith(new Handshake.ResponseParser({ maxHeaders: 2 }).push(response(lines)), "TooLarge", "too many header fields")
  })

  it("trims leading and trailing spaces and tabs of values but keeps inner ones", () => {
    const r = parse(response(["A:   x  y \t ", "B:\t\tz", "C: w\t\t", "D:", "E: \t "]))
    assert.strictEqual(r.response.headers["a"], "x  y")
    assert.strictEqual(r.response.headers["b"], "z")
    assert.strictEqual(r.response.headers["c"], "w")
    assert.strictEqual(r.response.headers["d"], "")
    assert.strictEqual(r.response.headers["e"], "")
  })

  it("reports the HTTP version and status text, empty when the status line has none", () => {
    const r = parse(response([], "101 Switching Protocols"))
    assert.strictEqual(r.response.httpVersion, "1.1")
    assert.strictEqual(r.response.statusText, "Switching Protocols")
    const bare = parse(Buffer.from("HTTP/1.0 200\r\n\r\n"))
    assert.strictEqual(bare.response.httpVersion, "1.0")
    assert.strictEqual(bare.response.status, 200)
    assert.strictEqual(bare.response.statusText, "")
    assert.strictEqual(parse(Buffer.from("HTTP/1.1 404 \r\n\r\n")).response.statusText, "")
  })
})

describe("RFC 6455 §4.1 validating the server's response", () => {
  const offer = { key: RFC_KEY, protocols: ["chat", "superchat"], extensions: ["permessage-deflate"] }

  it("accepts the RFC's response", () => {
    const ok = Handshake.validateResponse(parse(RFC_RESPONSE).response, offer)
    if (ok instanceof HandshakeResponseError) return assert.fail(ok.message)
    assert.isUndefined(ok.protocol)
    assert.deepStrictEqual(ok.extensions, [])
  })

  it("refuses a wrong or missing Sec-WebSocket-Accept", () => {
    const wrong = response(["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: AAAA"])
    refused(Handshake.validateResponse(parse(wrong).response, offer), "Accept")
    refused(Handshake.validateResponse(parse(response(["Upgrade: websocket", "Connection: Upgrade"])).response, offer), "Accept")
  })

  it("refuses a missing Upgrade or Connection", () => {
    refused(
      Handshake.validateResponse(parse(response(["Connection: Upgrade", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`])).response, offer),
      "Upgrade"
    )
    refused(
      Handshake.validateResponse(parse(response(["Upgrade: websocket", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`])).response, offer),
      "Upgrade"
    )
  })

  const withHeader = (line: string) =>
    parse(response(["Upgrade: websocket", "Connection: keep-alive, Upgrade", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`, line]))
      .response

  it("accepts an offered subprotocol and refuses others", () => {
    const ok = Handshake.validateResponse(withHeader("Sec-WebSocket-Protocol: superchat"), offer)
    assert.strictEqual((ok as Handshake.AcceptedUpgrade).protocol, "superchat")
    refused(Handshake.validateResponse(withHeader("Sec-WebSocket-Protocol: mqtt"), offer), "Protocol")
    refused(Handshake.validateResponse(withHeader("Sec-WebSocket-Protocol: chat, superchat"), offer), "Protocol")
  })

  it("accepts offered extensions and refuses others (RFC 6455 §9.1)", () => {
    const ok = Handshake.validateResponse(withHeader("Sec-WebSocket-Extensions: permessage-deflate"), offer)
    assert.strictEqual((ok as Handshake.AcceptedUpgrade).extensions[0]!.name, "permessage-deflate")
    refused(Handshake.validateResponse(withHeader("Sec-WebSocket-Extensions: x-webkit"), offer), "Extensions")
    refused(
      Handshake.validateResponse(withHeader("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate"), offer),
      "Extensions"
    )
    refused(Handshake.validateResponse(withHeader("Sec-WebSocket-Extensions: ;;"), offer), "Extensions")
  })

  const validate = (lines: ReadonlyArray<string>, o: Handshake.ClientOffer = offer) =>
    Handshake.validateResponse(parse(response(lines)).response, o)
  const UPGRADE = ["Upgrade: websocket", "Connection: Upgrade"]
  const ACCEPTED = [...UPGRADE, `Sec-WebSocket-Accept: ${RFC_ACCEPT}`]

  it("explains a refused Upgrade, Connection or Sec-WebSocket-Accept", () => {
    refusedWith(validate(["Connection: Upgrade", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`]), "Upgrade", "missing Upgrade: websocket")
    refusedWith(validate(["Upgrade: h2c", "Connection: Upgrade", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`]), "Upgrade", "missing Upgrade: websocket")
    refusedWith(validate(["Upgrade: websocket", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`]), "Upgrade", "missing Connection: Upgrade")
    refusedWith(validate(["Upgrade: websocket", "Connection: close", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`]), "Upgrade", "missing Connection: Upgrade")
    refusedWith(validate(UPGRADE), "Accept", "missing Sec-WebSocket-Accept")
    refusedWith(validate([...UPGRADE, "Sec-WebSocket-Accept: AAAA"]), "Accept", "Sec-WebSocket-Accept does not match the key")
    const ok = validate(["Upgrade: WebSocket, h2c", "Connection: keep-alive,  upgrade", `Sec-WebSocket-Accept: ${RFC_ACCEPT}`])
    assert.notInstanceOf(ok, HandshakeResponseError)
  })

  it("explains a refused subprotocol", () => {
    refusedWith(
      validate([...ACCEPTED, "Sec-WebSocket-Protocol: chat, superchat"]),
      "Protocol",
      "more than one subprotocol selected"
    )
    refusedWith(
      validate([...ACCEPTED, "Sec-WebSocket-Protocol: mqtt"]),
      "Protocol",
      `server selected subprotocol "mqtt" that was not offered`
    )
  })

  it("refuses any subprotocol when none was offered", () => {
    for (const selected of ["chat", "mqtt"]) {
      refusedWith(
        validate([...ACCEPTED, `Sec-WebSocket-Protocol: ${selected}`], { key: RFC_KEY }),
        "Protocol",
        `server selected subprotocol ${JSON.stringify(selected)} that was not offered`
      )
    }
  })

  it("explains refused extensions", () => {
    refusedWith(validate([...ACCEPTED, "Sec-WebSocket-Extensions: ;;"]), "Extensions", "malformed Sec-WebSocket-Extensions")
    refusedWith(
      validate([...ACCEPTED, "Sec-WebSocket-Extensions: permessage-deflate; a=\"b"]),
      "Extensions",
      "malformed Sec-WebSocket-Extensions"
    )
    refusedWith(validate([...ACCEPTED, "Sec-WebSocket-Extensions: x-webkit"]), "Extensions", "extension x-webkit was not offered")
    refusedWith(
      validate([...ACCEPTED, "Sec-WebSocket-Extensions: permessage-deflate"], { key: RFC_KEY }),
      "Extensions",
      "extension permessage-deflate was not offered"
    )
    refusedWith(
      validate([...ACCEPTED, "Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate; client_max_window_bits=10"]),
      "Extensions",
      "extension permessage-deflate accepted twice"
    )
  })
})

describe("RFC 7692 §5 / §7.1 negotiation (client)", () => {
  const one = (value: string): ExtensionOffer => (parseExtensions(value) as ReadonlyArray<ExtensionOffer>)[0]!

  it("offers every parameter the options ask for", () => {
    assert.strictEqual(PerMessageDeflate.clientOffer(), "permessage-deflate; client_max_window_bits")
    assert.strictEqual(
      PerMessageDeflate.clientOffer({
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 9
      }),
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9"
    )
    assert.isUndefined(PerMessageDeflate.clientOffer({ enabled: false }))
  })

  it("the server's negotiate accepts the client's offer, and the client accepts its answer", () => {
    const options = { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 11, clientMaxWindowBits: 12 }
    const negotiated = PerMessageDeflate.negotiate([one(PerMessageDeflate.clientOffer(options)!)], {})!
    const params = PerMessageDeflate.acceptResponse(one(negotiated.response), options)
    assert.deepStrictEqual(params, negotiated.params)
  })

  it("takes the server's windows and takeover flags", () => {
    assert.deepStrictEqual(
      PerMessageDeflate.acceptResponse(
        one("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10")
      ),
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 10 }
    )
    assert.deepStrictEqual(PerMessageDeflate.acceptResponse(one("permessage-deflate")), {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15
    })
  })

  it("refuses responses a client must not accept", () => {
    for (
      const [value, options] of [
        ["permessage-deflate; foo", {}],
        ["permessage-deflate; client_max_window_bits", {}],
        ["permessage-deflate; server_max_window_bits=16", {}],
        ["permessage-deflate; server_max_window_bits=010", {}],
        ["permessage-deflate; server_no_context_takeover; server_no_context_takeover", {}],
        ["permessage-deflate; server_no_context_takeover=1", {}],
        ["permessage-deflate", { serverNoContextTakeover: true }],
        ["permessage-deflate; server_max_window_bits=12", { serverMaxWindowBits: 10 }],
        ["permessage-deflate; client_max_window_bits=12", { clientMaxWindowBits: 10 }],
        ["x-other", {}]
      ] as const
    ) {
      refused(PerMessageDeflate.acceptResponse(one(value), options), "Extensions")
    }
  })

  it("client and server codecs agree in both directions with the negotiated parameters", () => {
    const params = { serverNoContextTakeover: false, clientNoContextTakeover: true, serverMaxWindowBits: 10, clientMaxWindowBits: 9 }
    const client = new PerMessageDeflate.PerMessageDeflate(params, {}, "client")
    const server = new PerMessageDeflate.PerMessageDeflate(params, {}, "server")
    const message = Buffer.from("hello hello hello ".repeat(200))
    for (let i = 0; i < 3; i++) {
      assert.deepStrictEqual(server.decompress(client.compress(message), true, 1 << 20), message)
      assert.deepStrictEqual(client.decompress(server.compress(message), true, 1 << 20), message)
    }
    client.close()
    server.close()
  })
})
