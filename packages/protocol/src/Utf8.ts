/**
 * Strict, streaming UTF-8 validation for text messages and close reasons.
 *
 * @since 0.1.0
 */
export {
  /**
   * Incremental validator: feed slices with `validate(bytes, start, end)`; it returns false
   * at the first byte that cannot be part of valid UTF-8 and carries an incomplete code point
   * (at most 3 bytes of state) to the next slice. `complete` tells whether the stream ends
   * on a code point boundary.
   *
   * @since 0.1.0
   * @category validation
   */
  Utf8Validator,
  /**
   * @since 0.1.0
   * @category validation
   */
  isValidUtf8
} from "./internal/utf8.js"
