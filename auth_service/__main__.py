"""Command line: `python -m auth_service` serves; `keys ...` and others administer."""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlsplit, urlunsplit

from auth_service import keys
from auth_service.app import create_app
from auth_service.components import AuthComponents
from auth_service.settings import AuthSettings, load_settings
from common.entrypoint import settings_or_exit
from common.http_server import serve
from common.redis import REDIS_ERRORS, connect_to, prepare


async def _keys_command(settings: AuthSettings, args: argparse.Namespace) -> int:
    if settings.signing_key_files:
        print("signing keys come from AUTH_SIGNING_KEY_FILES; rotate by editing that list")
        return 2
    redis = connect_to(
        settings.redis_url, settings.redis_cluster_nodes, password=settings.redis_password
    )
    try:
        await prepare(redis)
        if args.action == "rotate":
            print(f"new signing key: {await keys.rotate(redis)}")
        elif args.action == "retire":
            try:
                removed = await keys.retire(redis, args.kid)
            except ValueError as error:
                print(f"auth-service: {error}", file=sys.stderr)
                return 1
            print("retired" if removed else "no such key")
            return 0 if removed else 1
        else:
            ring = keys.KeyRing(redis)
            await ring.load()
            active = (await ring.signing_key()).kid
            for jwk in (await ring.jwks())["keys"]:
                print(jwk["kid"], "(signing)" if jwk["kid"] == active else "(verify only)")
        return 0
    finally:
        await redis.aclose()


async def _users_command(settings: AuthSettings, args: argparse.Namespace) -> int:
    parts = AuthComponents.build(settings)
    try:
        user = await parts.users.by_username(args.username)
        if user is None:
            print(f"auth-service: no user named {args.username!r}", file=sys.stderr)
            return 1
        disable = args.action == "disable"
        await parts.users.set_disabled(user.id, disable)
        if disable:
            # Every token and session of the user is inactive at once (introspection checks the
            # flag); the events make chat instances close the user's sockets now.
            revoked = await parts.revocations.revoke_user_grants(user.id, "user_disabled")
            await parts.revocations.announce("user", user.id, "user_disabled")
            print(f"disabled {user.username}; revoked {revoked} sessions and token families")
        else:
            print(f"enabled {user.username}")
        return 0
    finally:
        await parts.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="auth-service", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP service (the default)")
    key_parser = commands.add_parser("keys", help="list, rotate or retire signing keys")
    key_parser.add_argument("action", choices=["list", "rotate", "retire"])
    key_parser.add_argument("kid", nargs="?", help="the key to retire")
    user_parser = commands.add_parser("users", help="disable or enable a user")
    user_parser.add_argument("action", choices=["disable", "enable"])
    user_parser.add_argument("username")
    args = parser.parse_args(argv)

    settings = settings_or_exit("auth-service", load_settings)
    if args.command == "keys" and args.action == "retire" and not args.kid:
        parser.error("keys retire needs the kid to retire")
    command = {"keys": _keys_command, "users": _users_command}.get(args.command)
    if command is not None:
        try:
            raise SystemExit(asyncio.run(command(settings, args)))
        except REDIS_ERRORS as exc:  # one line, not a traceback: say where it looked
            where = settings.redis_cluster_nodes or _without_password(settings.redis_url)
            print(
                f"auth-service: cannot reach Redis at {where} ({exc}); set REDIS_URL (or "
                "REDIS_CLUSTER_NODES) to the Redis the service uses (make run prints it)",
                file=sys.stderr,
            )
            raise SystemExit(1) from None
    serve("auth-service", create_app(settings), settings.host, settings.port, settings.http)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


if __name__ == "__main__":
    main()
