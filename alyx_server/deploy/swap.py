"""Put a staged bundle's folder in place in the server's project: file by file, idempotent.

`sync_tree(staged, target, project, prefix)` makes the files of `target` (the server's
functions/ or migrations/ folder) that a bundle would take (deploy/project_files.py's
rules, read with the server's own `.alyxignore`) exactly the files of `staged`:

- a file the bundle does not hold is deleted, and folders it leaves empty go with it;
- a file the bundle holds is written under a temporary name beside it and renamed over
  the old one (a file is always whole), unless its bytes are already there;
- what the rules leave out on the server (`node_modules/`, virtualenvs, `__pycache__/`,
  `.env*` files, what the server's `.alyxignore` lists) and links or special files are the
  server's: never deleted, never overwritten, not even by a bundle file of the same name.

Running it again after a crash half-way gives the same result (crash recovery does):
no step depends on what an earlier, interrupted run did.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from alyx_server.deploy.project_files import server_tree

__all__ = ["replace_file", "sync_tree"]

_TMP_SUFFIX = ".deploy-tmp"


def replace_file(source: Path, target: Path) -> None:
    """Copy `source` over `target` through a temporary file and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}{_TMP_SUFFIX}")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def sync_tree(staged: Path, target: Path, project: Path, prefix: str) -> None:
    """Make `target`'s deployable files those of `staged` (see the module docstring)."""
    live = server_tree(project, target, prefix)
    wanted: dict[str, Path] = {}
    if staged.is_dir():
        for path in sorted(staged.rglob("*")):
            if path.is_file():
                name = f"{prefix}/{path.relative_to(staged).as_posix()}"
                if not live.owns(name):
                    wanted[name] = path
    emptied: set[Path] = set()
    for name, path in live.files.items():
        if name not in wanted:
            path.unlink(missing_ok=True)
            emptied.add(path.parent)
    target.mkdir(parents=True, exist_ok=True)
    for name, source in wanted.items():
        destination = target / name.removeprefix(prefix + "/")
        _make_room(target, destination)
        if destination.is_file() and destination.read_bytes() == source.read_bytes():
            continue
        replace_file(source, destination)
    _drop_empty_folders(target, emptied)


def _make_room(root: Path, destination: Path) -> None:
    """Clear what stands where the bundle needs a folder or a file: a deployable file where a
    folder goes (already deleted unless its name is reused), an emptied folder where a file goes."""
    for parent in reversed(destination.relative_to(root).parents):
        folder = root / parent
        if folder != root and (folder.is_file() or folder.is_symlink()) and not folder.is_dir():
            folder.unlink()
    if destination.is_dir() and not destination.is_symlink():
        shutil.rmtree(destination)


def _drop_empty_folders(root: Path, folders: set[Path]) -> None:
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): what remains stays
            folder = folder.parent
