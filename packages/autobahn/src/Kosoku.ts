/**
 * kosoku, the fuzzing client (a Python package with a native module that runs
 * Autobahn's own case files), installed into a project-local virtual
 * environment and run from there.
 *
 * - The venv is `.venv/autobahn` at the repository root (gitignored), holding
 *   exactly `kosoku==0.1.0`. It is created and filled when missing or when the
 *   installed version differs: `python3 -m venv`, then a quiet
 *   `pip install --no-input`; nothing reads stdin.
 * - Where `python3 -m venv` is unavailable (Debian without `python3-venv`), the
 *   package is installed with `python3 -m pip install --target` into
 *   `.venv/autobahn/site` instead and run with `PYTHONPATH`.
 *
 * @since 0.1.0
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { Data, Effect } from "effect"
import * as Proc from "./internal/process.js"

/**
 * The pinned kosoku version.
 *
 * @since 0.1.0
 * @category constants
 */
export const KOSOKU_VERSION = "0.1.0"

/**
 * The venv directory, relative to the repository root.
 *
 * @since 0.1.0
 * @category constants
 */
export const VENV_DIR = ".venv/autobahn"

/**
 * @since 0.1.0
 * @category errors
 */
export class KosokuError extends Data.TaggedError("KosokuError")<{
  readonly detail: string
}> {
  override get message(): string {
    return `kosoku: ${this.detail}`
  }
}

/**
 * How to start kosoku's Python.
 *
 * @since 0.1.0
 * @category models
 */
export interface Installation {
  readonly python: string
  readonly env: NodeJS.ProcessEnv
  readonly version: string
  /** "venv" or "target" (pip --target fallback). */
  readonly layout: "venv" | "target"
}

const ENTRY = "import sys; from kosoku._cli import main; sys.argv[0] = 'kosoku'; main()"

const quietEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  PIP_DISABLE_PIP_VERSION_CHECK: "1",
  PIP_NO_INPUT: "1",
  PYTHONDONTWRITEBYTECODE: "1",
  ...extra
})

const systemPython = (): string => process.env["PYTHON"] ?? "python3"

const installedVersion = (python: string, env: NodeJS.ProcessEnv) =>
  Proc.run(python, ["-c", "import importlib.metadata as m; import kosoku; print(m.version('kosoku'))"], { env }).pipe(
    Effect.map((r) => (r.code === 0 ? r.stdout.trim() : undefined)),
    Effect.orElseSucceed(() => undefined)
  )

const must = (what: string) => (r: Proc.RunResult) =>
  r.code === 0
    ? Effect.void
    : Effect.fail(new KosokuError({ detail: `${what} failed (exit ${r.code ?? r.signal}):\n${(r.stderr || r.stdout).trim()}` }))

const toKosokuError = (e: Proc.ProcessError) => new KosokuError({ detail: e.message })

/**
 * Finds or installs kosoku under `<root>/.venv/autobahn`. `log` receives one
 * line per step taken.
 *
 * @since 0.1.0
 * @category constructors
 */
export const ensure = (
  root: string,
  log: (line: string) => void = () => {}
): Effect.Effect<Installation, KosokuError> =>
  Effect.gen(function*() {
    const dir = join(root, VENV_DIR)
    const venvPython = join(dir, "bin", "python")
    const target = join(dir, "site")
    const pin = `kosoku==${KOSOKU_VERSION}`

    if (existsSync(venvPython)) {
      const env = quietEnv()
      if ((yield* installedVersion(venvPython, env)) === KOSOKU_VERSION) {
        return { python: venvPython, env, version: KOSOKU_VERSION, layout: "venv" } as const
      }
    }
    if (existsSync(target)) {
      const env = quietEnv({ PYTHONPATH: target })
      if ((yield* installedVersion(systemPython(), env)) === KOSOKU_VERSION) {
        return { python: systemPython(), env, version: KOSOKU_VERSION, layout: "target" } as const
      }
    }

    const viaTarget = (why: string) =>
      Effect.gen(function*() {
        log(`${why}; using pip --target`)
        const env = quietEnv({ PYTHONPATH: target })
        yield* Proc.run(systemPython(), ["-m", "pip", "install", "--quiet", "--no-input", "--target", target, pin], {
          env
        }).pipe(
          Effect.mapError(toKosokuError),
          Effect.flatMap(must(`pip install --target ${target} ${pin} (install python3-venv or python3-pip)`))
        )
        const version = yield* installedVersion(systemPython(), env)
        if (version !== KOSOKU_VERSION) {
          return yield* new KosokuError({ detail: `installed into ${target} but found version ${version}` })
        }
        return { python: systemPython(), env, version, layout: "target" } as const
      })

    if (!existsSync(venvPython)) {
      log(`creating ${VENV_DIR} (python3 -m venv)`)
      const created = yield* Proc.run(systemPython(), ["-m", "venv", dir], { env: quietEnv() }).pipe(
        Effect.mapError(toKosokuError)
      )
      if (created.code !== 0 || !existsSync(venvPython)) {
        return yield* viaTarget(`python3 -m venv is unavailable (${created.stderr.trim().split("\n").pop() ?? ""})`)
      }
    }
    const env = quietEnv()
    // A venv left half-made by a python3 -m venv without ensurepip (Debian without python3-venv) has no pip.
    const hasPip = yield* Proc.run(venvPython, ["-m", "pip", "--version"], { env }).pipe(
      Effect.map((r) => r.code === 0),
      Effect.orElseSucceed(() => false)
    )
    if (!hasPip) return yield* viaTarget(`${VENV_DIR} has no pip`)
    log(`installing ${pin} into ${VENV_DIR}`)
    yield* Proc.run(venvPython, ["-m", "pip", "install", "--quiet", "--no-input", pin], { env }).pipe(
      Effect.mapError(toKosokuError),
      Effect.flatMap(must(`pip install ${pin}`))
    )
    const version = yield* installedVersion(venvPython, env)
    if (version !== KOSOKU_VERSION) {
      return yield* new KosokuError({ detail: `installed ${pin} but found version ${version}` })
    }
    return { python: venvPython, env, version, layout: "venv" } as const
  })

