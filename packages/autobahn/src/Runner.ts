/**
 * The scripted conformance run: kosoku against the echo testee over ws:// and
 * wss://, then the gate over both reports.
 *
 * Per transport: start the testee on port 0 and wait for its
 * `listening ws://HOST:PORT` line; for wss, start the testee with a run-time
 * certificate and put the {@link TlsTunnel} in front of it (kosoku speaks only
 * ws://); run kosoku into `reports/autobahn/<transport>/`; stop the testee
 * (SIGTERM). Then gate both report directories and write their SUMMARY.md.
 *
 * @since 0.1.0
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Either } from "effect"
import type { Scope } from "effect"
import { FileSystem, Path } from "@effect/platform"
import * as Cases from "./Cases.js"
import * as Certificate from "./Certificate.js"
import * as Gate from "./Gate.js"
import * as Proc from "./internal/process.js"
import * as Kosoku from "./Kosoku.js"
import * as TlsTunnel from "./TlsTunnel.js"

/**
 * The repository root (this file is `packages/autobahn/{src,dist}/Runner.*`).
 *
 * @since 0.1.0
 * @category constants
 */
export const repositoryRoot: string = fileURLToPath(new URL("../../../", import.meta.url)).replace(/\/$/, "")

/**
 * kosoku's case parallelism when none is given. Measured on the 2-core machine
 * (shared, load 4-8) against a `ws` stand-in testee. One ws run of 301 cases:
 * -p 1 12.8 s, 2 7.0 s, 4 3.8 s, 8 2.3 s, 16 2.3 s, 32 2.2 s. Whole runs
 * (ws + wss, internal wall time): -p 4 11.3-11.8 s, -p 8 8.5-11.3 s (median
 * 10.2), -p 16 6.7-12.4 s (median 7.2), -p 32 7.0-8.6 s. Verdicts were the
 * same at every value. The floor is the four 2-second 6.4.x cases.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_PARALLELISM = 16

/**
 * The default parallelism when the compression cases run. The 12.x cases are
 * CPU-bound (deflate on both ends), so parallelism buys little there: against
 * the ws stand-in the 517-case run took 303 s at -p 4 and 282 s at -p 16. But
 * 12.2.x/12.3.x send 1000 small messages one after another within 60 s, and
 * with the real testee at -p 16 on a loaded machine three of them timed out on
 * wss. A lower value keeps those cases from starving each other.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_PARALLELISM_WITH_COMPRESSION = 4

/**
 * @since 0.1.0
 * @category models
 */
export interface RunnerOptions {
  readonly include: ReadonlyArray<string>
  readonly exclude: ReadonlyArray<string>
  readonly transports: ReadonlyArray<Gate.Transport>
  readonly parallelism: number
  /** Drops {@link Cases.EXCLUSIONS}: the compression cases run and are judged. */
  readonly withCompression: boolean
  /** Where `ws/` and `wss/` go; default `<root>/reports/autobahn`. */
  readonly reportsDir: string
  /** The testee command (program and leading arguments); `--port 0 --host 127.0.0.1 [--tls ...]` are appended. */
  readonly testee: ReadonlyArray<string>
  readonly root: string
}

/**
 * The testee command the run uses by default: the package's
 * `src/bin/testee.ts` under tsx with the `source` condition (what
 * `pnpm testee` runs, without the pnpm wrapper between the runner and the
 * server process).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultTestee = (root: string): ReadonlyArray<string> => [
  process.execPath,
  "--conditions=source",
  "--import",
  "tsx",
  join(root, "packages/autobahn/src/bin/testee.ts")
]

const splitCommand = (command: string): Array<string> => command.trim().split(/\s+/).filter((s) => s.length > 0)

/**
 * Usage text of `pnpm autobahn`.
 *
 * @since 0.1.0
 * @category cli
 */
