"""The names of Alyx's own tables, in one place.

Every module that reads or writes a system table (the system migrations that create
them, the DDL of the change triggers, the schema loader's `_alyx_users.id` references,
auth, the change feed, realtime's credential watch) takes its name from here. User
collections can never take these names: the loader refuses any name starting `_alyx`.

    _alyx_users               accounts (referenced by collections as `_alyx_users.id`)
    _alyx_sessions            refresh-token sessions, one live row per family
    _alyx_auth_tokens         one-time tokens: email verification, password reset
    _alyx_tokens              admin and deploy tokens
    _alyx_deployments         deployed versions
    _alyx_rate_limits         recent attempts per rate-limit key, shared by every process
    _alyx_admin_sessions      the admin UI's sign-in sessions and one-time sign-in links
    _alyx_jobs                the job queue: queued, running (leased), done and dead jobs
    _alyx_webhooks            webhooks added through the admin API (alyx.yaml's are not stored)
    _alyx_webhook_deliveries  the delivery log: one row per event sent to a webhook
    _alyx_webhook_cursor      the last change the webhook dispatcher turned into deliveries
    _alyx_change_docs         the document after and before each change of a collection with hooks,
                              and who wrote it (filled by that collection's change triggers)
    _alyx_actor               the user of the write in progress (one row; the writer sets it)
    _alyx_hook_cursors        each after-write hook's last handled change, and its lease
    _alyx_schedules           each schedule's next and last runs, and its lease
    _alyx_identities          OAuth / OpenID sign-in identities (provider, subject) linked to accounts
    _alyx_oauth_flows         OAuth sign-ins in progress: state, PKCE verifier, nonce; one-time
                              exchange codes and link tickets (shared by every process)
    _alyx_changes             the change log the triggers append to (the change feed)
    _alyx_migrations          the history of applied migrations, each with its snapshot
    _alyx_system_migrations   which system migration steps ran
"""

from __future__ import annotations

__all__ = [
    "ACTOR_TABLE",
    "ADMIN_SESSIONS_TABLE",
    "AUTH_TOKENS_TABLE",
    "CHANGES_TABLE",
    "CHANGE_DOCS_TABLE",
    "DEPLOYMENTS_TABLE",
    "HISTORY_TABLE",
    "HOOK_CURSORS_TABLE",
    "IDENTITIES_TABLE",
    "JOBS_TABLE",
    "OAUTH_FLOWS_TABLE",
    "RATE_LIMITS_TABLE",
    "SCHEDULES_TABLE",
    "SESSIONS_TABLE",
    "SYSTEM_TRACKING_TABLE",
    "TOKENS_TABLE",
    "USERS_TABLE",
    "WEBHOOKS_TABLE",
    "WEBHOOK_CURSOR_TABLE",
    "WEBHOOK_DELIVERIES_TABLE",
]

USERS_TABLE = "_alyx_users"
SESSIONS_TABLE = "_alyx_sessions"
AUTH_TOKENS_TABLE = "_alyx_auth_tokens"
TOKENS_TABLE = "_alyx_tokens"
DEPLOYMENTS_TABLE = "_alyx_deployments"
RATE_LIMITS_TABLE = "_alyx_rate_limits"
ADMIN_SESSIONS_TABLE = "_alyx_admin_sessions"
JOBS_TABLE = "_alyx_jobs"
WEBHOOKS_TABLE = "_alyx_webhooks"
WEBHOOK_DELIVERIES_TABLE = "_alyx_webhook_deliveries"
WEBHOOK_CURSOR_TABLE = "_alyx_webhook_cursor"
CHANGES_TABLE = "_alyx_changes"
HISTORY_TABLE = "_alyx_migrations"
SYSTEM_TRACKING_TABLE = "_alyx_system_migrations"
CHANGE_DOCS_TABLE = "_alyx_change_docs"
ACTOR_TABLE = "_alyx_actor"
HOOK_CURSORS_TABLE = "_alyx_hook_cursors"
SCHEDULES_TABLE = "_alyx_schedules"
IDENTITIES_TABLE = "_alyx_identities"
OAUTH_FLOWS_TABLE = "_alyx_oauth_flows"
