"""Fan-out between chat instances: the `Broker` seam and its Redis and in-memory backends."""

from service.broker.base import Broker, BrokerListener, BrokerUnavailable

__all__ = ["Broker", "BrokerListener", "BrokerUnavailable"]
