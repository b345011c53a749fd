"""The container files, checked by parsing: no Docker engine or compose plugin runs here.

docker-compose.yml is loaded with `yaml.safe_load` and its `${...}` interpolation is resolved the
way compose does it, so the environment each service would get can be fed to the real settings
loaders. Variable names are checked against the names those loaders actually read, which is
what catches a typo: a misspelt variable is silently ignored at run time.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from auth_service import settings as auth_settings
from common.config import APP_ENVS, ConfigError
from service import settings as chat_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

# service -> the module it runs
APP_SERVICES = {"auth": "auth_service", "chat1": "service", "chat2": "service"}
CHAT_SERVICES = ("chat1", "chat2")
PUBLISHED = {"auth": 8081, "chat1": 8080, "chat2": 8082}
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 (a container is reached only on its own interfaces)
SECRETS = ("CHAT_CLIENT_SECRET", "REDIS_PASSWORD")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|CLIENTS$")
DEV_SECRETS = (auth_settings.DEV_CLIENTS, chat_settings.DEV_CLIENT_SECRET)

INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)

# What a caller of `docker compose up` provides: well-formed secrets, nothing else.
CALLER = {"CHAT_CLIENT_SECRET": "s" * 32, "REDIS_PASSWORD": "p" * 32}


class RecordingEnviron(Mapping[str, str]):
    """An environment that records the name of every variable looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)  # `Mapping.get`, which EnvReader uses, comes through here
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def names_read_by(load: Callable[[Mapping[str, str]], object]) -> set[str]:
    """Every variable `load` looks up, in development and in production."""
    names: set[str] = set()
    for app_env in APP_ENVS:
        environ = RecordingEnviron({"APP_ENV": app_env})
        with contextlib.suppress(ConfigError):  # production without secrets reads them all
            load(environ)
        names |= environ.asked
    return names


AUTH_NAMES = names_read_by(auth_settings.load_settings)
CHAT_NAMES = chat_settings.read_settings({})[1] | names_read_by(chat_settings.load_settings)
NAMES_READ = {"auth": AUTH_NAMES, "chat1": CHAT_NAMES, "chat2": CHAT_NAMES}


class MissingVariable(Exception):
    """A `${NAME:?message}` whose variable the caller did not set."""


