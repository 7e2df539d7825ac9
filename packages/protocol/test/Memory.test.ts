/**
 * What an idle connection keeps: no slice of Buffer's shared 8 KiB pool, whose whole slab a
 * slice kept alive would pin, with whatever else (messages, compressed payloads) was cut
 * from it in between.
 */
import { assert, describe, it } from "@effect/vitest"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Connection } from "../src/Connection.js"
import { frame } from "./helpers.js"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const arrayBuffers = (): number => {
  gc()
  gc()
  return process.memoryUsage().arrayBuffers
}

describe("memory held by idle connections", () => {
  it("a connection that received a masked message keeps no slice of Buffer's shared pool", () => {
    const n = 600
    const kept: Array<Connection> = []
    const before = arrayBuffers()
    for (let i = 0; i < n; i++) {
      const c = new Connection()
      c.receiveData(frame(1, "hello"))
      c.eventsReceived()
      kept.push(c)
      // what a server does between two connections' reads: messages of a few KiB from the pool
      Buffer.allocUnsafe(2048).fill(i)
      Buffer.from("x".repeat(1800), "utf8")
    }
    const perConnection = (arrayBuffers() - before) / n
    // a pool slice per connection pins about a third of an 8 KiB slab each here
    assert.isBelow(perConnection, 256, `${perConnection.toFixed(0)} bytes of ArrayBuffers per idle connection`)
    assert.strictEqual(kept.length, n)
  })
})
