import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { HandshakeResponseError } from "../src/Errors.js"
import { parseExtensions } from "../src/Extensions.js"
import type { ExtensionOffer } from "../src/Extensions.js"
import * as Handshake from "../src/Handshake.js"
import * as PerMessageDeflate from "../src/PerMessageDeflate.js"

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
