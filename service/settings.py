"""The chat service's configuration: read once from the environment into a frozen object."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.config import EnvReader, default_cookie_name
from common.http_limits import HttpLimits, read_http_limits
from service.rooms.namespaces import Namespaces, parse_namespaces

DEV_CLIENT_SECRET = "dev-chat-secret"  # development only; production refuses it
ORIGIN_POLICIES = ("cookie", "always")
WEB_SOCKET_URL = re.compile(r"^wss?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/-]*$")


@dataclass(frozen=True)
class ChatSettings:
    """Everything the chat service is configured with; see README's configuration table."""

    app_env: str
    redis_url: str
    redis_cluster_nodes: tuple[tuple[str, int], ...]  # seeds; () for one Redis at redis_url
    redis_password: str | None = field(repr=False)  # REDIS_PASSWORD
    host: str
    port: int
    instance_id: str
    auth_url: str
    public_auth_url: str  # the auth service as a browser reaches it (the web client's pages)
    web_socket_urls: tuple[str, ...]  # other instances' /ws a page may move to (web client)
    client_id: str
    client_secret: str
    allowed_origins: frozenset[str]
    origin_policy: str
    session_cookie: str
    required_scope: str
    introspection_timeout: float
    introspection_cache_ttl: float
    introspection_negative_ttl: float
    introspection_cache_size: int
    max_text: int
    max_frame: int
    max_rooms: int
    max_connections: int
    backlog: int
    max_connections_per_user: int
    outbox_frames: int
    socket_sndbuf: int
    write_timeout: float
    rate_per_second: float
    rate_burst: int
    rate_strikes: int
    redis_probe_interval: float
    heartbeat: float
    centrifugo_ping: int  # seconds between Centrifugo pings (`{}`); a peer must answer each
    centrifugo_connect_timeout: float  # seconds a Centrifugo socket has to send `connect`
    centrifugo_max_pending: int  # Centrifugo sockets waiting for `connect`, per process
    close_timeout: float
    expiry_grace: float
    handshake_failures: int
    handshake_failure_window: float
    namespaces: Namespaces
    idempotency_ttl: int
    presence_grace: float  # seconds a closed socket stays present (a reconnect makes no pair)
    instance_lease: float  # seconds an instance stays alive in Redis without renewing
    http: HttpLimits
    metrics_public: bool  # GET /metrics without credentials (a trusted network only)
    log_level: str


def own_origins(host: str, port: int) -> frozenset[str]:
    """In development, unless CHAT_ALLOWED_ORIGINS says otherwise: the instance's own
    origins, so a page it serves may open its /ws with the session cookie."""
    local = host in ("127.0.0.1", "localhost", "0.0.0.0")  # noqa: S104 - compared, not bound
    names = {"127.0.0.1", "localhost"} if local else {host}
    return frozenset(f"http://{name}:{port}" for name in names)


def load_settings(environ: Mapping[str, str] | None = None) -> ChatSettings:
    """Read and validate the environment; raises `ConfigError` naming every bad variable."""
    settings, _ = read_settings(environ)
    return settings


