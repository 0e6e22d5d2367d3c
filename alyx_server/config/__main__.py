"""`python -m alyx_server.config` prints docs/configuration.md, rendered from the registry."""

from __future__ import annotations

from alyx_server.config.docs import render_configuration_docs

__all__: list[str] = []

print(render_configuration_docs(), end="")
