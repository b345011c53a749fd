// The page's start: read where the auth service is, then wire the forms to the session and
// the chat. Every failure ends up as a plain sentence in the notices.

import { AuthSession } from "./auth.js";
import { ChatClient } from "./chat.js";
import { request } from "./http.js";
import { View } from "./view.js";

const view = new View();
const $ = (id) => document.getElementById(id);
const ownSocket = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

let auth = null;
let chat = null;
let sockets = [ownSocket]; // this instance's own first, then CHAT_WEB_SOCKET_URLS

function on(formId, handler) {
  const form = $(formId);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await handler(form, event.submitter);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
}

/** The value of a form's field, trimmed; empty values are reported and stop the action. */
function field(id, what) {
  const value = $(id).value.trim();
  if (!value) {
    view.alert(`Enter ${what} first.`);
    $(id).focus();
  }
  return value;
}

function startChat(username) {
  chat = new ChatClient(view, auth, sockets);
  chat.onEnded = (reason) => endSession(`You were signed out: ${reason}.`);
  view.signedIn(username);
  view.tokenRefreshed(auth.expiresAt);
  chat.start();
}

function endSession(why) {
  if (chat) chat.stop("signed out");
  chat = null;
  auth.forget();
  view.signedOut();
  view.showState({ state: "signed-out", text: "" });
  if (why) view.alert(why, "info");
}

function privateRoomOpen() {
  const room = chat && chat.open;
  if (!room || !room.startsWith("private:")) {
    view.alert("Open a private room first: members are managed in private rooms only.");
    return null;
  }
  return room;
}

function wire() {
  on("signin-form", async (form, submitter) => {
    const username = field("signin-username", "a username");
    const password = username && $("signin-password").value;
    if (!username) return;
    if (!password) {
      view.alert("Enter a password first.");
      $("signin-password").focus();
      return;
    }
    const registering = submitter && submitter.value === "register";
    let registered = false;
    try {
      if (registering) {
        await auth.register(username, password);
        registered = true;
      }
      await auth.signIn(username, password);
    } catch (error) {
      if (registered) view.alert(`Registered ${username}.`, "info");
      view.alert(`${registering && !registered ? "Registering" : "Signing in"} failed: ${error.message}`);
      return;
    }
    view.clearAlerts(); // what went wrong before signing in is over
    if (registered) view.alert(`Registered ${username}.`, "info");
    startChat(username);
  });

  $("sign-out").addEventListener("click", async () => {
    const revoking = auth.signOut();
    endSession(null);
    try {
      await revoking;
      view.alert("Signed out: this page's tokens are revoked.", "info");
    } catch (error) {
      view.alert(`Signed out here, but revoking the tokens failed: ${error.message}`);
    }
  });

  on("join-form", async () => {
    const room = field("join-room", "a room name");
    if (!room) return;
    chat.join(room);
    $("join-room").value = "";
  });

  on("dm-form", async () => {
    const username = field("dm-user", "a username");
    if (!username) return;
    chat.startDm(username);
    $("dm-user").value = "";
  });

  on("create-form", async () => {
    const name = field("create-room", "a name for the room");
    if (!name) return;
    try {
      await chat.createPrivate(name);
      $("create-room").value = "";
      view.alert(`Created private:${name}; invite its members under "Members".`, "info");
    } catch (error) {
      view.alert(`Creating private:${name} failed: ${error.message}`);
    }
  });

  for (const [formId, inputId, method, done, verb] of [
    ["invite-form", "invite-user", "PUT", "Invited", "Inviting"],
    ["remove-form", "remove-user", "DELETE", "Removed", "Removing"],
  ]) {
    on(formId, async () => {
      const room = privateRoomOpen();
      const username = room && field(inputId, "a username");
      if (!username) return;
      try {
        await chat.api.member(method, room, username);
        $(inputId).value = "";
        chat.loadMembers(room);
        view.alert(`${done} ${username} ${method === "PUT" ? "to" : "from"} ${room}.`, "info");
      } catch (error) {
        view.alert(`${verb} ${username} ${method === "PUT" ? "to" : "from"} ${room} failed: ${error.message}`);
      }
    });
  }

  on("composer", async () => {
    const input = $("composer-text");
    if (!input.value.trim()) return;
    chat.send(input.value);
    input.value = "";
    input.focus();
  });

  $("load-earlier").addEventListener("click", () => chat && chat.loadEarlier());
  $("leave-room").addEventListener("click", () => chat && chat.open && chat.leave(chat.open));
}

async function boot() {
  view.showState({ state: "signed-out", text: "" });
  let config;
  try {
    config = await request("/web/config.json", { where: "this chat instance" });
  } catch (error) {
    view.alert(`The page cannot start: ${error.message}`);
    return;
  }
  auth = new AuthSession(config.auth_url, location.origin);
  auth.addEventListener("ended", (event) => {
    if (chat) endSession(`Your sign-in ended: ${event.detail.message}. Sign in again.`);
  });
  $("composer-text").maxLength = config.max_text;
  const others = Array.isArray(config.ws_urls) ? config.ws_urls : [];
  sockets = [ownSocket, ...others.filter((url) => url !== ownSocket)];
  wire();
}

boot();