def interpolate(value: str, caller: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?err}`, `${NAME?err}`."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = caller.get(name)
        present = current is not None and (current != "" or not (op or "").startswith(":"))
        if present:
            return current or ""
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op in (":-", "-") else ""

    rest = INTERPOLATION.sub("", value).replace("$$", "")
    assert "$" not in rest, f"{value!r} uses interpolation this test does not understand"
    return INTERPOLATION.sub(substitute, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    found = compose["services"][name]
    assert isinstance(found, dict)
    return found


def environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    """A service's `environment:`, as written (mapping or list form)."""
    raw = service(compose, name).get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def resolved(compose: dict[str, Any], name: str, caller: Mapping[str, str]) -> dict[str, str]:
    return {key: interpolate(value, caller) for key, value in environment(compose, name).items()}


def load(name: str, environ: Mapping[str, str]) -> Any:
    if APP_SERVICES[name] == "auth_service":
        return auth_settings.load_settings(environ)
    return chat_settings.load_settings(environ)


def words(value: str | list[str]) -> list[str]:
    return value.split() if isinstance(value, str) else [str(word) for word in value]


def published_ports(spec: dict[str, Any]) -> list[tuple[int, int]]:
    """(host port, container port) for each port a service publishes."""
    pairs = []
    for entry in spec.get("ports", []):
        if isinstance(entry, dict):
            pairs.append((int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) >= 2, f"{entry!r} publishes on a random host port"
        pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def redis_argv(spec: dict[str, Any]) -> tuple[list[str], str]:
    """A Redis container's redis-server arguments, and what its shell feeds it on standard
    input (`printf '…' | redis-server - …`: the password, kept off every command line)."""
    command = words(spec["command"])
    assert command[:2] == ["sh", "-c"], (
        "redis-server is started by a shell that feeds it its password"
    )
    feed, pipe, server = command[2].partition("|")
    assert pipe, "the password reaches redis-server through a pipe"
    argv = shlex.split(server)
    assert argv[:2] == ["redis-server", "-"], "redis-server reads its config from standard input"
    return argv, feed


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    instructions = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def env_example() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example line {line!r} is not NAME=value"
            entries[name.strip()] = value.strip()
    return entries


def test_the_stack_is_redis_auth_and_two_chat_replicas(compose: dict[str, Any]) -> None:
    assert {"redis", *APP_SERVICES} <= set(compose["services"])


def test_redis_is_durable(compose: dict[str, Any]) -> None:
    redis = service(compose, "redis")
    assert str(redis["image"]).split(":")[0] == "redis"
    command, _ = redis_argv(redis)
    assert "--appendonly" in command, "redis must run with --appendonly yes (AOF)"
    assert command[command.index("--appendonly") + 1] == "yes", "redis must keep AOF on"
    volumes = [str(volume).split(":") for volume in redis.get("volumes", [])]
    data = [source for source, target, *_ in volumes if target == "/data"]
    assert data, "redis keeps /data on no volume"
    assert data[0] in (compose.get("volumes") or {}), "redis /data must be a named volume"


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    check = " ".join(words(service(compose, "redis")["healthcheck"]["test"]))
    assert "redis-cli ping | grep -q PONG" in check  # a refused AUTH answers, but not PONG
    for name in APP_SERVICES:
        settings = load(name, resolved(compose, name, CALLER))
        check = words(service(compose, name)["healthcheck"]["test"])
        assert check[0] in ("CMD", "CMD-SHELL")
        assert "python" in check, f"{name}: the slim image has no curl; use python's urllib"
        # Ready, not merely alive: Redis reachable (and, for chat, its pub/sub link up).
        assert f"127.0.0.1:{settings.port}/readyz" in " ".join(check), name


def test_app_services_start_only_after_their_dependencies_are_healthy(
    compose: dict[str, Any],
) -> None:
    expected = {"auth": {"redis"}, "chat1": {"redis", "auth"}, "chat2": {"redis", "auth"}}
    for name, dependencies in expected.items():
        depends_on = dict(service(compose, name)["depends_on"])
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        # The cluster, once created, when its profile is on; nothing without it.
        init = depends_on.pop("cluster-init")
        assert init == {"condition": "service_completed_successfully", "required": False}
        assert set(depends_on) == dependencies, name
        for dependency, condition in depends_on.items():
            assert condition["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in service(compose, dependency), dependency


CLUSTER_NODES = [f"redis-node-{n}" for n in range(1, 7)]


def test_the_cluster_profile_is_six_durable_cluster_nodes(compose: dict[str, Any]) -> None:
    profiled = {name for name, spec in compose["services"].items() if spec.get("profiles")}
    assert profiled == {*CLUSTER_NODES, "cluster-init"}
    for name in CLUSTER_NODES:
        node = service(compose, name)
        assert node["profiles"] == ["cluster"]
        command, _ = redis_argv(node)
        for flag, value in {
            "--cluster-enabled": "yes",
            "--appendonly": "yes",
            # Healthy shards keep serving while another fails over.
            "--cluster-require-full-coverage": "no",
            # What CLUSTER SLOTS tells clients: a name the compose network resolves.
            "--cluster-announce-hostname": name,
            "--cluster-preferred-endpoint-type": "hostname",
        }.items():
            assert command[command.index(flag) + 1] == value, (name, flag)
        volumes = [str(volume).split(":") for volume in node["volumes"]]
        assert [source for source, target in volumes if target == "/data"] == [f"{name}-data"]
        assert f"{name}-data" in compose["volumes"]
        assert "redis-cli ping" in " ".join(words(node["healthcheck"]["test"]))
        assert "ports" not in node, "the cluster is for the services only"


def test_cluster_init_creates_the_cluster_once_from_every_node(compose: dict[str, Any]) -> None:
    init = service(compose, "cluster-init")
    assert init["profiles"] == ["cluster"]
    assert init["restart"] == "no"
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in CLUSTER_NODES}
    script = " ".join(words(init["command"]))
    assert 'export REDISCLI_AUTH="$$REDIS_PASSWORD"' in script
    assert "cluster_state:ok && exit 0" in script  # a second `up` leaves it as it is
    assert "--cluster create" in script
    assert "--cluster-replicas 1" in script
    assert "for n in 1 2 3 4 5 6" in script


def test_the_services_run_on_the_cluster_when_told_its_seeds(compose: dict[str, Any]) -> None:
    seeds = env_example_comment("REDIS_CLUSTER_NODES")
    caller = {**CALLER, "REDIS_CLUSTER_NODES": seeds}
    for name in APP_SERVICES:
        assert load(name, resolved(compose, name, CALLER)).redis_cluster_nodes == ()
        nodes = load(name, resolved(compose, name, caller)).redis_cluster_nodes
        assert nodes
        assert all(port == 6379 and host in CLUSTER_NODES for host, port in nodes)


def env_example_comment(name: str) -> str:
    """The example value .env.example gives in a comment (`#   NAME=value`)."""
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(rf"#\s+{name}=(\S+)", line.strip())
        if match:
            return match[1]
    raise AssertionError(f".env.example shows no example of {name}")


