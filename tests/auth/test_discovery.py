"""RFC 8414 metadata, JWKS, health and readiness."""

from tests.auth.helpers import Client
from tests.conftest import AuthClientFactory, Store


async def test_metadata_describes_the_endpoints(auth: Client) -> None:
    response = await auth.get("/.well-known/oauth-authorization-server")
    assert response.status == 200
    meta = await response.json()
    assert meta["issuer"] == "http://auth.test"
    assert meta["token_endpoint"] == "http://auth.test/token"
    assert meta["introspection_endpoint"] == "http://auth.test/introspect"
    assert meta["revocation_endpoint"] == "http://auth.test/revoke"
    assert meta["jwks_uri"] == "http://auth.test/.well-known/jwks.json"
    assert set(meta["grant_types_supported"]) == {"password", "refresh_token", "client_credentials"}
    assert meta["scopes_supported"] == ["chat", "chat:server"]


async def test_jwks_lists_public_keys_only(auth: Client) -> None:
    keys = (await (await auth.get("/.well-known/jwks.json")).json())["keys"]
    assert len(keys) == 1
    assert set(keys[0]) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert keys[0]["alg"] == "EdDSA"


async def test_health_and_readiness(auth: Client) -> None:
    assert (await auth.get("/healthz")).status == 200
    ready = await auth.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["redis"] is True


async def test_not_ready_without_redis(make_auth_client: AuthClientFactory, store: Store) -> None:
    # A port where nothing listens stands in for a Redis (or every cluster seed) that is down.
    from tests.redis_server import free_port

    dead = free_port()
    auth = await make_auth_client(
        REDIS_URL=f"redis://127.0.0.1:{dead}/0",
        REDIS_CLUSTER_NODES=f"127.0.0.1:{dead}" if store.cluster_nodes else "",
    )
    assert (await auth.get("/healthz")).status == 200
    ready = await auth.get("/readyz")
    assert ready.status == 503
    response = await auth.post(
        "/token", data={"grant_type": "password", "username": "alice", "password": "whatever1"}
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"] == "temporarily_unavailable"


async def test_unknown_path_is_json_404(auth: Client) -> None:
    response = await auth.get("/nope")
    assert response.status == 404
    assert (await response.json())["error"] == "invalid_request"


async def test_oversized_body_is_413(auth: Client) -> None:
    response = await auth.post("/introspect", data={"token": "x" * 300_000})
    assert response.status == 413
