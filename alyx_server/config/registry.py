"""The one registry of alyx.yaml keys.

Each `Key` gives its dotted path, type, default (as it would be written in alyx.yaml,
possibly different under `alyx dev` and `alyx serve`), whether a running server can take a
new value live or needs a restart, constraints, and a one-line description. Defaults,
validation, the `ALYX_*` environment variables and docs/configuration.md all come from here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "CLIENT_SECTIONS",
    "CLIENT_VARIABLES",
    "KEYS",
    "KEYS_BY_ENV",
    "KEYS_BY_PATH",
    "SECTIONS",
    "STRUCTURED_KEYS",
    "Apply",
    "Key",
    "KeyType",
    "Mode",
    "ModeDefault",
    "env_var_name",
]

Mode = Literal["dev", "serve"]
Apply = Literal["live", "restart"]


class KeyType(StrEnum):
    """The kinds of value a key holds; each has one parser in `alyx_server.config.values`."""

    STR = "str"
    INT = "int"
    BOOL = "bool"
    FLOAT = "float"
    STR_LIST = "list[str]"
    DURATION = "duration"
    SIZE = "size"
    RATE = "rate"
    ENUM = "enum"
    PATH = "path"
    SECRET = "secret"


@dataclass(frozen=True, slots=True)
class ModeDefault:
    """A default that differs between `alyx dev` and `alyx serve`."""

    dev: object
    serve: object


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key. `default` is written as in alyx.yaml; None means unset."""

    path: str
    type: KeyType
    default: object
    apply: Apply
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    check: Callable[[str], str | None] | None = None
    default_note: str | None = None
    deployable: bool = False
    """Describes the application, not the host: `alyx deploy` ships its value from the
    project's alyx.yaml to the server. Never a secret, a path, an address or a credential."""

    def __post_init__(self) -> None:
        if self.deployable and (self.type in (KeyType.SECRET, KeyType.PATH) or ".smtp." in self.path):
            raise ValueError(f"{self.path}: secrets, paths and credentials are never deployable")

    @property
    def env_var(self) -> str:
        return env_var_name(self.path)

    def default_for(self, mode: Mode) -> object:
        """The default as written in alyx.yaml, for the given mode."""
        if isinstance(self.default, ModeDefault):
            return self.default.dev if mode == "dev" else self.default.serve
        return self.default


def env_var_name(path: str) -> str:
    """`server.port` -> `ALYX_SERVER_PORT`."""
    return "ALYX_" + path.upper().replace(".", "_")


def _origin(text: str) -> str | None:
    parts = urlsplit(text)
    is_origin = parts.scheme and parts.netloc and not parts.path and not parts.query
    if text == "*" or is_origin:
        return None
    return f"{text!r} is not an origin (write e.g. https://app.example.com without a path, or *)"


def _network(text: str) -> str | None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"{text!r} is not an IP address or network (write e.g. 10.0.0.1 or 10.0.0.0/8)"
    return None


def _url_path(text: str) -> str | None:
    if text.startswith("/") and text != "/" and not text.endswith("/") and " " not in text:
        return None
    return f"{text!r} is not a URL path (write e.g. /_admin)"


def _email(text: str) -> str | None:
    if not text or "@" in text:
        return None
    return f"{text!r} is not an email address (write e.g. Alyx <noreply@example.com>)"


def _workers(text: str) -> str | None:
    if text == "auto" or (text.isdigit() and 1 <= int(text) <= 256):
        return None
    return f"{text!r} is not a number of workers (write auto, or a number from 1 to 256)"


def _absolute_url(text: str) -> str | None:
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and not parts.fragment:
        return None
    return f"{text!r} is not an absolute http or https URL (write e.g. https://app.example.com/signed-in)"


def _base_url(text: str) -> str | None:
    return None if not text else _absolute_url(text)


def _bucket(text: str) -> str | None:
    if not text or re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", text):
        return None
    return (
        f"{text!r} is not an S3 bucket name (3 to 63 lowercase letters, digits, dots and "
        "hyphens, e.g. my-app-files)"
    )


def _endpoint(text: str) -> str | None:
    parts = urlsplit(text)
    if not text or (parts.scheme in ("http", "https") and parts.hostname and parts.path in ("", "/")
                    and not parts.query):  # fmt: skip
        return None
    return f"{text!r} is not an S3 endpoint URL (write e.g. https://s3.example.com or http://127.0.0.1:9000)"


