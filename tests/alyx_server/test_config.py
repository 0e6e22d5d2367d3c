"""alyx.yaml, ALYX_* variables and the Settings they produce (SPEC section 3)."""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest

from alyx_server.config import (
    KEYS,
    KEYS_BY_PATH,
    ConfigError,
    Rate,
    Settings,
    changed_keys,
    default_settings,
    load_settings,
    render_configuration_docs,
    split_changes,
)

REPO = Path(__file__).resolve().parents[2]
SECRET = "s" * 32


def load(
    project: Path,
    text: str | None = None,
    env: Mapping[str, str] | None = None,
    mode: str = "dev",
) -> Settings:
    if text is not None:
        (project / "alyx.yaml").write_text(text, encoding="utf-8")
    assert mode in ("dev", "serve")
    return load_settings(project, mode="dev" if mode == "dev" else "serve", environ=env or {})


def error(project: Path, text: str | None = None, env: Mapping[str, str] | None = None,
          mode: str = "dev") -> str:
    with pytest.raises(ConfigError) as caught:
        load(project, text, env, mode)
    return str(caught.value)


# --- defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "# nothing here\n", "---\n", "null\n"])
def test_a_missing_or_empty_file_gives_every_default(tmp_path: Path, text: str | None) -> None:
    settings = load(tmp_path, text)
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8090
    assert settings.server.max_body_size == 10 * 1024 * 1024
    assert settings.database.path == tmp_path.resolve() / "data" / "alyx.db"
    assert settings.database.changes_retention == 24 * 3600
    assert settings.auth.jwt.access_ttl == 15 * 60
    assert settings.auth.jwt.refresh_ttl == 7 * 86400
    assert settings.auth.rate_limit.login == Rate(5, 60)
    assert settings.auth.rate_limit.reset == Rate(3, 3600)
    assert settings.functions.memory == 256 * 1024 * 1024
    assert settings.realtime.poll_interval == 0.1
    assert settings.realtime.max_message_size == 64 * 1024
    assert settings.dev.generate.languages == ("typescript",)
    assert settings.dev.generate.output == tmp_path.resolve() / "generated"
    assert settings.admin_ui.path == "/_admin"
    assert settings.logging.level == "info"
    assert settings.mode == "dev"
    assert settings.project_dir == tmp_path.resolve()
    assert settings.config_file == tmp_path.resolve() / "alyx.yaml"


def test_cors_default_is_open_under_dev_and_closed_under_serve(tmp_path: Path) -> None:
    assert load(tmp_path).server.cors.allowed_origins == ("*",)
    served = load(tmp_path, env={"ALYX_AUTH_JWT_SECRET": SECRET}, mode="serve")
    assert served.server.cors.allowed_origins == ()


def test_get_reads_any_key_by_dotted_path(tmp_path: Path) -> None:
    settings = load(tmp_path, "server:\n  port: 9001\n")
    assert settings.get("server.port") == 9001
    assert settings.get("auth.smtp.from") == settings.auth.smtp.from_ == ""
    with pytest.raises(KeyError) as caught:
        settings.get("server.prot")
    assert caught.value.args[0] == (
        "unknown configuration key 'server.prot' (did you mean server.port?)"
    )


