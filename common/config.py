"""Reading configuration from the environment, once, with every error reported together."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import unquote, urlsplit

T = TypeVar("T")

log = logging.getLogger(__name__)

APP_ENVS = ("development", "production")


_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")  # as a browser sends `Origin`


def _redacted(value: str) -> str:
    """The value with any URL credentials (`scheme://user:password@`) masked."""
    return _USERINFO.sub("***@", value)


class ConfigError(Exception):
    """Raised when one or more environment variables are missing or malformed.

    The message names every bad variable, so an operator fixes them all in one go.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))


class EnvReader:
    """Reads typed values out of an environment mapping and collects the problems it finds.

    Each getter returns a usable placeholder on error so that reading can go on and report
    every bad variable at once; `raise_if_invalid()` then turns the collected problems into
    one `ConfigError`.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.names: set[str] = set()  # every variable asked for, so tooling can list them
        self.problems: list[str] = []
        self.dev_defaults: list[str] = []
        self.app_env = self.choice("APP_ENV", "development", APP_ENVS)

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    def raw(self, name: str) -> str | None:
        self.names.add(name)
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def _parse(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name} must be {expected} (got {_redacted(value)!r})")
            return default

    def string(self, name: str, default: str) -> str:
        return self._parse(name, default, str, "a string")

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
        def parse(value: str) -> int:
            number = int(value)
            if not minimum <= number <= maximum:
                raise ValueError(value)
            return number

        return self._parse(name, default, parse, f"an integer from {minimum} to {maximum}")

    def number(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        def parse(value: str) -> float:
            number = float(value)
            if not number >= minimum or (maximum is not None and not number <= maximum):
                raise ValueError(value)  # NaN fails both
            return number

        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        return self._parse(name, default, parse, f"a number {bounds}")

    def boolean(self, name: str, default: bool) -> bool:
        def parse(value: str) -> bool:
            lowered = value.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)

        return self._parse(name, default, parse, "true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(value: str) -> str:
            if value not in choices:
                raise ValueError(value)
            return value

        return self._parse(name, default, parse, "one of " + ", ".join(choices))

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=1, maximum=65535)

    def url(self, name: str, default: str, *, schemes: tuple[str, ...]) -> str:
        pattern = re.compile(rf"^({'|'.join(schemes)})://[^\s/]+(/[^\s]*)?$")

        def parse(value: str) -> str:
            if not pattern.fullmatch(value):
                raise ValueError(value)
            return value.rstrip("/")

        return self._parse(name, default, parse, "a URL with scheme " + " or ".join(schemes))

    def csv(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        return tuple(part.strip() for part in value.split(",") if part.strip())

    def origins(self, name: str) -> tuple[str, ...] | None:
        """Exact browser origins (`scheme://host[:port]`), comma separated; None when unset."""
        if self.raw(name) is None:
            return None
        values = self.csv(name)
        for origin in values:
            if not ORIGIN.fullmatch(origin):
                self.fail(f"{name} entry {origin!r} must be scheme://host[:port]")
        return values

    def cluster_nodes(self, name: str) -> tuple[tuple[str, int], ...]:
        """`host:port` seeds of a Redis Cluster, comma separated; () when unset."""
        nodes = []
        for part in self.csv(name):
            host, sep, port = part.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                self.problems.append(f"{name} must be a comma list of host:port ({part!r} is not)")
                return ()
            nodes.append((host, int(port)))
        return tuple(nodes)

    def redis_password(self, url: str) -> str | None:
        """`REDIS_PASSWORD`: the password of every Redis connection, the cluster's nodes
        included (REDIS_CLUSTER_NODES has no place for one). A password `url` carries too
        must be the same one, or which one is used would be a guess."""
        password = self.raw("REDIS_PASSWORD")
        in_url = urlsplit(url).password
        if password and in_url and unquote(in_url) != password:
            self.problems.append("REDIS_PASSWORD differs from the password in REDIS_URL")
        return password

    def secret(self, name: str, dev_default: str) -> str:
        """A secret: required in production, a loudly logged default in development."""
        value = self.raw(name)
        if value is not None:
            if value == dev_default and self.production:
                self.problems.append(f"{name} is the development default; set a real secret")
            return value
        if self.production:
            self.problems.append(f"{name} is required when APP_ENV=production")
        else:
            self.dev_defaults.append(name)
        return dev_default

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def raise_if_invalid(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)
        for name in self.dev_defaults:
            log.warning(
                "using the insecure development default for a secret; never run like this "
                "in production",
                extra={"variable": name},
            )


def default_cookie_name(env: EnvReader) -> str:
    """`AUTH_COOKIE_NAME`'s default, shared by both services. In production a `__Host-`
    cookie: browsers keep it only if it is Secure, for Path=/ and without a Domain, so a
    page on another port or subdomain of the host cannot set or replace it."""
    return "__Host-chat_session" if env.production else "chat_session"
