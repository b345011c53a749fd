"""Property-based fuzzing of `/ws`: hypothesis writes random frames at one socket while
bystanders on every instance keep receiving.

The fuzzed socket is a raw client (`tests.chat.rawws`), so a frame can be anything on the
wire: malformed or deeply nested JSON, wrong types, huge numbers, NaN literals, binary,
invalid UTF-8, fragmented messages, pings and pongs, close frames, frames over the size limit
and frames that break RFC 6455 framing. The oracle, for every generated action:

- a text message gets exactly one direct answer (the one its `op` calls for, or an `error`
  whose code docs/protocol.md lists for that case, echoing a valid `ref`), and the socket
  stays open: a `ping` sentinel sent after the action must be answered next;
- a binary message gets exactly one `binary_unsupported` error; a ping gets its pong; an
  unsolicited pong gets nothing;
- a frame the connection cannot survive ends it with the close code RFC 6455 and
  docs/protocol.md name (1009 too big, 1007 invalid UTF-8, 1002 broken framing, 1000 in
  answer to the client's close); the fuzzer then reconnects;
- the server never logs an error or a traceback;
- a message alice sends through instance A every few actions reaches bob on instance B and
  on the fuzzed instance.

Bugs the fuzzer found are pinned by the regression tests at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from service.native.frames import MAX_REF_LENGTH, MAX_SAFE_INTEGER, OPS
from service.rooms.access import dm_pair
from service.views import NODE
from tests.chat.conftest import ChatFactory
from tests.chat.helpers import DEADLINE, ChatUser, Client, Stack, connect, join, receive, send
from tests.chat.rawws import open_raw

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
ROOM = "lobby"  # the bystanders' room; the generators aim at it too
MAX_FRAME = 64 * 1024  # CHAT_MAX_FRAME's default
CANARY_EVERY = 4  # actions between two bystander checks

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
NORMAL, PROTOCOL_ERROR, NO_STATUS, NO_CLOSE_FRAME = 1000, 1002, 1005, 1006
INVALID_TEXT, TOO_BIG, POLICY_VIOLATION = 1007, 1009, 1008

# Stand-ins for real tokens, swapped in when the frame is written (the tokens exist only once
# the fixtures ran); the fuzzed socket belongs to alice.
OWN_TOKEN, FOREIGN_TOKEN = "@@own-token@@", "@@foreign-token@@"

MAX_TEXT, MAX_ROOMS = 4096, 100  # CHAT_MAX_TEXT's and CHAT_MAX_ROOMS' defaults
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_.:,-]{1,128}")  # docs/protocol.md, matched in full
NAMESPACES = ("", "dm", "private")  # CHAT_NAMESPACES' default: every one keeps history
MESSAGE_KEYS = {"type", "room", "id", "offset", "from", "text", "ts"}


def documented(heading: str, key: str) -> set[str]:
    """The first column of the table under `## heading` in docs/protocol.md."""
    section = DOCS.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(rf"^\| {key} \|", section, re.M))


ERROR_CODES = documented("Error frames", r"`([a-z_]+)`")
CLOSE_CODES = {int(code) for code in documented("Close codes", r"(\d{4})")}


# -- the wire ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One client frame as written: masked, as RFC 6455 requires of clients."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    declared: int | None = None  # a length header that promises more than is sent

    def __repr__(self) -> str:  # shrunk examples stay readable even for 64 KiB payloads
        shown = self.payload if len(self.payload) <= 48 else self.payload[:48] + b"..."
        extra = "" if self.fin else ", fin=False"
        extra += f", rsv={self.rsv}" if self.rsv else ""
        extra += f", declared={self.declared}" if self.declared is not None else ""
        return f"Frame({self.opcode:#x}, {shown!r} ({len(self.payload)} B){extra})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints dataclasses field by field otherwise

    def wire(self) -> bytes:
        length = len(self.payload) if self.declared is None else self.declared
        first = (0x80 if self.fin else 0) | self.rsv << 4 | self.opcode
        if length < 126:
            head = struct.pack("!BB", first, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", first, 0x80 | 127, length)
        mask = os.urandom(4)
        size = len(self.payload)
        keystream = (mask * (size // 4 + 1))[:size]
        masked = int.from_bytes(self.payload, "big") ^ int.from_bytes(keystream, "big")
        return head + mask + masked.to_bytes(size, "big")


def text_frame(frame: dict[str, Any]) -> Frame:
    return Frame(TEXT, json.dumps(frame).encode())


class RawSocket:
    """The fuzzed client: writes frames verbatim and reads the server's frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, client: Client, token: str) -> tuple[RawSocket, dict[str, Any]]:
        assert client.port is not None
        reader, writer = await open_raw(
            str(client.host), client.port, {"Authorization": f"Bearer {token}"}
        )
        sock = cls(reader, writer)
        opcode, payload = await sock.read()
        assert opcode == TEXT, (opcode, payload)
        hello: dict[str, Any] = json.loads(payload)
        assert hello["type"] == "hello", hello
        return sock, hello

    async def write(self, *frames: Frame) -> None:
        # The server may fail the connection before reading everything we wrote: what it
        # answered is what the oracle checks.
        with contextlib.suppress(ConnectionError):
            self._writer.write(b"".join(frame.wire() for frame in frames))
            await self._writer.drain()

    async def read(self) -> tuple[int, bytes]:
        """The next server frame; (CLOSE, 1006) when the connection ended without one."""
        try:
            head = await self._reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
            return head[0] & 0x0F, await self._reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return CLOSE, struct.pack("!H", NO_CLOSE_FRAME)

    async def close(self) -> None:
        await self.write(Frame(CLOSE, struct.pack("!H", NORMAL)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DEADLINE):
                while (await self.read())[0] != CLOSE:
                    pass
        self.abort()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        self._writer.close()


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else NO_STATUS


@dataclass
class Reply:
    """What the server sent in answer to one action, up to the sentinel pong or a close."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # room traffic, any time
    pongs: list[bytes] = field(default_factory=list)
    close: int | None = None


async def collect(sock: RawSocket, sentinel: str | None) -> Reply:
    """Reads until the pong answering `sentinel`, or until the server closes."""
    reply = Reply()
    async with asyncio.timeout(DEADLINE):
        while True:
            opcode, payload = await sock.read()
            if opcode == CLOSE:
                reply.close = close_code(payload)
                return reply
            if opcode == PONG:
                reply.pongs.append(payload)
            elif opcode == PING:  # the server's heartbeat
                await sock.write(Frame(PONG, payload))
            else:
                assert opcode == TEXT, f"the server sent opcode {opcode:#x}"
                frame = json.loads(payload.decode())
                if frame.get("type") == "message":
                    assert set(frame) == MESSAGE_KEYS, frame
                    reply.messages.append(frame)
                elif frame.get("type") == "gap":  # unsolicited too: a join's `since`
                    reply.messages.append(frame)
                elif sentinel is not None and frame == {"type": "pong", "ref": sentinel}:
                    return reply
                else:
                    reply.answers.append(frame)


# -- actions and the oracle ----------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One thing the fuzzer does to the socket, and what the protocol requires in return.

    `kind` is text, binary, ping, pong or fatal; a fatal action must end the connection with
    `close`. A text action's message is `text`, written in fragments cut at `cuts` (with a
    ping between the first two when `interleave`)."""

    kind: str
    text: str = ""
    frames: tuple[Frame, ...] = ()
    cuts: tuple[int, ...] = ()
    interleave: bool = False
    close: int | None = None

    def __repr__(self) -> str:
        if self.kind == "text":
            shown = self.text if len(self.text) <= 80 else f"{self.text[:80]}... ({len(self.text)})"
            return f"Action(text {shown!r}, cuts={self.cuts}, interleave={self.interleave})"
        return f"Action({self.kind}, {self.frames}, close={self.close})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def message(self, tokens: dict[str, str]) -> str:
        text = self.text
        for stand_in, token in tokens.items():
            text = text.replace(stand_in, token)
        return text

    def wire(self, tokens: dict[str, str]) -> tuple[Frame, ...]:
        if self.kind != "text":
            return self.frames
        return fragments(TEXT, self.message(tokens).encode(), self.cuts, self.interleave)

    def pongs(self) -> list[bytes]:
        if self.kind == "ping":
            return [self.frames[0].payload]
        return [b"between"] if self.kind == "text" and self.interleaved else []

    @property
    def interleaved(self) -> bool:
        return self.interleave and len(self.cuts) > 0


def fragments(
    opcode: int, payload: bytes, cuts: tuple[int, ...], interleave: bool = False
) -> tuple[Frame, ...]:
    """`payload` as one message in fragments split at `cuts` (byte offsets, any order)."""
    bounds = [0, *sorted({cut % (len(payload) + 1) for cut in cuts}), len(payload)]
    pieces = [payload[start:end] for start, end in itertools.pairwise(bounds)]
    frames = [
        Frame(opcode if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]
    if interleave and len(frames) > 1:
        frames.insert(1, Frame(PING, b"between"))  # control frames may interleave (RFC 6455 5.4)
    return tuple(frames)


def has_lone_surrogate(value: str) -> bool:
    """docs/protocol.md: text and ref may not hold a lone UTF-16 surrogate."""
    return any(0xD800 <= ord(char) <= 0xDFFF for char in value)


def valid_ref(ref: Any) -> bool:
    if isinstance(ref, str):
        return len(ref) <= MAX_REF_LENGTH and not has_lone_surrogate(ref)
    return isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) <= MAX_SAFE_INTEGER


def check_error(answer: dict[str, Any], codes: set[str], ref: Any = None) -> None:
    assert answer.get("type") == "error", answer
    assert answer["code"] in codes, answer
    assert answer["code"] in ERROR_CODES, f"undocumented error code: {answer}"
    assert isinstance(answer["message"], str), answer
    expected = {"type", "code", "message"} | ({"ref"} if ref is not None else set())
    assert set(answer) == expected, answer
    if ref is not None:
        assert answer["ref"] == ref, answer


def expected(op: str, frame: dict[str, Any], rooms: set[str], tokens: dict[str, str]) -> set[str]:
    """What docs/protocol.md allows as the answer to a well-formed `op` (the answer's type, or
    its error code) from a socket that is in `rooms`."""
    if op == "ping":
        return {"pong"}
    if op == "refresh":
        token = frame.get("token")
        if token == tokens[OWN_TOKEN]:
            return {"refreshed", "unavailable"}
        return {"wrong_user" if token == tokens[FOREIGN_TOKEN] else "bad_token", "unavailable"}
    room = frame.get("room")
    if not isinstance(room, str) or not ROOM_PATTERN.fullmatch(room):
        return {"bad_room"}
    known = (room.partition(":")[0] if ":" in room else "") in NAMESPACES
    refused = policy_refusal(room) if known else {"unknown_namespace"}
    if op == "join":
        if not valid_since(frame.get("since")):
            return {"bad_since"}
        if refused:
            return refused
        return {"joined", "unavailable"} if len(rooms - {room}) < MAX_ROOMS else {"too_many_rooms"}
    if op == "leave":
        return {"left"} if room in rooms else {"not_joined"}
    if op == "history":
        if not valid_page(frame):
            return {"bad_history"}
        return refused or {"history", "unavailable"}
    if op == "presence":
        return refused or {"presence", "unavailable"}
    text = frame.get("text")
    if not isinstance(text, str) or not text:
        return {"bad_text"}
    if len(text) > MAX_TEXT:
        return {"too_long"}
    if has_lone_surrogate(text):
        return {"bad_text"}
    if "idempotency_key" in frame and not short_text(frame["idempotency_key"]):
        return {"bad_idempotency_key"}
    if refused:
        return refused
    return {"ack", "unavailable"} if room in rooms else {"not_joined"}


def policy_refusal(room: str) -> set[str]:
    """What CHAT_NAMESPACES' default refuses alice in a room of a configured namespace: a
    DM she is not in, or misspelt; any private room (the fuzz creates none)."""
    namespace = room.partition(":")[0] if ":" in room else ""
    if namespace == "dm":
        pair = dm_pair(room)
        if pair is None:
            return {"bad_room"}
        return set() if "alice" in pair else {"forbidden"}
    return {"forbidden"} if namespace == "private" else set()


def count_value(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SAFE_INTEGER


def short_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and not has_lone_surrogate(value)


def valid_since(since: object) -> bool:
    if since is None:
        return True
    return (
        isinstance(since, dict)
        and count_value(since.get("offset"))
        and short_text(since.get("epoch"))
    )


def valid_page(frame: dict[str, Any]) -> bool:
    before, limit = frame.get("before"), frame.get("limit", 100)
    if before is not None and not (count_value(before) and before > 0):
        return False
    return count_value(limit) and 1 <= limit <= 100


def check_text_answer(
    message: str, answer: dict[str, Any], rooms: set[str], tokens: dict[str, str]
) -> None:
    """The one answer docs/protocol.md allows for the text message `message` from a socket
    in `rooms`; keeps `rooms` up to date."""
    try:
        frame = json.loads(message)
    except (ValueError, RecursionError):  # the same parser, so the same verdict
        return check_error(answer, {"bad_json"})
    if not isinstance(frame, dict):
        return check_error(answer, {"bad_frame"})
    ref = frame.get("ref")
    if not valid_ref(ref) and ref is not None:
        return check_error(answer, {"bad_ref"})
    op = frame.get("op")
    if not isinstance(op, str) or op not in OPS:
        return check_error(answer, {"unknown_op"}, ref)
    allowed = expected(op, frame, rooms, tokens)
    if answer.get("type") == "error":
        return check_error(answer, allowed, ref)
    assert answer.get("type") in allowed, (allowed, answer)
    if op == "send":  # the ack always carries ref, null when none was given
        assert set(answer) == {"type", "ref", "id", "offset"}, answer
        assert answer["ref"] == ref, answer
        assert isinstance(answer["id"], str), answer
        assert isinstance(answer["offset"], int), answer
        return None
    assert answer.get("ref") == ref, answer
    assert ("ref" in answer) == (ref is not None), answer
    if op in ("join", "leave", "history", "presence"):
        assert answer["room"] == frame["room"], answer
    if op == "presence":
        assert isinstance(answer["count"], int), answer
        assert all(set(m) == {"id", "username", "connections"} for m in answer["members"]), answer
    if op == "join":
        assert isinstance(answer["epoch"], str), answer
        assert isinstance(answer["offset"], int), answer
        assert ("recovered" in answer) == (frame.get("since") is not None), answer
    if op == "history":
        assert isinstance(answer["messages"], list), answer
        assert all(set(m) == MESSAGE_KEYS for m in answer["messages"]), answer
    if op in ("join", "leave"):
        (rooms.add if op == "join" else rooms.discard)(frame["room"])
    if op == "refresh":
        assert isinstance(answer["expires_at"], int), answer
    return None


JOIN = Action("text", json.dumps({"op": "join", "room": ROOM}))


def check_reply(action: Action, reply: Reply, rooms: set[str], tokens: dict[str, str]) -> None:
    """`reply` is what the protocol requires for `action` from a socket in `rooms`."""
    assert reply.close is None, f"{action} closed the socket with {reply.close}"
    assert reply.pongs == action.pongs(), reply
    if action.kind == "text":
        assert len(reply.answers) == 1, f"{action} got {reply.answers}"
        check_text_answer(action.message(tokens), reply.answers[0], rooms, tokens)
        answer = reply.answers[0]
        count(f"text -> {answer.get('code', answer['type'])}")
    elif action.kind == "binary":
        assert len(reply.answers) == 1, f"{action} got {reply.answers}"
        check_error(reply.answers[0], {"binary_unsupported"})
    else:
        assert reply.answers == [], f"{action} got {reply.answers}"


def count(outcome: str) -> None:
    """Counts an outcome in hypothesis' statistics (--hypothesis-show-statistics), to show
    what the generators reach."""
    if currently_in_test_context():
        event(outcome)


# -- generators ------------------------------------------------------------------------------


def repeat(unit_times: tuple[str, int]) -> str:
    unit, times = unit_times
    return unit * times


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=MAX_SAFE_INTEGER - 1, max_value=2**70)
    | st.floats()  # NaN and ±Infinity are written as the bare literals Python's json accepts
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
rooms = (
    st.sampled_from(
        [
            ROOM,
            "fuzz",
            "a:b.c-d_1",
            "dm:a,b",
            "private:x",
            "R" * 128,
            "R" * 129,
            "",
            " lobby",
            "lobby\n",
            "lob/by",
            "ロビー",
        ]
    )
    | st.from_regex(ROOM_PATTERN, fullmatch=True)
    | json_values
)
# Any code point, lone UTF-16 surrogates included (JSON can spell them: "\ud800").
with_surrogates = st.characters(exclude_categories=())
refs = (
    st.sampled_from([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, True, 1.0, 0.5])
    | st.sampled_from(["r" * MAX_REF_LENGTH, "r" * (MAX_REF_LENGTH + 1)])
    | st.integers()
    | st.text(max_size=MAX_REF_LENGTH + 2)
    | st.text(with_surrogates, max_size=8)
    | json_values
)
# At and just over CHAT_MAX_TEXT characters, in 1, 2 and 4 UTF-8 bytes each (built, not
# listed: hypothesis would print 16 KiB literals as part of the strategy's repr).
long_texts = st.tuples(st.sampled_from("xé😀"), st.sampled_from([4096, 4097])).map(repeat)
texts = (
    st.sampled_from(["", " "])
    | long_texts
    | st.text(min_size=1, max_size=40)
    | st.text(with_surrogates, min_size=1, max_size=8)
    | json_values
)
tokens = (
    st.sampled_from([OWN_TOKEN, FOREIGN_TOKEN, "", "a.b.c"])
    | st.integers(4080, 4100).map(lambda n: "a" * n + ".b.c")  # about MAX_CREDENTIAL_LENGTH
    | st.text()
    | json_values
)
sinces = (
    st.fixed_dictionaries(
        {"offset": st.integers(-1, 5) | json_values, "epoch": st.text(max_size=66) | json_values}
    )
    | json_values
)
counts = st.integers(-1, 102) | st.sampled_from([MAX_SAFE_INTEGER + 1]) | json_values
arguments = {
    "room": rooms,
    "text": texts,
    "ref": refs,
    "token": tokens,
    "from": json_values,
    "since": sinces,
    "idempotency_key": st.text(max_size=66) | json_values,
    "before": counts,
    "limit": counts,
}
commands = st.fixed_dictionaries({"op": st.sampled_from(OPS)}, optional=arguments) | (
    st.fixed_dictionaries(
        {}, optional={"op": st.sampled_from([*OPS, "JOIN", "", "nope"]) | json_values, **arguments}
    )
)


def encoded(value: Any, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate can only travel as a JSON escape
        return json.dumps(value, ensure_ascii=True)
    return text


# Nesting stays far from Python's recursion limit on one side or the other, so the test's own
# json.loads reaches the same verdict as the server's despite different stack depths.
nesting = st.integers(1, 300) | st.integers(3000, (MAX_FRAME - 64) // 2)


def weighted(groups: dict[str, tuple[st.SearchStrategy[Any], int]]) -> st.SearchStrategy[Any]:
    """One of `groups`, each drawn `weight` times as often. (st.one_of weighs a group by its
    number of branches, mapped ones included, so a group with many variants crowds out the
    rest.) Shrinks toward the first group."""
    names = [name for name, (_, weight) in groups.items() for _ in range(weight)]
    return st.sampled_from(names).flatmap(lambda name: groups[name][0])


# Commands a client would send: mostly accepted, so the paths past parsing run too.
rooms_in_use = st.sampled_from([ROOM, ROOM, "fuzz"])
good_refs = st.none() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text(max_size=20)
well_formed = weighted(
    {
        "join": (
            st.fixed_dictionaries({"op": st.just("join"), "room": rooms_in_use, "ref": good_refs}),
            2,
        ),
        "send": (
            st.fixed_dictionaries(
                {
                    "op": st.just("send"),
                    "room": rooms_in_use,
                    "text": st.text(min_size=1, max_size=40)
                    | st.sampled_from(["", " "])
                    | long_texts,
                    "ref": good_refs,
                },
                optional={"from": json_values},  # ignored: the sender is the credential's
            ),
            4,
        ),
        "leave": (
            st.fixed_dictionaries({"op": st.just("leave"), "room": rooms_in_use, "ref": good_refs}),
            1,
        ),
        "refresh": (
            st.fixed_dictionaries(
                {"op": st.just("refresh"), "token": st.sampled_from([OWN_TOKEN, FOREIGN_TOKEN])},
                optional={"ref": good_refs},
            ),
            1,
        ),
    }
)
MESSAGE_GROUPS = {
    "well-formed": (st.builds(encoded, well_formed, st.booleans()), 4),
    "any command": (st.builds(encoded, commands, st.booleans()), 4),
    "any JSON": (st.builds(encoded, json_values, st.booleans()), 1),
    "truncated": (
        st.builds(
            lambda s, n: s[:n], st.builds(encoded, commands, st.booleans()), st.integers(0, 60)
        ),
        1,
    ),
    "any unicode": (st.text(max_size=100), 1),
    "literals": (
        st.sampled_from(
            [
                "",
                "null",
                "{}",
                '{"op":"ping","ref":NaN}',
                '{"op":"ping","ref":-Infinity}',
                '{"op":"ping","ref":1e400}',
                '{"op":"ping","ref":-0}',
                '{"op":"ping","op":"nope"}',
                '{"op":"ping"} {"op":"ping"}',
                '{"op":"ping"}\x00',
                "\ufeff{}",
            ]
        ),
        1,
    ),
    # Numbers around the interpreter's 4300-digit limit, and floats that overflow.
    "huge numbers": (
        st.integers(4250, 4350).map(lambda n: '{"op":"ping","ref":' + "9" * n + "}")
        | st.integers(1, 6000).map(lambda n: '{"op":"ping","ref":1' + "0" * n + ".5}"),
        1,
    ),
    "deep nesting": (
        nesting.map(lambda n: "[" * n + "]" * n)
        | nesting.map(lambda n: '{"op":"ping","ref":' + "[" * n + "]" * n + "}")
        | st.integers(1, 300).map(lambda n: '{"a":' * n + "1" + "}" * n)
        | nesting.map(lambda n: "[" * n),  # unbalanced
        1,
    ),
    # Valid frames padded to just under the frame limit.
    "near the limit": (
        st.integers(0, 64).map(lambda n: '{"op":"ping"}'.ljust(MAX_FRAME - 1 - n)),
        1,
    ),
}
messages = weighted(MESSAGE_GROUPS)
cuts = st.lists(st.integers(0, MAX_FRAME), max_size=3).map(tuple)
text_actions = st.builds(Action, st.just("text"), messages, cuts=cuts, interleave=st.booleans())
binary_payloads = st.binary(max_size=200) | st.integers(MAX_FRAME - 64, MAX_FRAME - 1).map(bytes)
binary_actions = st.builds(
    lambda payload, at: Action("binary", frames=fragments(BINARY, payload, at)),
    binary_payloads,
    cuts,
)
control_payloads = st.binary(max_size=125)
ping_actions = control_payloads.map(lambda p: Action("ping", frames=(Frame(PING, p),)))
pong_actions = control_payloads.map(lambda p: Action("pong", frames=(Frame(PONG, p),)))


def fatal(close: int) -> Callable[[Any], Action]:
    def make(frames: Frame | tuple[Frame, ...]) -> Action:
        return Action(
            "fatal", frames=frames if isinstance(frames, tuple) else (frames,), close=close
        )

    return make


def close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode()[:123]


client_closes = (
    st.just(b"")
    | st.builds(
        close_payload,
        st.sampled_from([1000, 1001, 1003, 1008, 1011, 1012, 3000, 3999, 4000, 4001, 4999]),
        st.text(max_size=30),
    )
).map(lambda payload: Action("fatal", frames=(Frame(CLOSE, payload),), close=NORMAL))
invalid_utf8 = st.builds(
    lambda before, bad, after: before.encode() + bad + after.encode(),
    st.text(max_size=20),
    st.sampled_from(
        [b"\xff", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]
    ),
    st.text(max_size=20),
)
short_invalid_utf8 = st.builds(  # fits a close frame's 123-byte reason
    lambda before, bad: before.encode() + bad,
    st.text(max_size=5),
    st.sampled_from([b"\xff", b"\x80"]),
)
invalid_text_actions = (
    st.builds(fragments, st.just(TEXT), invalid_utf8, cuts)
    | st.builds(lambda r: Frame(CLOSE, struct.pack("!H", NORMAL) + r), short_invalid_utf8)
).map(fatal(INVALID_TEXT))
protocol_errors = st.one_of(
    st.builds(Frame, st.just(TEXT), st.just(b"{}"), rsv=st.integers(1, 7)),
    st.builds(Frame, st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]), control_payloads),
    st.builds(Frame, st.sampled_from([PING, PONG, CLOSE]), st.binary(min_size=126, max_size=200)),
    st.builds(Frame, st.sampled_from([PING, PONG]), control_payloads, fin=st.just(False)),
    st.builds(Frame, st.just(CONTINUATION), st.binary(max_size=20)),
    st.builds(lambda p: Frame(CLOSE, p), st.binary(min_size=1, max_size=1)),
    st.sampled_from([0, 999, 1004, 1005, 1015, 1016, 2000, 2999]).map(
        lambda code: Frame(CLOSE, struct.pack("!H", code))
    ),
    st.just((Frame(TEXT, b'{"op":', fin=False), Frame(TEXT, b'"ping"}'))),
).map(fatal(PROTOCOL_ERROR))
too_big = st.one_of(
    st.integers(MAX_FRAME + 1, MAX_FRAME + 512).map(lambda n: Frame(TEXT, b" " * n)),
    st.integers(MAX_FRAME + 1, MAX_FRAME + 512).map(lambda n: Frame(BINARY, bytes(n))),
    st.builds(
        lambda n, opcode: fragments(opcode, bytes(n), (MAX_FRAME // 2,)),
        st.integers(MAX_FRAME + 1, MAX_FRAME + 512),
        st.sampled_from([TEXT, BINARY]),
    ),
    st.sampled_from([MAX_FRAME + 1, 2**32, 2**63 - 1]).map(lambda n: Frame(TEXT, declared=n)),
).map(fatal(TOO_BIG))

any_action = weighted(
    {
        "text": (text_actions, 8),
        "binary": (binary_actions, 2),
        "ping": (ping_actions, 1),
        "pong": (pong_actions, 1),
        "close": (client_closes, 1),
        "invalid UTF-8": (invalid_text_actions, 1),
        "broken framing": (protocol_errors, 1),
        "too big": (too_big, 1),
    }
)


# -- the arena -------------------------------------------------------------------------------


# Canaries one socket of alice's sends before she opens another: fewer than instance A's
# rate-limit burst (CHAT_RATE_BURST, 100), so however fast the fuzzer runs she never meets it.
CANARIES_PER_SOCKET = 50


@dataclass
class Arena:
    """A chat instance to fuzz (rate limits out of the way), alice sending through instance A
    and bob reading on instance B and on the fuzzed instance, all in `ROOM`."""

    fuzzed: Client
    a: Client
    alice: ChatUser
    bob: ChatUser
    watchers: list[aiohttp.ClientWebSocketResponse]
    log: pytest.LogCaptureFixture
    sender: aiohttp.ClientWebSocketResponse | None = None
    canaries: int = 0

    @property
    def tokens(self) -> dict[str, str]:
        return {OWN_TOKEN: self.alice.access_token, FOREIGN_TOKEN: self.bob.access_token}

    async def canary(self) -> None:
        """Alice sends through A; each bystander must receive exactly that message."""
        if self.canaries % CANARIES_PER_SOCKET == 0:
            await self.close_sender()
            self.sender = await connect(self.a, self.alice.access_token)
            await join(self.sender, ROOM)
        assert self.sender is not None
        self.canaries += 1
        message_id = await send(self.sender, ROOM, f"canary {self.canaries}")
        for watcher in self.watchers:
            async with asyncio.timeout(DEADLINE):
                while (frame := await receive(watcher)).get("id") != message_id:
                    assert frame["type"] in ("message", "gap", "member_joined", "member_left"), (
                        frame
                    )

    async def close_sender(self) -> None:
        if self.sender is not None:
            await self.sender.close()

    async def connect(self, client: Client | None = None) -> tuple[RawSocket, asyncio.Task[Any]]:
        """A raw socket as alice, and the server task serving it."""
        client = client or self.fuzzed
        sock, hello = await RawSocket.open(client, self.alice.access_token)
        node = client.app[NODE]
        (connection,) = (c for c in node.sockets if c.id == hello["connection_id"])
        # aiohttp drops the request's reference to its task once done: take it while live.
        return sock, connection.ws.task

    def check_logs(self, start: int) -> None:
        """No record since `start` is an error or carries a traceback."""
        bad = [
            f"{r.levelname} {r.name}: {r.getMessage()}"
            for r in self.log.records[start:]
            if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()
        ]
        assert not bad, bad


@pytest.fixture
async def arena(
    make_chat: ChatFactory,
    stack: Stack,
    alice: ChatUser,
    bob: ChatUser,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Arena]:
    caplog.set_level(logging.DEBUG)
    fuzzed = await make_chat(CHAT_RATE_PER_SECOND="100000", CHAT_RATE_BURST="100000")
    watchers = [await connect(chat, bob.access_token) for chat in (stack.b, fuzzed)]
    for ws in watchers:
        await join(ws, ROOM)
    result = Arena(fuzzed, stack.a, alice, bob, watchers, caplog)
    await result.canary()
    yield result
    await result.close_sender()
    for ws in watchers:
        await ws.close()


async def finished(handlers: list[asyncio.Task[Any]]) -> None:
    """Waits until aiohttp is done serving each socket: its handler has returned, or raised and
    been logged, so the log is complete. (`Connection.finished` would not do: the test server
    cancels the handler of a peer that hung up, and a handler cancelled inside its `finally`
    never sets it.)"""
    async with asyncio.timeout(DEADLINE):
        await asyncio.wait(handlers)


FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    # No explain phase: it reruns the failing case many times over, and that must fit in the
    # test's timeout along with shrinking.
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the arena is shared by every example on purpose
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)


def show(actions: list[Action]) -> None:
    """Prints the shrunk failing sequence with the failure. (Hypothesis' own "Failing test case"
    line prints arguments empty while the schemathesis pytest plugin is installed.)"""
    note("actions:\n" + "\n".join(f"  {action!r}" for action in actions))


async def play(arena: Arena, actions: list[Action], client: Client | None = None) -> None:
    """Performs `actions` on a raw socket as alice and holds every answer to the oracle."""
    start = len(arena.log.records)
    sock, handler = await arena.connect(client)
    handlers = [handler]
    rooms: set[str] = set()  # the rooms the socket is in, as far as its answers said
    try:
        for n, action in enumerate(actions):
            await sock.write(*action.wire(arena.tokens))
            if action.close is not None:
                reply = await collect(sock, sentinel=None)
                assert reply.answers == [], f"{action} got {reply.answers}"
                assert reply.close == action.close, f"{action} closed with {reply.close}"
                count(f"{action.kind} -> {reply.close}")
                await sock.close()
                sock, handler = await arena.connect(client)
                handlers.append(handler)
                rooms = set()
            else:
                await sock.write(text_frame({"op": "ping", "ref": f"sentinel {n}"}))
                reply = await collect(sock, f"sentinel {n}")
                check_reply(action, reply, rooms, arena.tokens)
                if action.kind != "text":
                    count(action.kind)
            if n % CANARY_EVERY == CANARY_EVERY - 1:
                await arena.canary()
        await arena.canary()
    finally:
        await sock.close()
    await finished(handlers)
    arena.check_logs(start)


# 300 examples take ~15 s, but on a loaded machine they and the shrinking of a failure could
# outrun the suite's 60 s default, and the timeout would lose the shrunk example.
@pytest.mark.timeout(180)
@FUZZ_SETTINGS
@given(actions=st.lists(any_action, min_size=5, max_size=25))
async def test_random_frames_get_an_answer_or_a_documented_close(
    arena: Arena, actions: list[Action]
) -> None:
    show(actions)
    # A member of the bystanders' room, so whatever the frames do to it reaches them too.
    await play(arena, [JOIN, *actions])


BURST, STRIKES = 5, 3


@pytest.fixture
async def limited_chat(make_chat: ChatFactory) -> Client:
    return await make_chat(
        CHAT_RATE_PER_SECOND="0.1",
        CHAT_RATE_BURST=str(BURST),
        CHAT_RATE_STRIKES=str(STRIKES),
    )


async def all_at_once(
    arena: Arena, chat: Client, actions: list[Action]
) -> tuple[Reply, asyncio.Task[Any]]:
    """Writes every action's frames in one go and reads until the server closes, which must
    be with 1008; returns what it answered and the task that served the socket."""
    show(actions)
    sock, handler = await arena.connect(chat)
    try:
        await sock.write(*(frame for action in actions for frame in action.wire(arena.tokens)))
        reply = await collect(sock, sentinel=None)
    finally:
        await sock.close()
    assert reply.close == POLICY_VIOLATION, reply
    return reply, handler


whole_binary_actions = binary_payloads.map(
    lambda payload: Action("binary", frames=fragments(BINARY, payload, ()))
)


@settings(FUZZ_SETTINGS, max_examples=60)
@given(
    actions=st.lists(
        st.one_of(st.builds(Action, st.just("text"), messages), whole_binary_actions),
        min_size=BURST + STRIKES + 1,
        max_size=BURST + STRIKES + 4,
    )
)
async def test_over_the_rate_frames_get_rate_limited_then_1008(
    arena: Arena, limited_chat: Client, actions: list[Action]
) -> None:
    """Whole messages written at once, over the rate: the first `BURST` are answered as
    usual, the next `STRIKES` get `rate_limited` (no ref), the one after closes 1008; the
    rest go unread."""
    start = len(arena.log.records)
    reply, handler = await all_at_once(arena, limited_chat, actions)
    assert len(reply.answers) == BURST + STRIKES, reply.answers
    rooms: set[str] = set()
    for action, answer in zip(actions, reply.answers[:BURST], strict=False):
        check_reply(action, Reply(answers=[answer]), rooms, arena.tokens)
    for answer in reply.answers[BURST:]:
        check_error(answer, {"rate_limited"})
    await finished([handler])
    await arena.canary()
    arena.check_logs(start)


@settings(FUZZ_SETTINGS, max_examples=60)
@given(
    actions=st.lists(
        st.one_of(text_actions, binary_actions, ping_actions, pong_actions),
        min_size=BURST + STRIKES + 1,  # at least a frame each: over the rate
        max_size=BURST + STRIKES + 4,
    )
)
async def test_every_frame_counts_against_the_rate(
    arena: Arena, limited_chat: Client, actions: list[Action]
) -> None:
    """Fragments and control frames, written at once, over the rate: each frame takes from
    the budget, so the socket is closed with 1008, having acted on no more than `BURST`
    frames' worth of messages and pings."""
    start = len(arena.log.records)
    reply, handler = await all_at_once(arena, limited_chat, actions)
    served = [a for a in reply.answers if a.get("code") != "rate_limited"]
    assert len(served) + len(reply.pongs) <= BURST, reply
    await finished([handler])
    await arena.canary()
    arena.check_logs(start)


# -- what the fuzzer found ------------------------------------------------------------------
# Minimal reproducers, through the same oracle, of bugs the fuzzer found (all fixed): lone
# surrogate escapes, a frame of exactly the limit, a server-initiated close leaking the user's
# socket slot, and close codes missing from docs/protocol.md.

LONE_SURROGATE = "\ud800"  # json.dumps writes the escape \ud800: valid UTF-8 on the wire


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            json.dumps({"op": "ping", "ref": LONE_SURROGATE}),
            id="ref",
        ),
        pytest.param(
            json.dumps({"op": "send", "room": ROOM, "text": LONE_SURROGATE}),
            id="text",
        ),
        pytest.param(json.dumps({"op": "refresh", "token": LONE_SURROGATE}), id="token"),
    ],
)
async def test_a_lone_surrogate_escape_gets_an_answer(arena: Arena, message: str) -> None:
    await play(arena, [JOIN, Action("text", message)])


