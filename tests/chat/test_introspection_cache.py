"""The introspection cache (finding 2 of the attack on 326b726): a revocation event looks up
what it names instead of scanning every cached answer, and expired answers leave the cache
as new ones arrive, so events cost the same however full the cache is."""

from __future__ import annotations

import json
from typing import Any

from service.auth.introspection_cache import AnswerCache, RecentRevocations, kept
from service.name_index import NameIndex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Watched(dict[str, Any]):
    """An answer that counts how often anything reads it."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        Watched.reads += 1
        return super().get(key, default)


def answer(n: int, **fields: str) -> Watched:
    return Watched(active=True, sub=f"user-{n % 100}", jti=f"jti-{n}", sid=f"sid-{n}", **fields)


def test_an_event_reads_only_the_answers_it_names() -> None:
    cache = AnswerCache(max_entries=20_000)
    for n in range(10_000):
        cache.put(f"key-{n}", answer(n), ttl=60)
    Watched.reads = 0
    for n in range(1_000):
        assert cache.drop_matching("jti", f"someone-else-{n}") == 0
    assert Watched.reads == 0  # a scan would have read 10,000 answers per event
    assert cache.drop_matching("jti", "jti-7") == 1
    assert cache.get("key-7") is None
    assert cache.drop_matching("sub", "user-8") == 100  # every answer of user-8
    assert len(cache) == 10_000 - 1 - 100
    assert cache.get("key-9") is not None


def test_expired_answers_leave_as_new_ones_arrive() -> None:
    clock = Clock()
    cache = AnswerCache(max_entries=100_000, clock=clock)
    for n in range(5_000):
        cache.put(f"negative-{n}", Watched(active=False), ttl=2)
    assert len(cache) == 5_000
    clock.now += 2.5
    cache.put("fresh", answer(1), ttl=60)
    assert len(cache) == 1  # nobody asked for the expired ones again; they are gone anyway


def test_a_full_cache_drops_its_oldest_answer_and_its_index() -> None:
    cache = AnswerCache(max_entries=3)
    for n in range(4):
        cache.put(f"key-{n}", answer(n), ttl=60)
    assert cache.get("key-0") is None
    assert cache.drop_matching("jti", "jti-0") == 0
    assert [cache.get(f"key-{n}") is not None for n in (1, 2, 3)] == [True] * 3


def test_replacing_an_answer_reindexes_it() -> None:
    cache = AnswerCache(max_entries=10)
    cache.put("key", answer(1), ttl=60)
    cache.put("key", answer(2), ttl=60)
    assert cache.drop_matching("jti", "jti-1") == 0
    assert cache.drop_matching("jti", "jti-2") == 1


def test_recent_revocations_answer_by_name_and_forget_after_the_window() -> None:
    clock = Clock()
    recent = RecentRevocations(window=60, max_entries=1_000, clock=clock)
    started = clock.now
    clock.now += 1
    recent.note("sid", "sid-1")
    assert recent.names_since({"sid": "sid-1", "jti": "x"}, started)
    assert not recent.names_since({"sid": "sid-2"}, started)
    assert not recent.names_since({"sid": "sid-1"}, clock.now + 1)  # announced before that
    clock.now += 61
    recent.note("jti", "other")
    assert len(recent) == 1


def test_an_answer_keeps_only_what_is_read_under_shared_keys() -> None:
    body = json.loads(
        '{"active": true, "sub": "u1", "username": "ann", "scope": "chat", "client_id": null,'
        ' "token_type": "access_token", "exp": 2000, "iat": 1000, "jti": "j1", "sid": "s1",'
        ' "kid": "k1", "something": "else"}'
    )
    answer = kept(body)
    assert answer == {k: v for k, v in body.items() if k not in ("iat", "something")}
    again = kept(json.loads(json.dumps(body)))
    # Every answer's keys, and its repeated values, are the same string objects.
    assert all(a is b for a, b in zip(answer, again, strict=True))
    assert answer["scope"] is again["scope"]
    assert answer["token_type"] is again["token_type"]
    assert kept({"active": False}) == {"active": False}


def test_a_name_index_holds_one_holder_or_several_and_forgets_the_last() -> None:
    index: NameIndex[str] = NameIndex()
    index.add("sub", "u1", "a")
    index.add("sub", "u1", "a")
    assert index.get("sub", "u1") == {"a"}
    index.add("sub", "u1", "b")
    assert index.get("sub", "u1") == {"a", "b"}
    index.discard("sub", "u1", "a")
    assert index.get("sub", "u1") == {"b"}
    index.discard("sub", "u1", "nobody")
    index.discard("sid", "u1", "b")  # another field's name
    assert index.get("sub", "u1") == {"b"}
    index.discard("sub", "u1", "b")
    assert index.get("sub", "u1") == frozenset()
    index.add("jti", "j", "a")
    index.add("jti", "j", "c")
    assert index.pop("jti", "j") == {"a", "c"}
    assert index.pop("jti", "j") == frozenset()
