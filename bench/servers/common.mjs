// Shared by the echo servers: the port from `--port N` (or BENCH_PORT), and exit when the
// orchestrator goes away (its end of our stdin closes), so no server outlives a benchmark.
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

export const exitWithParent = () => {
  process.stdin.on("end", () => process.exit(0))
  process.stdin.on("error", () => process.exit(0))
  process.stdin.resume()
  process.on("SIGTERM", () => process.exit(0))
}
