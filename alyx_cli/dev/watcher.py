"""Watching a project for `alyx dev`: schema.yaml, alyx.yaml, functions/ and migrations/.

`watch_project` yields one `ProjectChanges` per burst of file events. watchfiles groups
events that arrive within `STEP_MS` of one another (an editor's write-rename-chmod is one
save) for at most `DEBOUNCE_MS`; the filter drops everything else under the project
(the database and its WAL, generated clients, editor swap files), so writes to the data
folder never wake the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

__all__ = ["DEBOUNCE_MS", "STEP_MS", "ProjectChanges", "ProjectFiles", "watch_project"]

DEBOUNCE_MS = 1600
STEP_MS = 50
_FUNCTION_SUFFIXES = (".py", ".js", ".mjs", ".yaml")
CONFIG_FILE = "alyx.yaml"
SCHEMA_FILE = "schema.yaml"
MIGRATIONS = "migrations"


@dataclass(frozen=True, slots=True)
class ProjectChanges:
    """What one burst of file events touched, by kind (paths relative to the project)."""

    config: bool = False
    schema: bool = False
    migrations: tuple[str, ...] = ()
    functions: frozenset[str] = frozenset()
    function_paths: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.config or self.schema or bool(self.migrations) or bool(self.functions)


@dataclass(frozen=True, slots=True)
class ProjectFiles:
    """Where a project's watched files are: its folder and its functions folder."""

    root: Path
    functions: Path

    def function_name(self, path: Path) -> str | None:
        """`functions/hello.py` and `functions/hello/index.mjs` -> `hello`; else None."""
        try:
            rel = path.relative_to(self.functions)
        except ValueError:
            return None
        parts = rel.parts
        if not parts or parts[0].startswith((".", "_")):
            return None
        if len(parts) == 1:
            return rel.stem if rel.suffix in _FUNCTION_SUFFIXES else None
        return parts[0]

    def relevant(self, path: Path) -> bool:
        if path.parent == self.root and path.name in (CONFIG_FILE, SCHEMA_FILE):
            return True
        if path.parent == self.root / MIGRATIONS and path.suffix in (".yaml", ".yml"):
            return True
        return self.function_name(path) is not None

    def classify(self, paths: Iterable[Path]) -> ProjectChanges:
        config = schema = False
        migrations: list[str] = []
        functions: set[str] = set()
        function_paths: list[str] = []
        for path in sorted(set(paths)):
            if path == self.root / CONFIG_FILE:
                config = True
            elif path == self.root / SCHEMA_FILE:
                schema = True
            elif path.parent == self.root / MIGRATIONS:
                migrations.append(f"{MIGRATIONS}/{path.name}")
            elif (name := self.function_name(path)) is not None:
                functions.add(name)
                function_paths.append(_shown(path, self.root))
        return ProjectChanges(config, schema, tuple(migrations), frozenset(functions), tuple(function_paths))


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


class _ProjectFilter(DefaultFilter):
    """watchfiles' default filter (swap files, .git, __pycache__...) plus the project's files."""

    def __init__(self, files: ProjectFiles) -> None:
        super().__init__()
        self._files = files

    def __call__(self, change: Change, path: str) -> bool:
        return super().__call__(change, path) and self._files.relevant(Path(path))


async def watch_project(
    files: ProjectFiles,
    stop: asyncio.Event | None = None,
    *,
    debounce_ms: int = DEBOUNCE_MS,
    step_ms: int = STEP_MS,
) -> AsyncIterator[ProjectChanges]:
    """Yield the changes of each burst of saves until `stop` is set."""
    roots = [files.root]
    if not files.functions.is_relative_to(files.root) and files.functions.is_dir():
        roots.append(files.functions)
    async for batch in awatch(
        *roots,
        watch_filter=_ProjectFilter(files),
        debounce=debounce_ms,
        step=step_ms,
        stop_event=stop,
        recursive=True,
    ):
        changes = files.classify(Path(path) for _change, path in batch)
        if changes:
            yield changes
