/**
 * Child processes for the runner: one-shot commands and long-running services,
 * never reading stdin (CI has none).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { Data, Deferred, Effect } from "effect"
import type { Scope } from "effect"

export class ProcessError extends Data.TaggedError("ProcessError")<{
  readonly command: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.command}: ${this.detail}`
  }
}

export interface RunOptions {
  readonly cwd?: string | undefined
  readonly env?: NodeJS.ProcessEnv | undefined
  /** Called with every complete output line (stdout and stderr). */
  readonly onLine?: ((line: string, stream: "stdout" | "stderr") => void) | undefined
}

export interface RunResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

const MAX_CAPTURE = 1 << 20

const lineSplitter = (emit: (line: string) => void) => {
  let rest = ""
  return {
    push: (chunk: string) => {
      rest += chunk
      let i: number
      while ((i = rest.indexOf("\n")) >= 0) {
        emit(rest.slice(0, i).replace(/\r$/, ""))
        rest = rest.slice(i + 1)
      }
    },
    flush: () => {
      if (rest.length > 0) emit(rest)
      rest = ""
    }
  }
}

export const describe = (command: string, args: ReadonlyArray<string>): string =>
  [command, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")

/** Runs a command to completion; interrupting the effect kills it. */
export const run = (
  command: string,
  args: ReadonlyArray<string>,
  options: RunOptions = {}
): Effect.Effect<RunResult, ProcessError> =>
  Effect.async<RunResult, ProcessError>((resume) => {
    const name = describe(command, args)
    let stdout = ""
    let stderr = ""
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const out = lineSplitter((l) => options.onLine?.(l, "stdout"))
    const err = lineSplitter((l) => options.onLine?.(l, "stderr"))
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (stdout.length < MAX_CAPTURE) stdout += d
      out.push(d)
    })
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < MAX_CAPTURE) stderr += d
      err.push(d)
    })
    child.once("error", (e) => resume(Effect.fail(new ProcessError({ command: name, detail: e.message }))))
    child.once("close", (code, signal) => {
      out.flush()
      err.flush()
      resume(Effect.succeed({ code, signal, stdout, stderr }))
    })
    return Effect.sync(() => {
      child.kill("SIGTERM")
    })
  })

export interface Service {
  readonly pid: number | undefined
  /** The first line that matched `ready`. */
  readonly readyLine: string
  /** Set once the process has exited (before or during the scope's close). */
  readonly exit: () => { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
  /** Whether the process exited before the scope asked it to stop. */
  readonly exitedEarly: () => boolean
}

export interface ServiceOptions extends RunOptions {
  readonly name: string
  /** A line on stdout that says the service is ready. */
  readonly ready: RegExp
  readonly readyTimeoutMs: number
  /** How long to wait after SIGTERM before SIGKILL. */
  readonly stopTimeoutMs: number
  /** Called when the service has been stopped, with how it went. */
  readonly onStopped?: ((report: StopReport) => void) | undefined
}

export interface StopReport {
  readonly name: string
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly killed: boolean
  readonly exitedEarly: boolean
}

/**
 * Starts a long-running process for the life of the scope and waits for its
 * ready line. Closing the scope sends SIGTERM, then SIGKILL after
 * `stopTimeoutMs`.
 */
export const service = (
  command: string,
  args: ReadonlyArray<string>,
  options: ServiceOptions
): Effect.Effect<Service, ProcessError, Scope.Scope> => {
  const name = `${options.name} (${describe(command, args)})`
  return Effect.gen(function*() {
    const ready = yield* Deferred.make<string, ProcessError>()
    const state: {
      child: ChildProcess | undefined
      exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
      stopping: boolean
      exitedEarly: boolean
      tail: Array<string>
      exited: Promise<void>
    } = { child: undefined, exit: undefined, stopping: false, exitedEarly: false, tail: [], exited: Promise.resolve() }
    const spawnIt = Effect.sync(() => {
      const child = spawn(command, args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ["ignore", "pipe", "pipe"]
      })
      state.child = child
      const remember = (line: string) => {
        state.tail.push(line)
        if (state.tail.length > 20) state.tail.shift()
      }
      const out = lineSplitter((line) => {
        remember(line)
        options.onLine?.(line, "stdout")
        if (options.ready.test(line)) Deferred.unsafeDone(ready, Effect.succeed(line))
      })
      const err = lineSplitter((line) => {
        remember(line)
        options.onLine?.(line, "stderr")
      })
      child.stdout!.setEncoding("utf8").on("data", (d: string) => out.push(d))
      child.stderr!.setEncoding("utf8").on("data", (d: string) => err.push(d))
      state.exited = new Promise<void>((resolve) => {
        child.once("close", (code, signal) => {
          out.flush()
          err.flush()
          state.exit = { code, signal }
          if (!state.stopping) state.exitedEarly = true
          Deferred.unsafeDone(
            ready,
            Effect.fail(
              new ProcessError({
                command: name,
                detail: `exited (code ${code}, signal ${signal}) before it was ready. Last output:\n${state.tail.join("\n")}`
              })
            )
          )
          resolve()
        })
      })
      child.once("error", (e) => {
        Deferred.unsafeDone(ready, Effect.fail(new ProcessError({ command: name, detail: e.message })))
      })
    })
    const stop = Effect.promise(async () => {
      const child = state.child
      if (child === undefined) return
      let killed = false
      if (state.exit === undefined) {
        state.stopping = true
        child.kill("SIGTERM")
        const timer = setTimeout(() => {
          killed = true
          child.kill("SIGKILL")
        }, options.stopTimeoutMs)
        await state.exited
        clearTimeout(timer)
      }
      options.onStopped?.({
        name: options.name,
        code: state.exit?.code ?? null,
        signal: state.exit?.signal ?? null,
        killed,
        exitedEarly: state.exitedEarly
      })
    })
    yield* Effect.acquireRelease(spawnIt, () => stop)
    const readyLine = yield* Deferred.await(ready).pipe(
      Effect.timeoutFail({
        duration: options.readyTimeoutMs,
        onTimeout: () =>
          new ProcessError({
            command: name,
            detail: `no line matching ${options.ready} within ${options.readyTimeoutMs} ms. Last output:\n${
              state.tail.join("\n")
            }`
          })
      })
    )
    return {
      pid: state.child?.pid,
      readyLine,
      exit: () => state.exit,
      exitedEarly: () => state.exitedEarly
    }
  })
}
