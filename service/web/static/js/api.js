// The chat HTTP API of this instance (`/api/…`, docs/api.md) as the signed-in user: private
// rooms and their members. Same origin as the page, so no CORS is involved.

import { request } from "./http.js";

const room = (name) => `/api/rooms/${encodeURIComponent(name)}`;

/** Private rooms over HTTP, with the page's access token. */
export class ChatApi {
  constructor(auth) {
    this.auth = auth;
  }

  create(name) {
    return this.call("POST", "/api/rooms", { room: name });
  }

  members(name) {
    return this.call("GET", `${room(name)}/members`);
  }

  /** PUT adds `username` to the room, DELETE removes it. */
  member(method, name, username) {
    return this.call(method, `${room(name)}/members/${encodeURIComponent(username)}`);
  }

  call(method, path, body) {
    const headers = { Authorization: `Bearer ${this.auth.access}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return request(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      where: "this chat instance",
    });
  }
}
