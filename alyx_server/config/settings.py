"""The immutable, typed settings of one Alyx server, and how two of them differ.

`Settings` is built once by `load_settings` and passed explicitly to whatever needs it;
a running server that reloads its configuration swaps in a whole new object and asks
`split_changes(old, new)` which changes apply live and which need a restart. Attribute
names follow the dotted keys (`settings.auth.rate_limit.login`); a key that is a Python
keyword gets a trailing underscore (`auth.smtp.from` -> `settings.auth.smtp.from_`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from alyx_server.config.oauth import OAuthProviderConfig
from alyx_server.config.registry import KEYS, KEYS_BY_PATH, Mode
from alyx_server.config.webhooks import WebhookTarget
from alyx_server.tools.rates import Rate
from alyx_server.tools.suggest import did_you_mean

__all__ = [
    "AdminUiSettings",
    "AuthSettings",
    "CorsSettings",
    "DatabaseSettings",
    "DeploySettings",
    "DevSettings",
    "FunctionPoolSettings",
    "FunctionsSettings",
    "GenerateSettings",
    "JobsSettings",
    "JwtSettings",
    "LoggingSettings",
    "OAuthSettings",
    "PasswordPolicy",
    "RateLimitSettings",
    "RealtimeSettings",
    "RulesSettings",
    "S3StorageSettings",
    "ServerSettings",
    "Settings",
    "SmtpSettings",
    "StorageSettings",
    "WebhooksSettings",
    "build_settings",
    "changed_keys",
    "split_changes",
]


@dataclass(frozen=True, slots=True)
class CorsSettings:
    allowed_origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    port: int
    workers: str
    """`auto` or a number (alyx_server.workers.worker_count reads it)."""
    cors: CorsSettings
    max_body_size: int
    trusted_proxies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    path: Path
    synchronous: Literal["normal", "full"]
    changes_retention: float


@dataclass(frozen=True, slots=True)
class JwtSettings:
    secret: str = field(repr=False)
    access_ttl: float
    refresh_ttl: float
    issuer: str


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    min_length: int
    require_upper: bool
    require_lower: bool
    require_number: bool
    require_special: bool


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """None means the limit is off."""

    login: Rate | None
    register: Rate | None
    reset: Rate | None


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    from_: str


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    public_url: str
    allowed_redirects: tuple[str, ...]
    unverified_email: Literal["new_account", "refuse"]
    timeout: float


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt: JwtSettings
    bcrypt_cost: int
    password: PasswordPolicy
    rate_limit: RateLimitSettings
    allow_registration: bool
    require_verification: bool
    smtp: SmtpSettings
    oauth: OAuthSettings


@dataclass(frozen=True, slots=True)
class FunctionPoolSettings:
    min_warm: int
    max_instances: int
    idle_timeout: float
    max_queue: int


@dataclass(frozen=True, slots=True)
class FunctionsSettings:
    path: Path
    timeout: float
    memory: int
    backend: Literal["process", "docker"]
    pool: FunctionPoolSettings


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    poll_interval: float
    ping_interval: float
    max_connections: int
    max_subscriptions_per_client: int
    max_message_size: int
    send_queue: int
    max_queued_bytes: int


@dataclass(frozen=True, slots=True)
class JobsSettings:
    poll_interval: float


@dataclass(frozen=True, slots=True)
class WebhooksSettings:
    allow_private_targets: bool
    timeout: float
    max_attempts: int
    concurrency: int


@dataclass(frozen=True, slots=True)
class RulesSettings:
    eval_budget: int
    lookup_depth: int


@dataclass(frozen=True, slots=True)
class GenerateSettings:
    languages: tuple[str, ...]
    output: Path


@dataclass(frozen=True, slots=True)
class DevSettings:
    auto_migrate: bool
    generate: GenerateSettings


@dataclass(frozen=True, slots=True)
class AdminUiSettings:
    enabled: bool
    path: str
    session_idle: float
    session_max: float
    link_ttl: float


@dataclass(frozen=True, slots=True)
class DeploySettings:
    keep_bundles: int
    max_bundle_size: int


@dataclass(frozen=True, slots=True)
class S3StorageSettings:
    """The bucket of `storage.backend: s3` (storage/s3.py); credentials are not settings."""

    bucket: str
    endpoint: str
    region: str
    path_style: bool
    prefix: str


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """File storage (alyx_server/storage/): sizes int bytes, the token lifetime float seconds."""

    backend: Literal["local", "s3"]
    path: Path
    s3: S3StorageSettings
    sweep_interval: float
    sweep_grace: float
    max_file_size: int
    file_token_ttl: float
    thumb_max_pixels: int


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: Literal["debug", "info", "warning", "error"]
    format: Literal["console", "json"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a server needs to know about its configuration. Durations are float
    seconds, sizes int bytes, rates `Rate | None`, paths absolute, lists tuples."""

    project_dir: Path
    mode: Mode
    config_file: Path
    server: ServerSettings
    database: DatabaseSettings
    auth: AuthSettings
    functions: FunctionsSettings
    realtime: RealtimeSettings
    jobs: JobsSettings
    webhooks: WebhooksSettings
    rules: RulesSettings
    dev: DevSettings
    admin_ui: AdminUiSettings
    deploy: DeploySettings
    storage: StorageSettings
    logging: LoggingSettings
    values: Mapping[str, object] = field(repr=False, compare=False, hash=False)
    webhook_targets: tuple[WebhookTarget, ...] = ()
    """`webhooks.targets` of alyx.yaml (config/webhooks.py)."""
    oauth_providers: tuple[OAuthProviderConfig, ...] = ()
    """`auth.oauth.providers` of alyx.yaml (config/oauth.py)."""

    def get(self, path: str) -> Any:
        """The value of a dotted key, e.g. `settings.get("server.port")`."""
        if path not in self.values:
            hint = did_you_mean(path, self.values)
            raise KeyError(f"unknown configuration key {path!r}" + (f" ({hint})" if hint else ""))
        return self.values[path]


def build_settings(
    values: Mapping[str, object], *, project_dir: Path, mode: Mode, config_file: Path
) -> Settings:
    """Assemble Settings from typed values keyed by dotted path (one per registry key)."""
    sections: dict[str, Any] = {
        name: _build_section(hint, name + ".", values)
        for name, hint in typing.get_type_hints(Settings).items()
        if isinstance(hint, type) and dataclasses.is_dataclass(hint)
    }
    return Settings(
        project_dir=project_dir,
        mode=mode,
        config_file=config_file,
        values=MappingProxyType(dict(values)),
        **sections,
    )


_Section = TypeVar("_Section")


def _build_section(cls: type[_Section], prefix: str, values: Mapping[str, object]) -> _Section:
    kwargs: dict[str, object] = {}
    for name, hint in typing.get_type_hints(cls).items():
        path = prefix + name.removesuffix("_")
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _build_section(hint, path + ".", values)
        else:
            kwargs[name] = values[KEYS_BY_PATH[path].path]
    return cls(**kwargs)


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Dotted keys whose value differs between two settings, in registry order."""
    return [key.path for key in KEYS if old.values[key.path] != new.values[key.path]]


def split_changes(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """The changed keys as (those a running server applies live, those needing a restart)."""
    changed = changed_keys(old, new)
    live = [path for path in changed if KEYS_BY_PATH[path].apply == "live"]
    restart = [path for path in changed if KEYS_BY_PATH[path].apply == "restart"]
    return live, restart
