"""Fan-out between chat instances: the `Broker` seam and its Redis and in-memory backends."""

from service.broker.base import Broker, BrokerUnavailable, EventListener, RoomListener

__all__ = ["Broker", "BrokerUnavailable", "EventListener", "RoomListener"]
