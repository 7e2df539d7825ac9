// Shared by the bench clients: options from argv, payload, and a closed-loop driver. A client
// opens `conns` connections to `url`, keeps `window` messages in flight on each (a new one is
// sent for every echo received), and reports the echoes counted and its own CPU time (user +
// system, every thread) during the measured interval, as one JSON line on stdout.
export const options = (() => {
  const get = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`)
    return i >= 0 ? process.argv[i + 1] : fallback
  }
  return {
    url: get("url"),
    size: Number(get("size", "32")),
    binary: get("kind", "text") === "binary",
    conns: Number(get("conns", "16")),
    window: Number(get("window", "16")),
    warmup: Number(get("warmup", "1")),
    duration: Number(get("duration", "2"))
  }
})()

export const payload = options.binary
  ? new Uint8Array(options.size).fill(0x61)
  : "a".repeat(options.size)

/**
 * `open(onEcho)` opens one connection and resolves to `send()`; `onEcho` is called for each
 * echoed message. Prints `{ messages, seconds, cpuUs }` and exits when done.
 */
export const drive = async (open) => {
  let counting = false
  let messages = 0
  const sends = []
  for (let c = 0; c < options.conns; c++) {
    let send
    send = await open(() => {
      if (counting) messages++
      send()
    })
    sends.push(send)
  }
  for (const send of sends) for (let i = 0; i < options.window; i++) send()
  await new Promise((r) => setTimeout(r, options.warmup * 1000))
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  counting = true
  await new Promise((r) => setTimeout(r, options.duration * 1000))
  counting = false
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  process.stdout.write(JSON.stringify({ messages, seconds, cpuUs: cpu.user + cpu.system }) + "\n")
  process.exit(0)
}
