/**
 * RFC 6455 §5 framing: opcodes, an incremental decoder that streams payload bytes, and a
 * header encoder that never copies unmasked payloads.
 *
 * @since 0.1.0
 */
export {
  /** @since 0.1.0 @category decoding */
  FrameDecoder,
  /** @since 0.1.0 @category encoding */
  encodeFrame,
  /** @since 0.1.0 @category encoding */
  headerLength,
  /** @since 0.1.0 @category models */
  isControl,
  /** @since 0.1.0 @category models */
  Opcode,
  /** @since 0.1.0 @category encoding */
  randomMask,
  /** @since 0.1.0 @category encoding */
  writeHeader
} from "./internal/frame.js"
export type {
  /** @since 0.1.0 @category encoding */
  EncodeOptions,
  /** @since 0.1.0 @category decoding */
  FrameDecoderOptions,
  /** @since 0.1.0 @category models */
  FrameHeader,
  /** @since 0.1.0 @category decoding */
  FrameSink,
  /** @since 0.1.0 @category models */
  Role
} from "./internal/frame.js"
/** @since 0.1.0 @category masking */
export { applyMask } from "./internal/mask.js"
