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
import { Deferred, Effect, Either, Fiber, Option } from "effect"
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
 * kosoku's case parallelism per transport when none is given (`-p`).
 *
 * The full suite is dominated by 12.* and 13.*: each case sends 1000
 * compressed messages one at a time and waits for each echo, with a limit of
 * its own (60 s for the 16- and 64-byte cases 12.x.1/12.x.2, up to 480 s). The
 * testee's one event loop does the deflate work of every case on its
 * connection, so more cases at once mostly make each small-message case wait
 * behind the large ones. Measured on the 2-core machine (both transports,
 * `pnpm autobahn` wall time, the worst case's share of its own limit):
 * sequential -p 2 469 s (4%), -p 4 392 s (14%), -p 8 339 s (26%); concurrent
 * -p 2 340 s (5%) and 468 s next to another full run (10%), -p 3 593 s next to
 * another full run (30%), -p 4 322 s (22%). Concurrent -p 2 is as fast as any
 * setting within the noise and keeps the widest margin.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_PARALLELISM = 2

/**
 * Whether the ws and wss runs go at the same time by default (`--concurrent`)
 * or one after the other (`--sequential`). Each transport has its own testee
 * process, which is the bottleneck of its run (about 80% of a core), so two at
 * once use both cores: see {@link DEFAULT_PARALLELISM} for the measurements.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_CONCURRENT_TRANSPORTS = true

/**
 * How long one transport's kosoku run may take before it is stopped and the run
 * fails (`--timeout`, in minutes). A full run takes a few minutes per transport;
 * this only turns a hang into a clear failure well inside a CI job's limit.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_TIMEOUT_MINUTES = 30

/**
 * The cases that run a second time, over ws:// only, against a testee on the server's
 * default permessage-deflate memory policy (`--deflate default`: shared compressor and
 * decompressor, so every connection answers both `*_no_context_takeover`). The main run's
 * testee accepts each offer as made, which 13.* checks; 12.* then shows that the default
 * interoperates with the suite's client (12.* offers `permessage-deflate` plainly). Only
 * the cases of these patterns that the main selection holds are run.
 *
 * @since 0.1.0
 * @category constants
 */
export const DEFAULT_POLICY_CASES: ReadonlyArray<string> = ["12.*"]

/**
 * @since 0.1.0
 * @category models
 */
export interface RunnerOptions {
  /** Cases run again on ws:// with the default deflate policy ({@link DEFAULT_POLICY_CASES}); empty: none. */
  readonly defaultPolicyCases: ReadonlyArray<string>
  readonly include: ReadonlyArray<string>
  readonly exclude: ReadonlyArray<string>
  readonly transports: ReadonlyArray<Gate.Transport>
  readonly parallelism: number
  /** Run ws and wss at the same time rather than one after the other. */
  readonly concurrentTransports: boolean
  /** The longest one transport's kosoku run may take, in minutes. */
  readonly timeoutMinutes: number
  /** Where `ws/` and `wss/` go; default `<root>/reports/autobahn`. */
  readonly reportsDir: string
  /** The testee command (program and leading arguments); `--port 0 --host 127.0.0.1 [--tls ...]` are appended. */
  readonly testee: ReadonlyArray<string>
  /** The client testee command; `--url ws://127.0.0.1:PORT --parallelism N` are appended. */
  readonly clientTestee: ReadonlyArray<string>
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

/**
 * The client testee command: `src/bin/client-testee.ts` under tsx with the `source`
 * condition; it drives kosoku's fuzzing server with `WebSocketClient`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultClientTestee = (root: string): ReadonlyArray<string> => [
  process.execPath,
  "--conditions=source",
  "--import",
  "tsx",
  join(root, "packages/autobahn/src/bin/client-testee.ts")
]

const splitCommand = (command: string): Array<string> => command.trim().split(/\s+/).filter((s) => s.length > 0)

/**
 * Usage text of `pnpm autobahn`.
 *
 * @since 0.1.0
 * @category cli
 */
export const USAGE = `Usage: pnpm autobahn [options]

Runs every Autobahn case, 1.* to 13.* (kosoku ${Kosoku.KOSOKU_VERSION}, ${Cases.suite.cases.length} cases), against the echo
testee over ws:// and wss://, with kosoku as the fuzzing server against the client testee, then
${DEFAULT_POLICY_CASES.join(" ")} over ws:// against the testee on the default permessage-deflate policy; writes
reports/autobahn/{ws,wss,client,default-policy/ws}/ and gates them. Exclusions: none.

Options:
  -i, --include <case|glob>   run only these cases (repeatable; default: all); the gate judges only them
  -x, --exclude <case|glob>   leave these out of this run (repeatable)
      --only ws|wss|client    one run only (client: the client against the fuzzing server)
  -p, --parallelism <n>       cases run at once (kosoku's -p; the client testee's --parallelism) (default ${DEFAULT_PARALLELISM})
      --concurrent            run ws and wss at the same time, then the client${DEFAULT_CONCURRENT_TRANSPORTS ? " (default)" : ""}
      --sequential            run ws, then wss, then client${DEFAULT_CONCURRENT_TRANSPORTS ? "" : " (default)"}
      --timeout <minutes>     stop a transport's kosoku run after this long and fail (default ${DEFAULT_TIMEOUT_MINUTES})
      --reports <dir>         report root (default reports/autobahn)
      --testee "<command>"    testee command (or AUTOBAHN_TESTEE); --port/--host/--tls are appended
      --no-default-policy     skip the second run of ${DEFAULT_POLICY_CASES.join(" ")} (ws://) against the testee on the
                              default permessage-deflate policy (--deflate default); it runs after the main run
  -h, --help                  this text

Exit code: 0 when every case passes on every transport, 1 when one does not (or a testee crashed), 2 when the run
could not happen. The last line is always: autobahn: N passed, M failed`

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
  let transports: Array<Gate.Transport> = ["ws", "wss", "client"]
  let parallelism = DEFAULT_PARALLELISM
  let concurrentTransports = DEFAULT_CONCURRENT_TRANSPORTS
  let timeoutMinutes = DEFAULT_TIMEOUT_MINUTES
  let reportsDir = join(root, "reports/autobahn")
  let defaultPolicyCases = DEFAULT_POLICY_CASES
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
        if (v !== "ws" && v !== "wss" && v !== "client") return Either.left("--only takes ws, wss or client")
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
      case "--concurrent":
        concurrentTransports = true
        break
      case "--sequential":
        concurrentTransports = false
        break
      case "--timeout": {
        const v = Number(value())
        if (!Number.isFinite(v) || v <= 0) return Either.left(`${flag} takes a number of minutes above 0`)
        timeoutMinutes = v
        break
      }
      case "--reports": {
        const v = value()
        if (v === undefined) return Either.left("--reports needs a directory")
        reportsDir = resolve(process.cwd(), v)
        break
      }
      case "--no-default-policy":
        defaultPolicyCases = []
        break
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
    defaultPolicyCases,
    include,
    exclude,
    transports,
    parallelism,
    concurrentTransports,
    timeoutMinutes,
    reportsDir,
    testee,
    clientTestee: env["AUTOBAHN_CLIENT_TESTEE"] ? splitCommand(env["AUTOBAHN_CLIENT_TESTEE"]) : defaultClientTestee(root),
    root
  })
}