def test_settings_cannot_be_changed_in_place(tmp_path: Path) -> None:
    settings = load(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.server.port = 1  # type: ignore[misc]


def test_every_registry_key_is_a_settings_attribute(tmp_path: Path) -> None:
    settings = load(tmp_path)
    for key in KEYS:
        node: object = settings
        for part in key.path.split("."):
            node = getattr(node, part + ("_" if part == "from" else ""))
        assert node == settings.get(key.path), key.path
    assert set(settings.values) == {key.path for key in KEYS}


def test_the_registry_holds_every_key_of_the_spec() -> None:
    spec = """server.host server.port server.workers server.cors.allowed_origins server.max_body_size
    server.trusted_proxies database.path database.synchronous database.changes_retention
    auth.jwt.secret auth.jwt.access_ttl auth.jwt.refresh_ttl auth.jwt.issuer auth.bcrypt_cost
    auth.password.min_length auth.password.require_upper auth.password.require_lower
    auth.password.require_number auth.password.require_special auth.rate_limit.login
    auth.rate_limit.register auth.rate_limit.reset auth.allow_registration
    auth.require_verification auth.smtp.host auth.smtp.port auth.smtp.username
    auth.smtp.password auth.smtp.from auth.oauth.public_url auth.oauth.allowed_redirects
    auth.oauth.unverified_email auth.oauth.timeout functions.path functions.timeout functions.memory
    functions.backend functions.pool.min_warm functions.pool.max_instances
    functions.pool.idle_timeout functions.pool.max_queue rules.eval_budget rules.lookup_depth
    realtime.poll_interval
    realtime.ping_interval realtime.max_connections realtime.max_subscriptions_per_client
    realtime.max_message_size realtime.send_queue realtime.max_queued_bytes dev.auto_migrate
    dev.generate.languages dev.generate.output admin_ui.enabled admin_ui.path
    admin_ui.session_idle admin_ui.session_max admin_ui.link_ttl logging.level logging.format
    deploy.keep_bundles deploy.max_bundle_size storage.backend storage.path storage.max_file_size
    storage.file_token_ttl storage.thumb_max_pixels storage.s3.bucket storage.s3.endpoint
    storage.s3.region storage.s3.path_style storage.s3.prefix storage.sweep_interval
    storage.sweep_grace jobs.poll_interval webhooks.allow_private_targets webhooks.timeout
    webhooks.max_attempts webhooks.concurrency"""
    assert set(spec.split()) == set(KEYS_BY_PATH)
    assert KEYS_BY_PATH["auth.rate_limit.login"].env_var == "ALYX_AUTH_RATE_LIMIT_LOGIN"
    assert all(key.apply in ("live", "restart") and key.description for key in KEYS)


# --- alyx.yaml ------------------------------------------------------------------------------


def test_file_values_are_converted_to_their_types(tmp_path: Path) -> None:
    settings = load(tmp_path, """\
server:
  port: 9000
  max_body_size: 1GB
  trusted_proxies: [10.0.0.0/8, 192.168.1.1]
database.path: db/app.db
auth:
  jwt: {access_ttl: 1h30m, refresh_ttl: 30d}
  rate_limit: {login: 100/min, register: off, reset: 10/30s}
  password: {require_upper: yes}
dev.generate.languages: [go, python]
logging.level: DEBUG
""")
    assert settings.server.port == 9000
    assert settings.server.max_body_size == 1_000_000_000
    assert settings.server.trusted_proxies == ("10.0.0.0/8", "192.168.1.1")
    assert settings.database.path == tmp_path.resolve() / "db" / "app.db"
    assert settings.auth.jwt.access_ttl == 5400
    assert settings.auth.rate_limit.login == Rate(100, 60)
    assert settings.auth.rate_limit.register is None
    assert settings.auth.rate_limit.reset == Rate(10, 30)
    assert settings.auth.password.require_upper is True
    assert settings.dev.generate.languages == ("go", "python")
    assert settings.logging.level == "debug"


def test_an_empty_value_keeps_the_default(tmp_path: Path) -> None:
    settings = load(tmp_path, "server:\n  port:\nauth:\n")
    assert settings.server.port == 8090


def test_unknown_key_names_file_line_key_and_the_closest_key(tmp_path: Path) -> None:
    message = error(tmp_path, "# alyx\nserver:\n  prot: 8091\n")
    assert message == "alyx.yaml:3:3: server.prot: unknown key (did you mean server.port?)"


def test_unknown_section_suggests_the_section(tmp_path: Path) -> None:
    assert error(tmp_path, "sever:\n  port: 1\n") == (
        "alyx.yaml:1:1: sever: unknown key (did you mean server?)"
    )


def test_unknown_key_far_from_any_says_where_keys_are_listed(tmp_path: Path) -> None:
    assert error(tmp_path, "zzzzzz: 1\n") == (
        "alyx.yaml:1:1: zzzzzz: unknown key (see docs/configuration.md)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server:\n  port: -1\n",
         "alyx.yaml:2:9: server.port: must be between 1 and 65535, got -1"),
        ("server:\n  port: 70000\n",
         "alyx.yaml:2:9: server.port: must be between 1 and 65535, got 70000"),
        ("server:\n  port: abc\n", "alyx.yaml:2:9: server.port: expected an integer, got 'abc'"),
        ("server:\n  port: 80.5\n", "alyx.yaml:2:9: server.port: expected an integer, got '80.5'"),
        ("server:\n  port: true\n", "alyx.yaml:2:9: server.port: expected an integer, got 'true'"),
        ("auth:\n  jwt:\n    access_ttl: 15x\n",
         "alyx.yaml:3:17: auth.jwt.access_ttl: bad duration '15x' (use e.g. 30s, 15m, 7d)"),
        ("server.max_body_size: 10XB\n",
         "alyx.yaml:1:23: server.max_body_size: bad size '10XB' (use e.g. 64KiB, 10MiB, 1GB)"),
        ("auth.rate_limit.login: 5/fortnight\n",
         "alyx.yaml:1:24: auth.rate_limit.login: bad rate '5/fortnight' "
         "(unknown period; use e.g. 5/minute, 100/hour, or off)"),
        ("auth.rate_limit.login: five per minute\n",
         "alyx.yaml:1:24: auth.rate_limit.login: bad rate 'five per minute' "
         "(use e.g. 5/minute, 100/hour, or off)"),
        ("auth.allow_registration: maybe\n",
         "alyx.yaml:1:26: auth.allow_registration: expected true or false, got 'maybe'"),
        ("auth.bcrypt_cost: 3\n",
         "alyx.yaml:1:19: auth.bcrypt_cost: must be between 4 and 31, got 3"),
        ("database.synchronous: ful\n",
         "alyx.yaml:1:23: database.synchronous: must be one of normal, full; got 'ful' "
         "(did you mean full?)"),
        ("functions.backend: k8s\n",
         "alyx.yaml:1:20: functions.backend: must be one of process, docker; got 'k8s'"),
        ("logging.level: verbose\n",
         "alyx.yaml:1:16: logging.level: must be one of debug, info, warning, error; "
         "got 'verbose'"),
        ("dev.generate.languages: [typescript, rust]\n",
         "alyx.yaml:1:25: dev.generate.languages: must be one of typescript, go, python; "
         "got 'rust'"),
        ("dev.generate.languages: [go, go]\n",
         "alyx.yaml:1:25: dev.generate.languages: lists 'go' twice"),
        ("functions.timeout: 0s\n",
         "alyx.yaml:1:20: functions.timeout: must be at least 1ms, got 0s"),
        ("functions.memory: 1MiB\n",
         "alyx.yaml:1:19: functions.memory: must be at least 16MiB, got 1MiB"),
        ("server.trusted_proxies: [proxy.local]\n",
         "alyx.yaml:1:25: server.trusted_proxies: 'proxy.local' is not an IP address or network "
         "(write e.g. 10.0.0.1 or 10.0.0.0/8)"),
        ("server.cors.allowed_origins: [example.com]\n",
         "alyx.yaml:1:30: server.cors.allowed_origins: 'example.com' is not an origin "
         "(write e.g. https://app.example.com without a path, or *)"),
        ("admin_ui.path: admin\n",
         "alyx.yaml:1:16: admin_ui.path: 'admin' is not a URL path (write e.g. /_admin)"),
        ("server.port: [1, 2]\n", "alyx.yaml:1:14: server.port: expected an integer, got a list"),
        ("server.port: {a: 1}\n",
         "alyx.yaml:1:14: server.port: expected an integer, got a mapping"),
        ("server: 8090\n",
         "alyx.yaml:1:9: server: expected a mapping of server.* keys, got '8090'"),
        ("server:\n  port: 1\n  port: 2\n",
         "alyx.yaml:3:3: server.port: duplicate key (first set on line 2)"),
        ("server:\n  port: 1\nserver.port: 2\n",
         "alyx.yaml:3:1: server.port: duplicate key (first set on line 2)"),
        ("functions:\n  pool: {min_warm: 5, max_instances: 4}\n",
         "alyx.yaml:2:20: functions.pool.min_warm (5) must not exceed "
         "functions.pool.max_instances (4)"),
        ("auth.jwt.access_ttl: 8d\n",
         "alyx.yaml:1:22: auth.jwt.access_ttl (8d) must be shorter than "
         "auth.jwt.refresh_ttl (7d)"),
    ],
)
def test_a_bad_value_names_file_line_key_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    assert error(tmp_path, text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server:\n  port: [1, 2\n",
         "alyx.yaml:3:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
         "(while parsing a flow sequence started on line 2)"),
        ("server:\n  port: 1\n  bad: : :\n",
         "alyx.yaml:3:8: invalid YAML: mapping values are not allowed here"),
        ("- server\n- port\n",
         "alyx.yaml:1:1: the top level must be a mapping of keys, got a list "
         "(e.g. `server: {port: 8090}`)"),
        ("just words\n",
         "alyx.yaml:1:1: the top level must be a mapping of keys, got 'just words' "
         "(e.g. `server: {port: 8090}`)"),
    ],
)
def test_malformed_yaml_names_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    assert error(tmp_path, text) == message


