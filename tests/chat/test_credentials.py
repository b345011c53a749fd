"""How a handshake's credential is kept for the life of its socket."""

import time
from typing import Any

from aiohttp.test_utils import make_mocked_request

from service.auth.chain import BearerHeaderAuthenticator, CredentialChecker

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"


class Answers:
    """An introspection client that knows one active access token, and caches nothing."""

    def cached(self, token: str, hint: str) -> None:
        return None

    async def introspect(self, token: str, hint: str) -> dict[str, Any]:
        assert token == TOKEN
        return {"active": True, "token_type": "access_token", "username": "alice",
                "scope": "chat", "sub": "u1", "exp": time.time() + 60, "jti": "j1"}  # fmt: skip


class NoKeys:
    """Signing keys that cannot tell (as before the auth service's keys were read)."""

    async def check(self, token: str) -> None:
        return None

    def plausible(self, token: str) -> None:
        return None


async def authenticate(header: str) -> Any:
    checker = CredentialChecker(Answers(), NoKeys(), required_scope="chat")  # type: ignore[arg-type]
    request = make_mocked_request("GET", "/ws", headers={"Authorization": header})
    identity = await BearerHeaderAuthenticator(checker).authenticate(request)
    return request, identity


async def test_a_bearer_credential_is_kept_inside_its_header_not_copied() -> None:
    # Every socket keeps its credential to re-validate it; the request holds the header anyway.
    request, identity = await authenticate(f"Bearer {TOKEN}")
    assert identity.credential == TOKEN
    assert identity.source is request.headers["Authorization"]


async def test_extra_spaces_after_the_scheme_are_not_part_of_the_credential() -> None:
    request, identity = await authenticate(f"bearer   {TOKEN}")
    assert identity.credential == TOKEN
    assert identity.source is request.headers["Authorization"]
