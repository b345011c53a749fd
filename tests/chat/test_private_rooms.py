"""Private rooms over the API and on sockets: who may create, see, join, add and remove; a
removal or deletion reaches the member's sockets on every instance at once."""

from __future__ import annotations

import asyncio

from tests.chat.helpers import (
    ChatUser,
    Stack,
    api,
    connect,
    join,
    receive_type,
    send,
)
from tests.conftest import PASSWORD

ROOM = "private:plans"


async def _refused_join(ws: object, room: str) -> dict[str, object]:
    await ws.send_json({"op": "join", "room": room})  # type: ignore[attr-defined]
    return await receive_type(ws, "error")  # type: ignore[arg-type]


async def test_create_then_list_members(stack: Stack, alice: ChatUser) -> None:
    status, body = await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    assert status == 201
    assert body == {"room": ROOM, "owner": {"id": alice.id, "username": "alice"}}
    status, body = await api(stack.b, "GET", f"/api/rooms/{ROOM}/members", alice.access_token)
    assert status == 200
    assert body["owner"]["id"] == alice.id
    assert body["members"] == [{"id": alice.id, "username": "alice"}]
    status, body = await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    assert (status, body["error"]) == (409, "room_exists")


async def test_rooms_are_created_only_in_a_members_namespace(stack: Stack, alice: ChatUser) -> None:
    for room, error in (
        ("lobby", "bad_room"),
        ("nowhere:x", "unknown_namespace"),
        ("b d", "bad_room"),
    ):
        status, body = await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": room})
        assert (status, body["error"]) == (400, error), room