def read_settings(environ: Mapping[str, str] | None = None) -> tuple[ChatSettings, set[str]]:
    """The settings and the names of every variable they are read from."""
    env = EnvReader(os.environ if environ is None else environ)
    origins = env.origins("CHAT_ALLOWED_ORIGINS")
    max_connections = env.integer("CHAT_MAX_CONNECTIONS", 20_000, minimum=1)
    http = read_http_limits(
        env, "CHAT", default_connections=max_connections + 1024, default_per_address=2048
    )
    if http.max_open_connections <= max_connections:
        env.fail("CHAT_MAX_OPEN_CONNECTIONS must exceed CHAT_MAX_CONNECTIONS")
    try:
        namespaces = parse_namespaces(env.raw("CHAT_NAMESPACES"))
    except ValueError as error:
        env.fail(f"CHAT_NAMESPACES {error}")
        namespaces = parse_namespaces(None)
    auth_url = env.url("AUTH_URL", "http://127.0.0.1:8081", schemes=("http", "https"))
    web_socket_urls = env.csv("CHAT_WEB_SOCKET_URLS")
    for url in web_socket_urls:
        if not WEB_SOCKET_URL.fullmatch(url):
            env.fail(f"CHAT_WEB_SOCKET_URLS entry {url!r} must be ws[s]://host[:port]/path")
    settings = ChatSettings(
        app_env=env.app_env,
        redis_url=env.url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss")),
        redis_cluster_nodes=env.cluster_nodes("REDIS_CLUSTER_NODES"),
        redis_password=env.redis_password(env.raw("REDIS_URL") or ""),
        host=env.string("CHAT_HOST", "127.0.0.1"),
        port=env.port("CHAT_PORT", 8080),
        instance_id=env.string("CHAT_INSTANCE_ID", secrets.token_hex(4)),
        auth_url=auth_url,
        public_auth_url=env.url("CHAT_PUBLIC_AUTH_URL", auth_url, schemes=("http", "https")),
        web_socket_urls=web_socket_urls,
        client_id=env.string("CHAT_CLIENT_ID", "chat"),
        client_secret=env.secret("CHAT_CLIENT_SECRET", DEV_CLIENT_SECRET),
        allowed_origins=frozenset(origins or ())
        if origins is not None or env.production
        else own_origins(env.string("CHAT_HOST", "127.0.0.1"), env.port("CHAT_PORT", 8080)),
        origin_policy=env.choice("CHAT_ORIGIN_POLICY", "cookie", ORIGIN_POLICIES),
        session_cookie=env.string("AUTH_COOKIE_NAME", default_cookie_name(env)),
        required_scope=env.string("CHAT_REQUIRED_SCOPE", "chat"),
        introspection_timeout=env.number("CHAT_INTROSPECTION_TIMEOUT", 2.0, minimum=0.05),
        introspection_cache_ttl=env.number("CHAT_INTROSPECTION_CACHE_TTL", 60.0),
        introspection_negative_ttl=env.number("CHAT_INTROSPECTION_NEGATIVE_TTL", 2.0),
        introspection_cache_size=env.integer("CHAT_INTROSPECTION_CACHE_SIZE", 100_000, minimum=1),
        max_text=env.integer("CHAT_MAX_TEXT", 4096, minimum=1, maximum=1_000_000),
        max_frame=env.integer("CHAT_MAX_FRAME", 65536, minimum=1024, maximum=16 * 1024 * 1024),
        max_rooms=env.integer("CHAT_MAX_ROOMS", 100, minimum=1, maximum=100_000),
        max_connections=max_connections,
        backlog=env.integer("CHAT_BACKLOG", 1024, minimum=1, maximum=65535),
        max_connections_per_user=env.integer("CHAT_MAX_CONNECTIONS_PER_USER", 32, minimum=1),
        outbox_frames=env.integer("CHAT_OUTBOX_FRAMES", 1024, minimum=1, maximum=1_000_000),
        write_timeout=env.number("CHAT_WRITE_TIMEOUT", 5.0, minimum=0.1),
        socket_sndbuf=env.integer(
            "CHAT_SOCKET_SNDBUF", 131072, minimum=0, maximum=64 * 1024 * 1024
        ),
        rate_per_second=env.number("CHAT_RATE_PER_SECOND", 50.0, minimum=0.1),
        rate_burst=env.integer("CHAT_RATE_BURST", 100, minimum=1),
        rate_strikes=env.integer("CHAT_RATE_STRIKES", 20, minimum=1),
        redis_probe_interval=env.number("CHAT_REDIS_PROBE_INTERVAL", 5.0, minimum=0.05),
        heartbeat=env.number("CHAT_HEARTBEAT", 30.0, minimum=0.1),
        centrifugo_ping=env.integer("CHAT_CENTRIFUGO_PING", 25, minimum=1, maximum=3600),
        centrifugo_connect_timeout=env.number(
            "CHAT_CENTRIFUGO_CONNECT_TIMEOUT", 10.0, minimum=0.1, maximum=300.0
        ),
        centrifugo_max_pending=env.integer("CHAT_CENTRIFUGO_MAX_PENDING", 1024, minimum=1),
        close_timeout=env.number("CHAT_CLOSE_TIMEOUT", 2.0, minimum=0.01),
        expiry_grace=env.number("CHAT_EXPIRY_GRACE", 5.0),
        handshake_failures=env.integer("CHAT_HANDSHAKE_FAILURES", 20, minimum=1),
        handshake_failure_window=env.number("CHAT_HANDSHAKE_FAILURE_WINDOW", 60.0, minimum=1.0),
        namespaces=namespaces,
        idempotency_ttl=env.integer("CHAT_IDEMPOTENCY_TTL", 600, minimum=1, maximum=86400),
        presence_grace=env.number("CHAT_PRESENCE_GRACE", 3.0, minimum=0.0, maximum=300.0),
        instance_lease=env.number("CHAT_INSTANCE_LEASE", 5.0, minimum=1.0, maximum=60.0),
        http=http,
        metrics_public=env.boolean("CHAT_METRICS_PUBLIC", False),
        log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    )
    if settings.max_text * 6 + 1024 > settings.max_frame:
        # A maximal text, JSON-escaped, must still fit in one frame.
        env.fail("CHAT_MAX_FRAME must be at least 6 x CHAT_MAX_TEXT + 1024")
    env.raise_if_invalid()
    return settings, env.names