def test_a_config_file_outside_the_project_is_named_in_full(tmp_path: Path) -> None:
    elsewhere = tmp_path / "etc" / "alyx-prod.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("server:\n  port: 0\n")
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(ConfigError) as caught:
        load_settings(project, config_file=elsewhere, environ={})
    assert str(caught.value) == (
        f"{elsewhere.resolve()}:2:9: server.port: must be between 1 and 65535, got 0"
    )


# --- ${VAR} substitution --------------------------------------------------------------------


def test_variables_are_substituted_in_values(tmp_path: Path) -> None:
    settings = load(tmp_path, """\
server:
  host: ${HOST}
  port: ${PORT:-9100}
auth.smtp:
  host: smtp.${DOMAIN}
  password: "pa$$word $${NOT_A_VAR}"
server.cors.allowed_origins: ["https://${DOMAIN}"]
""", env={"HOST": "0.0.0.0", "DOMAIN": "example.com"})
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9100
    assert settings.auth.smtp.host == "smtp.example.com"
    assert settings.auth.smtp.password == "pa$$word ${NOT_A_VAR}"
    assert settings.server.cors.allowed_origins == ("https://example.com",)


def test_a_substituted_number_is_still_checked(tmp_path: Path) -> None:
    assert error(tmp_path, "server:\n  port: ${PORT}\n", env={"PORT": "http"}) == (
        "alyx.yaml:2:9: server.port: expected an integer, got 'http'"
    )


