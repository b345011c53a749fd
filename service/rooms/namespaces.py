"""Room namespaces and their policies (`CHAT_NAMESPACES`, SPEC "Rooms").

A room belongs to the namespace named before its first `:` (`team:design` is in `team`); a
name without `:` is in the default namespace `""`. A room in a namespace that is not
configured is refused (`unknown_namespace`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

DEFAULT = {"": {}, "dm": {"join": "dm"}, "private": {"join": "members"}}
JOIN_POLICIES = ("open", "members", "dm")
SEND_POLICIES = ("joined", "server")
MAX_HISTORY_SIZE = 100_000
MAX_HISTORY_TTL = 365 * 86400
NAMESPACE_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,-")


@dataclass(frozen=True)
class Policy:
    """What a namespace allows: who may join and send, what its rooms remember, presence."""

    join: str = "open"
    send: str = "joined"
    history_size: int = 1000  # messages kept per room, at least; 0: none (at-most-once)
    history_ttl: int = 86400  # seconds each message is kept
    presence: bool = True

    @property
    def history(self) -> bool:
        return self.history_size > 0


def namespace_of(room: str) -> str:
    head, sep, _ = room.partition(":")
    return head if sep else ""


class Namespaces:
    """The configured namespaces; `policy(room)` is None for a room in none of them."""

    def __init__(self, policies: dict[str, Policy]) -> None:
        self._policies = MappingProxyType(dict(policies))

    def policy(self, room: str) -> Policy | None:
        return self._policies.get(namespace_of(room))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Namespaces) and dict(self._policies) == dict(other._policies)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._policies.items())))

    def __repr__(self) -> str:
        return f"Namespaces({dict(self._policies)!r})"


def parse_namespaces(text: str | None) -> Namespaces:
    """`CHAT_NAMESPACES` (a JSON object: namespace -> policy), or the default when None;
    `ValueError` saying what is wrong, naming the namespace and key."""
    try:
        document = DEFAULT if text is None else json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError("must be a JSON object of namespace -> policy") from exc
    if not isinstance(document, dict):
        raise ValueError("must be a JSON object of namespace -> policy")
    policies = {}
    for name, fields in document.items():
        if name and not set(name) <= NAMESPACE_NAME:
            raise ValueError(f"namespace {name!r}: letters, digits and _.,- only")
        policies[name] = _policy(name, fields)
    return Namespaces(policies)


def _policy(name: str, fields: Any) -> Policy:
    where = f"namespace {name!r}"
    if not isinstance(fields, dict):
        raise ValueError(f"{where}: the policy must be a JSON object")
    unknown = set(fields) - {"join", "send", "history_size", "history_ttl", "presence"}
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    policy = Policy(**fields)
    if policy.join not in JOIN_POLICIES:
        raise ValueError(f"{where}: join must be one of {', '.join(JOIN_POLICIES)}")
    if policy.send not in SEND_POLICIES:
        raise ValueError(f"{where}: send must be one of {', '.join(SEND_POLICIES)}")
    for key, top in (("history_size", MAX_HISTORY_SIZE), ("history_ttl", MAX_HISTORY_TTL)):
        value = getattr(policy, key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            raise ValueError(f"{where}: {key} must be an integer from 0 to {top}")
    if policy.history_size and policy.history_ttl < 1:
        raise ValueError(f"{where}: history_ttl must be at least 1 when history_size is not 0")
    if not isinstance(policy.presence, bool):
        raise ValueError(f"{where}: presence must be true or false")
    return policy
