"""Build hook: ship codegen_templates/, runtimes/ and scaffolds/ inside real wheels only.

A wheel carries them under `alyx_server/_data/`. An editable install gets no copy: it
would go stale in site-packages, while `alyx_server.resources` reads the checkout.
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

__all__ = ["DataFoldersHook"]

DATA_FOLDERS = ("codegen_templates", "runtimes", "scaffolds")


class DataFoldersHook(BuildHookInterface[BuilderConfig]):
    """Force-include the data folders into `alyx_server/_data/` of a standard wheel."""

    PLUGIN_NAME = "alyx-data-folders"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version != "standard":
            return
        for name in DATA_FOLDERS:
            build_data["force_include"][name] = f"alyx_server/_data/{name}"
