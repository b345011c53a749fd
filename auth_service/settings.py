"""The auth service's configuration: read once from the environment into a frozen object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from auth_service.keys import load_private_key
from common.config import EnvReader, default_cookie_name
from common.http_limits import HttpLimits, read_http_limits

DEV_CLIENTS = "chat:dev-chat-secret"
PUBLIC_CLIENT = "public"  # the client id of callers that present no client credentials
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Development only, when AUTH_ALLOWED_ORIGINS is unset: the pages of a chat instance on its
# default port (production's default is no browser origin at all).
DEV_BROWSER_ORIGINS = ("http://127.0.0.1:8080", "http://localhost:8080")
COOKIE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 §3.3 scope-token


@dataclass(frozen=True)
class AuthSettings:
    """Everything the auth service is configured with; see README's configuration table."""

    app_env: str
    redis_url: str
    redis_cluster_nodes: tuple[tuple[str, int], ...]  # seeds; () for one Redis at redis_url
    redis_password: str | None = field(repr=False)  # REDIS_PASSWORD
    host: str
    port: int
    issuer: str
    audience: str
    access_token_ttl: int
    refresh_token_ttl: int
    session_ttl: int
    leeway: int
    clients: Mapping[str, str]
    scopes: tuple[str, ...]
    default_scope: str
    client_scopes: tuple[str, ...]  # for client_credentials only, never for a user's grant
    signing_key_files: tuple[str, ...]
    allowed_origins: frozenset[str]  # pages that may call from a browser (CORS, CSRF rule)
    cookie_name: str
    cookie_secure: bool
    cookie_samesite: str
    login_max_failures: int
    login_max_failures_per_address: int
    login_max_attempts: int
    login_max_attempts_per_address: int
    max_grants_per_user: int
    login_window: int
    register_max_per_address: int
    revoke_max_per_address: int
    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int
    hash_workers: int
    max_pending_hashes: int
    http: HttpLimits
    metrics_public: bool  # GET /metrics without credentials (a trusted network only)
    log_level: str


def _parse_clients(env: EnvReader) -> dict[str, str]:
    clients: dict[str, str] = {}
    raw = env.secret("AUTH_CLIENTS", DEV_CLIENTS)
    if env.production and raw == DEV_CLIENTS:
        return clients  # already reported as missing or as the development default
    for pair in raw.split(","):
        client_id, sep, secret = pair.strip().partition(":")
        if not sep or not CLIENT_ID.fullmatch(client_id) or not secret:
            env.fail("AUTH_CLIENTS must be comma-separated id:secret pairs")
            continue
        if env.production and len(secret) < 16:
            env.fail(f"AUTH_CLIENTS secret of {client_id!r} must be at least 16 characters")
        if client_id == PUBLIC_CLIENT:
            env.fail(
                f"AUTH_CLIENTS may not register {PUBLIC_CLIENT!r}: it names unauthenticated callers"
            )
        if client_id in clients:
            env.fail(f"AUTH_CLIENTS lists {client_id!r} twice")
        clients[client_id] = secret
    return clients


def _check_key_files(env: EnvReader, paths: tuple[str, ...]) -> None:
    for path in paths:
        try:
            load_private_key(Path(path).read_bytes())
        except OSError as error:
            env.fail(f"AUTH_SIGNING_KEY_FILES: cannot read {path} ({error.strerror})")
        except ValueError:
            env.fail(f"AUTH_SIGNING_KEY_FILES: {path} is not an Ed25519 private key in PEM")