export const USAGE = `Usage: pnpm autobahn [options]

Runs the Autobahn cases 1.* to 13.* (kosoku ${Kosoku.KOSOKU_VERSION}) against the echo testee over ws:// and
wss://, writes reports/autobahn/{ws,wss}/ and gates them.

Options:
  -i, --include <case|glob>   run only these cases (repeatable; default: all)
  -x, --exclude <case|glob>   leave these out as well (repeatable)
      --only ws|wss           one transport only
  -p, --parallelism <n>       cases kosoku runs at once (default ${DEFAULT_PARALLELISM};
                              ${DEFAULT_PARALLELISM_WITH_COMPRESSION} with --with-compression)
      --with-compression      run and judge 12.* and 13.* too (or AUTOBAHN_WITH_COMPRESSION=1)
      --reports <dir>         report root (default reports/autobahn)
      --testee "<command>"    testee command (or AUTOBAHN_TESTEE); --port/--host/--tls are appended
  -h, --help                  this text

Standing exclusions: ${Cases.EXCLUSIONS.join(", ")} (${Cases.EXCLUSIONS_REASON}).`

/**
 * Parses `pnpm autobahn` arguments; `Left` carries a usage error (or "help").
 *
 * @since 0.1.0
 * @category cli
 */
export const parseArgs = (
  argv: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv = process.env,
  root: string = repositoryRoot
): Either.Either<RunnerOptions, string> => {
  const include: Array<string> = []
  const exclude: Array<string> = []
  let transports: Array<Gate.Transport> = ["ws", "wss"]
  let parallelism: number | undefined
  let withCompression = env["AUTOBAHN_WITH_COMPRESSION"] === "1" || env["AUTOBAHN_WITH_COMPRESSION"] === "true"
  let reportsDir = join(root, "reports/autobahn")
  let testee: ReadonlyArray<string> = env["AUTOBAHN_TESTEE"] ? splitCommand(env["AUTOBAHN_TESTEE"]) : defaultTestee(root)
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined]
    const value = (): string | undefined => inline ?? argv[++i]
    switch (flag) {
      case "--": // pnpm passes it through on `pnpm autobahn -- ...`
        break
      case "-h":
      case "--help":
        return Either.left("help")
      case "-i":
      case "--include": {
        const v = value()
        if (v === undefined) return Either.left(`${flag} needs a case id or glob`)
        include.push(v)
        break
      }
      case "-x":
      case "--exclude": {
        const v = value()
        if (v === undefined) return Either.left(`${flag} needs a case id or glob`)
        exclude.push(v)
        break
      }
      case "--only": {
        const v = value()
        if (v !== "ws" && v !== "wss") return Either.left("--only takes ws or wss")
        transports = [v]
        break
      }
      case "-p":
      case "--parallelism": {
        const v = Number(value())
        if (!Number.isInteger(v) || v < 1 || v > 256) return Either.left(`${flag} takes an integer from 1 to 256`)
        parallelism = v
        break
      }
      case "--with-compression":
        withCompression = true
        break
      case "--reports": {
        const v = value()
        if (v === undefined) return Either.left("--reports needs a directory")
        reportsDir = resolve(process.cwd(), v)
        break
      }
      case "--testee": {
        const v = value()
        if (v === undefined || splitCommand(v).length === 0) return Either.left("--testee needs a command")
        testee = splitCommand(v)
        break
      }
      default:
        return Either.left(`unknown argument ${arg}`)
    }
  }
  return Either.right({
    include,
    exclude,
    transports,
    parallelism: parallelism ?? (withCompression ? DEFAULT_PARALLELISM_WITH_COMPRESSION : DEFAULT_PARALLELISM),
    withCompression,
    reportsDir,
    testee,
    root
  })
}

/**
 * The selection a run makes from its options.
 *
 * @since 0.1.0
 * @category cli
 */
export const selectionOf = (options: Pick<RunnerOptions, "include" | "exclude" | "withCompression">): Cases.Selection => ({
  include: options.include,
  exclude: options.exclude,
  exclusions: options.withCompression ? [] : Cases.EXCLUSIONS
})

