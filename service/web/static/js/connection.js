// One WebSocket to this chat instance's /ws, kept open: it reconnects with backoff after any
// drop, and says at every moment what it is doing (connecting, live, reconnecting in N s,
// offline). After a drop it tries the next of its URLs (this instance's own first, then the
// other instances' that CHAT_WEB_SOCKET_URLS names), so a page outlives its instance. The
// credential is the `bearer.<token>` subprotocol: a browser cannot set an Authorization
// header on a WebSocket.

const FIRST_DELAY_S = 0.5;
const MAX_DELAY_S = 10;
const PING_EVERY_MS = 25000; // a pong must come back before the next ping is due
const CLOSES = {
  1001: "the server is going away",
  1006: "the connection was lost",
  1008: "too many frames (rate limit)",
  1009: "a frame was too big",
  1011: "the server failed",
  1013: "the server was overloaded or this page read too slowly",
  4001: "the credential expired",
  4003: "the credential was revoked or the account disabled",
  4004: "disconnected by the server",
};

/**
 * Events: `state` ({state, text, retryIn}), `frame` (a parsed server frame, `hello`
 * included), `ended` (a close that must not be retried, {code, reason}).
 */
export class ChatConnection extends EventTarget {
  constructor(urls, auth) {
    super();
    this.urls = urls;
    this.index = 0; // the URL in use
    this.auth = auth;
    this.ws = null;
    this.state = "offline";
    this.attempt = 0;
    this.wanted = false;
    this.timers = new Set();
    this.pingTimer = null;
    this.awaitingPong = false;
    this.opening = false;
    this.onOnline = () => this.wanted && !this.ws && !this.opening && this.reconnectNow();
    // The device lost its network: the socket is as good as gone, though the browser may not
    // notice for a long time. Dropped now, the page says so and resumes (with `since`) as
    // soon as the network is back.
    this.onOffline = () => this.ws && this.drop(this.ws, "no network");
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
  }

  get url() {
    return this.urls[this.index];
  }

  /** Where the socket is, when it is not this page's own instance. */
  get elsewhere() {
    return this.index === 0 ? "" : `on ${new URL(this.url).host}`;
  }

  get live() {
    return this.state === "live";
  }

  start() {
    this.wanted = true;
    this.open();
  }

  /** Closes for good (sign-out): no reconnect. */
  stop(text = "signed out") {
    this.wanted = false;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    this.clearTimers();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "bye");
    }
    this.setState("offline", text);
  }

  /** Sends a frame when live; false when it could not be sent. */
  send(frame) {
    if (!this.live || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  async open() {
    if (this.opening) return; // one attempt at a time: never two sockets
    this.opening = true;
    try {
      await this.attemptNow();
    } finally {
      this.opening = false;
    }
  }

  async attemptNow() {
    this.clearTimers();
    this.setState("connecting", this.attempt ? `attempt ${this.attempt + 1}` : "");
    try {
      // A token about to expire would be refused at the handshake: refresh it first. And
      // every third failed attempt too: a refused handshake looks like any other drop, so
      // the token may have been revoked meanwhile; if its grant is gone as well, the refresh
      // fails and ends the session instead of retrying for ever.
      const expiring = this.auth.expiresAt && this.auth.expiresAt - Date.now() / 1000 < 15;
      if (expiring || (this.attempt > 0 && this.attempt % 3 === 0)) {
        await this.auth.refresh();
      }
    } catch (error) {
      if (!this.auth.signedIn) return; // `ended`: the page signs out
      this.retryLater(`cannot refresh the credential (${error.message})`);
      return;
    }
    if (!this.wanted || this.ws) return;
    let ws;
    try {
      ws = new WebSocket(this.url, ["chat.v1", `bearer.${this.auth.access}`]);
    } catch (error) {
      this.retryLater(`cannot open a socket (${error.message})`);
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => this.received(ws, event);
    ws.onclose = (event) => this.closed(ws, event);
  }

  received(ws, event) {
    if (ws !== this.ws) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // the server sends JSON only
    }
    if (frame.type === "hello") {
      this.attempt = 0;
      this.setState("live", this.elsewhere);
      this.startPings();
    } else if (frame.type === "pong") {
      this.awaitingPong = false;
      return;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  async closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopPings();
    if (!this.wanted) return;
    this.index = (this.index + 1) % this.urls.length; // the next instance, if there are more
    const why = CLOSES[event.code] || `closed (${event.code})`;
    if (event.code === 4003) {
      this.wanted = false;
      this.setState("offline", why);
      this.dispatchEvent(new CustomEvent("ended", { detail: { code: event.code, reason: why } }));
      return;
    }
    if (event.code === 4001) {
      try {
        await this.auth.refresh();
      } catch {
        // `ended` signs the page out, or the next attempt tries again.
      }
    }
    // A handshake the server refused (401, 403, 429, 503) shows here as 1006 as well: a
    // browser does not tell the page why. Backing off covers each of them.
    this.retryLater(why, event.code === 1008 ? 4 : 1);
  }

  retryLater(why, factor = 1) {
    if (!this.wanted) return;
    const ceiling = Math.min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** this.attempt) * factor;
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2; // jitter: not every page at once
    this.attempt += 1;
    const due = Date.now() + delay * 1000;
    // Without a network it says so, and goes on trying (`onLine` is only a hint); the
    // network's return makes it try at once.
    const [state, text] = navigator.onLine
      ? ["reconnecting", why]
      : ["offline", `${why}; this device has no network`];
    const tick = () => {
      this.setState(state, text, Math.max(0, Math.ceil((due - Date.now()) / 1000)));
    };
    tick();
    this.every(tick, 1000);
    this.after(() => this.open(), delay * 1000);
  }

  /** Gives up on a socket the browser still thinks open, and reconnects as after a drop. */
  drop(ws, reason) {
    ws.close(4000, reason);
    this.closed(ws, { code: 1006 });
  }

  reconnectNow() {
    this.clearTimers();
    this.open();
  }

  startPings() {
    this.stopPings();
    this.awaitingPong = false;
    this.pingTimer = setInterval(() => {
      if (this.awaitingPong && this.ws) {
        // No pong for a whole period: the link is dead though the browser has not noticed.
        this.drop(this.ws, "no pong");
        return;
      }
      this.awaitingPong = this.send({ op: "ping" });
    }, PING_EVERY_MS);
  }

  stopPings() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  after(fn, ms) {
    const id = setTimeout(() => {
      this.timers.delete(id);
      fn();
    }, ms);
    this.timers.add(id);
  }

  every(fn, ms) {
    this.timers.add(-setInterval(fn, ms)); // negative: an interval, cleared as one
  }

  clearTimers() {
    for (const id of this.timers) {
      if (id < 0) clearInterval(-id);
      else clearTimeout(id);
    }
    this.timers.clear();
  }

  setState(state, text, retryIn = null) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, text, retryIn } }));
  }
}
