// The Node.js Socket.IO peer of `make bench`: Socket.IO 4 on Node's http server with
// @socket.io/redis-adapter on node-redis v4, used as their documentation shows and tuned no
// further. The events are those of bench/peers/socketio_server.py (bench/README.md), so the
// same load generator (bench/loadgen, Engine.IO 4 over one WebSocket) drives both:
//   on connect the server emits `hello` {};
//   `join` {"room"} is acknowledged with {"joined": room};
//   `send` {"room", "text", "ref"} emits `message` {"room", "id", "text", "ts"} to the room
//   through the Redis adapter (so members on the other process receive it) and is
//   acknowledged with {"id": id}.
//
// Run: PORT=8103 REDIS_URL=redis://127.0.0.1:6379/0 node bench/peers/node_socketio/server.mjs
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { performance } from "node:perf_hooks";

import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

function fail(message) {
  console.error(message);
  process.exit(2);
}

function listenPort() {
  const raw = process.env.PORT ?? "";
  if (!raw) fail("PORT is not set");
  if (!/^[0-9]+$/.test(raw)) fail(`PORT must be an integer, not ${JSON.stringify(raw)}`);
  const port = Number(raw);
  if (port < 1 || port > 65535) fail(`PORT must be between 1 and 65535, not ${port}`);
  return port;
}

function redisUrl() {
  const url = process.env.REDIS_URL ?? "";
  if (!url) fail("REDIS_URL is not set");
  return url;
}

// Seconds since the epoch with sub-millisecond digits, like Python's time.time(): a float
// on the wire (Date.now() / 1000 would be a whole number once in every thousand messages).
function epochSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

const port = listenPort();
const pubClient = createClient({ url: redisUrl() });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  // node-redis reconnects by itself; an unhandled "error" event would end the process.
  client.on("error", (error) => console.error(`redis: ${error.message}`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(pubClient, subClient),
  cors: { origin: "*" },
});
const prefix = randomBytes(4).toString("hex");
let sequence = 0;

// A malformed event is dropped; only a callable ack is answered.
function roomOf(data) {
  return data !== null && typeof data === "object" && typeof data.room === "string"
    ? data.room
    : null;
}

io.on("connection", (socket) => {
  socket.emit("hello", {});

  socket.on("join", async (data, ack) => {
    const room = roomOf(data);
    if (room === null || typeof ack !== "function") return;
    await socket.join(room);
    ack({ joined: room });
  });

  socket.on("send", (data, ack) => {
    const room = roomOf(data);
    if (room === null || typeof data.text !== "string" || typeof ack !== "function") return;
    sequence += 1;
    const id = `${prefix}-${sequence}`;
    io.to(room).emit("message", { room, id, text: data.text, ts: epochSeconds() });
    ack({ id });
  });
});

httpServer.listen(port, "127.0.0.1");

// SIGTERM (bench.systems.stop_processes): close the sockets and Redis, then exit.
process.on("SIGTERM", () => {
  io.close();
  Promise.allSettled([pubClient.quit(), subClient.quit()]).then(() => process.exit(0));
});
