"""Live queries: subscriptions over the change feed, kept equal to their query's result.

    protocol.py        messages of SPEC §10, validation, error codes
    subscriptions.py   a subscribe request checked and bound to its caller
    windows.py         live views (windows and sets), sort keys, coalesced deltas
    index.py           SubscriptionIndex: equality routing of changes
    fanout.py          change feed -> matcher -> views -> deltas, once per tick
    clients.py         a connection and its bounded send queue
    hub.py             RealtimeHub: connections, subscribe/unsubscribe/ping/auth

This package never imports the web framework; the WebSocket handler is api/realtime.py.
"""

from alyx_server.realtime.clients import CLOSE_OVERLOADED, Client, Transport
from alyx_server.realtime.fanout import Expander
from alyx_server.realtime.hub import HubFull, RealtimeHub
from alyx_server.realtime.protocol import (
    ClientMessage,
    RealtimeError,
    error_message,
    parse_message,
    parse_token,
)
from alyx_server.realtime.subscriptions import (
    Access,
    LiveExpression,
    ReadChecks,
    ReadFields,
    ReadRoutes,
    Subscription,
    WhereCompiler,
)

__all__ = [
    "CLOSE_OVERLOADED",
    "Access",
    "Client",
    "ClientMessage",
    "Expander",
    "HubFull",
    "LiveExpression",
    "ReadChecks",
    "ReadFields",
    "ReadRoutes",
    "RealtimeError",
    "RealtimeHub",
    "Subscription",
    "Transport",
    "WhereCompiler",
    "error_message",
    "parse_message",
    "parse_token",
]
