// What the page knows of each room it is in: messages in offset order (each once), where to
// resume from (epoch and the last offset seen), who is here, and how much is unread.

export const ROOM = /^[A-Za-z0-9_.:,-]{1,128}$/;

/** One room's state; `apply…` methods take server frames and say what changed. */
export class Room {
  constructor(name) {
    this.name = name;
    this.epoch = null; // null: never joined, or a room without history
    this.last = 0; // the newest offset seen: `since` resumes after it
    this.messages = []; // oldest first
    this.ids = new Set();
    this.members = new Map(); // user id -> {id, username, connections}
    this.count = 0;
    this.joined = false;
    this.historyLoaded = false;
    this.hasEarlier = false;
    this.unread = 0;
  }

  /** The join frame: with `since` once the room's epoch is known, so nothing is missed. */
  joinFrame() {
    const frame = { op: "join", room: this.name };
    if (typeof this.epoch === "string" && this.historyLoaded) {
      frame.since = { offset: this.last, epoch: this.epoch };
    }
    return frame;
  }

  applyJoined(frame) {
    const first = !this.historyLoaded;
    this.joined = true;
    if (typeof frame.epoch === "string") {
      this.epoch = frame.epoch;
      if (first && Number.isInteger(frame.offset)) this.last = frame.offset;
    }
    return { needsHistory: first };
  }

  /** Adds a message unless it is here already; false when it was. */
  add(message) {
    if (this.ids.has(message.id)) return false;
    this.ids.add(message.id);
    const offset = message.offset;
    if (Number.isInteger(offset)) {
      if (offset > this.last) this.last = offset;
      let at = this.messages.length;
      while (at > 0 && Number.isInteger(this.messages[at - 1].offset) && this.messages[at - 1].offset > offset) {
        at -= 1;
      }
      this.messages.splice(at, 0, message);
    } else {
      this.messages.push(message);
    }
    return true;
  }

  /** A page of history (oldest first); `limit` is what was asked for. */
  applyHistory(frame, limit) {
    const added = frame.messages.filter((message) => this.add(message));
    this.historyLoaded = true;
    if (typeof frame.epoch === "string") this.epoch = frame.epoch;
    const oldest = this.oldest();
    this.hasEarlier = frame.messages.length >= limit && oldest !== null && oldest > 1;
    return added;
  }

  oldest() {
    const first = this.messages.find((message) => Number.isInteger(message.offset));
    return first ? first.offset : null;
  }

  /** A `reset` gap: the room's history was lost, offsets start again. */
  reset() {
    this.messages = [];
    this.ids.clear();
    this.last = 0;
    this.hasEarlier = false;
  }

  applyPresence(frame) {
    this.members = new Map(frame.members.map((member) => [member.id, member]));
    this.count = frame.count;
  }

  memberJoined(user) {
    if (!this.members.has(user.id)) this.count += 1;
    this.members.set(user.id, { ...user, connections: 1 });
  }

  memberLeft(user) {
    if (this.members.delete(user.id)) this.count = Math.max(0, this.count - 1);
  }

  /** Members sorted by name, as the server lists them. */
  people() {
    return [...this.members.values()].sort((a, b) => a.username.localeCompare(b.username));
  }
}

/** `dm:<a>,<b>`: both names lower case, sorted — the one spelling the server accepts. */
export function dmRoom(me, other) {
  return `dm:${[me.toLowerCase(), other.toLowerCase()].sort().join(",")}`;
}

/** How a room is named to a person: a DM by the other user. */
export function roomLabel(name, me) {
  if (name.startsWith("dm:") && me) {
    const names = name.slice(3).split(",");
    const others = names.filter((n) => n !== me.toLowerCase());
    return `Direct: ${others.length ? others[0] : me}`;
  }
  return name;
}
