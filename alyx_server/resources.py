"""Locate the data folders shipped with Alyx: codegen_templates, runtimes, scaffolds.

In a wheel they sit inside the package at `alyx_server/_data/<name>` (hatch
force-include). In an editable install of a source checkout they stay at the top of the
tree, next to the `alyx_server` folder; force-include does not reach editable installs,
so both places are looked at, the packaged one first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["data_dir"]

DataFolder = Literal["codegen_templates", "runtimes", "scaffolds"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: DataFolder) -> Path:
    """Return the folder holding `name`, from a wheel or a source checkout."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"Alyx's {name}/ folder is missing from {_PACKAGE_DIR}; reinstall Alyx (pip install alyx)"
    )
