"""`auth.oauth.providers` in alyx.yaml: the OAuth2 / OpenID Connect sign-in providers (a
mapping of mappings, which the flat key registry does not hold, so it is read here, with
file positions, as `webhooks.targets` is in config/webhooks.py).

    auth:
      oauth:
        public_url: https://api.example.com         callbacks: <public_url>/api/auth/oauth/<name>/callback
        allowed_redirects: [https://app.example.com/signed-in]
        providers:
          google:                                   a preset: google, github, microsoft, apple,
            client_id: 1234.apps.googleusercontent.com        discord, gitlab; any other name is
            client_secret: ${GOOGLE_CLIENT_SECRET}           a generic OpenID provider (issuer)
          microsoft:
            tenant: contoso.onmicrosoft.com         default common
            client_id: ...
            client_secret: ${MS_CLIENT_SECRET}
          apple:
            client_id: com.example.web              the Services ID
            team_id: ABCDE12345
            key_id: XYZ987ZYX1
            private_key_file: secrets/apple.p8      the client secret is a JWT signed with it
          github:                                   GitHub Enterprise, or a stand-in provider:
            authorize_url: https://ghe.example.com/login/oauth/authorize
            token_url: https://ghe.example.com/login/oauth/access_token
            userinfo_url: https://ghe.example.com/api/v3/user     (emails: <userinfo_url>/emails)
          company:
            issuer: https://login.example.com       discovery: <issuer>/.well-known/openid-configuration
            client_id: alyx
            client_secret: ${COMPANY_OIDC_SECRET}
            scopes: [openid, email, profile]

A client secret is never written in the file: `client_secret` must be a `${VAR}` reference
to the environment. Each problem is one ConfigError naming the file, line and key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from alyx_server.errors import ConfigError, Location
from alyx_server.tools.envsubst import substitute
from alyx_server.tools.yaml_lines import YamlError, compose_yaml

__all__ = [
    "ENDPOINTS",
    "OIDC_PRESETS",
    "PRESETS",
    "OAuthProviderConfig",
    "check_absolute_url",
    "read_oauth_providers",
]

PRESETS = ("google", "github", "microsoft", "apple", "discord", "gitlab", "oidc")
"""Provider kinds; a provider whose name is not a preset is a generic OpenID provider."""
OIDC_PRESETS = frozenset({"google", "microsoft", "apple", "gitlab", "oidc"})
"""Kinds that sign in with a verified ID token (the others read the user from an API)."""
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_KEYS = (
    "preset",
    "label",
    "client_id",
    "client_secret",
    "scopes",
    "issuer",
    "tenant",
    "team_id",
    "key_id",
    "private_key_file",
    "redirect_url",
    "authorize_url",
    "token_url",
    "userinfo_url",
)
_ENDPOINT_KEYS = ("authorize_url", "token_url", "userinfo_url")
ENDPOINTS = {
    "github": (
        "https://github.com/login/oauth/authorize",
        "https://github.com/login/oauth/access_token",
        "https://api.github.com/user",
    ),
    "discord": (
        "https://discord.com/oauth2/authorize",
        "https://discord.com/api/oauth2/token",
        "https://discord.com/api/users/@me",
    ),
}
"""The endpoints of the presets without discovery (authorize, token, user); each can be
replaced with `authorize_url`, `token_url`, `userinfo_url` (GitHub Enterprise, a proxy)."""
_SECRET_HINT = "write client_secret: ${NAME_CLIENT_SECRET} and set that environment variable"
_FIXED_ISSUERS = {
    "google": "https://accounts.google.com",
    "apple": "https://appleid.apple.com",
    "gitlab": "https://gitlab.com",
}
_LABELS = {
    "google": "Google",
    "github": "GitHub",
    "microsoft": "Microsoft",
    "apple": "Apple",
    "discord": "Discord",
    "gitlab": "GitLab",
}
_SCOPES = {
    "github": ("read:user", "user:email"),
    "discord": ("identify", "email"),
    "apple": ("openid", "email", "name"),
}


@dataclass(frozen=True, slots=True)
class OAuthProviderConfig:
    """One configured provider. `issuer` is set for the OpenID kinds (OIDC_PRESETS)."""

    name: str
    preset: str
    label: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    issuer: str | None = None
    tenant: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    private_key_file: Path | None = None
    redirect_url: str | None = None
    endpoints: tuple[str, str, str] | None = None
    """authorize, token and user URLs of a preset without discovery (github, discord)."""
    location: Location | None = None

    @property
    def is_oidc(self) -> bool:
        return self.preset in OIDC_PRESETS


def check_absolute_url(url: str) -> str | None:
    """None when `url` is an absolute http(s) URL without a fragment; else the problem."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        return f"{url!r} is not an absolute http or https URL (write e.g. https://app.example.com/signed-in)"
    return None


def read_oauth_providers(
    path: Path, display: str, environ: Mapping[str, str], project_dir: Path
) -> tuple[OAuthProviderConfig, ...]:
    """The `auth.oauth.providers` of alyx.yaml (none when the file or the key is missing)."""
    try:
        root = compose_yaml(path.read_bytes())
    except FileNotFoundError:
        return ()
    except (OSError, YamlError, ValueError) as e:
        raise ConfigError(f"cannot read the file: {e}", Location(display)) from e
    node = _providers_node(root)
    if node is None:
        return ()
    reader = _Reader(display, environ, project_dir)
    if not isinstance(node, MappingNode):
        raise ConfigError(
            "auth.oauth.providers must be a mapping of provider names",
            reader.at(node, "auth.oauth.providers"),
            hint="e.g. `google: {client_id: ..., client_secret: ${GOOGLE_SECRET}}`",
        )
    providers: list[OAuthProviderConfig] = []
    for key, value in node.value:
        name = str(key.value) if isinstance(key, ScalarNode) else ""
        where = f"auth.oauth.providers.{name}"
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{name!r} is not a provider name",
                reader.at(key, where),
                hint="a lower-case letter, then letters, digits, _ or - (e.g. google)",
            )
        if any(p.name == name for p in providers):
            raise ConfigError(f"two providers are named {name!r}", reader.at(key, where), hint="rename one")
        providers.append(reader.provider(name, value, where))
    return tuple(providers)


