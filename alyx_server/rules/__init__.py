"""Access rules: who may read and write which documents.

`AccessPolicy` (policy.py) is the one interface the HTTP API (and later realtime and
functions) asks before reading or writing a document; `OpenAccess` allows everything.
The CEL rules of schema.yaml arrive as another implementation of the same protocol.
"""

from alyx_server.rules.policy import (
    USER_PROFILE_FIELDS,
    AccessPolicy,
    Auth,
    OpenAccess,
    RequestInfo,
)

__all__ = ["USER_PROFILE_FIELDS", "AccessPolicy", "Auth", "OpenAccess", "RequestInfo"]