/**
 * What one transport's run did.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransportRun {
  readonly transport: Gate.Transport
  readonly outDir: string
  readonly kosokuExit: number | null
  readonly kosokuSeconds: number
  readonly testee: Proc.StopReport | undefined
  readonly notes: ReadonlyArray<string>
  /** Run-level problems (the testee crashed or did not stop on SIGTERM). */
  readonly problems: ReadonlyArray<string>
}

/**
 * The outcome of `pnpm autobahn`.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunResult {
  readonly runs: ReadonlyArray<TransportRun>
  readonly reports: ReadonlyArray<Gate.GateReport>
  readonly seconds: number
  readonly passed: boolean
}

/** A path relative to the repository root when it is inside it, else absolute. */
const display = (root: string, path: string): string => {
  const r = relative(root, path)
  return r === "" || r.startsWith("..") ? path : r
}

const READY = /^listening (wss?):\/\/(\S+):(\d+)\s*$/

const log = (line: string) => console.log(`[autobahn] ${line}`)

const runTransport = (
  options: RunnerOptions,
  transport: Gate.Transport,
  kosoku: Kosoku.Installation,
  certificate: Certificate.Certificate | undefined
): Effect.Effect<TransportRun, Proc.ProcessError | Kosoku.KosokuError | TlsTunnel.TunnelError> =>
  Effect.gen(function*() {
    const outDir = join(options.reportsDir, transport)
    yield* Effect.promise(() => rm(outDir, { recursive: true, force: true }))
    let stopReport: Proc.StopReport | undefined
    const notes: Array<string> = []
    const problems: Array<string> = []
    const [command, ...leading] = options.testee
    const args = [
      ...leading,
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      ...(transport === "wss" && certificate !== undefined
        ? ["--tls", "--cert", certificate.certFile, "--key", certificate.keyFile]
        : [])
    ]
    const inner = Effect.gen(function*() {
      const testee = yield* Proc.service(command!, args, {
        name: `${transport} testee`,
        cwd: options.root,
        ready: READY,
        readyTimeoutMs: 120_000,
        stopTimeoutMs: 10_000,
        onLine: (line, stream) => console.log(`[${transport} testee${stream === "stderr" ? " stderr" : ""}] ${line}`),
        onStopped: (report) => {
          stopReport = report
        }
      })
      const [, scheme, host, port] = READY.exec(testee.readyLine)!
      if (scheme !== transport) {
        return yield* new Proc.ProcessError({
          command: `${transport} testee`,
          detail: `announced ${scheme}:// where ${transport}:// was asked for`
        })
      }
      let url = `ws://${host}:${port}`
      let tunnel: TlsTunnel.TlsTunnel | undefined
      if (transport === "wss") {
        tunnel = yield* TlsTunnel.make({ targetHost: host!, targetPort: Number(port), ca: certificate!.certPem })
        url = `ws://127.0.0.1:${tunnel.port}`
        log(`wss: kosoku → ${url} (plain) → TLS tunnel → wss://${host}:${port} (testee)`)
        notes.push(
          `wss: kosoku ${Kosoku.KOSOKU_VERSION} cannot open wss:// URLs, so it ran through the TLS tunnel ` +
            `(plain TCP on ${url} → TLS to the testee on wss://${host}:${port}); the testee spoke TLS on every connection.`
        )
      }
      const start = performance.now()
      log(
        `${transport}: kosoku ${
          Kosoku.cliArgs({
            url,
            include: options.include,
            exclude: [...selectionOf(options).exclusions, ...options.exclude],
            parallelism: options.parallelism,
            outDir: display(options.root, outDir)
          }).join(" ")
        }`
      )
      const result = yield* Kosoku.run(kosoku, {
        url,
        include: options.include,
        exclude: [...selectionOf(options).exclusions, ...options.exclude],
        parallelism: options.parallelism,
        outDir,
        onLine: (line) => console.log(`[${transport} kosoku] ${line}`)
      })
      const seconds = (performance.now() - start) / 1000
      notes.push(
        `kosoku ${Kosoku.KOSOKU_VERSION} with -p ${options.parallelism}: ${seconds.toFixed(1)} s, exit ${result.code}.`
      )
      if (tunnel !== undefined) {
        notes.push(
          `TLS tunnel: ${tunnel.accepted()} connections, ${tunnel.handshakeFailures()} failed TLS handshakes.`
        )
        if (tunnel.handshakeFailures() > 0) problems.push(`${tunnel.handshakeFailures()} TLS handshakes failed`)
      }
      if (testee.exitedEarly()) {
        problems.push(`the ${transport} testee exited during the run (${JSON.stringify(testee.exit())})`)
      }
      return { code: result.code, seconds }
    })
    const { code, seconds } = yield* Effect.scoped(inner)
    if (stopReport !== undefined) {
      const r: Proc.StopReport = stopReport
      const clean = !r.killed && !r.exitedEarly && (r.code === 0 || r.signal === "SIGTERM")
      notes.push(
        `testee stopped with SIGTERM: ${
          r.killed ? "did not exit within 10 s, killed" : `exit code ${r.code}${r.signal ? `, signal ${r.signal}` : ""}`
        }.`
      )
      if (!clean && !r.exitedEarly) problems.push(`the ${transport} testee did not exit cleanly on SIGTERM`)
    }
    return {
      transport,
      outDir,
      kosokuExit: code,
      kosokuSeconds: seconds,
      testee: stopReport,
      notes,
      problems
    }
  })

