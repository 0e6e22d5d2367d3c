"""Migrations: Alyx's own system tables and the user's schema history."""

from alyx_server.migrations.system import SYSTEM_MIGRATIONS, apply_system_migrations

__all__ = ["SYSTEM_MIGRATIONS", "apply_system_migrations"]
