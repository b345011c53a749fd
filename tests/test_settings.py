"""Configuration: defaults, one message naming every bad variable, production refusals."""

import subprocess
import sys
from pathlib import Path

import pytest

from auth_service.settings import load_settings
from common.config import ConfigError


def test_defaults_match_the_spec() -> None:
    settings = load_settings({})
    assert settings.app_env == "development"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.host, settings.port) == ("127.0.0.1", 8081)
    assert settings.issuer == "http://127.0.0.1:8081"
    assert settings.audience == "chat"
    assert settings.access_token_ttl == 900
    assert settings.refresh_token_ttl == 1209600
    assert settings.cookie_secure is False


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "AUTH_PORT": "eighty",
                "AUTH_ACCESS_TOKEN_TTL": "0",
                "REDIS_URL": "localhost:6379",
                "APP_ENV": "staging",
                "AUTH_COOKIE_SECURE": "maybe",
            }
        )
    message = str(caught.value)
    for name in (
        "AUTH_PORT",
        "AUTH_ACCESS_TOKEN_TTL",
        "REDIS_URL",
        "APP_ENV",
        "AUTH_COOKIE_SECURE",
    ):
        assert name in message


def test_production_refuses_dev_defaults_for_secrets() -> None:
    with pytest.raises(ConfigError, match="AUTH_CLIENTS is required"):
        load_settings({"APP_ENV": "production"})
    with pytest.raises(ConfigError, match="development default"):
        load_settings({"APP_ENV": "production", "AUTH_CLIENTS": "chat:dev-chat-secret"})
    with pytest.raises(ConfigError, match="at least 16"):
        load_settings({"APP_ENV": "production", "AUTH_CLIENTS": "chat:short"})
    with pytest.raises(ConfigError, match="AUTH_COOKIE_SECURE"):
        load_settings(
            {
                "APP_ENV": "production",
                "AUTH_CLIENTS": "chat:a-long-enough-secret-value",
                "AUTH_COOKIE_SECURE": "false",
            }
        )
    settings = load_settings(
        {"APP_ENV": "production", "AUTH_CLIENTS": "chat:a-long-enough-secret-value"}
    )
    assert settings.cookie_secure is True


@pytest.mark.parametrize("value", ["chat", "chat:", ":secret", "bad id:secret"])
def test_malformed_clients_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="AUTH_CLIENTS"):
        load_settings({"AUTH_CLIENTS": value})


def test_access_ttl_may_not_exceed_refresh_ttl() -> None:
    with pytest.raises(ConfigError, match="must not exceed"):
        load_settings({"AUTH_ACCESS_TOKEN_TTL": "7200", "AUTH_REFRESH_TOKEN_TTL": "3600"})


def test_bad_configuration_stops_start_up_with_one_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "auth_service"],
        env={"AUTH_PORT": "-5", "AUTH_LEEWAY": "soon", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "AUTH_PORT" in lines[0]
    assert "AUTH_LEEWAY" in lines[0]
    assert "Traceback" not in result.stderr


def test_public_and_duplicate_client_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="may not register 'public'"):
        load_settings({"AUTH_CLIENTS": "public:some-secret"})
    with pytest.raises(ConfigError, match="twice"):
        load_settings({"AUTH_CLIENTS": "chat:one-secret,chat:two-secret"})


def test_bad_key_files_are_configuration_errors(tmp_path: Path) -> None:
    not_a_key = tmp_path / "notakey.pem"
    not_a_key.write_text("hello")
    with pytest.raises(ConfigError) as caught:
        load_settings({"AUTH_SIGNING_KEY_FILES": f"{tmp_path / 'missing.pem'},{not_a_key}"})
    assert "cannot read" in str(caught.value)
    assert "not an Ed25519 private key" in str(caught.value)


def test_url_credentials_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"REDIS_URL": "redis://admin:hunter2-secret@redis host/0"})
    assert "hunter2-secret" not in str(caught.value)
    assert "REDIS_URL" in str(caught.value)


@pytest.mark.parametrize("service", ["auth", "chat"])
def test_redis_cluster_nodes_are_read_and_checked(service: str) -> None:
    from service.settings import load_settings as load_chat_settings

    load = load_settings if service == "auth" else load_chat_settings
    assert load({}).redis_cluster_nodes == ()
    nodes = load({"REDIS_CLUSTER_NODES": "10.0.0.1:7000, redis-2:7001"}).redis_cluster_nodes
    assert nodes == (("10.0.0.1", 7000), ("redis-2", 7001))
    for bad in ("10.0.0.1", "host:port", ":7000", "host:70000"):
        with pytest.raises(ConfigError, match="REDIS_CLUSTER_NODES"):
            load({"REDIS_CLUSTER_NODES": bad})


def test_allowed_origins_default_to_the_instances_own_in_development_only() -> None:
    from service.settings import load_settings as load_chat_settings

    development = load_chat_settings({"CHAT_PORT": "8082"})
    assert development.allowed_origins == {"http://127.0.0.1:8082", "http://localhost:8082"}
    named = load_chat_settings({"CHAT_HOST": "chat.internal", "CHAT_PORT": "9000"})
    assert named.allowed_origins == {"http://chat.internal:9000"}
    explicit = load_chat_settings({"CHAT_ALLOWED_ORIGINS": "https://chat.example"})
    assert explicit.allowed_origins == {"https://chat.example"}  # as said, nothing added
    production = {
        "APP_ENV": "production",
        "CHAT_CLIENT_SECRET": "s" * 32,
        "AUTH_URL": "https://auth.example",
    }
    assert load_chat_settings(production).allowed_origins == frozenset()