async def test_a_frame_of_exactly_the_limit_is_accepted(arena: Arena) -> None:
    await play(arena, [Action("text", '{"op":"ping"}'.ljust(MAX_FRAME))])


async def test_a_server_initiated_close_gives_the_users_slot_back(
    arena: Arena, make_chat: ChatFactory, stack: Stack
) -> None:
    chat = await make_chat(
        CHAT_MAX_CONNECTIONS_PER_USER="1",
        CHAT_RATE_PER_SECOND="0.1",
        CHAT_RATE_BURST="1",
        CHAT_RATE_STRIKES="1",
    )
    # The limit is across instances: a user with no socket elsewhere (alice has the arena's).
    dave = await stack.user("dave", "dave's password")
    sock, hello = await RawSocket.open(chat, dave.access_token)
    (connection,) = (c for c in chat.app[NODE].sockets if c.id == hello["connection_id"])
    handler = connection.ws.task
    await sock.write(*[text_frame({"op": "ping"})] * 3)
    assert (await collect(sock, sentinel=None)).close == POLICY_VIOLATION
    await sock.close()  # answers the close and hangs up, as a client should
    await finished([handler])
    await chat.app[NODE].stores.user_sockets.drain()  # the slot, given back in Redis
    try:
        ws = await connect(chat, dave.access_token)
    except aiohttp.WSServerHandshakeError as refused:
        raise AssertionError(f"the next socket was refused {refused.status}") from None  # 429
    await ws.close()


@pytest.mark.parametrize(
    "code",
    [
        NORMAL,
        POLICY_VIOLATION,
        TOO_BIG,
        *(code for code in (PROTOCOL_ERROR, INVALID_TEXT)),
    ],
)
def test_each_close_code_the_fuzzer_expects_is_documented(code: int) -> None:
    assert code in CLOSE_CODES
