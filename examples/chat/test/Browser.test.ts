/**
 * End to end in a real browser: Debian's chromium, headless, driven by playwright-core. Two
 * pages join the same room and talk; the browser's own WebSocket negotiates permessage-deflate
 * with our server. A screenshot goes to test-output/chat.png.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Broadcast } from "@effect-websocket/server"
import { Context, Effect, Exit, Layer, Logger, LogLevel, Metric, Scope } from "effect"
import { execSync } from "node:child_process"
import { existsSync, mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll } from "vitest"
import { ChatServer } from "../src/Chat.js"

const CHROMIUM = "/usr/bin/chromium"
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]
const SCREENSHOT = fileURLToPath(new URL("../../../test-output/chat.png", import.meta.url))

let browser: Browser
let scope: Scope.CloseableScope
let base: string

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    execSync("apt-get update && apt-get install -y chromium", {
      stdio: "inherit",
      timeout: 600_000,
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    })
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true })
  scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(
    Layer.buildWithScope(
      ChatServer({ port: 0, host: "127.0.0.1" }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Warning))),
      scope
    )
  )
  const { port } = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
  base = `http://127.0.0.1:${port}`
}, 600_000)

afterAll(async () => {
  await browser?.close()
  if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
})

const join = async (name: string, room = "lobby"): Promise<Page> => {
  const page = await browser.newPage({ viewport: { width: 720, height: 640 } })
  await page.goto(`${base}/?name=${encodeURIComponent(name)}`)
  await page.fill("#room", room)
  await page.click("#join button")
  return page
}

const say = async (page: Page, text: string) => {
  await page.fill("#text", text)
  await page.click("#say button")
}

const waitLine = (page: Page, text: string) => page.locator("#log li", { hasText: text }).first().waitFor({ timeout: 10_000 })

describe("the chat in headless chromium", () => {
  it("two pages join a room and talk over a permessage-deflate WebSocket", async () => {
    const ada = await join("ada")
    await ada.locator("#status", { hasText: "connected" }).waitFor({ timeout: 10_000 })
    const bob = await join("bob")
    await ada.locator("#members", { hasText: "ada, bob" }).waitFor({ timeout: 10_000 })

    await say(ada, "hello bob")
    await waitLine(bob, "ada: hello bob")
    await say(bob, "hi ada")
    await waitLine(ada, "bob: hi ada")
    mkdirSync(dirname(SCREENSHOT), { recursive: true })
    await ada.screenshot({ path: SCREENSHOT })
    console.log(`screenshot: ${SCREENSHOT}`)

    // over the compression threshold: a frame compressed once for the room, inflated by chromium
    const compressions = await Effect.runPromise(Metric.value(Broadcast.metrics.compressions))
    const long = "a long message, ".repeat(100).trim()
    await say(bob, long)
    await waitLine(ada, "bob: " + long.slice(0, 64))
    assert.strictEqual(await ada.locator("#log li").last().textContent(), "bob: " + long)
    const after = await Effect.runPromise(Metric.value(Broadcast.metrics.compressions))
    assert.strictEqual(after.count - compressions.count, 1)

    const extensions = await ada.evaluate(() => (globalThis as unknown as { chat: { extensions: string } }).chat.extensions)
    assert.include(extensions, "permessage-deflate")
    assert.include(extensions, "server_no_context_takeover")
    // Chromium offers only client_max_window_bits: the default memory policy adds this one
    assert.include(extensions, "client_no_context_takeover")
    assert.deepStrictEqual(await bob.locator("#log li").allTextContents(), ["ada: hello bob", "bob: hi ada", "bob: " + long])

    // bob leaves: ada sees the presence change
    await bob.close()
    await ada.locator("#members", { hasText: /^ada$/ }).waitFor({ timeout: 10_000 })
    await ada.close()
  })

  it("the upgrade hook refuses a name it does not accept: the socket never opens", async () => {
    const page = await join("<script>")
    await page.locator("#status", { hasText: "closed (1006)" }).waitFor({ timeout: 10_000 })
    assert.strictEqual(await page.locator("#members").textContent(), "-")
    await page.close()
  })
})

