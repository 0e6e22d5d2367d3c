"""Shared test set-up: hypothesis profiles and the markers that split the suite.

The `ci` hypothesis profile (40 examples a test) is the default, locally as in CI;
`HYPOTHESIS_PROFILE=dev` runs 200 examples a test to search harder.

Markers, so that a developer can run the fast part alone:

    make test PYTEST_ARGS='-m "not slow and not docker and not toolchain and not property"'

- `docker`: needs a Docker engine (the functions' docker backend);
- `toolchain`: builds or runs generated code with Go, tsc or Node.js;
- `property`: hypothesis property tests (any test that uses `@given`);
- `slow`: builds wheels, fuzzes a live server or runs long subprocesses.

`docker`, `toolchain` and `slow` are given per file in `_FILE_MARKERS` below (or with
`pytestmark` in the file); `property` is found on the test itself.
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
    # The admin UI in Chromium, several seconds a file (test_signin.py, test_deploys_page.py,
    # test_data_files.py and the OAuth browser test stay in the fast selection as its smoke test).
    "alyx_server/admin_ui/test_users_page.py": ("slow",),
    "alyx_server/admin_ui/test_data_browser.py": ("slow",),
    "alyx_server/admin_ui/test_security.py": ("slow",),
    "alyx_server/admin_ui/test_functions_logs.py": ("slow",),
    "alyx_server/admin_ui/test_schema_tokens_pages.py": ("slow",),
    # Terminal dashboards driven through Textual's pilot against a live server.
    "alyx_cli/tui/test_dashboard.py": ("slow",),
    "alyx_cli/tui/test_dashboard_screen.py": ("slow",),
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
