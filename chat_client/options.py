"""What one run of `chat-client` connects to, where it speaks, and as whom: the command line
and the environment, checked whole before anything connects."""

from __future__ import annotations

import argparse
import getpass
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from chat_client.console import PROG
from common.room_names import ROOM

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
DEFAULT_AUTH_URL = "http://127.0.0.1:8081"
EXIT_USAGE = 2


@dataclass(frozen=True)
class TokenCredential:
    token: str = field(repr=False)


@dataclass(frozen=True)
class PasswordCredential:
    username: str
    password: str = field(repr=False)


Credential = TokenCredential | PasswordCredential


@dataclass(frozen=True)
class Options:
    """Instances to connect to (the next one after a drop), rooms to join, the auth service
    and the credential."""

    urls: tuple[str, ...]
    rooms: tuple[str, ...]
    auth_url: str
    credential: Credential


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise argparse.ArgumentTypeError(f"expected a {' or '.join(schemes)} URL")
        return value

    return check


def room_name(value: str) -> str:
    if not ROOM.fullmatch(value):
        raise argparse.ArgumentTypeError(f"a room name must match {ROOM.pattern}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chat from the terminal: lines on stdin go to the current room (the first "
        "--room, or the last /join), messages from every joined room are printed on stdout. "
        "Commands (/help lists them): /join /switch /rooms /leave /create /invite /remove /dm "
        "/who /history; //text sends /text. The credential: --token or the CHAT_TOKEN "
        "variable, or --username (password prompted, or read from CHAT_PASSWORD).",
    )
    parser.add_argument(
        "--url",
        dest="urls",
        metavar="URL",
        action="append",
        type=_url(("ws", "wss")),
        help=f"a chat instance (default {DEFAULT_URL}); repeat for more: after a drop the "
        "client reconnects to the next",
    )
    parser.add_argument(
        "--room",
        dest="rooms",
        metavar="ROOM",
        action="append",
        type=room_name,
        default=[],
        help="a room to join; repeat for more; lines are sent to the first",
    )
    parser.add_argument(
        "--auth-url",
        type=_url(("http", "https")),
        default=DEFAULT_AUTH_URL,
        help=f"the auth service, for --username (default {DEFAULT_AUTH_URL})",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--token",
        help="an access token (CHAT_TOKEN is safer: argv is visible to `ps`); it cannot be "
        "refreshed, so the session ends when it expires",
    )
    who.add_argument(
        "--username",
        help="log in with the password grant (the password comes from CHAT_PASSWORD or a "
        "prompt); the token is refreshed before it expires",
    )
    # Only to say why there is none, without echoing the value as "unrecognized arguments".
    parser.add_argument("--password", nargs="?", const="", help=argparse.SUPPRESS)
    return parser


def ask_password(prompt: str) -> str:
    """The password from the terminal, never from stdin (which carries the chat lines)."""
    with warnings.catch_warnings():
        # Without a terminal getpass warns, then reads stdin with echo: refuse instead.
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except getpass.GetPassWarning:
            raise OSError("no terminal to ask for the password: set CHAT_PASSWORD") from None


def parse_options(
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    password_prompt: Callable[[str], str] = ask_password,
) -> Options:
    """Options from the command line and the environment; exits 2 on a usage error."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.password is not None:
        parser.error("there is no --password (argv is visible to `ps`): set CHAT_PASSWORD")
    urls = tuple(dict.fromkeys(args.urls or [DEFAULT_URL]))
    rooms = tuple(dict.fromkeys(args.rooms))  # a repeated room is joined once
    credential: Credential
    if args.username is not None:
        password = environ.get("CHAT_PASSWORD")
        if password is None:
            try:
                password = password_prompt(f"password for {args.username}: ")
            except (OSError, EOFError) as exc:
                parser.exit(EXIT_USAGE, f"{PROG}: {str(exc) or 'no password given'}\n")
        credential = PasswordCredential(args.username, password)
    elif args.token:
        credential = TokenCredential(args.token)
    elif args.token is None and environ.get("CHAT_TOKEN"):
        credential = TokenCredential(environ["CHAT_TOKEN"])
    else:
        parser.error("a credential is required: --token (or CHAT_TOKEN) or --username")
    return Options(urls, rooms, args.auth_url.rstrip("/"), credential)