/**
 * The selection a run makes from its options: the whole suite unless `-i`/`-x`
 * narrow it.
 *
 * @since 0.1.0
 * @category cli
 */
export const selectionOf = (options: Pick<RunnerOptions, "include" | "exclude">): Cases.Selection => ({
  include: options.include,
  exclude: options.exclude
})

/**
 * The closing tally of a run that could not complete (no Python, a testee that
 * never listened, ...): every case it should have judged counts as failed, so
 * the last line still reads `autobahn: 0 passed, M failed`.
 *
 * @since 0.1.0
 * @category cli
 */
export const abortedTally = (
  options: RunnerOptions
): { readonly passed: number; readonly failed: number; readonly skipped: number } => {
  const expected = Cases.expectedCases(selectionOf(options)).length
  const policyRun = defaultPolicyRun(options)
  const second = policyRun === undefined ? 0 : Cases.expectedCases(selectionOf(policyRun)).length
  return {
    passed: 0,
    failed: expected * options.transports.length + second,
    skipped: (Cases.suite.cases.length - expected) * options.transports.length
  }
}

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
      const kosokuOptions = {
        url,
        include: options.include,
        exclude: options.exclude,
        parallelism: options.parallelism
      }
      log(`${transport}: kosoku ${Kosoku.cliArgs({ ...kosokuOptions, outDir: display(options.root, outDir) }).join(" ")}`)
      const result = yield* Kosoku.run(kosoku, {
        ...kosokuOptions,
        outDir,
        onLine: (line) => console.log(`[${transport} kosoku] ${line}`)
      }).pipe(Effect.timeout(options.timeoutMinutes * 60_000), Effect.option)
      const seconds = (performance.now() - start) / 1000
      const code = Option.match(result, { onNone: () => null, onSome: (r) => r.code })
      if (Option.isNone(result)) {
        notes.push(`kosoku ${Kosoku.KOSOKU_VERSION} with -p ${options.parallelism}: stopped after ${seconds.toFixed(1)} s.`)
        problems.push(`${transport}: kosoku did not finish within ${options.timeoutMinutes} min (--timeout) and was stopped`)
      } else {
        notes.push(
          `kosoku ${Kosoku.KOSOKU_VERSION} with -p ${options.parallelism}: ${seconds.toFixed(1)} s, exit ${
            result.value.code ?? result.value.signal
          }.`
        )
        // 0: every case passed by kosoku's standard; 1: some did not (the gate says which), or Python failed
        // before writing a report (the gate then finds none). A signal or another code means kosoku broke.
        if (result.value.code !== 0 && result.value.code !== 1) {
          problems.push(
            `${transport}: kosoku ended abnormally (${
              result.value.code === null ? `signal ${result.value.signal}` : `exit ${result.value.code}`
            })`
          )
        }
      }
      if (tunnel !== undefined) {
        notes.push(
          `TLS tunnel: ${tunnel.accepted()} connections, ${tunnel.handshakeFailures()} failed TLS handshakes.`
        )
        if (tunnel.handshakeFailures() > 0) problems.push(`${tunnel.handshakeFailures()} TLS handshakes failed`)
      }
      if (testee.exitedEarly()) {
        problems.push(`the ${transport} testee exited during the run (${JSON.stringify(testee.exit())})`)
      }
      return { code, seconds }
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

