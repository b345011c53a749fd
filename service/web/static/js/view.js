// Everything the page draws. Text from the network is only ever set as text (textContent),
// never parsed as HTML, so a message cannot inject markup or script.

import { roomLabel } from "./rooms.js";

const MAX_ALERTS = 4;
const INFO_FOR_MS = 10000; // what merely happened fades; what failed stays until dismissed

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** The DOM side of the page: the bar, notices, the room list, the open room, presence. */
export class View {
  constructor() {
    this.status = $("status");
    this.statusText = $("status-text");
    this.connects = 0;
    this.refreshes = 0;
  }

  // -- the bar ----------------------------------------------------------------------------

  /**
   * The connection's state. The words change only when the state or its reason does, so a
   * screen reader announces each once; the countdown beside them is for the eyes only.
   */
  showState({ state, text, retryIn }) {
    const changed = this.status.dataset.state !== state;
    this.status.dataset.state = state;
    const label = {
      "signed-out": "Not signed in",
      connecting: "Connecting…",
      live: "Live",
      reconnecting: "Reconnecting",
      offline: "Offline",
    }[state];
    const words = text ? `${label} (${text})` : label;
    if (this.statusText.textContent !== words) this.statusText.textContent = words;
    $("status-countdown").textContent = Number.isInteger(retryIn) ? ` in ${retryIn} s` : "";
    if (state === "live" && changed) this.status.dataset.connects = String(++this.connects);
  }

  signedIn(username) {
    $("signin-view").hidden = true;
    $("chat-view").hidden = false;
    $("account").hidden = false;
    $("whoami").textContent = `Signed in as ${username}`;
    $("join-room").focus();
  }

  signedOut() {
    $("chat-view").hidden = true;
    $("account").hidden = true;
    $("signin-view").hidden = false;
    $("signin-password").value = "";
    $("room-list").replaceChildren();
    this.clearRoom("No room open");
    this.connects = this.refreshes = 0;
    delete this.status.dataset.connects;
    delete this.status.dataset.refreshes;
    $("signin-username").focus();
  }

  /** The page holds a new access token (it refreshes before the old one expires). */
  tokenRefreshed(expiresAt) {
    $("whoami").title = `credential valid until ${clock(expiresAt)}`;
  }

  /** The socket took the new token (`refreshed`): it stays open past the old one's end. */
  socketRefreshed() {
    this.status.dataset.refreshes = String(++this.refreshes);
  }

  // -- notices ----------------------------------------------------------------------------

  /** A notice in the alert region: `error` for what failed, `info` for what happened. */
  alert(text, kind = "error") {
    const list = $("alert-list");
    const dismiss = el("button", { type: "button", class: "secondary", text: "Dismiss" });
    const item = el("li", { class: kind }, el("p", { text }), dismiss);
    dismiss.setAttribute("aria-label", `Dismiss: ${text}`);
    dismiss.addEventListener("click", () => item.remove());
    list.append(item);
    if (kind === "info") setTimeout(() => item.remove(), INFO_FOR_MS);
    while (list.children.length > MAX_ALERTS) {
      // What merely happened goes first; a failure stays until it is dismissed or outnumbered.
      (list.querySelector("li.info") || list.firstElementChild).remove();
    }
  }

  clearAlerts() {
    $("alert-list").replaceChildren();
  }

  // -- the list of rooms ------------------------------------------------------------------

  renderRooms(rooms, open, me, onOpen) {
    const items = [...rooms.values()].map((room) => {
      const button = el("button", { type: "button", "data-room": room.name });
      button.append(el("span", { text: roomLabel(room.name, me) }));
      if (room.unread && room.name !== open) {
        button.append(el("span", { class: "badge", text: String(room.unread), "aria-label": `${room.unread} unread` }));
      }
      if (room.name === open) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => onOpen(room.name, true));
      return el("li", {}, button);
    });
    $("room-list").replaceChildren(...items);
  }

  // -- the open room ----------------------------------------------------------------------

  clearRoom(title, notice) {
    $("room-title").textContent = title;
    $("room-title").dataset.room = "";
    $("messages").replaceChildren(...(notice ? [this.notice(notice)] : []));
    $("load-earlier").hidden = true;
    $("leave-room").hidden = true;
    $("members-panel").hidden = true;
    $("presence").replaceChildren();
    $("presence-count").textContent = "";
    this.composer(false);
  }

  showRoom(room, me) {
    const same = $("room-title").dataset.room === room.name;
    $("room-title").textContent = roomLabel(room.name, me);
    $("room-title").dataset.room = room.name;
    $("messages").replaceChildren(...room.messages.map((m) => this.message(m, me)));
    $("leave-room").hidden = false;
    if (!same) $("member-list").replaceChildren(); // until the room's own list arrives
    $("members-panel").hidden = !room.name.startsWith("private:");
    this.earlier(room);
    this.presence(room);
    this.composer(true);
    this.scrollToEnd();
  }

  composer(enabled) {
    const input = $("composer-text");
    input.disabled = !enabled;
    input.placeholder = enabled ? "Write a message" : "Open a room to write";
    $("composer").querySelector("button").disabled = !enabled;
  }

  earlier(room) {
    $("load-earlier").hidden = !room.hasEarlier;
  }

  appendMessage(message, me) {
    const list = $("messages");
    const nearEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    list.append(this.message(message, me));
    if (nearEnd || (message.from && message.from.username === me)) this.scrollToEnd();
  }

  /** Older messages go before the first one; the reader's place stays where it was. */
  prependMessages(messages, me) {
    const list = $("messages");
    const before = list.scrollHeight;
    list.prepend(...messages.map((m) => this.message(m, me)));
    list.scrollTop += list.scrollHeight - before;
  }

  appendNotice(text) {
    $("messages").append(this.notice(text));
    this.scrollToEnd();
  }

  message(message, me) {
    const from = message.from && message.from.username ? message.from.username : "?";
    const item = el("li", { class: from === me ? "mine" : "", "data-offset": message.offset ?? "" });
    const meta = el("div", { class: "meta" }, el("span", { class: "from", text: from }));
    meta.append(el("time", { dateTime: new Date(message.ts * 1000).toISOString(), text: clock(message.ts) }));
    item.append(meta, el("p", { class: "text", text: message.text }));
    return item;
  }

  notice(text) {
    return el("li", { class: "notice", text });
  }

  scrollToEnd() {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  }

  presence(room) {
    const people = room.people();
    $("presence").replaceChildren(...people.map((p) => el("li", { text: p.username })));
    $("presence-count").textContent = room.count === 1 ? "1 person" : `${room.count} people`;
  }

  /** A private room's members (`GET /api/rooms/{room}/members`); only its owner manages them. */
  members(room, answer, me) {
    if ($("room-title").dataset.room !== room) return;
    const owner = answer.owner.username;
    const items = answer.members.map((m) => el("li", { text: m.username === owner ? `${m.username} (owner)` : m.username }));
    $("member-list").replaceChildren(...items);
    $("owner-tools").hidden = owner !== me;
  }

  focusComposer() {
    $("composer-text").focus();
  }
}
