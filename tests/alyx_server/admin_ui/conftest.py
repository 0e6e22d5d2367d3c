"""Fixtures of the admin UI tests (support.py): `make_ui`, `browser`, and the auth tests' `clock`."""

from tests.alyx_server.admin_ui.support import browser, make_ui
from tests.alyx_server.auth.support import clock

__all__ = ["browser", "clock", "make_ui"]
