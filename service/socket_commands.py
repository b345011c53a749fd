"""What the command handlers of both socket protocols share: the parts of the room engine
they act on. `/ws` and `/connection/websocket` translate frames; the rooms, policies,
presence and token refresh under them are these same objects."""

from __future__ import annotations

from service.connection import Connection
from service.rooms.access import Actor, RoomAccess
from service.rooms.hub import RoomHub
from service.rooms.presence import PresenceStore
from service.settings import ChatSettings
from service.token_refresh import TokenRefresh


class SocketCommands:
    """The base of each protocol's command handler: the engine's parts, wired once."""

    def __init__(
        self,
        settings: ChatSettings,
        hub: RoomHub,
        access: RoomAccess,
        presence: PresenceStore,
        refresher: TokenRefresh,
    ) -> None:
        self._settings = settings
        self._hub = hub
        self._access = access
        self._presence_store = presence
        self._refresher = refresher


def actor_of(connection: Connection) -> Actor:
    """Who a socket acts as: always its credential's user, never anything a frame says."""
    return Actor(connection.identity.user_id, connection.identity.username)
