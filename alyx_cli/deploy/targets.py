"""Where `alyx deploy` ships to and with which token.

The server URL comes from `--url`, else `--target NAME` (`deploy.targets.NAME.url` in
alyx.yaml), else `ALYX_DEPLOY_URL`, else the `production` target (or the only one) of
alyx.yaml. The token comes from `--token`, else `ALYX_DEPLOY_TOKEN`, else the target's
`token_file`, which must lie outside the project: the project folder is what gets committed
and shipped, so a token is never read from it, and a `token` key in alyx.yaml is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from alyx_cli.output import CommandError

__all__ = ["DeployTarget", "TargetEntry", "read_targets", "resolve_target"]

DEFAULT_TARGET = "production"
_TARGET_FIELDS = ("url", "token_file")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_HOW_URL = "pass --url URL, set ALYX_DEPLOY_URL, or add deploy.targets.production.url to alyx.yaml"
_HOW_TOKEN = (
    "pass --token TOKEN, set ALYX_DEPLOY_TOKEN, or set deploy.targets.NAME.token_file to a "
    "file outside the project (create a token on the server with "
    "`alyx admin create-token --name ci --kind deploy`)"
)


@dataclass(frozen=True, slots=True)
class TargetEntry:
    """One `deploy.targets.NAME` entry of alyx.yaml."""

    name: str
    url: str | None
    token_file: str | None


@dataclass(frozen=True, slots=True)
class DeployTarget:
    """The server to deploy to: its base URL (no trailing slash) and the token to send."""

    url: str
    token: str
    name: str | None = None


def read_targets(project: Path) -> dict[str, TargetEntry]:
    """The `deploy.targets` entries of `project/alyx.yaml` (nested or dotted keys)."""
    config = project / "alyx.yaml"
    try:
        loaded = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CommandError(f"alyx.yaml: cannot read deploy.targets: {e}") from e
    flat = _flatten(loaded, "") if isinstance(loaded, Mapping) else {}
    fields: dict[str, dict[str, object]] = {}
    for path, value in flat.items():
        if not path.startswith("deploy.targets."):
            continue
        name, _, field = path.removeprefix("deploy.targets.").partition(".")
        where = f"alyx.yaml: {path}"
        if field == "token":
            raise CommandError(
                f"{where}: a deploy token must not be kept in alyx.yaml, which is committed "
                "with the project; set ALYX_DEPLOY_TOKEN, or token_file: a file outside the project"
            )
        if not _NAME.fullmatch(name) or field not in _TARGET_FIELDS:
            expected = ", ".join(f"deploy.targets.NAME.{f}" for f in _TARGET_FIELDS)
            raise CommandError(
                f"{where}: unknown key (a target has {expected}; NAME is letters, digits, - and _)"
            )
        if value is not None and not isinstance(value, str):
            raise CommandError(f"{where}: expected a string, got {value!r}")
        fields.setdefault(name, {})[field] = value
    return {
        name: TargetEntry(name, _str(given.get("url")), _str(given.get("token_file")))
        for name, given in sorted(fields.items())
    }


def resolve_target(
    project: Path,
    *,
    url: str | None,
    token: str | None,
    target: str | None,
    environ: Mapping[str, str],
) -> DeployTarget:
    """The URL and token `alyx deploy` uses, or a CommandError saying how to give them."""
    if url is not None and target is not None:
        raise CommandError("--url and --target are exclusive: pass one of them")
    targets = read_targets(project)
    entry: TargetEntry | None = None
    if url is None and target is not None:
        entry = targets.get(target)
        if entry is None:
            known = ", ".join(targets) or "none"
            raise CommandError(
                f"--target {target}: no deploy.targets.{target} in alyx.yaml (targets: {known})"
            )
    elif url is None and not environ.get("ALYX_DEPLOY_URL"):
        entry = _default_target(targets)
    if url is None:
        url = entry.url if entry is not None else environ.get("ALYX_DEPLOY_URL") or None
        if entry is not None and url is None:
            raise CommandError(
                f"alyx.yaml: deploy.targets.{entry.name}: no url (e.g. url: https://api.example.com)"
            )
    if url is None:
        raise CommandError(f"no server to deploy to: {_HOW_URL}")
    base = _check_url(url, entry)
    if token is None:
        token = environ.get("ALYX_DEPLOY_TOKEN") or None
    if token is None and entry is not None and entry.token_file is not None:
        token = _read_token_file(project, entry)
    if not token:
        raise CommandError(f"no deploy token for {base}: {_HOW_TOKEN}")
    return DeployTarget(base, token.strip(), entry.name if entry is not None else None)


def _default_target(targets: Mapping[str, TargetEntry]) -> TargetEntry | None:
    if DEFAULT_TARGET in targets:
        return targets[DEFAULT_TARGET]
    if len(targets) == 1:
        return next(iter(targets.values()))
    if targets:
        raise CommandError(
            f"alyx.yaml names several deploy targets ({', '.join(targets)}) and none is "
            "`production`: pick one with --target NAME"
        )
    return None


def _check_url(url: str, entry: TargetEntry | None) -> str:
    where = f"alyx.yaml: deploy.targets.{entry.name}.url" if entry is not None else "--url"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(f"{where}: {url!r} is not an http:// or https:// URL of an Alyx server")
    if parts.query or parts.fragment:
        raise CommandError(f"{where}: {url!r}: give the server's base URL, without ? or #")
    return url.rstrip("/")


def _read_token_file(project: Path, entry: TargetEntry) -> str:
    assert entry.token_file is not None
    where = f"alyx.yaml: deploy.targets.{entry.name}.token_file"
    path = (project / Path(entry.token_file).expanduser()).resolve()
    if path.is_relative_to(project.resolve()):
        raise CommandError(
            f"{where}: {entry.token_file} is inside the project, which is committed and shipped; "
            "keep the token in a file outside it (e.g. ~/.config/alyx/production.token)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CommandError(f"{where}: cannot read {path}: {e.strerror}") from e
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise CommandError(f"{where}: {path} is empty; put the deploy token on its first line")
    return lines[0].strip()


def _flatten(mapping: Mapping[object, object], prefix: str) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and (path == "deploy" or path.startswith("deploy.")):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
