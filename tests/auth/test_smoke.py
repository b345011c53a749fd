from tests.auth.helpers import Client, introspect, user_with_tokens


async def test_token_introspects_active(auth: Client) -> None:
    tokens = await user_with_tokens(auth)
    result = await introspect(auth, tokens["access_token"])
    assert result["active"] is True
    assert result["username"] == "alice"
