"""Account fixtures (defined in support.py, shared with the API tests)."""

from tests.alyx_server.auth.support import auth_app, clock, smtp

__all__ = ["auth_app", "clock", "smtp"]
