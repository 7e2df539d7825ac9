/**
 * Header-value parsers for the opening handshake: `Sec-WebSocket-Extensions`
 * (RFC 6455 §9.1) and `Sec-WebSocket-Protocol` (RFC 6455 §4.1, §11.3.4).
 *
 * Both are single-pass scanners over the string: every character is looked at a
 * bounded number of times, there is no regular expression and no backtracking, so
 * the cost is linear in the length of the value whatever the input. Results are
 * arrays of small fixed-shape records; names and values taken from the peer are
 * never used as object keys, so `__proto__` or `constructor` are plain data.
 *
 * @since 0.1.0
 */
import { HandshakeError } from "../Errors.js"

/**
 * One `name[=value]` parameter of an extension offer. `value` is already unquoted
 * and unescaped; it is `undefined` when the parameter had no `=value` part.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExtensionParam {
  readonly name: string
  readonly value: string | undefined
}

/**
 * One extension offer: the extension token and its parameters in wire order.
 * The same extension may be offered several times (RFC 7692 §5 clients list
 * alternatives in order of preference).
 *
 * @since 0.1.0
 * @category models
 */
export interface ExtensionOffer {
  readonly name: string
  readonly params: ReadonlyArray<ExtensionParam>
}

// RFC 7230 §3.2.6 tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
const TCHAR = /* @__PURE__ */ (() => {
  const table = new Uint8Array(128)
  const specials = "!#$%&'*+-.^_`|~"
  for (let i = 0; i < specials.length; i++) table[specials.charCodeAt(i)] = 1
  for (let c = 0x30; c <= 0x39; c++) table[c] = 1
  for (let c = 0x41; c <= 0x5a; c++) table[c] = 1
  for (let c = 0x61; c <= 0x7a; c++) table[c] = 1
  return table
})()

const isTchar = (c: number): boolean => c < 128 && TCHAR[c] === 1

const SP = 0x20
const HTAB = 0x09
const COMMA = 0x2c
const SEMICOLON = 0x3b
const EQUALS = 0x3d
const DQUOTE = 0x22
const BACKSLASH = 0x5c

const EXTENSIONS_HEADER = "Sec-WebSocket-Extensions"
const PROTOCOL_HEADER = "Sec-WebSocket-Protocol"

const malformed = (header: string, what: string, offset: number): HandshakeError =>
  new HandshakeError({ status: 400, reason: `malformed ${header} header: ${what} at offset ${offset}` })

const skipOws = (value: string, i: number, n: number): number => {
  while (i < n) {
    const c = value.charCodeAt(i)
    if (c !== SP && c !== HTAB) break
    i++
  }
  return i
}

const skipToken = (value: string, i: number, n: number): number => {
  while (i < n && isTchar(value.charCodeAt(i))) i++
  return i
}