const tempDirectory: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "autobahn-cert-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

/**
 * The whole run: install/find kosoku, run each transport, gate the reports,
 * print the summaries. Fails only when the run itself could not happen; a
 * conformance failure is `passed: false`.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  options: RunnerOptions
): Effect.Effect<
  RunResult,
  Proc.ProcessError | Kosoku.KosokuError | TlsTunnel.TunnelError | Certificate.CertificateError,
  FileSystem.FileSystem | Path.Path
> =>
  Effect.scoped(Effect.gen(function*() {
    const started = performance.now()
    const selection = selectionOf(options)
    log(Cases.describeExclusions(selection))
    log(
      `${Cases.expectedCases(selection).length} of ${Cases.suite.cases.length} cases selected; transports: ${
        options.transports.join(", ")
      }; parallelism ${options.parallelism}`
    )
    const kosoku = yield* Kosoku.ensure(options.root, log)
    log(`kosoku ${kosoku.version} (${kosoku.layout}: ${display(options.root, kosoku.python)})`)
    let certificate: Certificate.Certificate | undefined
    if (options.transports.includes("wss")) {
      const dir = yield* tempDirectory
      const backend = process.env["AUTOBAHN_CERT_BACKEND"]
      certificate = yield* Certificate.generate(dir, {
        backend: backend === "openssl" || backend === "selfsigned" ? backend : undefined
      })
      log(`wss certificate for 127.0.0.1/localhost made with ${certificate.backend}`)
    }
    const runs: Array<TransportRun> = []
    for (const transport of options.transports) {
      runs.push(yield* runTransport(options, transport, kosoku, certificate))
    }
    const reports: Array<Gate.GateReport> = []
    for (const r of runs) {
      const report = yield* Gate.gateDirectory(r.outDir, {
        label: `${r.transport} (${display(options.root, r.outDir)})`,
        transport: r.transport,
        selection,
        notes: [...r.notes, ...r.problems.map((p) => `**Run problem:** ${p}`)]
      })
      reports.push(report)
      console.log("")
      console.log(Gate.renderMarkdown(report))
    }
    const seconds = (performance.now() - started) / 1000
    const problems = runs.flatMap((r) => r.problems)
    const passed = reports.every((r) => r.passed) && problems.length === 0
    console.log(
      `Wall time: ${seconds.toFixed(1)} s (${
        runs.map((r) => `${r.transport} kosoku ${r.kosokuSeconds.toFixed(1)} s`).join(", ")
      }). Summaries: ${runs.map((r) => display(options.root, join(r.outDir, "SUMMARY.md"))).join(", ")}`
    )
    console.log(Gate.renderOverall(reports, problems))
    return { runs, reports, seconds, passed }
  }))