def _key_prefix(text: str) -> str | None:
    parts = text.strip("/").split("/")
    if not text.strip("/") or not any(p in ("", ".", "..") or "\\" in p for p in parts):
        return None
    return f"{text!r} is not a folder inside the bucket (write e.g. alyx/files)"


def _nonempty(text: str) -> str | None:
    return None if text.strip() else "must not be empty"


_T = KeyType
_DAY = 86_400.0
_MIB = 1024**2

KEYS: tuple[Key, ...] = (
    # server
    Key("server.host", _T.STR, "127.0.0.1", "restart",
        "Address to listen on; 0.0.0.0 listens on every interface.", check=_nonempty),
    Key("server.port", _T.INT, 8090, "restart", "TCP port to listen on.",
        minimum=1, maximum=65535),
    Key("server.workers", _T.STR, ModeDefault(dev=1, serve="auto"), "restart",
        "Worker processes `alyx serve` runs on the one port: auto (one per usable CPU core) "
        "or a number; `alyx dev` always runs one (docs/workers.md).", check=_workers),
    Key("server.cors.allowed_origins", _T.STR_LIST, ModeDefault(dev=["*"], serve=[]), "live",
        "Origins allowed to call the API from a browser; * allows any. Not applied to "
        "/api/realtime, which tokens authenticate, not cookies (docs/realtime.md).",
        check=_origin, deployable=True),
    Key("server.max_body_size", _T.SIZE, "10MiB", "live",
        "Largest request body accepted; larger ones get 413.", minimum=1, deployable=True),
    Key("server.trusted_proxies", _T.STR_LIST, [], "live",
        "Proxy addresses or networks allowed to set X-Forwarded-For.", check=_network),
    # database
    Key("database.path", _T.PATH, "data/alyx.db", "restart",
        "SQLite database file, relative to the project; its folder holds generated secrets."),
    Key("database.synchronous", _T.ENUM, "normal", "restart",
        "SQLite synchronous mode: full also survives power loss, at some write speed.",
        choices=("normal", "full")),
    Key("database.changes_retention", _T.DURATION, "24h", "live",
        "How long change-log rows are kept for realtime catch-up.", minimum=1),
    # auth
    Key("auth.jwt.secret", _T.SECRET, None, "restart",
        "Key that signs session tokens; changing it signs everyone out.", min_length=32,
        default_note="dev: generated once into `data/.jwt_secret`; serve: required (≥ 32 chars), "
        "or read from `data/.jwt_secret` when that file exists"),
    Key("auth.jwt.access_ttl", _T.DURATION, "15m", "live", "Lifetime of an access token.",
        minimum=1, deployable=True),
    Key("auth.jwt.refresh_ttl", _T.DURATION, "7d", "live", "Lifetime of a refresh token.",
        minimum=1, deployable=True),
    Key("auth.jwt.issuer", _T.STR, "alyx", "live", "The `iss` claim of issued tokens.",
        check=_nonempty),
    Key("auth.bcrypt_cost", _T.INT, 12, "live",
        "bcrypt work factor for new password hashes (each step doubles the time).",
        minimum=4, maximum=31, deployable=True),
    Key("auth.password.min_length", _T.INT, 8, "live", "Shortest password accepted.",
        minimum=1, maximum=1024, deployable=True),
    Key("auth.password.require_upper", _T.BOOL, False, "live",
        "Passwords must contain an upper-case letter.", deployable=True),
    Key("auth.password.require_lower", _T.BOOL, False, "live",
        "Passwords must contain a lower-case letter.", deployable=True),
    Key("auth.password.require_number", _T.BOOL, False, "live",
        "Passwords must contain a digit.", deployable=True),
    Key("auth.password.require_special", _T.BOOL, False, "live",
        "Passwords must contain a character that is neither a letter nor a digit.", deployable=True),
    Key("auth.rate_limit.login", _T.RATE, "5/minute", "live",
        "Login attempts allowed per client address and account; off disables.", deployable=True),
    Key("auth.rate_limit.register", _T.RATE, "3/minute", "live",
        "Registrations allowed per client address; off disables.", deployable=True),
    Key("auth.rate_limit.reset", _T.RATE, "3/hour", "live",
        "Password-reset requests allowed per account; off disables.", deployable=True),
    Key("auth.allow_registration", _T.BOOL, True, "live",
        "Whether anyone may create an account through the API.", deployable=True),
    Key("auth.require_verification", _T.BOOL, False, "live",
        "Whether an account must verify its email before it can log in.", deployable=True),
    Key("auth.smtp.host", _T.STR, "", "live",
        "SMTP server for outgoing email; empty writes emails to the log instead."),
    Key("auth.smtp.port", _T.INT, 587, "live", "SMTP server port.", minimum=1, maximum=65535),
    Key("auth.smtp.username", _T.STR, "", "live", "SMTP login name; empty skips login."),
    Key("auth.smtp.password", _T.SECRET, "", "live", "SMTP password."),
    Key("auth.smtp.from", _T.STR, "", "live",
        "Sender of outgoing email, e.g. `Alyx <noreply@example.com>`.", check=_email),
    Key("auth.oauth.public_url", _T.STR, "", "restart",
        "The server's public URL; OAuth providers call back to "
        "<public_url>/api/auth/oauth/<name>/callback. Empty: the URL each request came to "
        "(docs/auth.md).", check=_base_url),
    Key("auth.oauth.allowed_redirects", _T.STR_LIST, [], "restart",
        "Absolute app URLs an OAuth sign-in may return to (`redirect` of "
        "/api/auth/oauth/<name>/start); any other is refused.", check=_absolute_url),
    Key("auth.oauth.unverified_email", _T.ENUM, "new_account", "restart",
        "A provider account whose email the provider has not verified: new_account signs "
        "it up as an unverified account (never linked to an existing one), refuse refuses it.",
        choices=("new_account", "refuse")),
    Key("auth.oauth.timeout", _T.DURATION, "10s", "restart",
        "Longest a call to an OAuth provider (discovery, keys, token, user) may take.",
        minimum=0.001, maximum=120),
    # functions
    Key("functions.path", _T.PATH, "functions", "restart",
        "Folder holding the project's functions, relative to the project."),
    Key("functions.timeout", _T.DURATION, "30s", "live",
        "Longest a function invocation may run before it is stopped.", minimum=0.001, deployable=True),
    Key("functions.memory", _T.SIZE, "256MiB", "restart",
        "Memory limit of one function instance.", minimum=16 * _MIB, deployable=True),
    Key("functions.backend", _T.ENUM, "process", "restart",
        "Where functions run: local processes or Docker containers.",
        choices=("process", "docker")),
    Key("functions.pool.min_warm", _T.INT, 1, "restart",
        "Instances per function kept started and idle.", minimum=0, deployable=True),
    Key("functions.pool.max_instances", _T.INT, 4, "restart",
        "Most instances of one function running at once.", minimum=1, deployable=True),
    Key("functions.pool.idle_timeout", _T.DURATION, "60s", "restart",
        "Idle time after which an instance above min_warm is stopped.", minimum=0.001, deployable=True),
    Key("functions.pool.max_queue", _T.INT, 100, "restart",
        "Invocations waiting for a free instance before new ones are refused.", minimum=0, deployable=True),
    # jobs and webhooks (docs/automation.md)
    Key("jobs.poll_interval", _T.DURATION, "500ms", "restart",
        "How often each server process looks for due jobs (a job queued in the same process "
        "starts at once; one queued by another process within this interval).",
        minimum=0.001, maximum=_DAY),
    Key("webhooks.allow_private_targets", _T.BOOL, False, "restart",
        "Deliver webhooks to private, loopback and link-local addresses (refused by default, "
        "against server-side request forgery)."),
    Key("webhooks.timeout", _T.DURATION, "10s", "restart",
        "Longest a webhook delivery may take, connection and response included.",
        minimum=0.001, maximum=300),
    Key("webhooks.max_attempts", _T.INT, 8, "restart",
        "Deliveries tried before a webhook event is given up (with exponential backoff).",
        minimum=1, maximum=100),
    Key("webhooks.concurrency", _T.INT, 8, "restart",
        "Deliveries in flight at once per server process.", minimum=1, maximum=1000),
    # rules
    Key("rules.eval_budget", _T.INT, 100000, "live",
        "Steps one rule or `where` evaluation may take (about 50 ms of work; loops, regex "
        "and string building charge it); past it the document is denied. docs/rules.md.",
        minimum=1000, deployable=True),
    Key("rules.lookup_depth", _T.INT, 2, "restart",
        "How deep a rule's lookups (get, exists) may nest, checked when the schema loads: "
        "1 allows get('teams', doc.team_id).owner_id, 2 also a lookup inside its id. docs/rules.md.",
        minimum=1, maximum=8),
    # realtime
    Key("realtime.poll_interval", _T.DURATION, "100ms", "restart",
        "How often the change log is read for subscribers.", minimum=0.001, maximum=_DAY),
    Key("realtime.ping_interval", _T.DURATION, "30s", "restart",
        "How often idle WebSocket connections are pinged.", minimum=0.001),
    Key("realtime.max_connections", _T.INT, 10000, "live",
        "Most WebSocket connections at once; more are refused.", minimum=1, deployable=True),
    Key("realtime.max_subscriptions_per_client", _T.INT, 100, "live",
        "Most subscriptions one connection may hold.", minimum=1, deployable=True),
    Key("realtime.max_message_size", _T.SIZE, "64KiB", "restart",
        "Largest WebSocket message accepted from a client.", minimum=1024, deployable=True),
    Key("realtime.send_queue", _T.INT, 1000, "restart",
        "Messages queued for a slow client before it is disconnected.", minimum=1, deployable=True),
    Key("realtime.max_queued_bytes", _T.SIZE, "4MiB", "restart",
        "Bytes queued for a slow client before it is disconnected (code 1013); one larger "
        "message is still sent when nothing else waits.", minimum=64 * 1024, deployable=True),
    # dev
    Key("dev.auto_migrate", _T.BOOL, True, "live",
        "`alyx dev` applies safe schema changes as soon as schema.yaml is saved."),
    Key("dev.generate.languages", _T.STR_LIST, ["typescript"], "live",
        "Client SDKs `alyx dev` and `alyx generate` write.",
        choices=("typescript", "go", "python")),
    Key("dev.generate.output", _T.PATH, "generated", "live",
        "Folder the client SDKs are written to, relative to the project."),
    # admin_ui
    Key("admin_ui.enabled", _T.BOOL, True, "restart",
        "Whether the server serves the browser admin UI (docs/admin.md) at admin_ui.path."),
    Key("admin_ui.path", _T.STR, "/_admin", "restart",
        "The URL path of the browser admin UI.", check=_url_path),
    Key("admin_ui.session_idle", _T.DURATION, "2h", "restart",
        "An admin UI session ends after this long without a request.", minimum=1),
    Key("admin_ui.session_max", _T.DURATION, "24h", "restart",
        "An admin UI session ends this long after sign-in, however active.", minimum=1),
    Key("admin_ui.link_ttl", _T.DURATION, "15m", "restart",
        "How long the one-time sign-in link that `alyx dev` prints works.", minimum=1),
    # deploy
    Key("deploy.keep_bundles", _T.INT, 10, "live",
        "Deployed bundles kept under data/deployments/ for rollback; older ones are deleted.",
        minimum=1),
    Key("deploy.max_bundle_size", _T.SIZE, "50MiB", "live",
        "Largest deploy bundle accepted, packed or unpacked; larger ones get 413.", minimum=1024),
    # storage
    Key("storage.backend", _T.ENUM, "local", "restart",
        "Where the bytes of file fields live: local (a folder, storage.path) or s3 (an "
        "S3-compatible bucket, storage.s3.*; credentials from the environment).",
        choices=("local", "s3")),
    Key("storage.path", _T.PATH, "data/storage", "restart",
        "Folder of the local file storage, relative to the project."),
    Key("storage.s3.bucket", _T.STR, "", "restart",
        "The bucket of storage.backend s3 (required then). Credentials are never set here: "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role.",
        check=_bucket),
    Key("storage.s3.endpoint", _T.STR, "", "restart",
        "URL of an S3-compatible service (MinIO, R2, Ceph...); empty for AWS S3.", check=_endpoint),
    Key("storage.s3.region", _T.STR, "us-east-1", "restart",
        "Region of the bucket (what the service expects in signatures).", check=_nonempty),
    Key("storage.s3.path_style", _T.BOOL, False, "restart",
        "Address the bucket in the URL path (endpoint/bucket/key) rather than the host name; "
        "most self-hosted services need it."),
    Key("storage.s3.prefix", _T.STR, "", "restart",
        "A folder inside the bucket that holds every key (e.g. alyx/files); empty: the bucket's root.",
        check=_key_prefix),
    Key("storage.sweep_interval", _T.DURATION, "1h", "restart",
        "How often the server removes stored files no document references (one process "
        "at a time; docs/files.md); 0 turns the periodic sweep off (`alyx storage sweep`).",
        minimum=0),
    Key("storage.sweep_grace", _T.DURATION, "6h", "live",
        "Age below which an unreferenced stored file is left alone by the sweeper (an "
        "upload whose write has not committed yet).", minimum=60),
    Key("storage.max_file_size", _T.SIZE, "100MiB", "live",
        "Largest file accepted in an upload, whatever a field's maxSize; uploads stream to "
        "storage, so this is not bounded by server.max_body_size.", minimum=1),
    Key("storage.file_token_ttl", _T.DURATION, "2m", "live",
        "Lifetime of a file token (POST /api/files/token) for a protected file.",
        minimum=1, maximum=_DAY),
    Key("storage.thumb_max_pixels", _T.INT, 40_000_000, "live",
        "Largest image (width x height) a thumbnail is made of; larger ones are refused "
        "before any pixel is decoded (decompression bombs).", minimum=1, maximum=1_000_000_000),
    # logging
    Key("logging.level", _T.ENUM, "info", "live", "Least severe log level written.",
        choices=("debug", "info", "warning", "error"), deployable=True),
    Key("logging.format", _T.ENUM, "console", "restart",
        "console for people, json for log collectors (one object per line).",
        choices=("console", "json"), deployable=True),
)  # fmt: skip