/**
 * One kosoku run.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** `ws://host:port` of the testee (or of the TLS tunnel). */
  readonly url: string
  readonly include: ReadonlyArray<string>
  readonly exclude: ReadonlyArray<string>
  readonly parallelism: number
  readonly outDir: string
  readonly onLine?: ((line: string) => void) | undefined
}

/**
 * The arguments given to kosoku's CLI.
 *
 * @since 0.1.0
 * @category running
 */
export const cliArgs = (options: Omit<RunOptions, "onLine">): Array<string> => [
  ...options.include.flatMap((p) => ["-i", p]),
  ...options.exclude.flatMap((p) => ["-x", p]),
  "-p",
  String(options.parallelism),
  "-o",
  options.outDir,
  options.url
]

/**
 * Runs kosoku in fuzzingclient mode. Its exit code is 1 when a case failed by
 * kosoku's own (lenient) standard; the gate judges the report, so that code is
 * returned, not raised.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  installation: Installation,
  options: RunOptions
): Effect.Effect<
  { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly args: ReadonlyArray<string> },
  KosokuError
> => {
  const args = cliArgs(options)
  return Proc.run(installation.python, ["-c", ENTRY, ...args], {
    env: installation.env,
    onLine: (line) => options.onLine?.(line)
  }).pipe(
    Effect.mapError(toKosokuError),
    Effect.map((r) => ({ code: r.code, signal: r.signal, args }))
  )
}

/**
 * One kosoku run in fuzzingserver mode: it serves the cases to a client under test on
 * `127.0.0.1:0` (loopback only; the port is chosen by the OS and announced on stderr),
 * and ends once the client asked for `/updateReports`, after writing the reports.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerRunOptions {
  readonly include: ReadonlyArray<string>
  readonly exclude: ReadonlyArray<string>
  readonly outDir: string
  /** Called once with the `ws://127.0.0.1:PORT` the fuzzing server listens on. */
  readonly onListening: (url: string) => void
  readonly onLine?: ((line: string) => void) | undefined
}

/**
 * The arguments given to kosoku's CLI in fuzzingserver mode.
 *
 * @since 0.1.0
 * @category running
 */
export const serverCliArgs = (options: Pick<ServerRunOptions, "include" | "exclude" | "outDir">): Array<string> => [
  "-m",
  "fuzzingserver",
  ...options.include.flatMap((p) => ["-i", p]),
  ...options.exclude.flatMap((p) => ["-x", p]),
  "-o",
  options.outDir,
  "127.0.0.1:0"
]

const LISTENING = /fuzzingserver listening on (ws:\/\/127\.0\.0\.1:\d+)/

/**
 * Runs kosoku as the fuzzing server until it ends by itself (the client finished) or is
 * interrupted (SIGTERM). Its exit code is returned, not raised, as for {@link run}.
 *
 * @since 0.1.0
 * @category running
 */
export const runServer = (
  installation: Installation,
  options: ServerRunOptions
): Effect.Effect<
  { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly args: ReadonlyArray<string> },
  KosokuError
> => {
  const args = serverCliArgs(options)
  let announced = false
  return Proc.run(installation.python, ["-c", ENTRY, ...args], {
    env: installation.env,
    onLine: (line) => {
      options.onLine?.(line)
      const m = LISTENING.exec(line)
      if (m !== null && !announced) {
        announced = true
        options.onListening(m[1]!)
      }
    }
  }).pipe(
    Effect.mapError(toKosokuError),
    Effect.map((r) => ({ code: r.code, signal: r.signal, args }))
  )
}
