/**
 * A chat server: one HTML page and one WebSocket endpoint on one port.
 *
 * - `GET /` serves the page (below, inline);
 * - `GET /ws?name=ada` upgrades to a WebSocket: the upgrade hook checks the name and the
 *   Origin, and hands `{ name }` to the handler as the connection's typed `data`;
 * - messages are JSON with Schema types: the client sends `join` and `message`, the server
 *   sends `message` and `presence`;
 * - each room is a Broadcast topic: a message is framed (and compressed) once for the room;
 * - who is in a room is the topic's presence (`topics.members`): every process's members when
 *   the topics are on Redis;
 * - every message carries its offset in the room; a page that lost its connection joins again
 *   with the last offset it saw (`since`) and gets what it missed first;
 * - permessage-deflate is on;
 * - with an HTTP/2 server (`ChatServer({ http2 })`), the page and its WebSocket share one
 *   TLS connection: the WebSocket is an extended CONNECT stream of it (RFC 8441).
 *
 * The topics come from a Layer: `Broadcast.layerLocal` (one process) or `Broadcast.layerRedis`
 * (many; see `main.ts`). Nothing else changes between the two.
 */
import { HttpMiddleware, HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Broadcast, HttpUpgrade, MessageSchema } from "@effect-websocket/server"
import { UpgradeRejected } from "@effect-websocket/server/Errors"
import { Effect, Layer, Schema, Stream } from "effect"
import { createServer } from "node:http"
import type * as http from "node:http"
import * as http2 from "node:http2"

// ----------------------------------------------------------------------------- messages

const Room = Schema.String.pipe(Schema.pattern(/^[\w-]{1,32}$/))

/** What the browser sends. */
export const ClientMessage = Schema.Union(
  Schema.TaggedStruct("join", { room: Room, since: Schema.optional(Schema.String.pipe(Schema.pattern(/^\d+(-\d+)?$/))) }),
  Schema.TaggedStruct("message", { text: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(2000)) })
)

/** What the server sends. */
export const ServerMessage = Schema.Union(
  Schema.TaggedStruct("message", {
    room: Schema.String,
    from: Schema.String,
    text: Schema.String,
    offset: Schema.optional(Schema.String)
  }),
  Schema.TaggedStruct("presence", {
    room: Schema.String,
    members: Schema.Array(Schema.String),
    offset: Schema.optional(Schema.String)
  })
)
type ServerMessage = typeof ServerMessage.Type

const encode = Schema.encodeSync(Schema.parseJson(ServerMessage))

// ----------------------------------------------------------------------------- the WebSocket endpoint

const NAME = /^[\p{L}\p{N} _.-]{1,24}$/u

/**
 * Puts the offset into a published message (once per publish, not per member): messages are
 * JSON objects, so `{"_tag":...}` becomes `{"offset":"...","_tag":...}`.
 */
export const withOffset = (message: string | Uint8Array, offset: string): string | Uint8Array =>
  typeof message === "string" && message.startsWith("{") ? `{"offset":${JSON.stringify(offset)},${message.slice(1)}` : message