/**
 * The client run: kosoku as the fuzzing server on 127.0.0.1 (port chosen by the OS), the
 * client testee pointed at it; kosoku writes `reports/autobahn/client/` and exits once the
 * testee asked for the reports. A testee that fails stops kosoku (then the reports are
 * missing and the gate fails); both together are bounded by `--timeout`.
 */
const runClient = (
  options: RunnerOptions,
  kosoku: Kosoku.Installation
): Effect.Effect<TransportRun, Proc.ProcessError | Kosoku.KosokuError> =>
  Effect.gen(function*() {
    const outDir = join(options.reportsDir, "client")
    yield* Effect.promise(() => rm(outDir, { recursive: true, force: true }))
    const notes: Array<string> = []
    const problems: Array<string> = []
    const listening = yield* Deferred.make<string>()
    const start = performance.now()
    const serverOptions = { include: options.include, exclude: options.exclude, outDir: display(options.root, outDir) }
    log(`client: kosoku ${Kosoku.serverCliArgs(serverOptions).join(" ")}`)
    const server = yield* Effect.fork(
      Kosoku.runServer(kosoku, {
        ...serverOptions,
        outDir,
        onListening: (url) => Deferred.unsafeDone(listening, Effect.succeed(url)),
        onLine: (line) => console.log(`[client kosoku] ${line}`)
      })
    )
    const exchange = Effect.gen(function*() {
      const url = yield* Effect.raceFirst(
        Deferred.await(listening),
        Effect.flatMap(Fiber.join(server), (r) =>
          Effect.fail(new Kosoku.KosokuError({ detail: `the fuzzing server ended before listening (exit ${r.code})` })))
      )
      const [command, ...leading] = options.clientTestee
      log(`client: testee → ${url}`)
      const testee = yield* Proc.run(command!, [...leading, "--url", url, "--parallelism", String(options.parallelism)], {
        cwd: options.root,
        onLine: (line, stream) => console.log(`[client testee${stream === "stderr" ? " stderr" : ""}] ${line}`)
      })
      if (testee.code !== 0) {
        problems.push(`client: the client testee exited with ${testee.code ?? testee.signal}`)
        yield* Fiber.interrupt(server)
        return null
      }
      // kosoku writes its reports after /updateReports and exits by itself
      const result = yield* Fiber.join(server).pipe(Effect.timeout(120_000), Effect.option)
      if (Option.isNone(result)) {
        problems.push("client: the fuzzing server did not exit within 120 s of the last case")
        yield* Fiber.interrupt(server)
        return null
      }
      if (result.value.code !== 0 && result.value.code !== 1) {
        problems.push(`client: kosoku ended abnormally (${result.value.code ?? result.value.signal})`)
      }
      return result.value.code
    })
    const outcome = yield* exchange.pipe(Effect.timeout(options.timeoutMinutes * 60_000), Effect.option)
    const seconds = (performance.now() - start) / 1000
    if (Option.isNone(outcome)) {
      yield* Fiber.interrupt(server)
      problems.push(`client: the run did not finish within ${options.timeoutMinutes} min (--timeout) and was stopped`)
    }
    const code = Option.getOrNull(outcome)
    notes.push(
      `kosoku ${Kosoku.KOSOKU_VERSION} -m fuzzingserver on 127.0.0.1, the client testee ${options.parallelism} case(s) at a time: ${
        seconds.toFixed(1)
      } s, exit ${code}.`
    )
    return {
      transport: "client" as const,
      outDir,
      kosokuExit: code,
      kosokuSeconds: seconds,
      testee: undefined,
      notes,
      problems
    }
  })