def test_ports_are_published_where_the_services_listen(compose: dict[str, Any]) -> None:
    for name, host_port in PUBLISHED.items():
        settings = load(name, resolved(compose, name, CALLER))
        assert published_ports(service(compose, name)) == [(host_port, settings.port)], name
    assert "ports" not in service(compose, "redis"), "redis is for the services only"


def test_app_services_run_one_image_with_their_module(compose: dict[str, Any]) -> None:
    builds = {str(service(compose, name).get("build")) for name in APP_SERVICES}
    images = {str(service(compose, name).get("image")) for name in APP_SERVICES}
    assert builds == {"."}
    assert len(images) == 1
    for name, module in APP_SERVICES.items():
        assert words(service(compose, name)["command"]) == ["python", "-m", module]


@pytest.mark.parametrize("name", list(APP_SERVICES))
def test_compose_sets_only_variables_the_settings_read(compose: dict[str, Any], name: str) -> None:
    unknown = set(environment(compose, name)) - NAMES_READ[name]
    assert not unknown, f"{name} sets variables its settings never read (typo?): {sorted(unknown)}"


@pytest.mark.parametrize("app_env", APP_ENVS)
def test_the_environment_is_valid_in_development_and_production(
    compose: dict[str, Any], app_env: str
) -> None:
    caller = {**CALLER, "APP_ENV": app_env}
    for name in APP_SERVICES:
        settings = load(name, resolved(compose, name, caller))
        assert settings.app_env == app_env
        assert settings.host == EVERY_INTERFACE, f"{name} must listen on every container interface"
        assert settings.redis_url == "redis://redis:6379/0"
    auth = auth_settings.load_settings(resolved(compose, "auth", caller))
    assert auth.cookie_secure is (app_env == "production")
    for name in CHAT_SERVICES:
        assert chat_settings.load_settings(resolved(compose, name, caller)).auth_url == (
            "http://auth:8081"
        )


def test_app_env_defaults_to_development_and_the_issuer_is_explicit(
    compose: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        assert environment(compose, name)["APP_ENV"] == "${APP_ENV:-development}", name
        assert resolved(compose, name, CALLER)["APP_ENV"] == "development"
    assert environment(compose, "auth").get("AUTH_ISSUER"), "set AUTH_ISSUER explicitly"


def test_each_chat_replica_has_its_own_instance_id(compose: dict[str, Any]) -> None:
    ids = [environment(compose, name).get("CHAT_INSTANCE_ID") for name in CHAT_SERVICES]
    assert all(ids), "every chat replica needs a CHAT_INSTANCE_ID"
    assert len(set(ids)) == len(ids), f"CHAT_INSTANCE_ID values repeat: {ids}"


def test_secrets_come_from_whoever_runs_compose(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for dev_secret in DEV_SECRETS:
        assert dev_secret not in text
    for name in APP_SERVICES:
        for variable, value in environment(compose, name).items():
            if variable == "AUTH_CLIENTS":  # derived from the chat pair: see the next test
                continue
            if variable in SECRETS or SECRET_NAME.search(variable):
                required = re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value)
                assert required, f"{name}: {variable} must be ${{{variable}:?message}}"
        with pytest.raises(MissingVariable):
            resolved(compose, name, {})  # compose refuses to start without the secrets
    for variable in SECRETS:
        assert any(variable in environment(compose, name) for name in APP_SERVICES), variable


def test_dockerfile_runs_unprivileged_and_exposes_both_services() -> None:
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"the image runs as {users[-1]}"
    exposed = {
        port.split("/")[0]
        for keyword, arguments in instructions
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    assert {"8080", "8081"} <= exposed, f"EXPOSE lists {sorted(exposed)}"
    assert instructions[-1] == ("CMD", '["python", "-m", "service"]')


def test_dockerfile_bakes_in_no_secret_and_no_dev_extras() -> None:
    text = DOCKERFILE.read_text()
    for dev_secret in DEV_SECRETS:
        assert dev_secret not in text
    for keyword, arguments in dockerfile():
        if keyword in ("ENV", "ARG"):
            for variable in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arguments):
                assert variable not in SECRETS, variable
                assert not SECRET_NAME.search(variable), variable
        if keyword == "RUN":
            assert "[dev]" not in arguments
            assert not re.search(r"pip install[^&]*\s-e\s", arguments), "not editable"


def test_dockerfile_installs_dependencies_before_copying_the_code() -> None:
    copies = [arguments for keyword, arguments in dockerfile() if keyword == "COPY"]
    assert copies[0].split()[0] == "pyproject.toml"
    assert all(" . " not in f" {copy} " for copy in copies), "COPY . . defeats the layer cache"


def test_env_example_names_only_variables_the_settings_read() -> None:
    entries = env_example()
    unknown = set(entries) - AUTH_NAMES - CHAT_NAMES
    assert not unknown, f".env.example names variables no settings read: {sorted(unknown)}"


def test_env_example_documents_exactly_what_compose_takes_from_the_caller() -> None:
    referenced = {match["name"] for match in INTERPOLATION.finditer(COMPOSE.read_text())}
    documented = set(env_example())
    assert referenced - documented == set(), "undocumented in .env.example"
    # Compose uses .env only for interpolation: a name it never references would do nothing.
    assert documented - referenced == set(), "in .env.example but unused by docker-compose.yml"


def test_env_example_holds_no_secret_values() -> None:
    entries = env_example()
    for variable in SECRETS:
        assert entries[variable] == "", f"{variable} must be left empty in .env.example"
    for variable, value in entries.items():
        assert value not in DEV_SECRETS, variable


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".git", ".venv", ".run", "tests", ".env"} <= ignored


