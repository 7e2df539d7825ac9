/**
 * The packages as a user outside this repository gets them: both are built and packed
 * (`pnpm pack`), the tarballs are installed with npm into a temporary directory next to
 * `effect` and the platform packages from the registry (one copy of `effect`: they are peer
 * dependencies), a small consumer is typechecked with `moduleResolution: nodenext` and run
 * with plain `node` against the compiled output: it serves, a `ws` client echoes through it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const versionOf = (dir: string, name: string): string =>
  JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")).devDependencies?.[name] ??
    JSON.parse(readFileSync(join(root, dir, "package.json"), "utf8")).peerDependencies[name]

/** Runs a command; fails with its output (and what it was) if it exits non-zero or takes over `ms`. */
const run = (cmd: string, args: ReadonlyArray<string>, cwd: string, ms: number) =>
  Effect.async<string, Error>((resume) => {
    const child = execFile(cmd, args, { cwd, timeout: ms, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) resume(Effect.fail(new Error(`${cmd} ${args.join(" ")} failed: ${error.message}\n${stdout}\n${stderr}`)))
      else resume(Effect.succeed(stdout))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const consumer = `import { Effect, Stream } from "effect"
import { WebSocketServer } from "@effect-websocket/server"
import { Handshake } from "@effect-websocket/protocol"
import WebSocket from "ws"

const program = Effect.gen(function*() {
  const server = yield* WebSocketServer.make({
    handler: (ws) => Stream.runForEach(ws.messages, ws.send)
  })
  const reply = yield* Effect.async<string, Error>((resume) => {
    const client = new WebSocket(server.url)
    client.on("open", () => client.send("hello from a consumer"))
    client.on("message", (data) => {
      client.close()
      resume(Effect.succeed(String(data)))
    })
    client.on("error", (e) => resume(Effect.fail(e)))
  })
  const accept: string = Handshake.acceptKey("dGhlIHNhbXBsZSBub25jZQ==")
  console.log(JSON.stringify({ reply, accept }))
})

Effect.runPromise(Effect.scoped(program)).catch((e) => {
  console.error(e)
  process.exit(1)
})
`

describe("the packages outside this repository", () => {
  it.live("pack, npm install, typecheck with nodenext, run with plain node", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "ews-consumer-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const tsc = join(root, "node_modules", ".bin", "tsc")
      yield* run(tsc, ["-b", "packages/protocol", "packages/server"], root, 120_000)
      for (const pkg of ["protocol", "server"]) {
        yield* run("pnpm", ["pack", "--pack-destination", dir], join(root, "packages", pkg), 60_000)
      }
      const tarballs = readdirSync(dir).filter((f) => f.endsWith(".tgz")).sort()
      assert.strictEqual(tarballs.length, 2, tarballs.join(", "))
      writeFileSync(
        join(dir, "package.json"),
        JSON.stringify({
          name: "consumer",
          private: true,
          type: "module",
          dependencies: {
            "@effect-websocket/protocol": `file:./${tarballs.find((t) => t.includes("protocol"))}`,
            "@effect-websocket/server": `file:./${tarballs.find((t) => t.includes("server"))}`,
            effect: versionOf("packages/server", "effect"),
            "@effect/platform": versionOf("packages/server", "@effect/platform"),
            "@effect/platform-node": versionOf("packages/server", "@effect/platform-node"),
            ws: "^8.18.0"
          },
          devDependencies: { typescript: "~5.9.0", "@types/node": "^20.19.0", "@types/ws": "^8.18.1" }
        })
      )
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "ES2022",
            module: "nodenext",
            moduleResolution: "nodenext",
            strict: true,
            skipLibCheck: false,
            types: ["node"],
            outDir: "out"
          },
          include: ["consumer.ts"]
        })
      )
      writeFileSync(join(dir, "consumer.ts"), consumer)
      yield* run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], dir, 240_000)
      // one copy of effect: the packages brought none of their own
      const nested = ["protocol", "server"].filter((p) => {
        try {
          readdirSync(join(dir, "node_modules", "@effect-websocket", p, "node_modules", "effect"))
          return true
        } catch {
          return false
        }
      })
      assert.deepStrictEqual(nested, [])
      yield* run(join(dir, "node_modules", ".bin", "tsc"), ["-p", "."], dir, 120_000)
      const out = yield* run(process.execPath, [join(dir, "out", "consumer.js")], dir, 30_000)
      assert.deepStrictEqual(JSON.parse(out.trim()), {
        reply: "hello from a consumer",
        accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
      })
    }).pipe(Effect.scoped), 400_000)
})
