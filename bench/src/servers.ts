/**
 * The server registry. A server is a command that starts a WebSocket echo server on a given port,
 * in its own process, bound to 127.0.0.1, and prints a line containing `listening` when it is ready.
 *
 * To add a server, add an entry: `{port}` in `command` is replaced by the port (it is also in the
 * environment as BENCH_PORT). Servers should echo Text as Text and Binary as Binary, accept
 * permessage-deflate when offered (or set `deflate: false`), answer a Close and then close TCP, and
 * exit when their stdin closes (the orchestrator also kills them, but stdin EOF covers a crashed
 * orchestrator). CPU and RSS are summed over the process and its descendants, so prefer
 * `node --import tsx` (one process) over the `tsx` CLI (a wrapper process plus the real one).
 */
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

export interface ServerSpec {
  readonly name: string
  readonly description: string
  /** argv; `{port}` is replaced by the port. Runs with the repository root as working directory. */
  readonly command: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  /** Whether the server negotiates permessage-deflate (default true). */
  readonly deflate?: boolean
  /**
   * The transports it serves besides plain TCP: with `tls` it reads BENCH_TLS_KEY and
   * BENCH_TLS_CERT (PEM file paths) and serves wss://; with `h2` and BENCH_HTTP2=1 it serves
   * HTTP/2 extended CONNECT (RFC 8441) on that TLS port too.
   */
  readonly transports?: ReadonlyArray<"tls" | "h2">
  /** Why the server cannot run here, or undefined when it can. */
  readonly unavailable?: () => string | undefined
  /** Runs only when named in `--servers` (a floor for one question, not a peer). */
  readonly onRequest?: boolean
}

export const benchDir = join(dirname(fileURLToPath(import.meta.url)), "..")
export const repoRoot = join(benchDir, "..")
const require = createRequire(join(benchDir, "package.json"))
const serverFile = (name: string) => join(benchDir, "servers", name)

const bunBinary = (): string | undefined => {
  try {
    const p = join(dirname(require.resolve("bun/package.json")), "bin", "bun.exe")
    return existsSync(p) ? p : undefined
  } catch {
    return undefined
  }
}