def test_an_unset_variable_without_default_is_an_error_with_its_line(tmp_path: Path) -> None:
    message = error(tmp_path, "auth:\n  jwt:\n    secret: ${JWT_SECRET}\n")
    assert message == (
        "alyx.yaml:3:13: auth.jwt.secret: ${JWT_SECRET} is not set "
        "(set JWT_SECRET, or give a default: ${JWT_SECRET:-value})"
    )


def test_a_malformed_reference_is_an_error(tmp_path: Path) -> None:
    assert error(tmp_path, "server.host: ${1HOST}\n") == (
        "alyx.yaml:1:14: server.host: bad variable reference '${1HOST}' "
        "(use ${NAME} or ${NAME:-default}; write $${ for a literal ${)"
    )


# --- ALYX_* environment variables -----------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "server:\n  port: 9000\n  cors:\n    allowed_origins: [https://a.example]\n",
        env={
            "ALYX_SERVER_PORT": "9001",
            "ALYX_SERVER_CORS_ALLOWED_ORIGINS": '["*", "https://b.example"]',
            "ALYX_AUTH_RATE_LIMIT_LOGIN": "off",
            "ALYX_AUTH_ALLOW_REGISTRATION": "false",
            "ALYX_DEV_GENERATE_LANGUAGES": "typescript,go",
            "ALYX_FUNCTIONS_TIMEOUT": "2.5",
        },
    )
    assert settings.server.port == 9001
    assert settings.server.cors.allowed_origins == ("*", "https://b.example")
    assert settings.auth.rate_limit.login is None
    assert settings.auth.allow_registration is False
    assert settings.dev.generate.languages == ("typescript", "go")
    assert settings.functions.timeout == 2.5


