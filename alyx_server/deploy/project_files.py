"""What of a project travels in a deploy bundle, read from the project folder.

`project_files` lists `schema.yaml`, `migrations/**` and `functions/**` (the folder the
`functions.path` key names), leaving out what never travels: `node_modules/`, virtualenvs
(`.venv/`, `venv/`, any folder holding a `pyvenv.cfg`), `__pycache__/`, `.git/`, `.env*`
files, and whatever `.alyxignore` lists. The project's `data/` folder is never read.
`deployable_config` is the part of alyx.yaml that travels: registry keys marked deployable,
each value as the text written (not `${VAR}`-substituted), for the server to convert.

The server reads its own project folder by the same rules (`server_tree`): what they leave
out there, and links or special files, belong to the server (a `.env` beside a function,
its `node_modules/`, what the server's own `.alyxignore` lists). A deploy neither compares
them with the bundle nor replaces or deletes them (deploy/plan.py, deploy/swap.py).
`left_out_by_name` is the part of the rules a bundle member's name alone decides; the
server refuses a bundle holding such a member (deploy/bundle.py).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from alyx_server.config.registry import KEYS_BY_PATH, SECTIONS
from alyx_server.errors import ValidationError
from alyx_server.tools.yaml_lines import YamlError, compose_yaml

__all__ = [
    "ALWAYS_SKIPPED_FOLDERS",
    "ServerTree",
    "checking_environment",
    "deployable_config",
    "functions_folder",
    "left_out_by_name",
    "project_files",
    "server_tree",
]

ALWAYS_SKIPPED_FOLDERS = frozenset({"node_modules", ".venv", "venv", "__pycache__", ".git"})
_INVALID = "INVALID_BUNDLE"


def project_files(project: Path) -> dict[str, Path]:
    """Archive name -> source file for everything of `project` that travels."""
    project = project.resolve()
    if not (project / "schema.yaml").is_file():
        raise ValidationError(
            f"{project}: no schema.yaml here; run alyx deploy in the project folder",
            code=_INVALID,
        )
    ignore = _IgnoreRules.load(project / ".alyxignore")
    sources: dict[str, Path] = {"schema.yaml": project / "schema.yaml"}
    for prefix, folder in (("migrations", project / "migrations"), ("functions", functions_folder(project))):
        walked = _Walk(project, folder, prefix, ignore, strict=True)
        walked.run()
        sources.update(walked.files)
    return sources


def left_out_by_name(name: str) -> str | None:
    """Why a bundle member called `name` (e.g. `functions/a/node_modules/x.js`) could not
    come from `project_files`, judged by its name alone; None when it could."""
    *folders, last = name.split("/")
    for part in folders:
        if part in ALWAYS_SKIPPED_FOLDERS:
            return f"a {part}/ folder never travels"
    if last.startswith(".env"):
        return ".env files never travel"
    if last == "pyvenv.cfg":
        return "a virtualenv never travels"
    return None


@dataclass(frozen=True)
class ServerTree:
    """A folder of the server's project (functions/ or migrations/) read by the bundle's rules.

    `files`: archive name -> path of every file a bundle would take from it; `owned`:
    archive name -> path of the entries the rules leave out (a skipped folder whole) and of
    links and special files, all of which stay the server's own."""

    prefix: str
    files: dict[str, Path]
    owned: dict[str, Path]
    ignore: _IgnoreRules = field(repr=False)
    relative: str = ""

    def owns(self, name: str) -> bool:
        """Whether the archive name `name` is the server's (left out by its rules, or at or
        under an entry it owns): a deploy neither compares nor writes it."""
        if left_out_by_name(name) is not None:
            return True
        parts = name.split("/")
        for end in range(1, len(parts) + 1):
            if "/".join(parts[:end]) in self.owned:
                return True
        inner = parts[1:]
        for end in range(1, len(inner) + 1):
            path = "/".join([self.relative, *inner[:end]])
            if self.ignore.skips(path, is_folder=end < len(inner)):
                return True
        return False


def server_tree(project: Path, folder: Path, prefix: str) -> ServerTree:
    """`folder` of the server's `project` read as `project_files` reads a developer's: the
    same skipped folders, virtualenvs, `.env*` files and `.alyxignore` (the server's own).
    Links and special files are not refused here: they are the server's, left alone."""
    project = project.resolve()
    ignore = _IgnoreRules.load(project / ".alyxignore")
    walked = _Walk(project, folder, prefix, ignore, strict=False)
    walked.run()
    return ServerTree(prefix, walked.files, walked.owned, ignore, walked.relative)


