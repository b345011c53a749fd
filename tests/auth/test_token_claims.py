"""Access-token claim checks of `AccessTokens.verify` (written out, not pyjwt's decode): the
edges pyjwt used to decide for us, each through both surfaces (introspection and /me)."""

import time
from typing import Any

import pytest

from auth_service.tokens import ACCESS_TYP
from tests.auth.helpers import Client
from tests.auth.test_jwt_attacks import (
    Victim,
    _access,
    _signing_key,
    assert_accepted,
    assert_rejected,
    b64url,
    by_hand,
    victim,
)

__all__ = ["victim"]  # the fixture, shared


async def test_an_audience_list_naming_ours_is_accepted(auth: Client, victim: Victim) -> None:
    access = _access(auth)
    token = await access.sign(victim.with_claims(aud=["reports", access.audience]))
    await assert_accepted(auth, token, victim)


@pytest.mark.parametrize("aud", [[], ["reports"], [1], {"chat": True}, 7])
async def test_other_audiences_are_rejected(auth: Client, victim: Victim, aud: Any) -> None:
    await assert_rejected(auth, await _access(auth).sign(victim.with_claims(aud=aud)))


async def test_issued_in_the_future_beyond_the_leeway_is_rejected(
    auth: Client, victim: Victim
) -> None:
    access = _access(auth)
    iat = int(time.time()) + access.leeway + 60
    claims = victim.with_claims(iat=iat, exp=iat + access.ttl)
    await assert_rejected(auth, await access.sign(claims))


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": 10**400},
        {"exp": 10**400, "iat": 1.5e9},  # int minus float: beyond any float
        {"exp": float("inf")},
        {"nbf": float("nan")},
        {"iat": float("-inf")},
    ],
    ids=["huge_exp", "huge_exp_float_iat", "infinite_exp", "nan_nbf", "minus_infinite_iat"],
)
async def test_out_of_range_times_are_rejected(
    auth: Client, victim: Victim, changes: dict[str, Any]
) -> None:
    await assert_rejected(auth, await _access(auth).sign(victim.with_claims(**changes)))


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "scope", "iat", "exp", "jti", "client_id"])
async def test_a_required_claim_that_is_null_is_rejected(
    auth: Client, victim: Victim, claim: str
) -> None:
    key = await _signing_key(auth)
    header = {"alg": "EdDSA", "typ": ACCESS_TYP, "kid": key.kid}
    token = by_hand(header, victim.with_claims(**{claim: None}), key.private.sign)
    await assert_rejected(auth, token)


async def test_a_payload_that_is_not_an_object_is_rejected(auth: Client, victim: Victim) -> None:
    key = await _signing_key(auth)
    header = {"alg": "EdDSA", "typ": ACCESS_TYP, "kid": key.kid}
    head = by_hand(header, victim.claims, key.private.sign).split(".")[0]
    payload = b64url(b"[1,2,3]")
    signature = b64url(key.private.sign(f"{head}.{payload}".encode()))
    await assert_rejected(auth, f"{head}.{payload}.{signature}")
