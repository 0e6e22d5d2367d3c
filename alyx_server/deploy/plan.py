"""The plan of a deploy: what a bundle would change on this server, computed without writing.

`compute_plan(conn, bundle, staged, settings)` reads the live database (the migration
history) and the server's project folder, and answers what `alyx migrate apply` would do
with the bundle's schema.yaml and migrations/ (the same `plan_migrations`, run against the
bundle's files extracted to a staging folder), which functions the bundle adds, changes or
removes (per-file sha256 against the server's functions folder, read by the bundle's own
rules: deploy/project_files.py's `server_tree`, so a server's `.env`, `node_modules/` or
what its `.alyxignore` lists is neither compared nor reported), and which deployable
alyx.yaml keys it changes (with the registry's `apply`: live or restart). Deployable
values travel as written; `${VAR}` in them is substituted here, on the server, from the
server's environment (`server_values`), as alyx.yaml's own values are at start-up.

Refused at once, before any plan is shown (the deploy could never execute): a schema.yaml
that does not load (its rules are compiled by the caller, api/deploy.py), an applied migration file the bundle
changed, and destructive schema changes that no migration file covers (SPEC §5's message).

`live_fingerprint` condenses what a plan was computed against: schema.yaml's bytes, the
migration history, the functions folder and the deployable keys in force. Execute compares
it with the plan's: a change in between answers 409 STALE_PLAN.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from alyx_server.config import Settings
from alyx_server.config.loader import load_settings
from alyx_server.config.registry import KEYS_BY_PATH
from alyx_server.config.settings import changed_keys
from alyx_server.deploy.project_files import server_tree
from alyx_server.errors import ConfigError, MigrationError, ValidationError
from alyx_server.migrations import MigrationPlan, plan_migrations, read_history
from alyx_server.migrations.history import history_keys, latest_snapshot
from alyx_server.schema.diff import Change, diff_schemas
from alyx_server.schema.loader import parse_schema
from alyx_server.schema.model import Field, Index, Schema
from alyx_server.tools.envsubst import UnsetVariable, substitute

__all__ = [
    "BundleLike",
    "DeployPlan",
    "bundled_functions",
    "compute_plan",
    "function_changes",
    "function_name",
    "functions_tree",
    "live_files",
    "live_fingerprint",
    "live_function_changes",
    "requests_pause",
    "server_values",
]


class BundleLike(Protocol):
    """What a plan needs of a read bundle (`deploy.bundle.BundleContents`)."""

    @property
    def sha256(self) -> str: ...
    @property
    def files(self) -> Mapping[str, bytes]: ...
    @property
    def config(self) -> Mapping[str, object]: ...


@dataclass(frozen=True)
class DeployPlan:
    """A computed plan; `to_dict()` is the body prepare answers (plan_id added by the caller)."""

    bundle_sha256: str
    version: int
    fingerprint: str
    schema: Schema
    changes: list[dict[str, Any]]
    migrations: list[str]
    functions: dict[str, list[str]]
    config: list[dict[str, Any]]
    warnings: list[str]
    destructive: bool
    needs_restart: bool
    live_config: dict[str, object] = field(default_factory=dict)
    # Whether requests pause while it commits and swaps (see `requests_pause`).
    pause: bool = True

    @property
    def empty(self) -> bool:
        f = self.functions
        return not (
            self.changes or self.migrations or f["added"] or f["changed"] or f["removed"] or self.config
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle_sha256": self.bundle_sha256,
            "version": self.version,
            "schema": {"changes": self.changes, "migrations": self.migrations},
            "functions": self.functions,
            "config": {"changed": self.config},
            "warnings": self.warnings,
            "destructive": self.destructive,
            "needs_restart": self.needs_restart,
            "backup": self.destructive,  # execute copies the database first (deploy/execute.py)
            "empty": self.empty,
        }

    def summary(self) -> dict[str, Any]:
        """The short form kept in the history row."""
        f = self.functions
        return {
            "schema_changes": len(self.changes),
            "migrations": self.migrations,
            "functions": {k: len(v) for k, v in f.items()},
            "config": [c["key"] for c in self.config],
            "destructive": self.destructive,
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundled_functions(bundle: BundleLike) -> dict[str, str]:
    """Relative path under functions/ -> sha256 of each function file a bundle holds (what
    a deployment's history row records)."""
    return {
        path.removeprefix("functions/"): _sha256(data)
        for path, data in bundle.files.items()
        if path.startswith("functions/")
    }


def functions_tree(settings: Settings) -> dict[str, str]:
    """`functions/<relative path>` -> sha256 of every file of the server's functions folder
    that a bundle would hold (deploy/project_files.py's rules, the server's .alyxignore)."""
    tree = server_tree(settings.project_dir, settings.functions.path, "functions")
    return {name: _sha256(path.read_bytes()) for name, path in tree.files.items()}


def live_function_changes(settings: Settings, files: Mapping[str, bytes]) -> dict[str, list[str]]:
    """The functions a bundle's `files` add, change and remove on this server. A bundle
    file at a path the server owns (left out by its rules) is not compared: it is never
    written there either (deploy/swap.py)."""
    tree = server_tree(settings.project_dir, settings.functions.path, "functions")
    live = {name: _sha256(path.read_bytes()) for name, path in tree.files.items()}
    bundled = {
        path: _sha256(data)
        for path, data in files.items()
        if path.startswith("functions/") and not tree.owns(path)
    }
    return function_changes(live, bundled)


def function_name(path: str) -> str:
    """The function a `functions/...` file belongs to: `hello` for hello.py, hello.yaml
    and hello/index.mjs."""
    first, folder, _ = path.removeprefix("functions/").partition("/")
    return first if folder else first.split(".", 1)[0]


def function_changes(live: Mapping[str, str], bundled: Mapping[str, str]) -> dict[str, list[str]]:
    def grouped(tree: Mapping[str, str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for path, digest in tree.items():
            out.setdefault(function_name(path), {})[path] = digest
        return out

    old, new = grouped(live), grouped(bundled)
    return {
        "added": sorted(set(new) - set(old)),
        "changed": sorted(n for n in set(new) & set(old) if new[n] != old[n]),
        "removed": sorted(set(old) - set(new)),
    }


def _deployable_values(settings: Settings) -> dict[str, object]:
    return {
        path: settings.values[path] for path, key in KEYS_BY_PATH.items() if getattr(key, "deployable", False)
    }


def live_fingerprint(
    conn: sqlite3.Connection, settings: Settings, files: Mapping[str, object] | None = None
) -> str:
    """A hash of the live state a plan depends on (see the module docstring). `files`:
    `live_files(settings)` when the caller read them already (execute reads them before
    it takes the write lock, so that writers wait only for the history's few columns)."""
    state = {
        **(live_files(settings) if files is None else files),
        "history": history_keys(conn),
    }
    return _sha256(json.dumps(state, sort_keys=True).encode())


def live_files(settings: Settings) -> dict[str, object]:
    """The part of the live state outside the database: schema.yaml's hash, the functions
    folder's files and the deployable keys in force."""
    schema_file = settings.project_dir / "schema.yaml"
    schema_bytes = schema_file.read_bytes() if schema_file.is_file() else b""
    return {
        "schema": _sha256(schema_bytes),
        "functions": functions_tree(settings),
        "config": {k: repr(v) for k, v in _deployable_values(settings).items()},
    }


def _schema_changes(conn: sqlite3.Connection, target: Schema) -> list[dict[str, Any]]:
    current = latest_snapshot(read_history(conn))
    return [
        {
            "collection": c.collection,
            "op": c.kind,
            "field": c.name,
            "destructive": c.destructive,
            "text": c.summary,
        }
        for c in diff_schemas(current, target).changes
    ]


# The last bundle configuration read against the settings in force: a project's deploys
# send the same keys, and reading and validating the whole configuration again costs
# milliseconds of a worker's time. Keyed by the settings object (replaced whenever the
# configuration changes), the keys' values and the state of alyx.yaml on disk.
_last_checked: tuple[Settings, tuple[str, tuple[int, int] | None], Settings] | None = None


def _remember_checked(settings: Settings, key: tuple[str, tuple[int, int] | None], new: Settings) -> None:
    global _last_checked
    _last_checked = (settings, key, new)


def _file_state(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _config_changes(
    settings: Settings, config: Mapping[str, object]
) -> tuple[list[dict[str, Any]], dict[str, object]]:
    """The deployable keys the bundle changes, and every value it sets (typed)."""
    if not config:
        return [], {}
    try:
        overrides = server_values(config)
        key = (json.dumps(overrides, sort_keys=True, default=str), _file_state(settings.config_file))
        last = _last_checked
        if last is not None and last[0] is settings and last[1] == key:
            new = last[2]
        else:
            new = load_settings(
                settings.project_dir,
                mode=settings.mode,
                config_file=settings.config_file,
                overrides=overrides,
            )
            _remember_checked(settings, key, new)
    except ConfigError as e:
        raise ValidationError(
            f"invalid bundle: its alyx.yaml keys: {e.message}", code="INVALID_BUNDLE"
        ) from e
    changed = [path for path in changed_keys(settings, new) if path in config]
    out = [
        {
            "key": path,
            "from": _plain(settings.values[path]),
            "to": _plain(new.values[path]),
            "restart": KEYS_BY_PATH[path].apply == "restart",
        }
        for path in changed
    ]
    return out, {path: new.values[path] for path in config}


def server_values(
    config: Mapping[str, object], environ: Mapping[str, str] | None = None
) -> dict[str, object]:
    """Deployed keys (values as written) with `${VAR}` / `${VAR:-default}` substituted from
    this server's environment (`environ`, default os.environ), the way alyx.yaml's values
    are; `$${` is a literal `${`. ConfigError naming the key and the variable when it is unset
    (at prepare: 400 INVALID_BUNDLE, nothing deployed)."""
    env = os.environ if environ is None else environ

    def one(path: str, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return substitute(value, env)
        except UnsetVariable as e:
            raise ConfigError(
                f"{path}: ${{{e.name}}} is not set in this server's environment (set it where "
                f"alyx serve runs, or give a default in alyx.yaml: ${{{e.name}:-value}})"
            ) from e
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from e

    return {
        path: [one(path, v) for v in value] if isinstance(value, list) else one(path, value)
        for path, value in config.items()
    }


def _plain(value: object) -> object:
    """A JSON-ready form of a typed setting (tuples as lists, paths and rates as text)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return str(value)


def requests_pause(migrations: MigrationPlan) -> bool:
    """Whether requests touching documents must pause while this plan commits and the
    schema swaps (the schema gate, docs/deploy.md). Not when every change only adds what
    a request on the old schema cannot meet: a collection, a nullable field without a
    default, unique constraint or reference (an insert on the old schema leaves it NULL,
    as one on the new would), an index that is not unique, or rules (swapped at once).
    A migration file, or any other change, pauses them."""
    if migrations.files or not migrations.history or migrations.baseline:
        return True
    return not all(_additive(change) for change in migrations.auto.changes)


def _additive(change: Change) -> bool:
    if change.kind in ("add_collection", "change_rules"):
        return True
    if change.kind == "add_field" and isinstance(change.new, Field):
        f = change.new
        return f.nullable and f.default is None and not f.unique and not f.primary and f.references is None
    if change.kind == "add_index" and isinstance(change.new, Index):
        return not change.new.unique
    return False


def compute_plan(
    conn: sqlite3.Connection, bundle: BundleLike, staged: Path, settings: Settings, version: int
) -> DeployPlan:
    """The plan for `bundle`, whose files are extracted under `staged`; raises SchemaError,
    RuleError or MigrationError for a bundle that could never be applied here."""
    fingerprint = live_fingerprint(conn, settings)
    text = bundle.files.get("schema.yaml")
    if text is None:
        raise MigrationError("the bundle has no schema.yaml; run alyx deploy from the project folder")
    schema = parse_schema(text.decode("utf-8", errors="replace"))
    migration_plan = plan_migrations(conn, schema, staged / "migrations")
    if migration_plan.edited:
        raise MigrationError(
            "the bundle changes migration files this server already applied: "
            + "; ".join(migration_plan.edited)
        )
    if migration_plan.blocked:
        raise MigrationError(migration_plan.blocked)
    changes = _schema_changes(conn, schema)
    warnings: list[str] = []
    destructive = False
    for planned in migration_plan.files:
        dropped = diff_schemas(planned.before, planned.after).destructive
        for change in dropped:
            destructive = True
            warnings.append(f"destructive: {planned.migration.stem} {change.summary} ({change.reason})")
    functions = live_function_changes(settings, bundle.files)
    config, live_config = _config_changes(settings, bundle.config)
    if destructive:
        warnings.append(
            "a database backup is taken just before this deploy (data/deployments/"
            f"backup-v{version}.db): alyx deploy rollback --restore-backup brings it back"
        )
    restart = [c["key"] for c in config if c["restart"]]
    if restart:
        warnings.append(f"needs a restart to take effect: {', '.join(restart)}")
    return DeployPlan(
        bundle_sha256=bundle.sha256,
        version=version,
        fingerprint=fingerprint,
        schema=schema,
        changes=changes,
        migrations=[p.migration.path.name for p in migration_plan.files],
        functions=functions,
        config=config,
        warnings=warnings,
        destructive=destructive,
        needs_restart=bool(restart),
        live_config=live_config,
        pause=requests_pause(migration_plan),
    )