class _IgnoreRules:
    """`.alyxignore`: one glob per line, `#` comments; a trailing `/` matches folders only,
    a leading `/` anchors the glob to the project's relative path. A glob matches the whole
    relative path or any one path component (so `*.log` skips every log file)."""

    def __init__(self, rules: list[tuple[str, bool, bool]]) -> None:
        self.rules = rules

    @classmethod
    def load(cls, path: Path) -> _IgnoreRules:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls([])
        except (OSError, UnicodeDecodeError) as e:
            raise ValidationError(f"{path}: cannot read it ({e})", code=_INVALID) from e
        rules: list[tuple[str, bool, bool]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                raise ValidationError(
                    f".alyxignore:{number}: negated patterns ({line}) are not supported; "
                    "list only what to leave out",
                    code=_INVALID,
                )
            folder_only = line.endswith("/")
            anchored = line.startswith("/")
            rules.append((line.strip("/"), folder_only, anchored))
        return cls(rules)

    def skips(self, relative: str, is_folder: bool) -> bool:
        name = relative.rsplit("/", 1)[-1]
        for glob, folder_only, anchored in self.rules:
            if folder_only and not is_folder:
                continue
            if fnmatch.fnmatchcase(relative, glob):
                return True
            if not anchored and fnmatch.fnmatchcase(name, glob):
                return True
        return False


class _Walk:
    """One walk of a project folder: the files that travel, and (with `strict` off) the
    entries left out. `strict` (building a bundle) refuses links and special files."""

    def __init__(
        self, project: Path, folder: Path, prefix: str, ignore: _IgnoreRules, *, strict: bool
    ) -> None:
        self.folder = folder
        self.prefix = prefix
        self.ignore = ignore
        self.strict = strict
        self.files: dict[str, Path] = {}
        self.owned: dict[str, Path] = {}
        resolved = folder.resolve() if folder.exists() else folder
        inside = resolved.is_relative_to(project)
        self.relative = resolved.relative_to(project).as_posix() if inside else prefix

    def run(self) -> None:
        if not self.folder.is_dir():
            return
        for root, dirs, names in os.walk(self.folder, followlinks=False):
            here = Path(root)
            inner = here.relative_to(self.folder).as_posix()
            inner = "" if inner == "." else inner + "/"
            dirs[:] = [name for name in sorted(dirs) if self._keeps_folder(here / name, inner + name)]
            for name in sorted(names):
                self._file(here / name, inner + name)

    def _leave(self, path: Path, inner: str) -> None:
        self.owned[f"{self.prefix}/{inner}"] = path

    def _keeps_folder(self, path: Path, inner: str) -> bool:
        name = path.name
        if name in ALWAYS_SKIPPED_FOLDERS or (path / "pyvenv.cfg").exists():
            self._leave(path, inner)
            return False
        if self.ignore.skips(f"{self.relative}/{inner}", is_folder=True):
            self._leave(path, inner)
            return False
        if path.is_symlink():
            if self.strict:
                _refuse_special(path)
            self._leave(path, inner)
            return False
        return True

    def _file(self, path: Path, inner: str) -> None:
        if path.name.startswith(".env") or self.ignore.skips(f"{self.relative}/{inner}", is_folder=False):
            self._leave(path, inner)
            return
        if not stat.S_ISREG(path.lstat().st_mode):
            if self.strict:
                _refuse_special(path)
            self._leave(path, inner)
            return
        self.files[f"{self.prefix}/{inner}"] = path


def _refuse_special(path: Path) -> None:
    kind = "a symbolic link" if path.is_symlink() else "not a regular file"
    raise ValidationError(
        f"{path}: {kind}; a bundle holds regular files only (copy the file in, or list it in .alyxignore)",
        code=_INVALID,
    )


def deployable_config(project: Path) -> dict[str, object]:
    """The deployable keys the project's alyx.yaml sets, dotted path -> value as written.

    Values are not `${VAR}`-substituted: the server substitutes from its own environment.
    Keys that are not deployable (secrets, hosts, ports, paths) are left out, never sent."""
    return {
        path: value
        for path, value in _written_keys(project).items()
        if path in KEYS_BY_PATH and KEYS_BY_PATH[path].deployable
    }


class _UnsetAsEmpty(Mapping[str, str]):
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def __getitem__(self, name: str) -> str:
        return self.environ.get(name, "")

    def __iter__(self) -> Iterator[str]:
        return iter(self.environ)

    def __len__(self) -> int:
        return len(self.environ)


def checking_environment(environ: Mapping[str, str]) -> Mapping[str, str]:
    """The environment `alyx deploy` loads the project's alyx.yaml with, to check it before
    shipping: `environ`, where a variable it does not set reads as empty (so the key takes
    its default). The deployable values travel as written and the server substitutes them
    from its own environment; the other keys never travel. A CI job therefore needs none of
    the variables alyx.yaml names (`${SMTP_PASSWORD}`, `${LOG_LEVEL}`) to deploy."""
    return _UnsetAsEmpty(environ)


def functions_folder(project: Path) -> Path:
    """The folder `functions/` of the bundle is read from (the `functions.path` key)."""
    written = _written_keys(project).get("functions.path")
    if written is None:
        return project / "functions"
    if not isinstance(written, str) or "${" in written:
        raise ValidationError(
            f"alyx.yaml: functions.path: {written!r} must be a plain path for alyx deploy "
            "(no ${VAR} substitution)",
            code=_INVALID,
        )
    return project / written


def _written_keys(project: Path) -> dict[str, object]:
    """Every registry key alyx.yaml sets, nested or dotted, with its text as written.

    Scalars travel as their text (YAML's own reading would turn `off` into false and
    `1:30` into 90); an unquoted empty or `null` value travels as None (the default);
    a list as a list of texts. The server reads them with the key's own converter."""
    path = project / "alyx.yaml"
    try:
        root = compose_yaml(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, YamlError, yaml.YAMLError) as e:
        raise ValidationError(
            f"{path}: cannot read it ({e}); alyx serve would refuse it too", code=_INVALID
        ) from e
    found: dict[str, object] = {}

    def walk(mapping: yaml.Node | None, prefix: str) -> None:
        if not isinstance(mapping, yaml.MappingNode):
            return
        for key_node, value_node in mapping.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            dotted = f"{prefix}{key_node.value}"
            if dotted in KEYS_BY_PATH:
                found[dotted] = _as_written(dotted, value_node)
            elif dotted in SECTIONS:
                walk(value_node, dotted + ".")

    walk(root, "")
    return found


def _as_written(path: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        is_null = node.style is None and node.tag.endswith(":null")
        return None if is_null else str(node.value)
    if isinstance(node, yaml.SequenceNode) and all(isinstance(item, yaml.ScalarNode) for item in node.value):
        return [str(item.value) for item in node.value]
    line = node.start_mark.line + 1
    raise ValidationError(
        f"alyx.yaml:{line}: {path}: expected a single value or a list of values", code=_INVALID
    )
