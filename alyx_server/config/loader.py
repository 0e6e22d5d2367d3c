"""Load Settings: registry defaults, then alyx.yaml, then `ALYX_*` variables, then
overrides (command-line flags), each later source winning; then the JWT secret.

Bad configuration never falls back silently: the first problem stops loading with one
ConfigError naming the file and line (or the variable), the key and what to do.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from alyx_server.config.oauth import read_oauth_providers
from alyx_server.config.registry import KEYS, KEYS_BY_PATH, Key, Mode
from alyx_server.config.settings import Settings, build_settings
from alyx_server.config.sources import Given, read_environment, read_file, read_overrides
from alyx_server.config.values import ValueProblem, convert, from_python, is_null, show
from alyx_server.config.webhooks import read_webhook_targets
from alyx_server.errors import ConfigError, Location

__all__ = ["JWT_SECRET_FILE", "default_settings", "load_settings"]

JWT_SECRET_FILE = ".jwt_secret"
"""Name of the file, beside the database, holding the secret generated under `alyx dev`."""

_SECRET_KEY = "auth.jwt.secret"
_MIN_SECRET = KEYS_BY_PATH[_SECRET_KEY].min_length or 32
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def load_settings(
    project_dir: Path,
    *,
    mode: Mode = "dev",
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Read a project's configuration. `config_file` defaults to `<project>/alyx.yaml` (a
    missing file means all defaults), `environ` to os.environ; `overrides` maps dotted keys
    to values that win over everything (e.g. `{"server.port": 9000}` from `alyx dev -p`)."""
    project_dir = project_dir.resolve()
    config_file = (config_file or project_dir / "alyx.yaml").resolve()
    environ = os.environ if environ is None else environ
    given = [
        *read_file(config_file, _display(config_file, project_dir), environ),
        *read_environment(environ),
        *read_overrides(overrides or {}, "overrides"),
    ]
    settings = _assemble(project_dir, mode, config_file, given)
    display = _display(config_file, project_dir)
    targets = read_webhook_targets(config_file, display, environ)
    providers = read_oauth_providers(config_file, display, environ, project_dir)
    if targets or providers:
        settings = dataclasses.replace(settings, webhook_targets=targets, oauth_providers=providers)
    return settings


def default_settings(
    project_dir: Path, mode: Mode = "dev", *, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Settings from the registry defaults alone (no file, no environment), plus
    `overrides`; handy in tests. Under `dev` the JWT secret file is created as usual."""
    project_dir = project_dir.resolve()
    given = read_overrides(overrides or {}, "overrides")
    return _assemble(project_dir, mode, project_dir / "alyx.yaml", given)


def _assemble(project_dir: Path, mode: Mode, config_file: Path, given: Iterable[Given]) -> Settings:
    values = {key.path: _default_value(key, mode, project_dir) for key in KEYS}
    origins: dict[str, Location] = {}
    for item in given:
        if item.raw is None or is_null(item.raw):
            values[item.key.path] = _default_value(item.key, mode, project_dir)
            origins.pop(item.key.path, None)
            continue
        try:
            values[item.key.path] = convert(item.key, item.raw, project_dir)
        except ValueProblem as e:
            raise ConfigError(e.message, item.location, hint=e.hint) from e
        origins[item.key.path] = item.location
    _check_together(values, origins, _display(config_file, project_dir))
    _check_storage(values, origins, _display(config_file, project_dir))
    values[_SECRET_KEY] = _jwt_secret(values, mode, _display(config_file, project_dir))
    return build_settings(values, project_dir=project_dir, mode=mode, config_file=config_file)


def _default_value(key: Key, mode: Mode, project_dir: Path) -> object:
    default = key.default_for(mode)
    return None if default is None else convert(key, from_python(default), project_dir)


def _check_together(values: Mapping[str, object], origins: Mapping[str, Location], display: str) -> None:
    """Constraints between two keys; the error points at whichever one the user set."""
    pairs = (
        ("functions.pool.min_warm", "functions.pool.max_instances", "must not exceed", False),
        ("auth.jwt.access_ttl", "auth.jwt.refresh_ttl", "must be shorter than", True),
    )
    for low, high, relation, strict in pairs:
        low_value, high_value = values[low], values[high]
        assert isinstance(low_value, int | float) and isinstance(high_value, int | float)
        if low_value > high_value or (strict and low_value == high_value):
            where = origins.get(low) or origins.get(high) or Location(display, path=low)
            shown = show(KEYS_BY_PATH[low], low_value), show(KEYS_BY_PATH[high], high_value)
            message = f"{low} ({shown[0]}) {relation} {high} ({shown[1]})"
            raise ConfigError(message, Location(where.file, where.line, where.column))


def _check_storage(values: Mapping[str, object], origins: Mapping[str, Location], display: str) -> None:
    """`storage.backend: s3` needs a bucket."""
    if values["storage.backend"] == "s3" and not values["storage.s3.bucket"]:
        where = origins.get("storage.backend") or Location(display, path="storage.backend")
        raise ConfigError(
            "storage.backend is s3 but storage.s3.bucket is not set",
            Location(where.file, where.line, where.column, path="storage.s3.bucket"),
            hint="add storage.s3.bucket (and storage.s3.endpoint for a service other than AWS) "
            "to alyx.yaml, or set ALYX_STORAGE_S3_BUCKET; credentials come from "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )


def _jwt_secret(values: Mapping[str, object], mode: Mode, display: str) -> str:
    secret = values[_SECRET_KEY]
    if isinstance(secret, str):
        return secret
    database = values["database.path"]
    assert isinstance(database, Path)
    secret_file = database.parent / JWT_SECRET_FILE
    if mode == "serve":
        # A file someone wrote on purpose (`alyx init --server`) is read; never created here.
        if secret_file.is_file():
            return _read_secret(secret_file)
        raise ConfigError(
            f"required under `alyx serve`: a random string of at least {_MIN_SECRET} characters",
            Location(display, path=_SECRET_KEY),
            hint=f"set {_SECRET_KEY} in alyx.yaml or the ALYX_AUTH_JWT_SECRET environment "
            f"variable; generate one with: {_GENERATE}; or write one into {JWT_SECRET_FILE} "
            "beside the database, as `alyx init --server` does",
        )
    return _dev_secret(secret_file)


def _dev_secret(path: Path) -> str:
    """Read the secret generated for `alyx dev`, creating it (mode 0600) on first use.

    The new secret is written to a temporary file and hard-linked into place, so two
    processes starting at once agree on one complete secret."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _publish_secret(path, secrets.token_urlsafe(48))
    except OSError as e:
        raise ConfigError(f"cannot create the development JWT secret: {e}", Location(str(path))) from e
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    """The JWT secret held in `path` (its first line), at least _MIN_SECRET characters."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read the JWT secret: {e}", Location(str(path))) from e
    if len(secret) < _MIN_SECRET:
        raise ConfigError(
            f"holds {len(secret)} characters; a JWT secret needs at least {_MIN_SECRET}",
            Location(str(path)),
            hint="delete the file to have a new one generated",
        )
    return secret


def _publish_secret(path: Path, secret: str) -> None:
    draft = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secret + "\n")
        os.link(draft, path)
    except FileExistsError:
        pass  # another process published its secret first; that one is read back
    finally:
        draft.unlink(missing_ok=True)


def _display(config_file: Path, project_dir: Path) -> str:
    """The config file's name as shown in messages: relative to the project when inside it."""
    try:
        return str(config_file.relative_to(project_dir))
    except ValueError:
        return str(config_file)
