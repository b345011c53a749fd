"""Driving `/connection/websocket` with the real Centrifugo SDK (centrifuge-python): clients
whose events land in queues, read with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    JoinContext,
    LeaveContext,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    Subscription,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

from tests.chat.helpers import DEADLINE
from tests.chat.helpers import Client as TestClient


def address(instance: TestClient) -> str:
    return str(instance.make_url("/connection/websocket")).replace("http://", "ws://", 1)


async def next_of(queue: asyncio.Queue[Any], deadline: float = DEADLINE) -> Any:
    return await asyncio.wait_for(queue.get(), deadline)


class Events(ClientEventHandler):
    """A client's events, each kind in its own queue."""

    def __init__(self) -> None:
        self.connected: asyncio.Queue[ConnectedContext] = asyncio.Queue()
        self.connecting: asyncio.Queue[ConnectingContext] = asyncio.Queue()
        self.disconnected: asyncio.Queue[DisconnectedContext] = asyncio.Queue()
        self.errors: asyncio.Queue[ErrorContext] = asyncio.Queue()

    async def on_connected(self, ctx: ConnectedContext) -> None:
        await self.connected.put(ctx)

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        await self.connecting.put(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        await self.disconnected.put(ctx)

    async def on_error(self, ctx: ErrorContext) -> None:
        await self.errors.put(ctx)


class SubEvents(SubscriptionEventHandler):
    """A subscription's events, each kind in its own queue."""

    def __init__(self) -> None:
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()
        self.subscribing: asyncio.Queue[SubscribingContext] = asyncio.Queue()
        self.unsubscribed: asyncio.Queue[UnsubscribedContext] = asyncio.Queue()
        self.errors: asyncio.Queue[SubscriptionErrorContext] = asyncio.Queue()
        self.joins: asyncio.Queue[JoinContext] = asyncio.Queue()
        self.leaves: asyncio.Queue[LeaveContext] = asyncio.Queue()

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.publications.put(ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        await self.subscribed.put(ctx)

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        await self.subscribing.put(ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        await self.unsubscribed.put(ctx)

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        await self.errors.put(ctx)

    async def on_join(self, ctx: JoinContext) -> None:
        await self.joins.put(ctx)

    async def on_leave(self, ctx: LeaveContext) -> None:
        await self.leaves.put(ctx)


def sdk_client(
    url: str,
    token: str = "",
    get_token: Callable[[], Awaitable[str]] | None = None,
    **options: Any,
) -> tuple[Client, Events]:
    events = Events()
    client = Client(
        url,
        events=events,
        token=token,
        get_token=get_token,
        proxy=None,  # never a proxy from the environment
        **options,
    )
    return client, events


async def connected(url: str, token: str, **options: Any) -> tuple[Client, Events]:
    client, events = sdk_client(url, token, **options)
    await client.connect()
    await client.ready(DEADLINE)
    return client, events


async def subscribed(client: Client, room: str, **options: Any) -> tuple[Subscription, SubEvents]:
    events = SubEvents()
    sub = client.new_subscription(room, events=events, **options)
    await sub.subscribe()
    await sub.ready(DEADLINE)
    return sub, events
