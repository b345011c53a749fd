"""The chat service's Prometheus metrics (every one is listed in docs/operations.md).

One `ChatMetrics` per application, with its own registry, handed to the parts that count
(the handshake, the introspection client, the rooms, the sockets) as a constructor argument.
On the hot paths a count is one `inc()` on a child bound here, ahead of time: no label
look-up and no allocation per message. What is a state rather than an event (sockets open,
Redis links, presence) is read when Prometheus scrapes, so it costs nothing in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.errors import Refusal, Refused
from service.rooms.member import Joined

ACCEPTED = "accepted"
# Seconds: introspection is a local HTTP call (its timeout defaults to 2 s); fan-out is a
# Redis round trip and a loop turn, more under load.
INTROSPECTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TS_KEY = b',"ts":'


class ChatMetrics:
    """Every metric of one chat application, in its own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http_requests = Counter(
            "chat_http_requests",
            "HTTP requests by method, route (its pattern, not the raw path) and status",
            ["method", "route", "status"],
            registry=registry,
        )
        handshakes = Counter(
            "chat_handshakes",
            "WebSocket handshakes by outcome: accepted, or why refused",
            ["outcome"],
            registry=registry,
        )
        self.handshake_accepted = handshakes.labels(ACCEPTED)
        self._handshake_refused = {r: handshakes.labels(r.value) for r in Refusal}
        calls = Counter(
            "chat_introspection_requests",
            "Requests made to the auth service's /introspect, by result",
            ["result"],
            registry=registry,
        )
        self.introspection_active = calls.labels("active")
        self.introspection_inactive = calls.labels("inactive")
        self.introspection_failed = calls.labels("unavailable")
        lookups = Counter(
            "chat_introspection_cache",
            "Credential look-ups answered from the cache (hit) or not (miss)",
            ["result"],
            registry=registry,
        )
        self.cache_hit = lookups.labels("hit")
        self.cache_miss = lookups.labels("miss")
        self.introspection_seconds = Histogram(
            "chat_introspection_duration_seconds",
            "Time an introspection request took, answered or not",
            buckets=INTROSPECTION_BUCKETS,
            registry=registry,
        )
        self.messages_in = Counter(
            "chat_messages_in",
            "Messages this instance published for its clients (sockets and the HTTP API)",
            registry=registry,
        )
        self.messages_out = Counter(
            "chat_messages_out",
            "Message frames handed to this instance's sockets live (one per socket)",
            registry=registry,
        )
        self.fanout_seconds = Histogram(
            "chat_fanout_duration_seconds",
            "From a message's ts (its publishing instance's clock) to its frame being handed "
            "to the local sockets of a room, once per message and instance",
            buckets=FANOUT_BUCKETS,
            registry=registry,
        )
        self.slow_consumer_closes = Counter(
            "chat_slow_consumer_closes",
            "Sockets closed with 1013 for not reading fast enough",
            registry=registry,
        )
        self.repairs = Counter(
            "chat_room_repairs",
            "Repairs of a room from its history (after a link loss or an out-of-order message)",
            registry=registry,
        )
        recoveries = Counter(
            "chat_recoveries",
            "Joins with since, by whether nothing was lost (recovered true or false)",
            ["recovered"],
            registry=registry,
        )
        self.recovered = recoveries.labels("true")
        self.not_recovered = recoveries.labels("false")
        self.replayed = Counter(
            "chat_replayed_messages",
            "Messages replayed to sockets joining with since",
            registry=registry,
        )
        self.gaps = Counter(
            "chat_gaps",
            "Gap frames sent to sockets (messages lost to them)",
            registry=registry,
        )

    def handshake_refused(self, refused: Refused) -> None:
        self._handshake_refused[refused.refusal].inc()

    def counting_recoveries(self, announce: Callable[[Joined], None]) -> Callable[[Joined], None]:
        """`announce` for a join with `since`, counting whether it recovered."""

        def counted(outcome: Joined) -> None:
            (self.recovered if outcome.recovered else self.not_recovered).inc()
            announce(outcome)

        return counted

    def observe_fanout(self, frame: bytes, now: float) -> None:
        """A message frame ends with its `"ts":<seconds>}` (`frames.message_parts`)."""
        at = frame.rfind(TS_KEY)
        if at < 0:
            return
        try:
            ts = float(frame[at + len(TS_KEY) : -1])
        except ValueError:
            return
        self.fanout_seconds.observe(max(0.0, now - ts))

    def watch(
        self,
        *,
        sockets: Callable[[], int],
        links: Callable[[], Mapping[str, bool]],
        presence: Callable[[], int],
    ) -> None:
        """The states read at each scrape: sockets open, Redis links up, presence held."""
        Gauge(
            "chat_sockets_open",
            "WebSocket connections open on this instance",
            registry=self.registry,
        ).set_function(lambda: float(sockets()))
        Gauge(
            "chat_presence_entries",
            "(room, user) pairs this instance holds present in Redis",
            registry=self.registry,
        ).set_function(lambda: float(presence()))
        self.registry.register(_LinkStates(links))


class _LinkStates(Collector):
    """`chat_redis_link_up{link}`: one per subscriber link (a shard's primary on a cluster,
    and `events`), read at each scrape, since cluster links come and go with the rooms."""

    def __init__(self, links: Callable[[], Mapping[str, bool]]) -> None:
        self._links = links

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "chat_redis_link_up", "1 while a Redis subscriber link is connected", labels=["link"]
        )
        for name, up in sorted(self._links().items()):
            family.add_metric([name], 1.0 if up else 0.0)
        yield family


METRICS = web.AppKey("chat_metrics", ChatMetrics)