def _child(node: Node | None, name: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.value == name:
            return value  # type: ignore[no-any-return]
    return None


def _providers_node(root: Node | None) -> Node | None:
    for dotted in ("auth.oauth.providers",):
        found = _child(root, dotted)
        if found is not None:
            return found
    auth = _child(root, "auth")
    found = _child(auth, "oauth.providers")
    return found if found is not None else _child(_child(auth, "oauth"), "providers")


class _Reader:
    def __init__(self, display: str, environ: Mapping[str, str], project_dir: Path) -> None:
        self.display = display
        self.environ = environ
        self.project_dir = project_dir

    def at(self, node: Node, path: str) -> Location:
        return Location(self.display, node.start_mark.line + 1, node.start_mark.column + 1, path)

    def text(self, node: Node, path: str) -> str:
        if not isinstance(node, ScalarNode) or not str(node.value).strip():
            raise ConfigError(f"{path} must be a non-empty string", self.at(node, path))
        try:
            return substitute(str(node.value), self.environ).strip()
        except ValueError as e:
            raise ConfigError(str(e), self.at(node, path)) from e

    def provider(self, name: str, node: Node, path: str) -> OAuthProviderConfig:
        if not isinstance(node, MappingNode):
            raise ConfigError(
                f"{path} must be a mapping",
                self.at(node, path),
                hint="with client_id and client_secret (and issuer for an OpenID provider)",
            )
        body: dict[str, Node] = {}
        for key, value in node.value:
            key_name = key.value if isinstance(key, ScalarNode) else None
            if key_name not in _KEYS:
                raise ConfigError(
                    f"unknown key {key_name!r} in {path}",
                    self.at(key, path),
                    hint=f"the keys are: {', '.join(_KEYS)}",
                )
            body[str(key_name)] = value
        values = {key: self.text(value, f"{path}.{key}") for key, value in body.items() if key != "scopes"}
        preset = values.get("preset", name if name in PRESETS else "oidc")
        if preset not in PRESETS:
            raise ConfigError(
                f"unknown preset {preset!r}",
                self.at(body["preset"], f"{path}.preset"),
                hint=f"presets are: {', '.join(PRESETS)}",
            )

        def need(key: str, hint: str) -> str:
            if key not in values:
                raise ConfigError(f"{path}.{key} is required", self.at(node, f"{path}.{key}"), hint=hint)
            return values[key]

        client_id = need("client_id", "the client (application) ID the provider gave you")
        secret = ""
        key_file: Path | None = None
        if preset == "apple":
            for key in ("team_id", "key_id"):
                need(key, "from the Apple developer account (Certificates, Identifiers & Profiles)")
            key_file = self.project_dir / need("private_key_file", "the .p8 key file Apple gave you")
            if not key_file.is_file():
                raise ConfigError(
                    f"the key file {key_file} does not exist",
                    self.at(body["private_key_file"], f"{path}.private_key_file"),
                    hint="a path relative to the project, to the .p8 file of the Sign in with Apple key",
                )
        else:
            secret = need("client_secret", _SECRET_HINT)
            if "${" not in str(body["client_secret"].value):
                raise ConfigError(
                    "a client secret is not written in alyx.yaml",
                    self.at(body["client_secret"], f"{path}.client_secret"),
                    hint=_SECRET_HINT,
                )
        issuer = self._issuer(preset, values, body, node, path)
        redirect = values.get("redirect_url")
        if redirect is not None and (problem := check_absolute_url(redirect)):
            raise ConfigError(
                problem,
                self.at(body["redirect_url"], f"{path}.redirect_url"),
                hint=f"the full callback URL, e.g. https://api.example.com/api/auth/oauth/{name}/callback",
            )
        return OAuthProviderConfig(
            name=name,
            preset=preset,
            label=values.get("label", _LABELS.get(preset, name)),
            client_id=client_id,
            client_secret=secret,
            scopes=self._scopes(body.get("scopes"), f"{path}.scopes", preset),
            issuer=issuer,
            tenant=values.get("tenant"),
            team_id=values.get("team_id"),
            key_id=values.get("key_id"),
            private_key_file=key_file,
            redirect_url=redirect,
            endpoints=self._endpoints(preset, values, body, path),
            location=self.at(node, path),
        )

    def _issuer(
        self, preset: str, values: dict[str, str], body: dict[str, Node], node: Node, path: str
    ) -> str | None:
        if preset not in OIDC_PRESETS:
            if "issuer" in values:
                raise ConfigError(
                    f"{path}.issuer does not apply to {preset}",
                    self.at(body["issuer"], path),
                    hint=f"{preset} is not an OpenID provider; remove issuer",
                )
            return None
        if preset == "microsoft" and "issuer" not in values:
            return f"https://login.microsoftonline.com/{values.get('tenant', 'common')}/v2.0"
        issuer = values.get("issuer", _FIXED_ISSUERS.get(preset))
        if issuer is None:
            raise ConfigError(
                f"{path}.issuer is required",
                self.at(node, f"{path}.issuer"),
                hint="the OpenID issuer URL, e.g. https://login.example.com (its discovery "
                "document is <issuer>/.well-known/openid-configuration)",
            )
        if problem := check_absolute_url(issuer):
            raise ConfigError(problem, self.at(body.get("issuer", node), f"{path}.issuer"))
        return issuer.rstrip("/")

    def _endpoints(
        self, preset: str, values: dict[str, str], body: dict[str, Node], path: str
    ) -> tuple[str, str, str] | None:
        given = [key for key in _ENDPOINT_KEYS if key in values]
        if preset not in ENDPOINTS:
            if given:
                raise ConfigError(
                    f"{path}.{given[0]} does not apply to {preset}",
                    self.at(body[given[0]], f"{path}.{given[0]}"),
                    hint="an OpenID provider's endpoints come from its discovery document: set issuer",
                )
            return None
        for key in given:
            if problem := check_absolute_url(values[key]):
                raise ConfigError(problem, self.at(body[key], f"{path}.{key}"))
        authorize, token, user = (
            values.get(key, default) for key, default in zip(_ENDPOINT_KEYS, ENDPOINTS[preset], strict=True)
        )
        return authorize, token, user

    def _scopes(self, node: Node | None, path: str, preset: str) -> tuple[str, ...]:
        if node is None:
            return _SCOPES.get(preset, ("openid", "email", "profile"))
        if not isinstance(node, SequenceNode) or not node.value:
            raise ConfigError(
                f"{path} must be a list of scopes",
                self.at(node, path),
                hint="e.g. scopes: [openid, email, profile]",
            )
        scopes = tuple(self.text(item, path) for item in node.value)
        if preset in OIDC_PRESETS and "openid" not in scopes:
            raise ConfigError(
                f"{path} must include openid",
                self.at(node, path),
                hint="an OpenID provider signs in with an ID token, which the openid scope asks for",
            )
        return scopes
