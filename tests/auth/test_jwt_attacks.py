"""Forged and tampered access tokens: each attack must leave the token inactive everywhere.

Every forgery starts from the claims of a real token, so the attacked property is the only
difference; the positive controls sign the unmodified claims the same way and must pass, so
`assert_rejected` cannot pass just because the forging itself is broken.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_service.components import COMPONENTS
from auth_service.keys import SigningKey
from auth_service.tokens import AccessTokens
from tests.auth.helpers import (
    CHAT_AUTH,
    Client,
    introspect,
    refresh_grant,
    register,
    user_with_tokens,
)

ACCESS_TYP = "at+jwt"


@dataclass(frozen=True)
class Victim:
    """A real user's tokens and the claims of their access token, the base of every forgery."""

    access_token: str
    refresh_token: str
    claims: dict[str, Any]

    def with_claims(self, **changes: Any) -> dict[str, Any]:
        return {**self.claims, **changes}


@pytest.fixture
async def victim(auth: Client) -> Victim:
    tokens = await user_with_tokens(auth)
    claims: dict[str, Any] = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return Victim(tokens["access_token"], tokens["refresh_token"], claims)


def _access(auth: Client) -> AccessTokens:
    access: AccessTokens = auth.app[COMPONENTS].access
    return access


async def _signing_key(auth: Client) -> SigningKey:
    key: SigningKey = await auth.app[COMPONENTS].keyring.signing_key()
    return key


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def by_hand(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built without pyjwt, for headers and algorithms pyjwt refuses to emit."""
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def _segments(token: str) -> tuple[str, str, str]:
    header, payload, signature = token.split(".")
    return header, payload, signature


async def _me(auth: Client, token: str) -> Any:
    return await auth.get("/me", headers={"Authorization": f"Bearer {token}"})


async def assert_rejected(auth: Client, token: str) -> None:
    """Both surfaces refuse `token`: introspection says exactly inactive, /me says 401."""
    assert await introspect(auth, token) == {"active": False}
    response = await _me(auth, token)
    assert response.status == 401, await response.text()
    assert "invalid_token" in response.headers.get("WWW-Authenticate", "")
    body: dict[str, Any] = await response.json()
    assert body["error"] == "invalid_token"


async def assert_accepted(auth: Client, token: str, victim: Victim) -> None:
    """Both surfaces accept `token` as the victim's: the control for `assert_rejected`."""
    result = await introspect(auth, token)
    assert result["active"] is True, result
    assert result["sub"] == victim.claims["sub"]
    assert result["token_type"] == "access_token"
    response = await _me(auth, token)
    assert response.status == 200, await response.text()
    assert await response.json() == {"id": victim.claims["sub"], "username": "alice"}


# -- positive controls -----------------------------------------------------------------------


async def test_control_real_token_is_active(auth: Client, victim: Victim) -> None:
    await assert_accepted(auth, victim.access_token, victim)


async def test_control_unmodified_claims_signed_by_the_service_are_active(
    auth: Client, victim: Victim
) -> None:
    await assert_accepted(auth, await _access(auth).sign(victim.claims), victim)


async def test_control_unmodified_claims_signed_with_pyjwt_and_the_real_key_are_active(
    auth: Client, victim: Victim
) -> None:
    key = await _signing_key(auth)
    token = jwt.encode(
        victim.claims, key.private, algorithm="EdDSA", headers={"kid": key.kid, "typ": ACCESS_TYP}
    )
    await assert_accepted(auth, token, victim)


async def test_control_unmodified_claims_signed_by_hand_with_the_real_key_are_active(
    auth: Client, victim: Victim
) -> None:
    key = await _signing_key(auth)
    header = {"alg": "EdDSA", "typ": ACCESS_TYP, "kid": key.kid}
    await assert_accepted(auth, by_hand(header, victim.claims, key.private.sign), victim)


# -- algorithm attacks -----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
@pytest.mark.parametrize("with_signature", [False, True], ids=["no_signature", "real_signature"])
async def test_alg_none_is_rejected(
    auth: Client, victim: Victim, alg: str, with_signature: bool
) -> None:
    key = await _signing_key(auth)
    header = {"alg": alg, "typ": ACCESS_TYP, "kid": key.kid}
    unsigned = f"{b64url(_json(header))}.{b64url(_json(victim.claims))}."
    signature = _segments(victim.access_token)[2] if with_signature else ""
    await assert_rejected(auth, unsigned + signature)


async def test_alg_none_from_pyjwt_is_rejected(auth: Client, victim: Victim) -> None:
    key = await _signing_key(auth)
    token = jwt.encode(
        victim.claims, "", algorithm="none", headers={"kid": key.kid, "typ": ACCESS_TYP}
    )
    assert token.endswith(".")
    await assert_rejected(auth, token)


def _public_secret(key: SigningKey, form: str) -> bytes:
    if form == "raw":
        return key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if form == "pem":
        return key.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if form == "der":
        return key.public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    assert form == "jwk_x"
    return key.jwk()["x"].encode()


@pytest.mark.parametrize("form", ["raw", "pem", "der", "jwk_x"])
@pytest.mark.parametrize("alg", ["HS256", "HS512"])
async def test_hmac_signed_with_the_public_key_is_rejected(
    auth: Client, victim: Victim, form: str, alg: str
) -> None:
    key = await _signing_key(auth)
    secret = _public_secret(key, form)
    digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
    header = {"alg": alg, "typ": ACCESS_TYP, "kid": key.kid}
    token = by_hand(header, victim.claims, lambda data: hmac.digest(secret, data, digest))
    # The payload is the real one and the MAC is right for that secret: only the pin stops it.
    signing_input, _, mac = token.rpartition(".")
    assert _segments(token)[1] == b64url(_json(victim.claims))
    assert hmac.compare_digest(mac, b64url(hmac.digest(secret, signing_input.encode(), digest)))
    await assert_rejected(auth, token)


# -- key ids and foreign keys ----------------------------------------------------------------


@pytest.mark.parametrize("kid", ["0000000000000000", "", "../../keys/active", "nope"])
async def test_unknown_kid_is_rejected(auth: Client, victim: Victim, kid: str) -> None:
    key = await _signing_key(auth)
    assert kid != key.kid
    token = jwt.encode(
        victim.claims, key.private, algorithm="EdDSA", headers={"kid": kid, "typ": ACCESS_TYP}
    )
    await assert_rejected(auth, token)


@pytest.mark.parametrize(
    "kid_from_real",
    [None, lambda kid: None, lambda kid: 123, lambda kid: [kid], lambda kid: {"kid": kid}],
    ids=["missing", "null", "number", "list", "object"],
)
async def test_missing_or_non_string_kid_is_rejected(
    auth: Client, victim: Victim, kid_from_real: Callable[[str], object] | None
) -> None:
    key = await _signing_key(auth)
    header: dict[str, Any] = {"alg": "EdDSA", "typ": ACCESS_TYP}
    if kid_from_real is not None:
        # Built from the real kid, so only the kid's type is wrong.
        header["kid"] = kid_from_real(key.kid)
    await assert_rejected(auth, by_hand(header, victim.claims, key.private.sign))


async def test_missing_kid_from_pyjwt_is_rejected(auth: Client, victim: Victim) -> None:
    key = await _signing_key(auth)
    token = jwt.encode(victim.claims, key.private, algorithm="EdDSA", headers={"typ": ACCESS_TYP})
    assert "kid" not in jwt.get_unverified_header(token)
    await assert_rejected(auth, token)


@pytest.mark.parametrize("embedded", ["none", "jwk", "jku", "x5u"])
async def test_foreign_key_claiming_the_real_kid_is_rejected(
    auth: Client, victim: Victim, embedded: str
) -> None:
    real = await _signing_key(auth)
    attacker = SigningKey(real.kid, Ed25519PrivateKey.generate())
    headers: dict[str, Any] = {"kid": real.kid, "typ": ACCESS_TYP}
    if embedded == "jwk":
        headers["jwk"] = attacker.jwk()
    elif embedded in ("jku", "x5u"):
        headers[embedded] = "http://attacker.test/keys.json"
    token = jwt.encode(victim.claims, attacker.private, algorithm="EdDSA", headers=headers)
    await assert_rejected(auth, token)


# -- claims ----------------------------------------------------------------------------------


async def test_wrong_audience_is_rejected(auth: Client, victim: Victim) -> None:
    access = _access(auth)
    for aud in ("reports", access.audience.upper(), [f"{access.audience}x"], ""):
        await assert_rejected(auth, await access.sign(victim.with_claims(aud=aud)))


async def test_wrong_issuer_is_rejected(auth: Client, victim: Victim) -> None:
    access = _access(auth)
    for iss in ("http://attacker.test", f"{access.issuer}/", access.issuer.upper()):
        await assert_rejected(auth, await access.sign(victim.with_claims(iss=iss)))


@pytest.mark.parametrize("beyond", [2, 3600])
async def test_expired_beyond_the_leeway_is_rejected(
    auth: Client, victim: Victim, beyond: int
) -> None:
    access = _access(auth)
    exp = int(time.time()) - access.leeway - beyond
    await assert_rejected(auth, await access.sign(victim.with_claims(exp=exp)))


@pytest.mark.parametrize("beyond", [30, 3600])
async def test_not_yet_valid_beyond_the_leeway_is_rejected(
    auth: Client, victim: Victim, beyond: int
) -> None:
    access = _access(auth)
    nbf = int(time.time()) + access.leeway + beyond
    await assert_rejected(auth, await access.sign(victim.with_claims(nbf=nbf)))


async def test_expired_but_inside_the_leeway_is_accepted(auth: Client, victim: Victim) -> None:
    access = _access(auth)
    assert access.leeway >= 4, "the leeway is too small to test inside it"
    exp = int(time.time()) - access.leeway // 2
    await assert_accepted(auth, await access.sign(victim.with_claims(exp=exp)), victim)


async def test_not_yet_valid_but_inside_the_leeway_is_accepted(
    auth: Client, victim: Victim
) -> None:
    access = _access(auth)
    assert access.leeway >= 4, "the leeway is too small to test inside it"
    nbf = int(time.time()) + access.leeway // 2
    await assert_accepted(auth, await access.sign(victim.with_claims(nbf=nbf)), victim)


# pyjwt checks `exp` with int(), which takes "9999999999": the type must be checked too.
@pytest.mark.parametrize(
    "exp",
    ["9999999999", "9999999999.0", "soon", [9999999999], {"t": 9999999999}],
    ids=["numeric_string", "float_string", "word", "list", "object"],
)
async def test_non_numeric_exp_is_rejected(auth: Client, victim: Victim, exp: object) -> None:
    await assert_rejected(auth, await _access(auth).sign(victim.with_claims(exp=exp)))


# The same int() check lets numeric strings through for `iat` and `nbf`; introspection would
# then echo `iat` as a string, where RFC 7519 and RFC 7662 want a NumericDate.
@pytest.mark.parametrize(("claim", "value"), [("iat", "1700000000"), ("nbf", "0")])
async def test_numeric_string_iat_or_nbf_is_rejected(
    auth: Client, victim: Victim, claim: str, value: str
) -> None:
    token = await _access(auth).sign(victim.with_claims(**{claim: value}))
    await assert_rejected(auth, token)


@pytest.mark.parametrize(
    ("claim", "wrap"),
    [
        ("sub", lambda value: [value]),
        ("scope", lambda value: value.split(" ")),
        ("jti", lambda value: int(value, 16)),
        ("client_id", lambda value: {"id": value}),
    ],
    ids=["sub_list", "scope_list", "jti_number", "client_id_object"],
)
async def test_non_string_identity_claims_are_rejected(
    auth: Client, victim: Victim, claim: str, wrap: Callable[[str], object]
) -> None:
    changed = victim.with_claims(**{claim: wrap(victim.claims[claim])})
    await assert_rejected(auth, await _access(auth).sign(changed))


@pytest.mark.parametrize("claim", ["iat", "exp", "iss", "aud", "sub", "jti", "client_id"])
async def test_missing_required_claim_is_rejected(auth: Client, victim: Victim, claim: str) -> None:
    claims = {name: value for name, value in victim.claims.items() if name != claim}
    await assert_rejected(auth, await _access(auth).sign(claims))


@pytest.mark.parametrize(
    "typ", ["JWT", "rt+jwt", "", None], ids=["JWT", "rt+jwt", "empty", "absent"]
)
async def test_wrong_typ_with_a_valid_signature_is_rejected(
    auth: Client, victim: Victim, typ: str | None
) -> None:
    key = await _signing_key(auth)
    # pyjwt drops a falsy `typ` from the header, so "" and None both mean "no typ at all".
    token = jwt.encode(
        victim.claims, key.private, algorithm="EdDSA", headers={"kid": key.kid, "typ": typ}
    )
    assert jwt.get_unverified_header(token).get("typ") == (typ or None)
    await assert_rejected(auth, token)


async def test_wrong_typ_from_the_service_signer_is_rejected(auth: Client, victim: Victim) -> None:
    await assert_rejected(auth, await _access(auth).sign(victim.claims, typ="JWT"))


# -- tampering -------------------------------------------------------------------------------


async def test_tampered_payload_is_rejected(auth: Client, victim: Victim) -> None:
    bob = await register(auth, "bob")
    header, _, signature = _segments(victim.access_token)
    for changes in (
        {"sub": bob["id"]},
        {"username": "bob"},
        {"sub": bob["id"], "username": "bob"},
        {"scope": f"{victim.claims['scope']} admin"},
        {"exp": victim.claims["exp"] + 86400},
    ):
        payload = b64url(_json(victim.with_claims(**changes)))
        await assert_rejected(auth, f"{header}.{payload}.{signature}")


async def test_tampered_header_is_rejected(auth: Client, victim: Victim) -> None:
    key = await _signing_key(auth)
    _, payload, signature = _segments(victim.access_token)
    # The same header, re-serialised with different whitespace: the signature covers bytes.
    header = b64url(json.dumps({"alg": "EdDSA", "kid": key.kid, "typ": ACCESS_TYP}).encode())
    assert header != _segments(victim.access_token)[0]
    await assert_rejected(auth, f"{header}.{payload}.{signature}")


async def test_truncated_or_altered_signature_is_rejected(auth: Client, victim: Victim) -> None:
    header, payload, signature = _segments(victim.access_token)
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    for bad in ("", signature[:-4], flipped, signature + "AAAA"):
        await assert_rejected(auth, f"{header}.{payload}.{bad}")


# -- the wrong kind of token -----------------------------------------------------------------


async def test_refresh_token_as_bearer_is_rejected(auth: Client, victim: Victim) -> None:
    response = await _me(auth, victim.refresh_token)
    assert response.status == 401, await response.text()
    assert "invalid_token" in response.headers.get("WWW-Authenticate", "")
    # Introspection still knows it, but only as what it is: never as an access token.
    assert (await introspect(auth, victim.refresh_token))["token_type"] == "refresh_token"


async def test_access_token_as_refresh_token_is_rejected(auth: Client, victim: Victim) -> None:
    response = await refresh_grant(auth, victim.access_token)
    assert response.status == 400, await response.text()
    body: dict[str, Any] = await response.json()
    assert body["error"] == "invalid_grant"
    assert "refresh_token" not in body
    # The refusal spent nothing: the real refresh token still rotates.
    assert (await refresh_grant(auth, victim.refresh_token)).status == 200


# -- garbage and size ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "a.b.",
        "..",
        "a.b.c.d",
        f"{b64url(b'[]')}.{b64url(b'{}')}.",
        f"{b64url(b'not json')}.{b64url(b'{}')}.AAAA",
        f"{b64url(_json({'alg': 'EdDSA', 'typ': ACCESS_TYP}))}.{b64url(b'not json')}.AAAA",
        f"{b64url(_json({'alg': 'EdDSA', 'typ': ACCESS_TYP, 'kid': 'x'}))}.%%%.AAAA",
        "Bearer x",
        "rt_short",
    ],
)
async def test_garbage_token_is_rejected(auth: Client, token: str) -> None:
    await assert_rejected(auth, token)


def _huge_signed(key: SigningKey, claims: dict[str, Any]) -> str:
    padded = {**claims, "pad": "x" * 100_000}
    return jwt.encode(
        padded, key.private, algorithm="EdDSA", headers={"kid": key.kid, "typ": ACCESS_TYP}
    )


@pytest.mark.parametrize("kind", ["letters", "jwt_shaped", "validly_signed"])
async def test_huge_token_to_introspect_is_refused_cleanly(
    auth: Client, victim: Victim, kind: str
) -> None:
    if kind == "letters":
        token = "A" * 100_000
    elif kind == "jwt_shaped":
        token = f"{'A' * 50_000}.{'B' * 50_000}.{'C' * 86}"
    else:
        token = _huge_signed(await _signing_key(auth), victim.claims)
    assert len(token) >= 100_000
    response = await auth.post("/introspect", data={"token": token}, headers=CHAT_AUTH)
    text = await response.text()
    assert "Traceback" not in text
    assert response.status in (200, 400), text
    if response.status == 200:
        assert json.loads(text) == {"active": False}