/**
 * Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1):
 *
 * ```
 * extension-list = 1#extension
 * extension      = extension-token *( OWS ";" OWS extension-param )
 * extension-param = token [ OWS "=" OWS ( token / quoted-string ) ]
 * ```
 *
 * Optional whitespace is accepted around `,`, `;` and `=`. Empty list elements
 * (`a, , b`, a leading or trailing comma) are ignored as RFC 7230 §7 requires, so a
 * value holding only whitespace and commas yields an empty array. A quoted value
 * must unescape to a non-empty token (RFC 6455 §9.1). When the header was given
 * several times, join the values with `", "` before calling.
 *
 * Anything else is a 400 `HandshakeError`; the function never throws and runs in
 * time linear in `value.length`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseExtensions = (value: string): ReadonlyArray<ExtensionOffer> | HandshakeError => {
  const offers: Array<ExtensionOffer> = []
  const n = value.length
  let i = 0
  for (;;) {
    i = skipOws(value, i, n)
    if (i === n) return offers
    if (value.charCodeAt(i) === COMMA) {
      i++
      continue
    }
    const nameStart = i
    i = skipToken(value, i, n)
    if (i === nameStart) return malformed(EXTENSIONS_HEADER, "expected an extension name", i)
    const name = value.slice(nameStart, i)
    const params: Array<ExtensionParam> = []
    i = skipOws(value, i, n)
    while (i < n && value.charCodeAt(i) === SEMICOLON) {
      i = skipOws(value, i + 1, n)
      const paramStart = i
      i = skipToken(value, i, n)
      if (i === paramStart) return malformed(EXTENSIONS_HEADER, "expected a parameter name", i)
      const paramName = value.slice(paramStart, i)
      let paramValue: string | undefined = undefined
      i = skipOws(value, i, n)
      if (i < n && value.charCodeAt(i) === EQUALS) {
        i = skipOws(value, i + 1, n)
        if (i < n && value.charCodeAt(i) === DQUOTE) {
          // quoted-string whose unescaped content must be a token: only tchar or
          // a backslash followed by tchar may appear before the closing quote.
          i++
          let unescaped = ""
          let segment = i
          for (;;) {
            if (i === n) return malformed(EXTENSIONS_HEADER, "unterminated quoted string", i)
            const c = value.charCodeAt(i)
            if (c === DQUOTE) break
            if (c === BACKSLASH) {
              unescaped += value.slice(segment, i)
              i++
              if (i === n) return malformed(EXTENSIONS_HEADER, "unterminated quoted string", i)
              if (!isTchar(value.charCodeAt(i))) {
                return malformed(EXTENSIONS_HEADER, "quoted parameter value is not a token", i)
              }
              segment = i
              i++
            } else if (isTchar(c)) {
              i++
            } else {
              return malformed(EXTENSIONS_HEADER, "quoted parameter value is not a token", i)
            }
          }
          unescaped += value.slice(segment, i)
          if (unescaped.length === 0) {
            return malformed(EXTENSIONS_HEADER, "quoted parameter value is empty", i)
          }
          paramValue = unescaped
          i++ // closing quote
        } else {
          const valueStart = i
          i = skipToken(value, i, n)
          if (i === valueStart) return malformed(EXTENSIONS_HEADER, "expected a parameter value", i)
          paramValue = value.slice(valueStart, i)
        }
        i = skipOws(value, i, n)
      }
      params.push({ name: paramName, value: paramValue })
    }
    offers.push({ name, params })
    if (i === n) return offers
    if (value.charCodeAt(i) !== COMMA) return malformed(EXTENSIONS_HEADER, "unexpected character", i)
    i++
  }
}

const needsQuoting = (value: string): boolean => {
  if (value.length === 0) return true
  for (let i = 0; i < value.length; i++) {
    if (!isTchar(value.charCodeAt(i))) return true
  }
  return false
}

/**
 * Formats one extension for a `Sec-WebSocket-Extensions` response header:
 * `name; param; param=value`. A value is written as a token when it is one and as
 * a quoted-string (with `"` and `\` escaped) otherwise. Join several results with
 * `", "`. The result is not checked for CR/LF here; `acceptResponse` validates every
 * header value it writes.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatExtension = (offer: ExtensionOffer): string => {
  let out = offer.name
  const params = offer.params
  for (let i = 0; i < params.length; i++) {
    const param = params[i]
    out += "; " + param.name
    const value = param.value
    if (value !== undefined) {
      out += needsQuoting(value) ? "=\"" + value.replace(/["\\]/g, "\\$&") + "\"" : "=" + value
    }
  }
  return out
}

/**
 * Parses a `Sec-WebSocket-Protocol` request value: a comma-separated list of
 * tokens (`1#token`, RFC 6455 §4.1) with optional whitespace around the commas.
 * Empty list elements are ignored (RFC 7230 §7). Tokens are returned as sent, in
 * order (subprotocol names are case-sensitive). Anything else is a 400
 * `HandshakeError`; linear time, never throws.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseProtocols = (value: string): ReadonlyArray<string> | HandshakeError => {
  const protocols: Array<string> = []
  const n = value.length
  let i = 0
  for (;;) {
    i = skipOws(value, i, n)
    if (i === n) return protocols
    const c = value.charCodeAt(i)
    if (c === COMMA) {
      i++
      continue
    }
    const start = i
    i = skipToken(value, i, n)
    if (i === start) return malformed(PROTOCOL_HEADER, "expected a token", i)
    protocols.push(value.slice(start, i))
    i = skipOws(value, i, n)
    if (i === n) return protocols
    if (value.charCodeAt(i) !== COMMA) return malformed(PROTOCOL_HEADER, "unexpected character", i)
    i++
  }
}
