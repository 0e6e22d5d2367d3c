"""Migrations: Alyx's own system tables and the history of the user's schema.

    apply_system_migrations(conn)                      Alyx's tables (SPEC §6), idempotent
    plan_migrations(conn, schema, migrations_dir)      what apply would do, and what blocks it
    apply_migrations(conn, schema, migrations_dir)     pending files, then the safe rest
    migration_status(conn, schema, migrations_dir)     applied / edited / pending / blocked
    rollback_migrations(conn, migrations_dir, n=1)     undo the newest n history rows
    create_migration(conn, schema, migrations_dir, name)   a pre-filled migrations/NNN_name.yaml

Each takes a plain `sqlite3.Connection` in autocommit mode (`isolation_level=None`) and
opens its own `BEGIN IMMEDIATE` transactions, so it runs from the CLI, in tests and on the
server's live writer thread alike.
"""

from alyx_server.migrations.authoring import create_migration
from alyx_server.migrations.files import MigrationFile, load_migrations, parse_migration
from alyx_server.migrations.history import HistoryRow, read_history
from alyx_server.migrations.rollback import rollback_migrations
from alyx_server.migrations.runner import (
    ApplyResult,
    MigrationPlan,
    PlannedFile,
    StatusRow,
    apply_migrations,
    migration_status,
    plan_migrations,
)
from alyx_server.migrations.system import SYSTEM_MIGRATIONS, apply_system_migrations

__all__ = [
    "SYSTEM_MIGRATIONS",
    "ApplyResult",
    "HistoryRow",
    "MigrationFile",
    "MigrationPlan",
    "PlannedFile",
    "StatusRow",
    "apply_migrations",
    "apply_system_migrations",
    "create_migration",
    "load_migrations",
    "migration_status",
    "parse_migration",
    "plan_migrations",
    "read_history",
    "rollback_migrations",
]
