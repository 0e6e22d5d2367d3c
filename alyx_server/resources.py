"""Locate the data folders shipped with Alyx: codegen_templates, runtimes, scaffolds.

In a wheel they sit inside the package at `alyx_server/_data/<name>` (put there by the
build hook in `hatch_build.py`). An editable install of a source checkout gets no copy:
they stay at the top of the tree, next to the `alyx_server` folder and `pyproject.toml`.
Both places are looked at, the packaged one first. Only the standard library is imported
here, so the lookup works before any dependency is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["DataFolder", "data_dir"]

DataFolder = Literal["codegen_templates", "runtimes", "scaffolds"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _candidates(name: DataFolder) -> list[Path]:
    found = [_PACKAGE_DIR / "_data" / name]
    checkout = _PACKAGE_DIR.parent
    # Only a source checkout, never a bare site-packages folder that may hold
    # another project's `scaffolds/`.
    if (checkout / "pyproject.toml").is_file():
        found.append(checkout / name)
    return found


def data_dir(name: DataFolder) -> Path:
    """Return the folder holding `name`, from an installed wheel or a source checkout."""
    for candidate in _candidates(name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"Alyx's {name}/ folder is missing from {_PACKAGE_DIR}; reinstall Alyx (pip install alyx)"
    )
