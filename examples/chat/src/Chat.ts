/**
 * A chat server: one HTML page and one WebSocket endpoint on one port.
 *
 * - `GET /` serves the page (below, inline);
 * - `GET /ws?name=ada` upgrades to a WebSocket: the upgrade hook checks the name and the
 *   Origin, and hands `{ name }` to the handler as the connection's typed `data`;
 * - messages are JSON with Schema types: the client sends `join` and `message`, the server
 *   sends `message` and `presence`;
 * - each room is a Broadcast topic: a message is framed (and compressed) once for the room;
 * - permessage-deflate is on.
 */
import { HttpMiddleware, HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Broadcast, HttpUpgrade, MessageSchema } from "@effect-websocket/server"
import { UpgradeRejected } from "@effect-websocket/server/Errors"
import { Effect, Layer, Schema, Stream } from "effect"
import { createServer } from "node:http"

// ----------------------------------------------------------------------------- messages

const Room = Schema.String.pipe(Schema.pattern(/^[\w-]{1,32}$/))

/** What the browser sends. */
export const ClientMessage = Schema.Union(
  Schema.TaggedStruct("join", { room: Room }),
  Schema.TaggedStruct("message", { text: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(2000)) })
)

/** What the server sends. */
export const ServerMessage = Schema.Union(
  Schema.TaggedStruct("message", { room: Schema.String, from: Schema.String, text: Schema.String }),
  Schema.TaggedStruct("presence", { room: Schema.String, members: Schema.Array(Schema.String) })
)
type ServerMessage = typeof ServerMessage.Type

const encode = Schema.encodeSync(Schema.parseJson(ServerMessage))

// ----------------------------------------------------------------------------- the WebSocket endpoint

const NAME = /^[\p{L}\p{N} _.-]{1,24}$/u

/** Who is in which room (this process only): room → connection id → name. */
const makeRooms = () => {
  const rooms = new Map<string, Map<number, string>>()
  return {
    join: (room: string, id: number, name: string) => {
      const members = rooms.get(room) ?? new Map<number, string>()
      rooms.set(room, members.set(id, name))
    },
    leave: (room: string, id: number) => {
      rooms.get(room)?.delete(id)
      if (rooms.get(room)?.size === 0) rooms.delete(room)
    },
    members: (room: string) => [...new Set(rooms.get(room)?.values())].sort()
  }
}

const chatSocket = (rooms: ReturnType<typeof makeRooms>) =>
  HttpUpgrade.handler({
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
        const topics = yield* Broadcast.Topics
        const socket = MessageSchema.make(ws, { incoming: ClientMessage, outgoing: ServerMessage })
        const publish = (message: ServerMessage) => topics.publish(`room:${message.room}`, encode(message))
        let room: string | undefined

        const leave = Effect.suspend(() => {
          if (room === undefined) return Effect.void
          const left = room
          room = undefined
          rooms.leave(left, ws.id)
          return topics.unsubscribe(`room:${left}`, ws).pipe(
            Effect.zipRight(publish({ _tag: "presence", room: left, members: rooms.members(left) }))
          )
        })

        yield* socket.messages.pipe(
          Stream.runForEach((message) =>
            Effect.gen(function*() {
              switch (message._tag) {
                case "join": {
                  yield* leave
                  room = message.room
                  rooms.join(room, ws.id, ws.data.name)
                  yield* topics.subscribe(`room:${room}`, ws)
                  yield* publish({ _tag: "presence", room, members: rooms.members(room) })
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
  })

// ----------------------------------------------------------------------------- the app

/** Page and endpoint on NodeHttpServer; provides `HttpServer` (for its address). */
export const ChatServer = (listen: { readonly port: number; readonly host?: string }) =>
  Layer.unwrapEffect(Effect.sync(() =>
    HttpRouter.empty.pipe(
      HttpRouter.get("/", HttpServerResponse.html(page)),
      HttpRouter.get("/ws", chatSocket(makeRooms())),
      HttpServer.serve(HttpMiddleware.logger)
    )
  )).pipe(
    Layer.provide(Broadcast.layerLocal()),
    Layer.provideMerge(NodeHttpServer.layer(createServer, listen))
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
  let ws
  $("join").onsubmit = (event) => {
    event.preventDefault()
    ws?.close()
    const url = new URL("/ws", location.href)
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:"
    url.searchParams.set("name", $("name").value)
    ws = window.chat = new WebSocket(url)
    ws.onopen = () => {
      $("status").textContent = "connected (" + (ws.extensions || "no extensions") + ")"
      ws.send(JSON.stringify({ _tag: "join", room: $("room").value }))
    }
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data)
      if (message._tag === "presence") $("members").textContent = message.members.join(", ")
      else {
        const li = document.createElement("li")
        li.textContent = message.from + ": " + message.text
        $("log").append(li)
        li.scrollIntoView()
      }
    }
    ws.onclose = (event) => { $("status").textContent = "closed (" + event.code + ")" }
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