/** `node [BENCH_NODE_FLAGS] [flags] <file> --port {port} ...args`: an entry with Node flags of its own. */
const withFlags = (flags: ReadonlyArray<string>, file: string, ...args: ReadonlyArray<string>): ReadonlyArray<string> => [
  process.execPath,
  ...(process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter((f) => f !== ""),
  ...flags,
  file,
  "--port",
  "{port}",
  ...args
]

/** `node [BENCH_NODE_FLAGS] <file> --port {port} ...args`: plain JavaScript, packages resolved to their `dist/`. */
export const plainNode = (file: string, ...args: ReadonlyArray<string>): ReadonlyArray<string> => withFlags([], file, ...args)

const builtMissing = () => {
  const built = join(repoRoot, "packages", "server", "dist", "index.js")
  return existsSync(built) ? undefined : `${built} does not exist: run \`pnpm build\` (bench/run.sh does)`
}

const bufferutilMissing = () => {
  try {
    require.resolve("bufferutil")
    return undefined
  } catch {
    return "bufferutil is not installed"
  }
}

export const servers: ReadonlyArray<ServerSpec> = [
  {
    name: "ws",
    description: "ws 8.23 WebSocketServer echo, plain JavaScript masking (WS_NO_BUFFER_UTIL=1)",
    command: plainNode(serverFile("ws.mjs")),
    env: { WS_NO_BUFFER_UTIL: "1" },
    transports: ["tls"]
  },
  {
    name: "ws-bufferutil",
    description: "ws 8.23 WebSocketServer echo with the bufferutil native addon",
    command: plainNode(serverFile("ws.mjs")),
    unavailable: bufferutilMissing
  },
  {
    name: "ws-in-effect",
    description:
      "ws with WS_NO_BUFFER_UTIL=1 in a process that has loaded effect and @effect/platform-node and runs a fiber (the echo runs no Effect): ws's memory in the process an Effect application has",
    command: plainNode(serverFile("ws.mjs"), "--effect"),
    env: { WS_NO_BUFFER_UTIL: "1" }
  },
  {
    name: "ws-bufferutil-in-effect",
    description:
      "ws-bufferutil in a process that has loaded effect and @effect/platform-node and runs a fiber: the large-message floor (a heap the size of an Effect program's under ws's own echo)",
    command: plainNode(serverFile("ws.mjs"), "--effect"),
    unavailable: bufferutilMissing
  },
  {
    name: "bun",
    description: "Bun.serve websocket echo (uWebSockets), the `bun` npm package's binary",
    command: [bunBinary() ?? "bun", serverFile("bun.mjs"), "--port", "{port}"],
    unavailable: () => (bunBinary() === undefined ? "the bun package's binary is missing" : undefined)
  },
  {
    name: "effect-platform",
    description:
      "@effect/platform-node 0.108 NodeSocketServer.layerWebSocket echo (ws underneath, no bufferutil, as a default install)",
    command: plainNode(serverFile("effect-platform-node.mjs")),
    env: { WS_NO_BUFFER_UTIL: "1" }
  },
  {
    name: "net-raw",
    description: "node:net: answers the upgrade, then echoes every read verbatim (no framing): the ceiling",
    command: plainNode(serverFile("net-raw.mjs"))
  },
  {
    name: "net-effect",
    description: "net-raw with Effect and @effect/platform-node loaded and one fiber per connection waiting in Effect.async (no Scope): Effect's floor for a connection",
    command: plainNode(serverFile("net-raw.mjs"), "--effect"),
    onRequest: true
  },
  // Our server (servers/ours.mjs on the packages' compiled output, as a user runs it), one entry per
  // handler style; skipped, with a note, until `pnpm build` has run (bench/run.sh runs it).
  {
    name: "ours-stream",
    description: "@effect-websocket/server WebSocketServer.layer, echo with Stream.runForEach(ws.messages, ws.send)",
    command: plainNode(serverFile("ours.mjs"), "--mode", "stream"),
    unavailable: builtMissing,
    transports: ["tls", "h2"]
  },
  {
    name: "ours-stream-released",
    description:
      "ours-stream on an Effect whose Sink.forEach lets go of each chunk's Effect once it has run (servers/effect-sink-release.mjs, applied as the module loads): what runForEach costs with that change in Effect",
    command: withFlags(["--import", serverFile("effect-sink-release.mjs")], serverFile("ours.mjs"), "--mode", "stream"),
    unavailable: builtMissing
  },
  {
    name: "ours-sink",
    description: "@effect-websocket/server WebSocketServer.layer, echo with ws.messages.pipe(Stream.run(ws.sink))",
    command: plainNode(serverFile("ours.mjs"), "--mode", "sink"),
    unavailable: builtMissing
  },
  {
    name: "ours-fast",
    description: "@effect-websocket/server WebSocketServer.layer, echo with ws.run(m => ws.unsafeSend(m)) (no Effect per message)",
    command: plainNode(serverFile("ours.mjs"), "--mode", "fast"),
    unavailable: builtMissing,
    transports: ["tls", "h2"]
  },
  {
    name: "ours-fast-traced",
    description: "ours-fast with a tracer installed that records spans (so each connection gets its span): what tracing costs",
    command: plainNode(serverFile("ours.mjs"), "--mode", "fast", "--traced"),
    unavailable: builtMissing
  },
  {
    name: "ours-socket-interop",
    description: "@effect-websocket/server SocketInterop.layerSocketServer with the effect-platform entry's handler",
    command: plainNode(serverFile("ours.mjs"), "--mode", "socket"),
    unavailable: builtMissing
  }
]

/**
 * Before/after: with BENCH_BASELINE set to another checkout of this repository (built with
 * `pnpm build`), `base-fast`, `base-stream` and `base-sink` run that checkout's echo server next to ours.
 */
const baseline = process.env.BENCH_BASELINE
if (baseline !== undefined && baseline !== "") {
  const file = join(baseline, "bench", "servers", "ours.mjs")
  const missing = () =>
    existsSync(join(baseline, "packages", "server", "dist", "index.js"))
      ? undefined
      : `${baseline} is not built: run \`pnpm build\` there`
  for (const mode of ["fast", "stream", "sink"] as const) {
    ;(servers as Array<ServerSpec>).push({
      name: `base-${mode}`,
      description: `ours-${mode} from the checkout at ${baseline} (BENCH_BASELINE), for before/after figures`,
      command: plainNode(file, "--mode", mode),
      unavailable: missing,
      transports: ["tls", "h2"]
    })
  }
}

/** The servers ratios are computed against. */
export const BASELINES = ["ws", "effect-platform"] as const

/** Servers run when `--servers` is not given: every available one. */
export const defaultServers = (): ReadonlyArray<ServerSpec> => servers.filter((s) => s.onRequest !== true && s.unavailable?.() === undefined)