def load_settings(environ: Mapping[str, str] | None = None) -> AuthSettings:
    """Read and validate the environment; raises `ConfigError` naming every bad variable."""
    env = EnvReader(os.environ if environ is None else environ)
    host = env.string("AUTH_HOST", "127.0.0.1")
    port = env.port("AUTH_PORT", 8081)
    access_ttl = env.integer("AUTH_ACCESS_TOKEN_TTL", 900, minimum=1, maximum=86400)
    refresh_ttl = env.integer("AUTH_REFRESH_TOKEN_TTL", 1209600, minimum=60, maximum=31536000)
    if access_ttl > refresh_ttl:
        env.fail("AUTH_ACCESS_TOKEN_TTL must not exceed AUTH_REFRESH_TOKEN_TTL")
    scopes = env.csv("AUTH_SCOPES", ("chat",))
    if not scopes or not all(SCOPE_TOKEN.fullmatch(s) for s in scopes):
        env.fail("AUTH_SCOPES must be a comma list of RFC 6749 scope tokens")
    client_scopes = env.csv("AUTH_CLIENT_SCOPES", ("chat:server",))
    if not all(SCOPE_TOKEN.fullmatch(s) for s in client_scopes):
        env.fail("AUTH_CLIENT_SCOPES must be a comma list of RFC 6749 scope tokens")
    elif set(client_scopes) & set(scopes):
        env.fail("AUTH_CLIENT_SCOPES must not repeat a scope of AUTH_SCOPES (users get those)")
    origins = env.origins("AUTH_ALLOWED_ORIGINS")
    if origins is None:
        origins = () if env.production else DEV_BROWSER_ORIGINS
    samesite = env.choice("AUTH_COOKIE_SAMESITE", "Lax", ("Lax", "Strict"))
    settings = AuthSettings(
        app_env=env.app_env,
        redis_url=env.url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss")),
        redis_cluster_nodes=env.cluster_nodes("REDIS_CLUSTER_NODES"),
        redis_password=env.redis_password(env.raw("REDIS_URL") or ""),
        host=host,
        port=port,
        issuer=env.url("AUTH_ISSUER", f"http://{host}:{port}", schemes=("http", "https")),
        audience=env.string("AUTH_AUDIENCE", "chat"),
        access_token_ttl=access_ttl,
        refresh_token_ttl=refresh_ttl,
        session_ttl=env.integer("AUTH_SESSION_TTL", 86400, minimum=60, maximum=31536000),
        leeway=env.integer("AUTH_LEEWAY", 10, minimum=0, maximum=300),
        clients=MappingProxyType(_parse_clients(env)),
        scopes=scopes,
        default_scope=scopes[0] if scopes else "chat",
        client_scopes=client_scopes,
        signing_key_files=env.csv("AUTH_SIGNING_KEY_FILES"),
        allowed_origins=frozenset(origins),
        cookie_name=env.string("AUTH_COOKIE_NAME", default_cookie_name(env)),
        cookie_secure=env.boolean("AUTH_COOKIE_SECURE", env.production),
        cookie_samesite=samesite,
        login_max_failures=env.integer("AUTH_LOGIN_MAX_FAILURES", 5, minimum=1),
        login_max_failures_per_address=env.integer(
            "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", 50, minimum=1
        ),
        login_max_attempts=env.integer("AUTH_LOGIN_MAX_ATTEMPTS", 20, minimum=1),
        login_max_attempts_per_address=env.integer(
            "AUTH_LOGIN_MAX_ATTEMPTS_PER_ADDRESS", 300, minimum=1
        ),
        max_grants_per_user=env.integer("AUTH_MAX_GRANTS_PER_USER", 50, minimum=1),
        login_window=env.integer("AUTH_LOGIN_WINDOW", 300, minimum=1, maximum=86400),
        register_max_per_address=env.integer("AUTH_REGISTER_MAX_PER_ADDRESS", 30, minimum=1),
        revoke_max_per_address=env.integer("AUTH_REVOKE_MAX_PER_ADDRESS", 60, minimum=1),
        argon2_time_cost=env.integer("AUTH_ARGON2_TIME_COST", 3, minimum=1, maximum=20),
        argon2_memory_kib=env.integer(
            "AUTH_ARGON2_MEMORY_KIB", 65536, minimum=64, maximum=4 * 1024 * 1024
        ),
        argon2_parallelism=env.integer("AUTH_ARGON2_PARALLELISM", 4, minimum=1, maximum=64),
        hash_workers=env.integer("AUTH_HASH_WORKERS", 2, minimum=1, maximum=64),
        max_pending_hashes=env.integer("AUTH_MAX_PENDING_HASHES", 64, minimum=1),
        http=read_http_limits(env, "AUTH", default_connections=4096, default_per_address=1024),
        metrics_public=env.boolean("AUTH_METRICS_PUBLIC", False),
        log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    _check_key_files(env, settings.signing_key_files)
    if env.production and not settings.cookie_secure:
        env.fail("AUTH_COOKIE_SECURE must be true when APP_ENV=production")
    if settings.cookie_name.startswith(("__Host-", "__Secure-")) and not settings.cookie_secure:
        env.fail("AUTH_COOKIE_NAME with a __Host- or __Secure- prefix needs AUTH_COOKIE_SECURE")
    if not COOKIE_NAME.fullmatch(settings.cookie_name):
        env.fail("AUTH_COOKIE_NAME must be a cookie name (letters, digits, _ and -)")
    env.raise_if_invalid()
    return settings
