/**
 * Effect metrics of the server. Updated in batches from the reader and writer (never one
 * Effect per frame); read them with `Metric.value` or any Effect metrics exporter.
 *
 * @since 0.1.0
 */
import type { DeflateMeter } from "@effect-websocket/protocol/PerMessageDeflate"
import { Metric, MetricBoundaries } from "effect"

/** @since 0.1.0 @category metrics */
export const connectionsOpen = Metric.gauge("websocket_connections_open", {
  description: "WebSocket connections currently open"
})
/** @since 0.1.0 @category metrics */
export const connectionsTotal = Metric.counter("websocket_connections_total", {
  description: "WebSocket connections accepted",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const handshakesRejected = Metric.counter("websocket_handshakes_rejected_total", {
  description: "Upgrade requests answered with an HTTP error",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const messagesReceived = Metric.counter("websocket_messages_received_total", { incremental: true })
/** @since 0.1.0 @category metrics */
export const messagesSent = Metric.counter("websocket_messages_sent_total", { incremental: true })
/** @since 0.1.0 @category metrics */
export const bytesReceived = Metric.counter("websocket_bytes_received_total", {
  description: "Bytes read from sockets after the upgrade",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const bytesSent = Metric.counter("websocket_bytes_sent_total", {
  description: "Bytes handed to sockets after the upgrade",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const closeCodes = Metric.frequency("websocket_close_codes", {
  description: "How connections ended, by close code (1006: no closing handshake)"
})
/** @since 0.1.0 @category metrics */
export const backpressureEvents = Metric.counter("websocket_backpressure_events_total", {
  description: "Times a sender waited for 'drain' or a reader paused its socket",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const pingRoundTrip = Metric.histogram(
  "websocket_ping_rtt_ms",
  MetricBoundaries.exponential({ start: 0.25, factor: 2, count: 16 }),
  "Round trip of pings in milliseconds"
)

/**
 * Broadcast: messages published to a topic in this process.
 *
 * @since 0.1.0
 * @category broadcast
 */
export const broadcastPublishes = Metric.counter("websocket_broadcast_publishes_total", {
  description: "Messages published to a topic in this process (local and received from the backend)",
  incremental: true
})
/**
 * Broadcast: local subscribers per publish.
 *
 * @since 0.1.0
 * @category broadcast
 */
export const broadcastFanOut = Metric.histogram(
  "websocket_broadcast_fanout",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 18 }),
  "Local subscribers of the topic, per publish"
)
/**
 * Broadcast: copies handed to subscriber connections.
 *
 * @since 0.1.0
 * @category broadcast
 */
export const broadcastDelivered = Metric.counter("websocket_broadcast_delivered_total", {
  description: "Copies of published messages handed to subscriber connections",
  incremental: true
})
/**
 * Broadcast: copies skipped for slow subscribers (`onSlow: "drop"`).
 *
 * @since 0.1.0
 * @category broadcast
 */
export const broadcastDropped = Metric.counter("websocket_broadcast_dropped_total", {
  description: "Copies skipped because the subscriber was over its buffered-bytes limit (policy \"drop\")",
  incremental: true
})
/**
 * Broadcast: slow subscribers closed with 1008 (`onSlow: "close"`).
 *
 * @since 0.1.0
 * @category broadcast
 */
export const broadcastSlowClosed = Metric.counter("websocket_broadcast_slow_closed_total", {
  description: "Subscribers closed with 1008 for being over their buffered-bytes limit (policy \"close\")",
  incremental: true
})
/**
 * Broadcast: shared permessage-deflate compressions.
 *
 * @since 0.1.0
 * @category broadcast
 */
export const broadcastCompressions = Metric.counter("websocket_broadcast_compressions_total", {
  description: "Shared permessage-deflate compressions (one per publish and compression setting)",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const deflateUncompressedBytesSent = Metric.counter("websocket_deflate_uncompressed_bytes_sent_total", {
  description: "Bytes of messages sent compressed, before compression (permessage-deflate)",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const deflateCompressedBytesSent = Metric.counter("websocket_deflate_compressed_bytes_sent_total", {
  description: "Payload bytes of messages sent compressed, after compression (permessage-deflate)",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const deflateCompressedBytesReceived = Metric.counter("websocket_deflate_compressed_bytes_received_total", {
  description: "Payload bytes of compressed messages received, before inflating (permessage-deflate)",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const deflateUncompressedBytesReceived = Metric.counter("websocket_deflate_uncompressed_bytes_received_total", {
  description: "Bytes of compressed messages received, after inflating (permessage-deflate)",
  incremental: true
})

const NO_TAGS: Array<never> = []

/**
 * What every server connection's permessage-deflate codec reports to: the four
 * `websocket_deflate_*` counters above, whose quotients are the compression ratio each way.
 *
 * @since 0.1.0
 * @category metrics
 */
export const deflateMeter: DeflateMeter = {
  compressed: (uncompressed, compressed) => {
    deflateUncompressedBytesSent.unsafeUpdate(uncompressed, NO_TAGS)
    deflateCompressedBytesSent.unsafeUpdate(compressed, NO_TAGS)
  },
  inflated: (compressed, uncompressed) => {
    deflateCompressedBytesReceived.unsafeUpdate(compressed, NO_TAGS)
    deflateUncompressedBytesReceived.unsafeUpdate(uncompressed, NO_TAGS)
  }
}
