// Fan-out with this server's Broadcast: /sub connections subscribe to one topic, what /pub
// sends is published to it. REDIS_URL: Broadcast.layerRedis (MODE, default "pubsub") instead
// of the local backend; WORKERS > 1: that many workers behind the port (Cluster.runMain).
import { Broadcast, Cluster, WebSocketServer } from "@effect-websocket/server"
import { Effect, Layer } from "effect"
import cluster from "node:cluster"
import { exitWithParent, host, port } from "./common.mjs"

if (!cluster.isWorker) exitWithParent()
const redisUrl = process.env["REDIS_URL"]
const Topics = redisUrl !== undefined
  ? Broadcast.layerRedis({ url: redisUrl, mode: process.env["MODE"] === "stream" ? "stream" : "pubsub" })
  : Broadcast.layerLocal()

const Server = Layer.scopedDiscard(Effect.gen(function*() {
  const topics = yield* Broadcast.Topics
  yield* WebSocketServer.make({
    host,
    port,
    handler: (ws) =>
      ws.request.url === "/sub"
        ? Effect.zipRight(topics.subscribe("t", ws), ws.run(() => {}))
        : ws.run((m) => topics.publish("t", m))
  })
  yield* Effect.sync(() => console.log(`listening ${port} pid=${process.pid}`))
}))

Cluster.runMain(Layer.launch(Server.pipe(Layer.provide(Topics))), { workers: Number(process.env["WORKERS"] ?? 1) })
