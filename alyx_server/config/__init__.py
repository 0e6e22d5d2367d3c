"""Alyx server configuration: one key registry, one immutable Settings object.

    KEYS (registry.py)  ->  defaults, validation (values.py), ALYX_* variables,
                            docs/configuration.md (docs.py)
    alyx.yaml + environment + overrides (sources.py)  ->  load_settings (loader.py)
                                                       ->  Settings (settings.py)

Typical use::

    settings = load_settings(project_dir, mode="serve")
    settings.server.port, settings.auth.rate_limit.login, settings.get("server.port")
"""

from __future__ import annotations

from alyx_server.config.docs import render_configuration_docs
from alyx_server.config.loader import JWT_SECRET_FILE, default_settings, load_settings
from alyx_server.config.registry import (
    CLIENT_VARIABLES,
    KEYS,
    KEYS_BY_ENV,
    KEYS_BY_PATH,
    Apply,
    Key,
    KeyType,
    Mode,
    ModeDefault,
    env_var_name,
)
from alyx_server.config.settings import (
    AdminUiSettings,
    AuthSettings,
    CorsSettings,
    DatabaseSettings,
    DeploySettings,
    DevSettings,
    FunctionPoolSettings,
    FunctionsSettings,
    GenerateSettings,
    JwtSettings,
    LoggingSettings,
    OAuthSettings,
    PasswordPolicy,
    RateLimitSettings,
    RealtimeSettings,
    ServerSettings,
    Settings,
    SmtpSettings,
    changed_keys,
    split_changes,
)
from alyx_server.errors import ConfigError
from alyx_server.tools.rates import Rate

__all__ = [
    "CLIENT_VARIABLES",
    "JWT_SECRET_FILE",
    "KEYS",
    "KEYS_BY_ENV",
    "KEYS_BY_PATH",
    "AdminUiSettings",
    "Apply",
    "AuthSettings",
    "ConfigError",
    "CorsSettings",
    "DatabaseSettings",
    "DeploySettings",
    "DevSettings",
    "FunctionPoolSettings",
    "FunctionsSettings",
    "GenerateSettings",
    "JwtSettings",
    "Key",
    "KeyType",
    "LoggingSettings",
    "Mode",
    "ModeDefault",
    "OAuthSettings",
    "PasswordPolicy",
    "Rate",
    "RateLimitSettings",
    "RealtimeSettings",
    "ServerSettings",
    "Settings",
    "SmtpSettings",
    "changed_keys",
    "default_settings",
    "env_var_name",
    "load_settings",
    "render_configuration_docs",
    "split_changes",
]
