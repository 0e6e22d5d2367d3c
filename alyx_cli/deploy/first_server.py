"""`alyx init --server DIR`: a folder `alyx serve` can run in, ready for `alyx deploy`.

It holds a minimal production alyx.yaml (loopback address, JSON logs, the local reverse
proxy trusted), an empty schema the first deploy replaces, the JWT secret in
`data/.jwt_secret` (mode 0600, read by `alyx serve` when auth.jwt.secret is unset), the
database with the first administrator, and a deploy token whose secret is returned once.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from alyx_cli.output import CommandError

__all__ = ["SERVER_CONFIG", "FirstServer", "create_server"]

SERVER_CONFIG = """\
# Alyx production server, written by `alyx init --server`. `alyx deploy` replaces schema.yaml,
# migrations/, functions/ and the deployable keys; the keys below stay this host's.
server:
  host: 127.0.0.1       # behind a reverse proxy on this host (docs/deploy.md)
  port: {port}
  trusted_proxies: [127.0.0.1, "::1"]

database:
  path: data/alyx.db    # data/.jwt_secret beside it holds the JWT secret

logging:
  format: json
"""
EMPTY_SCHEMA = "# Replaced by the first `alyx deploy`.\nversion: 1\ncollections: {}\n"


@dataclass(frozen=True, slots=True)
class FirstServer:
    """What was created: the folder, the administrator's email and the deploy token."""

    root: Path
    admin_email: str
    deploy_token: str


def create_server(root: Path, *, port: int, admin_email: str, password: str, token_name: str) -> FirstServer:
    """Write the server folder `root` (missing or empty) and its database; see the module doc."""
    from alyx_server.auth.admin_tokens import create_token
    from alyx_server.auth.passwords import check_password_policy, hash_password_now
    from alyx_server.auth.users import insert_user, normalize_email
    from alyx_server.config import JWT_SECRET_FILE, default_settings, load_settings
    from alyx_server.db import open_connection
    from alyx_server.migrations import apply_system_migrations
    from alyx_server.tools.timestamps import now_timestamp

    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise CommandError(f"{root} exists and is not an empty folder; pick a new one for the server")
    # The password is checked before anything is written, against the defaults this
    # folder's alyx.yaml keeps (it sets no auth.password key).
    policy = default_settings(root, "serve", overrides={"auth.jwt.secret": "x" * 32}).auth.password
    encoded = check_password_policy(password, policy)
    address = normalize_email(admin_email)
    for folder in ("data", "migrations", "functions"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "alyx.yaml").write_text(SERVER_CONFIG.format(port=port), encoding="utf-8")
    (root / "schema.yaml").write_text(EMPTY_SCHEMA, encoding="utf-8")
    _write_secret(root / "data" / JWT_SECRET_FILE, secrets.token_urlsafe(48))
    settings = load_settings(root, mode="serve", environ={})
    password_hash = hash_password_now(encoded, settings.auth.bcrypt_cost)
    conn = open_connection(settings.database.path, synchronous=settings.database.synchronous)
    try:
        apply_system_migrations(conn)
        now = now_timestamp()
        conn.execute("BEGIN IMMEDIATE")
        try:
            insert_user(
                conn, email=address, password_hash=password_hash, now=now, role="admin", verified=True
            )
            token, _ = create_token(
                conn, name=token_name, kind="deploy", permissions=("deploy",), expires_at=None, now=now
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()
    return FirstServer(root, address, token)


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