def test_an_empty_variable_means_the_default(tmp_path: Path) -> None:
    settings = load(tmp_path, "server:\n  port: 9000\n", env={"ALYX_SERVER_PORT": ""})
    assert settings.server.port == 8090


def test_string_variables_are_taken_verbatim(tmp_path: Path) -> None:
    secret = "*&not-an-alias: # not a comment " + "x" * 20
    settings = load(tmp_path, env={"ALYX_AUTH_JWT_SECRET": secret})
    assert settings.auth.jwt.secret == secret


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALYX_SERVER_PORT": "70000"},
         "ALYX_SERVER_PORT: server.port: must be between 1 and 65535, got 70000"),
        ({"ALYX_SERVER_PORT": "-5"},
         "ALYX_SERVER_PORT: server.port: must be between 1 and 65535, got -5"),
        ({"ALYX_AUTH_JWT_ACCESS_TTL": "15x"},
         "ALYX_AUTH_JWT_ACCESS_TTL: auth.jwt.access_ttl: "
         "bad duration '15x' (use e.g. 30s, 15m, 7d)"),
        ({"ALYX_AUTH_REQUIRE_VERIFICATION": "sometimes"},
         "ALYX_AUTH_REQUIRE_VERIFICATION: auth.require_verification: "
         "expected true or false, got 'sometimes'"),
        ({"ALYX_SERVER_TRUSTED_PROXIES": "{a: 1}"},
         "ALYX_SERVER_TRUSTED_PROXIES: server.trusted_proxies: expected a list of strings, "
         "got a mapping"),
        ({"ALYX_SERVER_PROT": "8091"},
         "ALYX_SERVER_PROT: unknown environment variable (did you mean ALYX_SERVER_PORT?)"),
        ({"ALYX_AUTH_RATE_LIMIT_LOGON": "off"},
         "ALYX_AUTH_RATE_LIMIT_LOGON: unknown environment variable "
         "(did you mean ALYX_AUTH_RATE_LIMIT_LOGIN?)"),
        ({"ALYX_QQQQQQQQQQQQ": "1"},
         "ALYX_QQQQQQQQQQQQ: unknown environment variable "
         "(see docs/configuration.md for the variables Alyx reads)"),
    ],
)
def test_a_bad_variable_names_the_variable_and_the_key(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    assert error(tmp_path, env=env) == message


def test_client_variables_and_other_variables_are_ignored(tmp_path: Path) -> None:
    env = {"ALYX_URL": "https://alyx.example", "ALYX_TOKEN": "t0k3n", "PATH": "/bin",
           "alyx_server_prot": "lower-case is not ours"}
    assert load(tmp_path, env=env).server.port == 8090


# --- the JWT secret --------------------------------------------------------------------------


def test_serve_requires_a_secret_and_says_how_to_set_it(tmp_path: Path) -> None:
    message = error(tmp_path, mode="serve")
    assert message.startswith(
        "alyx.yaml: auth.jwt.secret: required under `alyx serve`: "
        "a random string of at least 32 characters (set auth.jwt.secret in alyx.yaml or the "
        "ALYX_AUTH_JWT_SECRET environment variable; generate one with: python -c"
    )
    assert not (tmp_path / "data" / ".jwt_secret").exists()


def test_serve_reads_the_secret_file_beside_the_database_when_it_exists(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".jwt_secret").write_text("s" * 40 + "\n")
    assert load(tmp_path, mode="serve").auth.jwt.secret == "s" * 40
    (tmp_path / "data" / ".jwt_secret").write_text("short\n")
    assert "data/.jwt_secret: holds 5 characters" in error(tmp_path, mode="serve")


def test_a_short_secret_is_refused_in_either_mode(tmp_path: Path) -> None:
    text = "auth:\n  jwt:\n    secret: too-short\n"
    for mode in ("dev", "serve"):
        assert error(tmp_path, text, mode=mode).startswith(
            "alyx.yaml:3:13: auth.jwt.secret: must be at least 32 characters, got 9 "
            "(generate one with: python -c"
        )


def test_serve_accepts_a_secret_from_the_file_or_environment(tmp_path: Path) -> None:
    from_file = load(tmp_path, f"auth.jwt.secret: {SECRET}\n", mode="serve")
    assert from_file.auth.jwt.secret == SECRET
    other = "e" * 40
    from_env = load(tmp_path, env={"ALYX_AUTH_JWT_SECRET": other}, mode="serve")
    assert from_env.auth.jwt.secret == other


def test_dev_generates_a_secret_once_and_reuses_it(tmp_path: Path) -> None:
    first = load(tmp_path, "database:\n  path: var/db/app.db\n")
    secret_file = tmp_path / "var" / "db" / ".jwt_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(first.auth.jwt.secret) >= 32
    assert secret_file.read_text().strip() == first.auth.jwt.secret
    second = load(tmp_path)
    assert second.auth.jwt.secret == first.auth.jwt.secret
    assert [p.name for p in secret_file.parent.iterdir()] == [".jwt_secret"]


def test_dev_refuses_a_damaged_secret_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".jwt_secret").write_text("short\n")
    message = error(tmp_path)
    assert message.endswith(
        "data/.jwt_secret: holds 5 characters; a JWT secret needs at least 32 "
        "(delete the file to have a new one generated)"
    )


