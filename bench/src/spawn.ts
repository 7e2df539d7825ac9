/**
 * Starting a bench server process and waiting until it says `listening` (the registry's contract,
 * `servers.ts`), for the scripts that run servers outside `pnpm bench`'s orchestrator.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"

/** `argv` run on the given CPU (`taskset` execs it, so the pid is the command's own), or as it is. */
export const onCpu = (cpu: string | undefined, argv: ReadonlyArray<string>): Array<string> =>
  cpu === undefined ? [...argv] : ["taskset", "-c", cpu, ...argv]

/** Spawns `argv` with `env` added, stdin piped (the server exits when it closes); resolves once it printed `listening`. */
export const startListening = (
  name: string,
  argv: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = {}
): Promise<ChildProcess> => {
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "inherit"]
  })
  return new Promise<ChildProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill()
      reject(new Error(`${name} did not start in 30 s`))
    }, 30_000)
    const onExit = (code: number | null) => {
      clearTimeout(timer)
      reject(new Error(`${name} exited (${code}) before listening`))
    }
    child.once("exit", onExit)
    child.stdout!.on("data", (d: Buffer) => {
      if (String(d).includes("listening")) {
        clearTimeout(timer)
        child.off("exit", onExit)
        resolve(child)
      }
    })
  })
}
