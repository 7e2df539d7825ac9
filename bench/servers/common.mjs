// Shared by the echo servers: the port from `--port N` (or BENCH_PORT), and exit when the
// orchestrator goes away (its end of our stdin closes), so no server outlives a benchmark.
import { readFileSync } from "node:fs"

export const port = (() => {
  const i = process.argv.indexOf("--port")
  const value = i >= 0 ? process.argv[i + 1] : process.env.BENCH_PORT
  const n = Number(value)
  if (!Number.isInteger(n) || n <= 0) {
    console.error("usage: <server> --port N")
    process.exit(2)
  }
  return n
})()

export const host = "127.0.0.1"

/** `{ key, cert }` when the orchestrator asks for wss:// (BENCH_TLS_KEY / BENCH_TLS_CERT), else undefined. */
export const tlsOptions = (() => {
  const key = process.env.BENCH_TLS_KEY
  const cert = process.env.BENCH_TLS_CERT
  return key && cert ? { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") } : undefined
})()

/** Serve HTTP/2 extended CONNECT as well (BENCH_HTTP2=1, with tlsOptions). */
export const http2 = process.env.BENCH_HTTP2 === "1"

export const exitWithParent = () => {
  process.stdin.on("end", () => process.exit(0))
  process.stdin.on("error", () => process.exit(0))
  process.stdin.resume()
  process.on("SIGTERM", () => process.exit(0))
}
