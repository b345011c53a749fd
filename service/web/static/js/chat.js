// The chat protocol as the page speaks it: joins (again, with `since`, after every
// reconnect), messages, history, presence, removals, errors; and the chat HTTP API for
// private rooms. Frames are docs/protocol.md's.

import { ChatApi } from "./api.js";
import { ChatConnection } from "./connection.js";
import { ROOM, Room, dmRoom } from "./rooms.js";

const HISTORY_PAGE = 50;
const REJOIN_AFTER_MS = 2000; // a join Redis could not take (`unavailable`) is asked again
const LOST_ON_JOIN = new Set(["forbidden", "bad_room", "unknown_namespace", "too_many_rooms"]);

/** The signed-in page's chat: rooms, the open one, and what is waiting for an answer. */
export class ChatClient {
  constructor(view, auth, wsUrls) {
    this.view = view;
    this.auth = auth;
    this.rooms = new Map();
    this.open = null;
    this.me = null;
    this.refs = 0;
    this.pending = new Map(); // ref -> what was asked
    this.outbox = new Map(); // idempotency key -> unacknowledged send, resent after a drop
    this.connection = new ChatConnection(wsUrls, auth);
    this.api = new ChatApi(auth);
    this.connection.addEventListener("state", (e) => this.view.showState(e.detail));
    this.connection.addEventListener("frame", (e) => this.received(e.detail));
    this.connection.addEventListener("ended", (e) => this.onEnded && this.onEnded(e.detail.reason));
    this.onRefreshed = (e) => {
      this.ask({ op: "refresh", token: e.detail });
      this.view.tokenRefreshed(auth.expiresAt);
    };
    auth.addEventListener("refreshed", this.onRefreshed);
  }

  start() {
    this.connection.start();
  }

  stop(text) {
    this.auth.removeEventListener("refreshed", this.onRefreshed);
    this.connection.stop(text);
    this.rooms.clear();
    this.open = null;
  }

  // -- what the person does ---------------------------------------------------------------

  join(name) {
    if (!ROOM.test(name)) {
      this.view.alert(`"${name}" is not a room name: 1 to 128 letters, digits and . _ : , -`);
      return;
    }
    if (!this.rooms.has(name)) {
      this.rooms.set(name, new Room(name));
      this.ask(this.rooms.get(name).joinFrame());
    }
    this.show(name);
  }

  startDm(username) {
    if (!this.me) return;
    this.join(dmRoom(this.me.username, username));
  }

  leave(name) {
    this.ask({ op: "leave", room: name });
    this.forgetRoom(name);
  }

  send(text) {
    if (!this.open) return;
    const key = newKey();
    const entry = { room: this.open, text, key };
    this.outbox.set(key, entry);
    if (!this.connection.live) {
      this.view.alert("Not connected: the message will be sent once the connection is back.", "info");
      return;
    }
    this.resend(entry);
  }

  resend(entry) {
    this.ask({ op: "send", room: entry.room, text: entry.text, idempotency_key: entry.key }, entry);
  }

  loadEarlier() {
    const room = this.rooms.get(this.open);
    if (room && room.oldest() !== null) {
      this.ask({ op: "history", room: room.name, before: room.oldest(), limit: HISTORY_PAGE });
    }
  }

  show(name, focus = true) {
    const room = this.rooms.get(name);
    if (!room) return;
    const opening = this.open !== name;
    this.open = name;
    room.unread = 0;
    this.view.showRoom(room, this.me && this.me.username);
    this.renderRooms();
    if (focus) this.view.focusComposer();
    if (opening && name.startsWith("private:")) this.loadMembers(name);
  }

  /** Shows a private room's members; a room the user may not see yet says nothing here. */
  async loadMembers(name) {
    try {
      const answer = await this.api.members(name);
      this.view.members(name, answer, this.me && this.me.username);
    } catch (error) {
      if (error.status !== 403) this.view.alert(`Reading the members of ${name} failed: ${error.message}`);
    }
  }

  async createPrivate(name) {
    const room = `private:${name}`;
    await this.api.create(room);
    this.join(room);
  }

  // -- what the server says ---------------------------------------------------------------

  received(frame) {
    const asked = frame.ref !== undefined ? this.pending.get(frame.ref) : undefined;
    if (asked) this.pending.delete(frame.ref);
    const room = typeof frame.room === "string" ? this.rooms.get(frame.room) : undefined;
    switch (frame.type) {
      case "hello":
        return this.hello(frame);
      case "joined":
        return room && this.joined(room, frame);
      case "message":
        return room && this.message(room, frame);
      case "ack":
        return asked && asked.key && this.outbox.delete(asked.key);
      case "history":
        return room && this.history(room, frame, asked);
      case "presence":
        if (room) room.applyPresence(frame);
        return room && this.refreshPresence(room);
      case "member_joined":
      case "member_left":
        if (!room) return;
        if (frame.type === "member_joined") room.memberJoined(frame.user);
        else room.memberLeft(frame.user);
        return this.refreshPresence(room);
      case "gap":
        return room && this.gap(room, frame);
      case "removed":
        return this.removed(frame.room);
      case "refreshed":
        return this.view.socketRefreshed();
      case "error":
        return this.error(frame, asked);
      default:
        return undefined; // left, and any frame a later server adds
    }
  }