async def test_an_outsider_learns_nothing_of_a_private_room(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    answers = []
    for room in (ROOM, "private:does-not-exist"):
        answers.append(await api(stack.a, "GET", f"/api/rooms/{room}/members", bob.access_token))
        answers.append(await api(stack.a, "GET", f"/api/rooms/{room}/messages", bob.access_token))
        answers.append(
            await api(
                stack.a, "POST", f"/api/rooms/{room}/messages", bob.access_token, {"text": "x"}
            )
        )
        answers.append(await api(stack.a, "DELETE", f"/api/rooms/{room}", bob.access_token))
    assert {(status, body["error"]) for status, body in answers} == {(403, "forbidden")}
    assert answers[:4] == answers[4:]  # the same answers, word for word
    ws = await connect(stack.b, bob.access_token)
    for room in (ROOM, "private:does-not-exist"):
        refused = await _refused_join(ws, room)
        assert refused["code"] == "forbidden"
        await ws.send_json({"op": "history", "room": room})
        assert (await receive_type(ws, "error"))["code"] == "forbidden"


async def test_the_owner_adds_a_member_by_name_who_may_then_join(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    status, _ = await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/BOB", alice.access_token)
    assert status == 204
    status, body = await api(
        stack.a, "PUT", f"/api/rooms/{ROOM}/members/nobody", alice.access_token
    )
    assert (status, body["error"]) == (404, "not_found")
    carol = await stack.user("carol", PASSWORD)
    # only the owner (or a server) adds: a member may not
    status, body = await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/carol", bob.access_token)
    assert (status, body["error"]) == (403, "forbidden")
    alice_ws, bob_ws = (
        await connect(stack.a, alice.access_token),
        await connect(stack.b, bob.access_token),
    )
    await join(alice_ws, ROOM)
    await join(bob_ws, ROOM)
    await send(alice_ws, ROOM, "welcome")
    assert (await receive_type(bob_ws, "message"))["text"] == "welcome"
    carol_ws = await connect(stack.b, carol.access_token)
    assert (await _refused_join(carol_ws, ROOM))["code"] == "forbidden"


async def test_a_removed_member_is_taken_out_at_once_on_its_instance(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/bob", alice.access_token)
    alice_ws = await connect(stack.a, alice.access_token)
    bob_ws = await connect(stack.b, bob.access_token)  # the other instance
    await join(alice_ws, ROOM)
    await join(bob_ws, ROOM)
    for ws in (alice_ws, bob_ws):
        await join(ws, "lobby")
    status, _ = await api(stack.a, "DELETE", f"/api/rooms/{ROOM}/members/bob", alice.access_token)
    assert status == 204
    async with asyncio.timeout(1.0):  # SPEC: within 1 s, on every instance
        assert await receive_type(bob_ws, "removed") == {"type": "removed", "room": ROOM}
    await send(alice_ws, ROOM, "after the removal")
    await send(alice_ws, "lobby", "marker")  # bob is still in lobby: the marker comes through
    frame = await receive_type(bob_ws, "message")
    assert frame["room"] == "lobby"  # nothing from the private room came before it
    assert (await _refused_join(bob_ws, ROOM))["code"] == "forbidden"
    await bob_ws.send_json({"op": "send", "room": ROOM, "text": "still here?"})
    assert (await receive_type(bob_ws, "error"))["code"] == "forbidden"  # not "not_joined"


async def test_a_member_may_remove_itself(stack: Stack, alice: ChatUser, bob: ChatUser) -> None:
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/bob", alice.access_token)
    await stack.user("carol", PASSWORD)
    await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/carol", alice.access_token)
    status, body = await api(
        stack.b, "DELETE", f"/api/rooms/{ROOM}/members/carol", bob.access_token
    )
    assert (status, body["error"]) == (403, "forbidden")  # but nobody else
    status, _ = await api(stack.b, "DELETE", f"/api/rooms/{ROOM}/members/bob", bob.access_token)
    assert status == 204
    status, body = await api(stack.a, "GET", f"/api/rooms/{ROOM}/members", alice.access_token)
    assert [m["username"] for m in body["members"]] == ["alice", "carol"]


async def test_deleting_a_room_removes_everyone_and_its_history(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/bob", alice.access_token)
    alice_ws, bob_ws = (
        await connect(stack.a, alice.access_token),
        await connect(stack.b, bob.access_token),
    )
    first = await join(alice_ws, ROOM)
    await join(bob_ws, ROOM)
    await send(alice_ws, ROOM, "soon gone")
    status, body = await api(stack.b, "DELETE", f"/api/rooms/{ROOM}", bob.access_token)
    assert (status, body["error"]) == (403, "forbidden")  # only its owner (or a server)
    status, _ = await api(stack.b, "DELETE", f"/api/rooms/{ROOM}", alice.access_token)
    assert status == 204
    async with asyncio.timeout(1.0):
        for ws in (alice_ws, bob_ws):
            await receive_type(ws, "removed")
    assert (await _refused_join(alice_ws, ROOM))["code"] == "forbidden"
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    again = await join(alice_ws, ROOM)
    assert again["epoch"] != first["epoch"]
    assert again["offset"] == 0  # the history went with the room


async def test_a_server_token_manages_any_room(
    stack: Stack, alice: ChatUser, bob: ChatUser
) -> None:
    server = await stack.server_token()
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    status, _ = await api(stack.a, "PUT", f"/api/rooms/{ROOM}/members/bob", server)
    assert status == 204
    status, body = await api(stack.a, "GET", f"/api/rooms/{ROOM}/members", server)
    assert status == 200
    assert body["count"] == 2
    status, body = await api(stack.a, "GET", "/api/rooms/private:none/members", server)
    assert (status, body["error"]) == (404, "not_found")  # a server may know what exists
    status, _ = await api(stack.a, "DELETE", f"/api/rooms/{ROOM}", server)
    assert status == 204


async def test_a_users_token_without_the_chat_scope_is_refused(stack: Stack) -> None:
    plain = await stack.server_token(scope="chat")  # a service token without chat:server
    status, body = await api(stack.a, "GET", f"/api/rooms/{ROOM}/members", plain)
    assert (status, body["error"]) == (401, "invalid_token")
    status, body = await api(stack.a, "GET", f"/api/rooms/{ROOM}/members", None)
    assert (status, body["error"]) == (401, "unauthorized")
    status, body = await api(stack.a, "GET", f"/api/rooms/{ROOM}/members", "garbage")
    assert (status, body["error"]) == (401, "invalid_token")


async def test_a_deleted_rooms_members_are_taken_out_and_their_sockets_stay_open(
    stack: Stack, alice: ChatUser
) -> None:
    # The owner's own socket is taken out too: removed from the room, not disconnected.
    await api(stack.a, "POST", "/api/rooms", alice.access_token, {"room": ROOM})
    ws = await connect(stack.a, alice.access_token)
    await join(ws, ROOM)
    await api(stack.a, "DELETE", f"/api/rooms/{ROOM}", alice.access_token)
    await receive_type(ws, "removed")
    await ws.send_json({"op": "ping"})
    assert (await receive_type(ws, "pong"))["type"] == "pong"
    assert not ws.closed
    await ws.send_json({"op": "history", "room": ROOM})  # and the room is out of reach
    assert (await receive_type(ws, "error"))["code"] == "forbidden"


async def test_a_server_cannot_fill_a_private_room_nobody_created(stack: Stack) -> None:
    server = await stack.server_token()
    body = {"text": "into the void"}
    status, answer = await api(stack.a, "POST", "/api/rooms/private:nope/messages", server, body)
    assert (status, answer["error"]) == (404, "not_found")
    for path in ("messages", "presence", "members"):
        status, answer = await api(stack.a, "GET", f"/api/rooms/private:nope/{path}", server)
        assert (status, answer["error"]) == (404, "not_found"), path


async def test_a_room_with_no_message_yet_has_no_epoch(stack: Stack, alice: ChatUser) -> None:
    status, body = await api(stack.a, "GET", "/api/rooms/quiet/messages", alice.access_token)
    assert (status, body) == (200, {"room": "quiet", "epoch": None, "messages": []})