KEYS_BY_PATH: Mapping[str, Key] = MappingProxyType({key.path: key for key in KEYS})
KEYS_BY_ENV: Mapping[str, Key] = MappingProxyType({key.env_var: key for key in KEYS})
CLIENT_SECTIONS: Mapping[str, str] = MappingProxyType(
    {
        "deploy.targets": "Servers `alyx deploy --target NAME` ships to: "
        "`deploy.targets.NAME.url`, and `deploy.targets.NAME.token_file`, a file outside the "
        "project holding the deploy token (a token itself is refused here).",
    }
)
"""alyx.yaml sections read by the `alyx` CLI; the server skips them without checking."""

STRUCTURED_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "webhooks.targets": "The project's webhooks, a list of `{name, url, secret, events: "
        "[{collection, events, when}]}` (docs/automation.md); read with file positions by "
        "alyx_server/config/webhooks.py.",
        "auth.oauth.providers": "OAuth2 / OpenID Connect sign-in providers, a mapping of "
        "`NAME: {client_id, client_secret: ${VAR}, scopes, issuer, ...}` with presets google, "
        "github, microsoft, apple, discord, gitlab (docs/auth.md); read with file positions by "
        "alyx_server/config/oauth.py.",
    }
)
"""alyx.yaml keys holding lists of mappings, which have parsers of their own."""

SECTIONS: frozenset[str] = frozenset(
    path.rsplit(".", i)[0]
    for path in (*(key.path for key in KEYS), *CLIENT_SECTIONS, *STRUCTURED_KEYS)
    for i in range(1, path.count(".") + 1)
)
"""Every dotted prefix that names a group of keys (`server`, `server.cors`, `auth.jwt`...)."""

CLIENT_VARIABLES: Mapping[str, str] = MappingProxyType(
    {
        "ALYX_URL": "Server URL that `alyx tui` watches (its --url).",
        "ALYX_TOKEN": "Admin token that `alyx tui` sends (its --token).",
        "ALYX_DEPLOY_URL": "Server URL that `alyx deploy` ships to (its --url).",
        "ALYX_DEPLOY_TOKEN": "Deploy token that `alyx deploy` sends (its --token).",
        "ALYX_WORKER": "This server process's worker name among those serving one database "
        "(`alyx serve --workers` sets it; 1 when unset); not a setting.",
    }
)
"""`ALYX_*` variables that are not settings; the server leaves them alone."""