def test_the_secret_stays_out_of_repr(tmp_path: Path) -> None:
    password = "smtp-password-value"
    settings = load(tmp_path, env={"ALYX_AUTH_JWT_SECRET": SECRET * 2,
                                   "ALYX_AUTH_SMTP_PASSWORD": password})
    assert SECRET not in repr(settings)
    assert password not in repr(settings)
    assert "access_ttl=900.0" in repr(settings)


# --- overrides, reloads, docs ----------------------------------------------------------------


def test_overrides_win_over_environment_and_are_checked(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={"ALYX_SERVER_PORT": "9001"},
                             overrides={"server.port": 9002, "auth.rate_limit.login": None})
    assert settings.server.port == 9002
    assert settings.auth.rate_limit.login == Rate(5, 60)
    with pytest.raises(ConfigError) as caught:
        default_settings(tmp_path, overrides={"server.port": 0})
    assert str(caught.value) == "overrides: server.port: must be between 1 and 65535, got 0"
    with pytest.raises(ConfigError) as caught:
        default_settings(tmp_path, overrides={"server.prot": 1})
    assert str(caught.value) == "overrides: server.prot: unknown key (did you mean server.port?)"


def test_default_settings_ignore_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "alyx.yaml").write_text("server:\n  port: 9000\n")
    settings = default_settings(tmp_path, "serve", overrides={"auth.jwt.secret": SECRET,
                                                              "auth.bcrypt_cost": 4})
    assert settings.server.port == 8090
    assert settings.auth.bcrypt_cost == 4
    assert settings.mode == "serve"


def test_changed_keys_are_split_into_live_and_restart(tmp_path: Path) -> None:
    old = load(tmp_path)
    new = load(tmp_path, """\
server:
  port: 9000
  cors: {allowed_origins: ["https://a.example"]}
auth.rate_limit.login: off
logging.format: json
""")
    assert old != new
    assert changed_keys(old, new) == [
        "server.port", "server.cors.allowed_origins", "auth.rate_limit.login", "logging.format"
    ]
    assert split_changes(old, new) == (
        ["server.cors.allowed_origins", "auth.rate_limit.login"],
        ["server.port", "logging.format"],
    )
    again = load(tmp_path, "")
    assert changed_keys(old, again) == []
    assert old == again


def test_docs_configuration_md_is_generated_from_the_registry() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render_configuration_docs(), (
        "docs/configuration.md is stale: run python -m alyx_server.config > docs/configuration.md"
    )


def test_docs_list_every_key_with_env_var_and_apply_marker() -> None:
    text = render_configuration_docs()
    assert text.startswith("<!-- Generated")
    assert "## How configuration works" in text
    for key in KEYS:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key.path}` |"))
        assert f"`{key.env_var}`" in row
        assert f"| {key.apply} | {'yes' if key.deployable else ''} |" in row
    cors = '| `server.cors.allowed_origins` | list of strings | dev: `["*"]`; serve: `[]` |'
    assert cors in text
    assert "`ALYX_URL`" in text and "`ALYX_TOKEN`" in text
