"""The MQTT integration endpoint (docs/protocols.md A).

- ``server.py``: listeners, logins, the clients registry, message-log records;
- ``connection.py``: one connection: events to login, subscriptions and the pipeline,
  answers released in arrival order, backpressure;
- ``sessions.py``: who is connected as which client (per channel), subscriptions,
  persistent sessions, where a reply goes (no sockets).
"""

from .server import MQTTServer

__all__ = ["MQTTServer"]
