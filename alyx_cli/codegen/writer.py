"""Write generated files, touching only those whose bytes changed.

A file left untouched keeps its modification time, so build tools and `alyx dev`'s own
watcher see no change when the schema did not change. Files of an earlier run that the
new output no longer has (a dropped collection's module) are removed, but only when their
first lines carry the generated-file mark: hand-written files next to them stay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from alyx_cli.codegen.render import GENERATED_MARK

__all__ = ["WriteReport", "write_files"]

_SKIPPED = frozenset({"node_modules", "__pycache__", "dist", "build", "vendor"})


@dataclass(slots=True)
class WriteReport:
    """Paths written, left unchanged and removed (relative to the output folder)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _is_generated(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8") as f:
            head = f.read(200)
    except (OSError, UnicodeDecodeError):
        return False
    return GENERATED_MARK in head


def write_files(root: Path, files: Mapping[str, str], *, prefix: str = "") -> WriteReport:
    """Write `files` (relative path -> text) under `root`; `prefix` labels paths in the report."""
    report = WriteReport()
    for rel, text in files.items():
        path = root / rel
        data = text.encode("utf-8")
        try:
            if path.read_bytes() == data:
                report.unchanged.append(prefix + rel)
                continue
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        report.written.append(prefix + rel)
    for path in _existing(root):
        rel = path.relative_to(root).as_posix()
        if rel not in files and _is_generated(path):
            path.unlink()
            report.removed.append(prefix + rel)
    return report


def _existing(root: Path) -> list[Path]:
    """Files under `root`, skipping folders that tools fill (node_modules, caches)."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED and not d.startswith("."))
        found.extend(Path(folder) / n for n in sorted(names))
    return found