def test_the_server_image_ships_no_client() -> None:
    copied = [arguments.split()[0] for keyword, arguments in dockerfile() if keyword == "COPY"]
    assert "chat_client" not in copied
    assert {"common", "auth_service", "service"} <= set(copied)
    servers = [*(ROOT / "service").rglob("*.py"), *(ROOT / "auth_service").rglob("*.py")]
    assert servers
    for path in servers:  # the image would fail to import it
        assert "chat_client" not in path.read_text(), path


def test_the_chat_client_secret_is_written_once(compose: dict[str, Any]) -> None:
    """The auth service registers exactly the pair the chat services present."""
    assert "CHAT_CLIENT_SECRET" in CALLER
    assert "AUTH_CLIENTS" not in CALLER
    for caller in (CALLER, {**CALLER, "CHAT_CLIENT_ID": "chat-prod"}):
        auth = auth_settings.load_settings(resolved(compose, "auth", caller))
        for name in CHAT_SERVICES:
            chat = chat_settings.load_settings(resolved(compose, name, caller))
            assert dict(auth.clients) == {chat.client_id: chat.client_secret}


def test_every_redis_demands_the_one_password(compose: dict[str, Any]) -> None:
    """Redis holds the signing keys: it refuses anyone without REDIS_PASSWORD, which reaches
    it on standard input (not a command line) and reaches both services as a setting."""
    redises = ["redis", *CLUSTER_NODES]
    for name in redises:
        spec = service(compose, name)
        argv, feed = redis_argv(spec)
        assert "requirepass" not in argv
        assert "--requirepass" not in argv
        assert "requirepass %s" in feed, name
        assert '"$$REDIS_PASSWORD"' in feed, name
        if name != "redis":
            assert "masterauth %s" in feed, f"{name}: replicas must authenticate to primaries"
        assert "REDISCLI_AUTH" in " ".join(words(spec["healthcheck"]["test"])), name
        assert (
            interpolate(spec["environment"]["REDIS_PASSWORD"], CALLER) == CALLER["REDIS_PASSWORD"]
        )
    for name in APP_SERVICES:
        settings = load(name, resolved(compose, name, CALLER))
        assert settings.redis_password == CALLER["REDIS_PASSWORD"], name


def test_metrics_are_on_the_published_ports_and_closed_unless_opened(
    compose: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        assert load(name, resolved(compose, name, CALLER)).metrics_public is False, name
        opened = {**CALLER, "AUTH_METRICS_PUBLIC": "true", "CHAT_METRICS_PUBLIC": "true"}
        assert load(name, resolved(compose, name, opened)).metrics_public is True, name


def test_the_web_client_works_on_the_published_ports(compose: dict[str, Any]) -> None:
    """A browser at either replica's published port may open /ws and call the auth service,
    which its page reaches at the issuer URL (not the containers' internal name)."""
    pages = {f"http://localhost:{PUBLISHED[name]}" for name in CHAT_SERVICES}
    auth = auth_settings.load_settings(resolved(compose, "auth", CALLER))
    assert set(auth.allowed_origins) == pages
    for name in CHAT_SERVICES:
        chat = chat_settings.load_settings(resolved(compose, name, CALLER))
        assert set(chat.allowed_origins) == pages
        assert chat.public_auth_url == auth.issuer
        assert set(chat.web_socket_urls) == {
            f"ws://localhost:{PUBLISHED[n]}/ws" for n in CHAT_SERVICES
        }
    mine = {**CALLER, "CHAT_ALLOWED_ORIGINS": "https://chat.example.com"}
    assert set(auth_settings.load_settings(resolved(compose, "auth", mine)).allowed_origins) == {
        "https://chat.example.com"
    }