/**
 * The second run's options: the main selection's cases among `defaultPolicyCases`, the
 * testee with `--deflate default`, reports under `<reports>/default-policy/`. Undefined when
 * there is nothing to run (no such case selected, or ws:// not among the transports).
 *
 * @since 0.1.0
 * @category running
 */
export const defaultPolicyRun = (options: RunnerOptions): RunnerOptions | undefined => {
  if (options.defaultPolicyCases.length === 0 || !options.transports.includes("ws")) return undefined
  const ids = Cases.expectedCases(selectionOf(options)).filter((id) =>
    options.defaultPolicyCases.some((p) => Cases.matches(p, id))
  )
  if (ids.length === 0) return undefined
  const whole = options.include.length === 0 && options.exclude.length === 0
  return {
    ...options,
    include: whole ? options.defaultPolicyCases : ids,
    exclude: [],
    transports: ["ws"],
    reportsDir: join(options.reportsDir, "default-policy"),
    testee: [...options.testee, "--deflate", "default"]
  }
}

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
        options.transports.join(options.concurrentTransports ? " and " : " then ")
      }${options.concurrentTransports && options.transports.length > 1 ? " at the same time" : ""}; kosoku -p ${options.parallelism}`
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
    // The server transports run together (or in turn); the client run follows them, so that it never takes the
    // cores the server runs' 12.*/13.* cases are timed on (a third run at once was not measured).
    const runs: Array<TransportRun> = [...yield* Effect.forEach(
      options.transports.filter((t) => t !== "client"),
      (transport) => runTransport(options, transport, kosoku, certificate),
      { concurrency: options.concurrentTransports ? "unbounded" : 1 }
    )]
    if (options.transports.includes("client")) runs.push(yield* runClient(options, kosoku))
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
    const policyRun = defaultPolicyRun(options)
    if (policyRun !== undefined) {
      log(`ws with the default permessage-deflate policy: ${policyRun.include.join(" ")}`)
      const r = yield* runTransport(policyRun, "ws", kosoku, undefined)
      runs.push(r)
      const report = yield* Gate.gateDirectory(r.outDir, {
        label: `ws, default deflate policy (${display(options.root, r.outDir)})`,
        transport: "ws",
        selection: selectionOf(policyRun),
        notes: [
          "The testee ran with `--deflate default` (shared compressor and decompressor).",
          ...r.notes,
          ...r.problems.map((p) => `**Run problem:** ${p}`)
        ]
      })
      // This report judges only its cases by design: the rest of the suite is not "skipped".
      reports.push({ ...report, suiteSize: report.expected.length })
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
    console.log(Gate.renderOverall(reports, problems).trimEnd())
    return { runs, reports, seconds, passed }
  }))
