import { isUtf8 } from "node:buffer"

/*
 * Streaming UTF-8 validation (RFC 3629), strict: it fails at the first byte that cannot
 * belong to a valid sequence, even when that sequence is still incomplete (Autobahn 6.4.x).
 *
 * Whole runs are checked with `buffer.isUtf8` (native, SIMD); only the at most three bytes
 * of a code point cut by a chunk boundary go through the byte-wise state machine below.
 */

// Classes of a byte as a lead or continuation byte.
const ACCEPT = 0
const REJECT = 1

/**
 * State of a code point in progress: how many continuation bytes are still needed, and
 * the allowed range of the *next* continuation byte (tighter than 0x80..0xBF right after
 * E0, ED, F0 and F4, which is how overlongs, surrogates and > U+10FFFF are refused).
 */
export class Utf8Validator {
  /** Continuation bytes still expected for the current code point. */
  private need = 0
  private lo = 0x80
  private hi = 0xbf

  /** True when no code point is cut open. */
  get complete(): boolean {
    return this.need === 0
  }

  reset(): void {
    this.need = 0
    this.lo = 0x80
    this.hi = 0xbf
  }

  /**
   * Validates `bytes[start, end)` as the continuation of the stream. Returns false at
   * the first invalid byte; the validator is then in an unspecified state (reset it).
   */
  validate(bytes: Uint8Array, start: number, end: number): boolean {
    let i = start
    // Finish a code point left open by the previous chunk.
    while (this.need > 0 && i < end) {
      if (this.step(bytes[i]!) === REJECT) return false
      i++
    }
    if (i >= end) return true
    // Find where a trailing incomplete code point begins (at most 3 bytes back).
    let tail = end
    const lowest = end - 3 > i ? end - 3 : i
    for (let j = end - 1; j >= lowest; j--) {
      const b = bytes[j]!
      if (b < 0x80) break
      if (b >= 0xc0) {
        const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2
        if (end - j < len) tail = j
        break
      }
    }
    if (tail > i) {
      if (tail - i < 16) {
        for (let j = i; j < tail; j++) if (this.step(bytes[j]!) === REJECT) return false
        if (this.need !== 0) return false
      } else if (!isUtf8(bytes.subarray(i, tail))) {
        return false
      }
    }
    for (let j = tail; j < end; j++) if (this.step(bytes[j]!) === REJECT) return false
    return true
  }

  private step(b: number): number {
    if (this.need === 0) {
      if (b < 0x80) return ACCEPT
      if (b < 0xc2) return REJECT
      if (b < 0xe0) {
        this.need = 1
        this.lo = 0x80
        this.hi = 0xbf
      } else if (b < 0xf0) {
        this.need = 2
        this.lo = b === 0xe0 ? 0xa0 : 0x80
        this.hi = b === 0xed ? 0x9f : 0xbf
      } else if (b < 0xf5) {
        this.need = 3
        this.lo = b === 0xf0 ? 0x90 : 0x80
        this.hi = b === 0xf4 ? 0x8f : 0xbf
      } else {
        return REJECT
      }
      return ACCEPT
    }
    if (b < this.lo || b > this.hi) return REJECT
    this.need--
    this.lo = 0x80
    this.hi = 0xbf
    return ACCEPT
  }
}

/** One-shot strict validation of a whole buffer. */
export const isValidUtf8 = (bytes: Uint8Array): boolean => isUtf8(bytes)