/** The endpoint's options: one definition for HTTP/1.1 upgrades and HTTP/2 streams. */
const chatSocket = () => ({
    perMessageDeflate: true, // the default memory policy: no zlib state per idle connection, a broadcast compressed once
    onUpgrade: (request) => {
      const name = new URL(request.url, "http://localhost").searchParams.get("name")?.trim() ?? ""
      // A page from another site must not open a socket with the visitor's cookies.
      if (request.origin !== undefined && request.origin.replace(/^https?:\/\//, "") !== request.host) {
        return Effect.fail(new UpgradeRejected({ status: 403, body: "cross-site WebSocket refused" }))
      }
      return NAME.test(name)
        ? Effect.succeed({ data: { name } })
        : Effect.fail(new UpgradeRejected({ status: 400, body: "pick a name: 1-24 letters, digits, spaces, _ . -" }))
    },
    handler: (ws) =>
      Effect.gen(function*() {
        yield* Effect.logInfo("WebSocket open").pipe(
          Effect.annotateLogs({ name: ws.data.name, transport: ws.request.transport })
        )
        const topics = yield* Broadcast.Topics
        const socket = MessageSchema.make(ws, { incoming: ClientMessage, outgoing: ServerMessage })
        const publish = (message: ServerMessage) => topics.publish(`room:${message.room}`, encode(message))
        const presence = (room: string) =>
          Effect.flatMap(topics.members(`room:${room}`), (members) => publish({ _tag: "presence", room, members }))
        let room: string | undefined

        const leave = Effect.suspend(() => {
          if (room === undefined) return Effect.void
          const left = room
          room = undefined
          return topics.unsubscribe(`room:${left}`, ws).pipe(Effect.zipRight(presence(left)))
        })

        yield* socket.messages.pipe(
          Stream.runForEach((message) =>
            Effect.gen(function*() {
              switch (message._tag) {
                case "join": {
                  yield* leave
                  room = message.room
                  yield* topics.subscribe(`room:${room}`, ws, { presence: ws.data.name, since: message.since })
                  yield* presence(room)
                  return
                }
                case "message": {
                  if (room === undefined) return
                  yield* publish({ _tag: "message", room, from: ws.data.name, text: message.text })
                }
              }
            })
          ),
          Effect.ensuring(leave)
        )
      })
  }) satisfies HttpUpgrade.HandlerOptions<{ readonly name: string }, unknown, Broadcast.Topics, never, never>

// ----------------------------------------------------------------------------- the app

/** The rooms of one process, with the last 1,000 messages of each kept for pages that resume. */
export const TopicsLocal = Broadcast.layerLocal({ withOffset, historySize: 1000 })

/** The rooms on Redis, shared by every process on it (`"stream"`: resume within 10,000 messages). */
export const TopicsRedis = (url: string) => Broadcast.layerRedis({ url, mode: "stream", withOffset })

/**
 * An HTTP/2 server for the chat: TLS with ALPN h2 and http/1.1, and the setting that lets
 * browsers open WebSockets as streams (RFC 8441).
 */
export const makeHttp2Server = (tls: { readonly key: string; readonly cert: string }): http2.Http2SecureServer =>
  http2.createSecureServer({ ...tls, allowHTTP1: true, settings: { enableConnectProtocol: true } })

/**
 * Page and endpoint on NodeHttpServer; provides `HttpServer` (for its address). With `http2`
 * (a server from `makeHttp2Server`), both are served over HTTP/2 and HTTP/1.1 on its port.
 */
export const ChatServer = <E>(
  listen: { readonly port: number; readonly host?: string; readonly http2?: http2.Http2SecureServer | undefined },
  topics: Layer.Layer<Broadcast.Topics, E> = TopicsLocal
) =>
  Layer.unwrapEffect(Effect.sync(() => {
    const app = HttpRouter.empty.pipe(
      HttpRouter.get("/", HttpServerResponse.html(page)),
      HttpRouter.get("/ws", HttpUpgrade.handler(chatSocket())),
      HttpServer.serve(HttpMiddleware.logger)
    )
    const server = listen.http2
    return server === undefined
      ? app
      : Layer.merge(app, Layer.scopedDiscard(HttpUpgrade.attachHttp2(server, { path: "/ws", ...chatSocket() })))
  })).pipe(
    Layer.provide(topics),
    Layer.provideMerge(NodeHttpServer.layer(
      // node:http2's compatibility API is what NodeHttpServer drives
      listen.http2 === undefined ? createServer : () => listen.http2 as unknown as http.Server,
      { port: listen.port, host: listen.host }
    ))
  )

// ----------------------------------------------------------------------------- the page

const page = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>effect-websocket chat</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  form { display: flex; gap: .5rem; margin: .5rem 0; }
  input[name=text] { flex: 1; }
  #log { list-style: none; padding: .5rem; height: 18rem; overflow-y: auto; border: 1px solid #ccc; }
  #members, #status { color: #555; }
</style>
<h1>Chat</h1>
<form id="join">
  <input id="name" placeholder="your name" required>
  <input id="room" value="lobby" required>
  <button>Join</button>
</form>
<p>Status: <span id="status">not connected</span> · In the room: <span id="members">-</span></p>
<ul id="log"></ul>
<form id="say"><input id="text" name="text" placeholder="message" autocomplete="off"><button>Send</button></form>
<script>
  const $ = (id) => document.getElementById(id)
  $("name").value = new URLSearchParams(location.search).get("name") ?? ""
  let ws, room, since, retry
  // Opens the socket; after a lost connection, joins again with the last offset seen (since).
  const open = () => {
    const url = new URL("/ws", location.href)
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:"
    url.searchParams.set("name", $("name").value)
    const socket = ws = window.chat = new WebSocket(url)
    let opened = false
    socket.onopen = () => {
      opened = true
      $("status").textContent = "connected (" + (socket.extensions || "no extensions") + ")"
      socket.send(JSON.stringify(since === undefined ? { _tag: "join", room } : { _tag: "join", room, since }))
    }
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data)
      if (message.offset !== undefined) since = message.offset
      if (message._tag === "presence") $("members").textContent = message.members.join(", ")
      else {
        const li = document.createElement("li")
        li.textContent = message.from + ": " + message.text
        $("log").append(li)
        li.scrollIntoView()
      }
    }
    socket.onclose = (event) => {
      $("status").textContent = "closed (" + event.code + ")"
      // A connection that was open and dropped: join again, from where this page stopped.
      if (opened && ws === socket && event.code !== 1000 && event.code !== 1008) {
        retry = setTimeout(open, window.retryDelay ?? 1000)
      }
    }
  }
  window.reconnect = open
  $("join").onsubmit = (event) => {
    event.preventDefault()
    clearTimeout(retry)
    const old = ws
    ws = undefined
    old?.close(1000)
    room = $("room").value
    since = undefined
    open()
  }
  $("say").onsubmit = (event) => {
    event.preventDefault()
    if (ws?.readyState !== WebSocket.OPEN || $("text").value === "") return
    ws.send(JSON.stringify({ _tag: "message", text: $("text").value }))
    $("text").value = ""
  }
</script>
</html>
`
