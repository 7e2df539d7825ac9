/**
 * The Autobahn client testee: drives a fuzzing server (`kosoku -m fuzzingserver`, or
 * `wstest -m fuzzingserver`) with `WebSocketClient.connect`, as Autobahn's own client
 * testees do: ask `/getCaseCount`, then for each case connect to `/runCase?case=N&agent=A`
 * and echo every message (text as text, binary as binary) until the server closes, then
 * `/updateReports?agent=A`. Nothing is special-cased: the connection is the one users get,
 * with the limits raised to what the suite sends and permessage-deflate offered with
 * `client_no_context_takeover` and `client_max_window_bits`, so that every 13.* case finds
 * the parameters it asks for.
 *
 * @since 0.1.0
 */
import { WebSocketClient } from "@effect-websocket/client"
import type { ConnectionError } from "@effect-websocket/client/Errors"
import { Effect, Option, Stream } from "effect"
import { limits } from "./Testee.js"

/**
 * The client options of every case connection: the server testee's limits.
 *
 * @since 0.1.0
 * @category options
 */
export const options: WebSocketClient.ConnectOptions = {
  ...limits,
  handshakeTimeout: 30_000,
  perMessageDeflate: { clientNoContextTakeover: true, threshold: 0 }
}

/**
 * One case: connect and echo until the connection ends. A protocol failure (the case
 * sent something invalid) is the expected end of many cases, so it is not an error here.
 *
 * @since 0.1.0
 * @category running
 */
export const runCase = (baseUrl: string, caseNumber: number, agent: string): Effect.Effect<void, ConnectionError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const ws = yield* WebSocketClient.connect(
        `${baseUrl}/runCase?case=${caseNumber}&agent=${encodeURIComponent(agent)}`,
        options
      )
      yield* Stream.runForEach(ws.messages, (m) => Effect.ignore(ws.send(m))).pipe(Effect.ignore)
      yield* Effect.ignore(ws.closed)
    })
  )

/**
 * The case count the fuzzing server announces.
 *
 * @since 0.1.0
 * @category running
 */
export const caseCount = (baseUrl: string): Effect.Effect<number, ConnectionError | Error> =>
  Effect.scoped(
    Effect.gen(function*() {
      const ws = yield* WebSocketClient.connect(`${baseUrl}/getCaseCount`, options)
      const first = yield* Stream.runHead(ws.messages).pipe(Effect.orElseSucceed(() => Option.none()))
      const n = Option.isSome(first) && typeof first.value === "string" ? Number(first.value) : NaN
      if (!Number.isInteger(n) || n < 0) return yield* Effect.fail(new Error(`bad case count ${String(first)}`))
      return n
    })
  )

/**
 * Asks the fuzzing server to write its reports (it ends its run then).
 *
 * @since 0.1.0
 * @category running
 */
export const updateReports = (baseUrl: string, agent: string): Effect.Effect<void, ConnectionError> =>
  Effect.scoped(
    Effect.flatMap(
      WebSocketClient.connect(`${baseUrl}/updateReports?agent=${encodeURIComponent(agent)}`, options),
      (ws) => Effect.ignore(ws.closed)
    )
  )

/**
 * The whole run: every case (in order, `parallelism` at a time), then the reports. `onCase`
 * hears of each case.
 *
 * @since 0.1.0
 * @category running
 */
export const runAll = (
  baseUrl: string,
  agent: string,
  onCase: (n: number, of: number) => void = () => {},
  parallelism = 1
): Effect.Effect<number, ConnectionError | Error> =>
  Effect.gen(function*() {
    const count = yield* caseCount(baseUrl)
    yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i + 1),
      (n) => Effect.zipRight(Effect.sync(() => onCase(n, count)), runCase(baseUrl, n, agent)),
      { concurrency: parallelism, discard: true }
    )
    yield* updateReports(baseUrl, agent)
    return count
  })
