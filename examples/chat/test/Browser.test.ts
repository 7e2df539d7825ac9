/**
 * End to end in a real browser: Debian's chromium, headless, driven by playwright-core. Two
 * pages join the same room and talk; the browser's own WebSocket negotiates permessage-deflate
 * with our server. A screenshot goes to test-output/chat.png.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { assert, describe, it } from "@effect/vitest"
import { Broadcast } from "@effect-websocket/server"
import { Context, Effect, Exit, HashMap, Layer, Logger, LogLevel, Metric, Scope } from "effect"
import { existsSync, mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll } from "vitest"
import { localhostCertificate } from "../src/Certificate.js"
import { ChatServer, makeHttp2Server } from "../src/Chat.js"

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
  // installing the browser is the machine's setup (.ci/run installs Debian's chromium), not the test's
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `chromium is missing at ${CHROMIUM}: this browser test needs Debian's chromium ` +
        "(`bash .ci/run` installs it, or `apt-get install -y chromium`)"
    )
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

  it("a page whose connection dropped joins again with its last offset and gets what it missed, once", async () => {
    const ada = await join("ada", "resume")
    const bob = await join("bob", "resume")
    await ada.locator("#members", { hasText: "ada, bob" }).waitFor({ timeout: 10_000 })
    await say(bob, "one")
    await waitLine(ada, "bob: one")
    // ada's connection drops; she reconnects only when told to
    await ada.evaluate(() => {
      const w = globalThis as unknown as { retryDelay: number; chat: { close(code: number): void } }
      w.retryDelay = 600_000
      w.chat.close(4000)
    })
    await ada.locator("#status", { hasText: "closed (4000)" }).waitFor({ timeout: 10_000 })
    await bob.locator("#members", { hasText: /^bob$/ }).waitFor({ timeout: 10_000 })
    for (const text of ["two", "three", "four"]) await say(bob, text)
    await waitLine(bob, "bob: four")
    await ada.evaluate(() => (globalThis as unknown as { reconnect(): void }).reconnect())
    await waitLine(ada, "bob: four")
    await say(bob, "five")
    await waitLine(ada, "bob: five")
    assert.deepStrictEqual(await ada.locator("#log li").allTextContents(), [
      "bob: one",
      "bob: two",
      "bob: three",
      "bob: four",
      "bob: five"
    ])
    await ada.close()
    await bob.close()
  })

  it("the upgrade hook refuses a name it does not accept: the socket never opens", async () => {
    const page = await join("<script>")
    await page.locator("#status", { hasText: "closed (1006)" }).waitFor({ timeout: 10_000 })
    assert.strictEqual(await page.locator("#members").textContent(), "-")
    await page.close()
  })
})


/**
 * The same chat over HTTP/2: chromium loads the page over h2 and opens its WebSocket as an
 * extended CONNECT stream of that same TLS connection (RFC 8441).
 */
describe("the chat over HTTP/2 in headless chromium", () => {
  let h2scope: Scope.CloseableScope
  let h2base: string
  let tlsConnections = 0
  const opened: Array<{ readonly name: unknown; readonly transport: unknown }> = []

  beforeAll(async () => {
    const tls = await localhostCertificate()
    const server = makeHttp2Server(tls)
    server.on("secureConnection", () => tlsConnections++)
    // the server's own report of each WebSocket it opened ("WebSocket open", with its transport)
    const recording = Logger.make(({ annotations, message }) => {
      if (Array.isArray(message) && message[0] === "WebSocket open") {
        opened.push({ name: HashMap.unsafeGet(annotations, "name"), transport: HashMap.unsafeGet(annotations, "transport") })
      }
    })
    h2scope = Effect.runSync(Scope.make())
    const context = await Effect.runPromise(
      Layer.buildWithScope(
        ChatServer({ port: 0, host: "127.0.0.1", http2: server }).pipe(
          Layer.provide(Logger.replace(Logger.defaultLogger, recording))
        ),
        h2scope
      )
    )
    const { port } = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
    h2base = `https://localhost:${port}`
  }, 60_000)

  afterAll(async () => {
    if (h2scope !== undefined) await Effect.runPromise(Scope.close(h2scope, Exit.void))
  })

  it("the page and its WebSocket share one HTTP/2 connection; the server reports transport h2", async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 720, height: 640 } })
    const page = await context.newPage()
    await page.goto(`${h2base}/?name=ada`)
    // the protocol the page itself came over
    const protocol = await page.evaluate(() =>
      (globalThis as unknown as {
        performance: { getEntriesByType: (type: string) => Array<{ nextHopProtocol: string }> }
      }).performance.getEntriesByType("navigation")[0]!.nextHopProtocol
    )
    assert.strictEqual(protocol, "h2")
    await page.click("#join button")
    await page.locator("#status", { hasText: "connected" }).waitFor({ timeout: 10_000 })
    await say(page, "hello over h2")
    await waitLine(page, "ada: hello over h2")
    const extensions = await page.evaluate(() => (globalThis as unknown as { chat: { extensions: string } }).chat.extensions)
    assert.include(extensions, "permessage-deflate")
    assert.deepStrictEqual(opened, [{ name: "ada", transport: "h2" }])
    assert.strictEqual(tlsConnections, 1)
    await context.close()
  })
})

