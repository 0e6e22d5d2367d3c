"""Shared test set-up: hypothesis profiles and the markers that split the suite.

The `ci` hypothesis profile (40 examples a test) is the default, locally as in CI;
`HYPOTHESIS_PROFILE=dev` runs 200 examples a test to search harder.

Markers, so that a developer can run the fast part alone:

    make test PYTEST_ARGS='-n 2 -m "not slow and not docker and not toolchain and not property"'

(`-n 2`: pytest-xdist runs the selection in two processes.)

- `docker`: needs a Docker engine (the functions' docker backend);
- `toolchain`: builds or runs generated code with Go, tsc or Node.js;
- `property`: hypothesis property tests (any test that uses `@given`);
- `slow`: what takes many times a typical test: servers or alyx commands started as
  processes, a browser, the s3 storage backend (on moto), fuzzing, wheels, and tests of
  many requests, rows or cases.

`docker`, `toolchain` and `slow` are given per file or per test function in `_FILE_MARKERS`
below (or with `pytestmark` in the file, or on a fixture's parameter, as the storage tests'
`s3` backend); `property` is found on the test itself. tests/test_markers.py checks that
each entry of `_FILE_MARKERS` names a test that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

TESTS = Path(__file__).resolve().parent


def _slow(path: str, *names: str) -> dict[str, tuple[str, ...]]:
    """`slow` for each of the test functions `names` of the file `path`."""
    return {f"{path}::{name}": ("slow",) for name in names}


# Markers by file (a path relative to tests/) or by test function ("path::name").
_FILE_MARKERS: dict[str, tuple[str, ...]] = {
    # A private Docker engine and the functions' base images.
    "alyx_server/functions/test_docker_backend.py": ("docker",),
    # Live servers as processes of their own, fuzzed or attacked for many requests.
    "alyx_server/api/test_schemathesis.py": ("slow",),
    "alyx_server/api/test_regex_safety.py": ("slow",),
    # alyx dev as a process of its own, sent a 200 MB upload while its memory is sampled.
    "alyx_server/storage/test_upload_memory.py": ("slow",),
    # A moto S3 server of its own, killed in the middle of an upload and started again.
    "alyx_server/storage/test_s3_outage.py::test_s3_stopped_mid_upload_is_503": ("slow",),
    "alyx_server/storage/test_sweeper.py::test_kill_9_mid_upload_then_sweep": ("slow",),
    # alyx dev/serve (or another alyx command) started as a process, once or more per test.
    "alyx_cli/test_malformed_files.py": ("slow",),
    "alyx_cli/test_serve.py": ("slow",),
    "alyx_server/automation/test_hooks_kill.py": ("slow",),
    "alyx_server/automation/test_workers_automation.py": ("slow",),
    "alyx_server/api/test_peers.py": ("slow",),
    "alyx_server/admin_ui/test_dev_link.py": ("slow",),
    "alyx_server/admin_ui/test_functions_workers.py": ("slow",),
    "alyx_server/api/test_shared_limits_metrics.py": ("slow",),
    "alyx_cli/tui/test_dashboard_workers.py": ("slow",),
    "alyx_server/workers/test_supervisor.py": ("slow",),
    "alyx_server/jobs/test_kill.py": ("slow",),
    "alyx_server/workers/test_metrics_folders.py": ("slow",),
    "alyx_cli/test_serve_children.py": ("slow",),
    "alyx_cli/test_serve_port.py": ("slow",),
    "alyx_cli/test_log_injection.py": ("slow",),
    "alyx_cli/test_schema_rules_refused.py": ("slow",),
    "alyx_cli/dev/test_dev_loop.py": ("slow",),
    "alyx_server/db/test_crash.py": ("slow",),
    "alyx_server/db/test_processes.py": ("slow",),
    "alyx_cli/test_serve_one_database.py": ("slow",),
    "alyx_cli/test_init_server.py": ("slow",),
    # docs/deploy.md: alyx serve, alyx dev and Debian's caddy as processes.
    "test_deploy_guide.py": ("slow",),
    "test_readme.py": ("slow",),
    "test_docs_examples.py::test_shell_examples_run": ("slow",),
    "test_docs_examples.py::test_the_readme_tour_runs_as_written": ("slow",),
    # The generated Python client against a live alyx dev (the other languages need their
    # toolchain, marked by fixture below).
    "alyx_cli/codegen/test_live_python.py": ("slow",),
    "alyx_cli/codegen/test_live_files.py": ("slow",),
    "alyx_cli/codegen/test_live_oauth.py": ("slow",),
    "alyx_cli/codegen/test_live_jobs.py": ("slow",),
    # One alyx command as a process of its own (a second or more each, the imports included).
    **_slow("alyx_cli/test_migrate.py", "test_the_real_program_applies_and_reports_status"),
    **_slow(
        "alyx_cli/test_db.py",
        "test_the_real_program_seeds_dumps_and_fails_in_one_line",
        "test_on_a_terminal_reset_asks_and_no_keeps_the_data",
    ),
    **_slow("alyx_cli/test_admin.py", "test_admin_create_as_a_process"),
    **_slow("alyx_cli/test_init.py", "test_the_alyx_process_creates_and_refuses"),
    **_slow("alyx_cli/codegen/test_generate.py", "test_generate_imports_no_web_stack"),
    **_slow("alyx_server/storage/test_sweeper.py", "test_a_bad_grace_is_one_clear_line"),
    **_slow(
        "alyx_server/realtime/test_revocation.py",
        "test_a_token_revoked_by_another_process_ends_its_socket",
    ),
    **_slow(
        "alyx_server/automation/test_before_and_schedules.py",
        "test_one_run_at_a_time_with_two_servers_on_one_file",
    ),
    # Every import of every file of the repository, read and resolved.
    "test_dependencies.py": ("slow",),
    # Many requests or rows: the batch route over the whole lookups matrix (its REST matrix
    # stays fast), 1,000 writes through hooks, 536 CEL extension cases, role changes on live
    # sockets, workers timed out and restarted, jobs and functions that wait on each other.
    **_slow("alyx_server/rules/test_lookups.py", "test_matrix_over_batch"),
    **_slow(
        "alyx_server/automation/test_hooks.py",
        "test_every_event_of_1000_mixed_writes_arrives_once_in_order",
    ),
    **_slow(
        "alyx_server/rules/test_conformance.py",
        "test_every_extension_file_runs",
        "test_every_extension_case_passes_or_is_a_listed_skip",
        "test_skipped_extension_cases_raise_rather_than_answer",
        "test_extension_cases_in_sqlite_agree",
    ),
    **_slow(
        "alyx_server/realtime/test_revocation.py",
        "test_a_demoted_admin_keeps_only_what_the_new_role_may_read",
        "test_a_new_role_rebinds_a_live_socket_but_never_resumes_an_expired_one",
    ),
    **_slow("alyx_server/functions/test_invoke.py", "test_timeout_crash_and_raise_then_fresh_workers"),
    **_slow(
        "alyx_server/functions/test_pools.py",
        "test_a_function_that_cannot_load_is_reported_and_the_others_work",
    ),
    **_slow("alyx_server/jobs/test_queue.py", "test_concurrency_is_respected"),
    # The admin UI in Chromium, a browser started for each test (test_signin.py's sign-in and
    # sign-out and the OAuth browser test stay in the fast selection as its smoke test).
    **_slow(
        "alyx_server/admin_ui/test_signin.py",
        "test_a_wrong_password_is_refused",
        "test_a_user_who_is_not_an_admin_gets_403_and_no_page",
    ),
    "alyx_server/admin_ui/test_deploys_page.py": ("slow",),
    "alyx_server/admin_ui/test_data_files.py": ("slow",),
    "alyx_server/admin_ui/test_users_page.py": ("slow",),
    "alyx_server/admin_ui/test_data_browser.py": ("slow",),
    "alyx_server/admin_ui/test_security.py": ("slow",),
    "alyx_server/admin_ui/test_functions_logs.py": ("slow",),
    "alyx_server/admin_ui/test_schema_tokens_pages.py": ("slow",),
    # Terminal dashboards driven through Textual's pilot against a live server.
    "alyx_cli/tui/test_dashboard.py": ("slow",),
    "alyx_cli/tui/test_dashboard_screen.py": ("slow",),
    "alyx_cli/tui/test_dashboard_functions.py": ("slow",),
    # A hypothesis state machine (run_state_machine_as_test: no @given to find).
    "alyx_server/realtime/test_model.py": ("property",),
    # The guide followed in Chromium, with the generated client compiled by tsc.
    "test_getting_started.py": ("slow", "toolchain"),
}
# Fixtures that need a compiler or a type checker (tests/alyx_cli/codegen/conftest.py).
_TOOLCHAIN_FIXTURES = frozenset({"tsc", "go", "tool_cache"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test `docker`, `toolchain`, `property` or `slow` (see the docstring)."""
    for item in items:
        path = Path(str(item.path)).resolve()
        if TESTS in path.parents:
            where = path.relative_to(TESTS).as_posix()
            function = f"{where}::{getattr(item, 'originalname', item.name)}"
            for name in (*_FILE_MARKERS.get(where, ()), *_FILE_MARKERS.get(function, ())):
                item.add_marker(name)
        if _TOOLCHAIN_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("toolchain")
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            item.add_marker("property")
