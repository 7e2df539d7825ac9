import { BLOCK, kernel } from "./simd.js"

/** Below this many bytes the JavaScript loop beats the copies to and from WebAssembly. */
const SIMD_THRESHOLD = 256

/** The little-endian 32-bit word whose bytes are the mask rotated to position `k`. */
const maskWord = (mask: Uint8Array, k: number): number =>
  mask[k]! | (mask[(k + 1) & 3]! << 8) | (mask[(k + 2) & 3]! << 16) | (mask[(k + 3) & 3]! << 24)

/**
 * XORs `buf[start, end)` with the 4-byte `mask`, starting at mask position `offset`
 * (RFC 6455 §5.3). In place. Long runs go through a WebAssembly SIMD kernel (./simd.ts),
 * shorter ones a 32-bit word at a time where 4-aligned in memory.
 * Returns the mask position after the last byte.
 */
export const applyMask = (
  buf: Uint8Array,
  start: number,
  end: number,
  mask: Uint8Array,
  offset: number
): number => {
  if (end - start >= SIMD_THRESHOLD && kernel() !== undefined) {
    return unmaskInto(buf, start, end, buf, start, mask, offset)
  }
  let i = start
  let k = offset & 3
  if (end - start >= 32) {
    let head = (4 - ((buf.byteOffset + i) & 3)) & 3
    while (head-- > 0) {
      buf[i++]! ^= mask[k]!
      k = (k + 1) & 3
    }
    const words = (end - i) >>> 2
    const w = maskWord(mask, k)
    const view = new Int32Array(buf.buffer, buf.byteOffset + i, words)
    for (let j = 0; j < words; j++) view[j]! ^= w
    i += words << 2
  }
  for (; i < end; i++) {
    buf[i]! ^= mask[k]!
    k = (k + 1) & 3
  }
  return k
}

/**
 * Copies `src[start, end)` to `dst` at `at`, XORed with the 4-byte `mask` from mask position
 * `offset`; `src` is left as it was unless it is `dst` (`applyMask` uses this for long runs).
 * For a payload that is copied anyway (a message assembled from several reads) this is one
 * pass where unmasking in place and then copying is two: long runs go through the SIMD
 * kernel's memory on their way to `dst`. Returns the mask position after the last byte.
 */
export const unmaskInto = (
  src: Uint8Array,
  start: number,
  end: number,
  dst: Uint8Array,
  at: number,
  mask: Uint8Array,
  offset: number
): number => {
  const simd = end - start < SIMD_THRESHOLD ? undefined : kernel()
  if (simd === undefined) {
    dst.set(src.subarray(start, end), at)
    return applyMask(dst, at, at + end - start, mask, offset)
  }
  // whole 16-byte blocks are copied into the kernel's memory, XORed there and copied out
  // (k is unchanged by multiples of 4); the last few bytes one at a time
  const { heap, xor } = simd
  let k = offset & 3
  const w = maskWord(mask, k)
  let i = start
  let o = at
  while (end - i >= 16) {
    const n = Math.min(BLOCK, (end - i) & ~15)
    heap.set(src.subarray(i, i + n), 0)
    xor(0, n, w)
    dst.set(heap.subarray(0, n), o)
    i += n
    o += n
  }
  for (; i < end; i++, o++) {
    dst[o] = src[i]! ^ mask[k]!
    k = (k + 1) & 3
  }
  return k
}

const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
if (!IS_LITTLE_ENDIAN) {
  // The word-wide path above assumes little-endian memory, as on every platform Node runs.
  throw new Error("@effect-websocket/protocol requires a little-endian platform")
}
