// Signing in from the browser: the auth service's token flow, called across origins (CORS,
// allowed for this page's origin by AUTH_ALLOWED_ORIGINS).
//
// The password grant as the public client gives an access token (for the chat HTTP API and
// the socket's `bearer.` subprotocol) and a rotating refresh token. Both live in this
// module's memory only: no storage a script of another page or a later visitor of this
// browser could read, nothing that outlives the tab. A reload asks for the password again.

import { HttpError, request } from "./http.js";

const REFRESH_AT = 0.75; // of the access token's lifetime...
const REFRESH_MARGIN_S = 5; // ...and at least this long before it ends
const RETRY_S = 5; // a refresh that could not reach the auth service is tried again

/** The signed-in user's tokens, kept fresh until sign-out. Events: `refreshed`, `ended`. */
export class AuthSession extends EventTarget {
  constructor(authUrl, pageOrigin) {
    super();
    this.authUrl = authUrl;
    this.hint = `is it running, and is ${pageOrigin} in its AUTH_ALLOWED_ORIGINS?`;
    this.access = null;
    this.refreshToken = null;
    this.username = null;
    this.expiresAt = null; // epoch seconds
    this.timer = null;
    this.pending = null; // one refresh at a time: the timer and a 4001 may ask together
  }

  get signedIn() {
    return this.access !== null;
  }

  async register(username, password) {
    await this.call("/users", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
  }

  async signIn(username, password) {
    await this.grant({ grant_type: "password", username, password });
    this.username = username;
  }

  /** A fresh access token (the refresh token rotates); `ended` when it is refused. */
  refresh() {
    if (!this.pending) {
      this.pending = this.rotate().finally(() => {
        this.pending = null;
      });
    }
    return this.pending;
  }

  async rotate() {
    if (!this.refreshToken) throw new HttpError(401, "not_signed_in", "sign in first", null);
    try {
      await this.grant({ grant_type: "refresh_token", refresh_token: this.refreshToken });
    } catch (error) {
      if (error instanceof HttpError && !error.transient) {
        this.forget();
        this.dispatchEvent(new CustomEvent("ended", { detail: error }));
      } else if (this.signedIn) {
        this.schedule(RETRY_S);
      }
      throw error;
    }
    this.dispatchEvent(new CustomEvent("refreshed", { detail: this.access }));
    return this.access;
  }

  /** Revokes the refresh token (its whole family) and the access token, then forgets them. */
  async signOut() {
    const tokens = [this.refreshToken, this.access].filter(Boolean);
    this.forget();
    const failures = [];
    for (const token of tokens) {
      try {
        await this.call("/revoke", { method: "POST", ...form({ token }) });
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length) throw failures[0];
  }

  forget() {
    clearTimeout(this.timer);
    this.timer = null;
    this.access = this.refreshToken = this.username = this.expiresAt = null;
  }

  async grant(fields) {
    const started = Date.now();
    const body = await this.call("/token", { method: "POST", ...form(fields) });
    if (!body || typeof body.access_token !== "string") {
      throw new HttpError(502, "invalid_response", "no access_token in the answer", null);
    }
    this.access = body.access_token;
    this.refreshToken = typeof body.refresh_token === "string" ? body.refresh_token : null;
    const lifetime = Number(body.expires_in);
    if (Number.isFinite(lifetime) && lifetime > 0) {
      this.expiresAt = Math.floor(started / 1000) + lifetime;
      const due = Math.max(lifetime / 2, Math.min(lifetime * REFRESH_AT, lifetime - REFRESH_MARGIN_S));
      this.schedule(due - (Date.now() - started) / 1000);
    }
  }

  schedule(seconds) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      // Failures are reported through `ended`, or retried by `rotate`.
      this.refresh().catch(() => {});
    }, Math.max(0, seconds) * 1000);
  }

  call(path, options) {
    return request(this.authUrl + path, { ...options, where: "the auth service", hint: this.hint });
  }
}

function form(fields) {
  return {
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(fields).toString(),
  };
}
