/**
 * `pnpm testee --port <p> [--host 127.0.0.1] [--tls --cert F --key F] [--deflate as-offered|default]`: runs the echo
 * testee in the foreground, prints `listening ws://…` when ready, exits cleanly on
 * SIGINT/SIGTERM (the Layer is released: 1001 to open connections, then exit).
 */
import { NodeRuntime } from "@effect/platform-node"
import { WebSocketServer } from "@effect-websocket/server"
import { Cause, Console, Effect, Exit, Layer } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { parseArgs } from "node:util"
import { generate } from "../Certificate.js"
import * as Testee from "../Testee.js"

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "9001" },
    host: { type: "string", default: "127.0.0.1" },
    tls: { type: "boolean", default: false },
    cert: { type: "string" },
    key: { type: "string" },
    deflate: { type: "string", default: "as-offered" }
  }
})

const tlsMaterial = Effect.gen(function*() {
  if (!values.tls) return undefined
  if (values.cert !== undefined && values.key !== undefined) {
    return { cert: readFileSync(values.cert, "utf8"), key: readFileSync(values.key, "utf8") }
  }
  const dir = mkdtempSync(join(tmpdir(), "testee-cert-"))
  const generated = yield* generate(dir)
  return { cert: generated.certPem, key: generated.keyPem }
})

const main = Effect.gen(function*() {
  const tls = yield* tlsMaterial
  if (values.deflate !== "as-offered" && values.deflate !== "default") {
    return yield* Effect.dieMessage(`--deflate takes as-offered or default, got ${values.deflate}`)
  }
  const server = Testee.layer({ host: values.host, port: Number(values.port), tls, deflate: values.deflate })
  return yield* Layer.launch(
    Layer.effectDiscard(Effect.flatMap(WebSocketServer.WebSocketServer, (s) => Console.log(`listening ${s.url}`))).pipe(
      Layer.provideMerge(server)
    )
  )
})

// A signal interrupts `main`: the Layer is released (graceful shutdown) and we exit 0.
NodeRuntime.runMain(main as Effect.Effect<never, unknown>, {
  teardown: (exit, onExit) => onExit(Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? 1 : 0)
})