  hello(frame) {
    this.me = frame.user;
    this.pending.clear(); // answers to the last socket's frames will never come
    for (const room of this.rooms.values()) {
      room.joined = false;
      this.ask(room.joinFrame());
    }
    // The socket handles one frame after the other: these come after the joins.
    for (const entry of this.outbox.values()) this.resend(entry);
    if (this.onHello) this.onHello(frame.user);
  }

  joined(room, frame) {
    const { needsHistory } = room.applyJoined(frame);
    if (needsHistory) {
      this.ask({ op: "history", room: room.name, limit: HISTORY_PAGE });
    } else if (typeof frame.epoch !== "string") {
      // Joined again after a drop, in a room without history: nothing can be replayed.
      this.roomNotice(room, "Messages sent while the connection was down may be missing (this room keeps no history).");
    }
    this.ask({ op: "presence", room: room.name });
  }

  message(room, frame) {
    if (!room.add(frame)) return;
    if (room.name === this.open) {
      const last = room.messages[room.messages.length - 1];
      if (last === frame) this.view.appendMessage(frame, this.me && this.me.username);
      else this.view.showRoom(room, this.me && this.me.username); // arrived out of place
    } else {
      room.unread += 1;
      this.renderRooms();
    }
  }

  history(room, frame, asked) {
    const before = room.oldest();
    const added = room.applyHistory(frame, (asked && asked.limit) || HISTORY_PAGE);
    if (room.name !== this.open) return;
    const older = before !== null && added.every((m) => Number.isInteger(m.offset) && m.offset < before);
    if (older && added.length) this.view.prependMessages(added, this.me && this.me.username);
    else this.view.showRoom(room, this.me && this.me.username);
    this.view.earlier(room);
  }

  gap(room, frame) {
    let text;
    if (frame.reset) {
      room.reset();
      text = "This room's history was lost or deleted: messages sent while you were away are gone.";
      if (room.name === this.open) this.view.showRoom(room, this.me && this.me.username);
    } else if (Number.isInteger(frame.from)) {
      text = `Messages ${frame.from} to ${frame.to} could not be recovered: the room no longer keeps them.`;
    } else {
      text = "Messages sent while the connection was down may be missing.";
    }
    this.roomNotice(room, text);
  }

  removed(name) {
    if (!this.rooms.has(name)) return;
    this.forgetRoom(name, `You were removed from ${name}.`);
    this.view.alert(`You were removed from ${name}; its messages are no longer shown.`, "info");
  }

  error(frame, asked) {
    const what = asked ? describe(asked) : "The server refused a request";
    this.view.alert(`${what}: ${frame.code} — ${frame.message}`);
    if (asked && asked.op === "send") {
      const entry = this.outbox.get(asked.key);
      if (entry && frame.code === "unavailable") {
        // Not sent: asked again with the same key, so it is published once at most.
        setTimeout(() => this.outbox.has(entry.key) && this.resend(entry), REJOIN_AFTER_MS);
      } else {
        this.outbox.delete(asked.key);
      }
    }
    if (!asked || asked.op !== "join") return;
    if (LOST_ON_JOIN.has(frame.code)) {
      this.forgetRoom(asked.room, `${asked.room}: ${frame.code} — ${frame.message}`);
    } else if (frame.code === "unavailable") {
      setTimeout(() => {
        const room = this.rooms.get(asked.room);
        if (room && !room.joined) this.ask(room.joinFrame());
      }, REJOIN_AFTER_MS);
    }
  }

  // -- helpers ----------------------------------------------------------------------------

  ask(frame, extra = {}) {
    const ref = ++this.refs;
    const asked = { ...extra, op: frame.op, room: frame.room, limit: frame.limit };
    if (!this.connection.send({ ...frame, ref })) return false;
    this.pending.set(ref, asked);
    return true;
  }

  forgetRoom(name, notice) {
    this.rooms.delete(name);
    for (const [key, entry] of this.outbox) if (entry.room === name) this.outbox.delete(key);
    if (this.open === name) {
      this.open = null;
      this.view.clearRoom(notice ? "Room closed" : "No room open", notice);
    }
    this.renderRooms();
  }

  roomNotice(room, text) {
    if (room.name === this.open) this.view.appendNotice(text);
    else this.view.alert(`${room.name}: ${text}`, "info");
  }

  refreshPresence(room) {
    if (room.name === this.open) this.view.presence(room);
  }

  renderRooms() {
    this.view.renderRooms(this.rooms, this.open, this.me && this.me.username, (name) => this.show(name));
  }
}

/** An idempotency key: 128 random bits (`crypto.randomUUID` needs HTTPS; this does not). */
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function describe(asked) {
  const room = asked.room ? ` ${asked.room}` : "";
  return {
    join: `Joining${room} was refused`,
    send: `Your message to${room} was not sent`,
    history: `Reading the history of${room} failed`,
    presence: `Asking who is in${room} failed`,
    refresh: "Refreshing the socket's credential failed",
    leave: `Leaving${room} failed`,
  }[asked.op] || `The server refused ${asked.op}${room}`;
}
