"""What `alyx dev` does with each change it sees, in the server's own process and loop.

    alyx.yaml      reloaded; the keys marked "live" are swapped in, the others named as
                   needing a restart (a bad file is shown; the running settings stay)
    schema.yaml    loaded and diffed with the database; the safe part is applied on the
    migrations/    live writer (new migration files too), then clients regenerate in
                   dev.generate.languages into dev.generate.output. A destructive change,
                   a syntax error or a bad rule is shown; the old schema keeps serving.
    functions/     the changed functions reload (fresh workers on the new code); a syntax
                   error is shown and the others keep running. Manifests feed the clients,
                   so they regenerate too.

Each change becomes one `ReloadLine`, printed by `DevConsole` and sent to dashboards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from alyx_cli.dev.console import DevConsole, ReloadLine
from alyx_cli.dev.watcher import ProjectChanges, ProjectFiles, watch_project
from alyx_server.api.admin_live import announce, reload_functions, reload_schema, reload_settings
from alyx_server.api.runtime import RUNTIME
from alyx_server.config import Settings, load_settings
from alyx_server.errors import AlyxError
from alyx_server.functions import Defaults, discover_functions
from alyx_server.schema.loader import load_schema
from alyx_server.schema.model import Schema

__all__ = ["DevReloader", "dev_loop_context", "regenerate_clients"]

log = logging.getLogger("alyx.dev")


def regenerate_clients(settings: Settings, schema: Schema) -> int:
    """Write the clients of dev.generate.languages into dev.generate.output; files written."""
    from alyx_cli.codegen import generate

    out = settings.dev.generate.output
    found = discover_functions(settings.functions.path, Defaults(), root=settings.project_dir)
    report = generate(schema, found.functions, settings.dev.generate.languages, out)
    return len(report.written) + len(report.removed)


@dataclass(slots=True)
class DevReloader:
    """Applies `ProjectChanges` to a running application; see the module docstring."""

    app: web.Application
    overrides: Mapping[str, object] = field(default_factory=dict)
    console: DevConsole = field(default_factory=DevConsole)

    @property
    def settings(self) -> Settings:
        return self.app[RUNTIME].settings

    @property
    def files(self) -> ProjectFiles:
        s = self.settings
        return ProjectFiles(s.project_dir, s.functions.path)

    async def apply(self, changes: ProjectChanges) -> list[ReloadLine]:
        """Handle one burst of changes: configuration first, then schema, then functions."""
        lines: list[ReloadLine] = []
        if changes.config:
            lines.append(await self._config())
        if changes.schema or changes.migrations:
            subject = " and ".join(["schema.yaml"] * changes.schema + list(changes.migrations))
            lines.append(await self._schema(f"{subject} changed"))
        if changes.functions:
            lines.append(await self._functions(changes))
        for line in lines:
            self.console.show(line)
            announce(self.app, line.what, line.ok, line.summary)
        return lines

    # -- alyx.yaml -------------------------------------------------------------------------
    async def _config(self) -> ReloadLine:
        subject = "alyx.yaml changed"
        s = self.settings
        try:
            new = await asyncio.to_thread(load_settings, s.project_dir, mode=s.mode, overrides=self.overrides)
        except AlyxError as e:
            return ReloadLine(subject, ("not applied",), str(e), "config")
        result = await reload_settings(self.app, new)
        parts = [f"{key} applied" for key in result.applied]
        if result.restart:
            parts.append(f"restart to apply {', '.join(result.restart)}")
        return ReloadLine(subject, tuple(parts) or ("nothing to apply",), None, "config")

    # -- schema.yaml and migrations/ -------------------------------------------------------
    async def _schema(self, subject: str) -> ReloadLine:
        path = self.settings.project_dir / "schema.yaml"
        try:
            schema = await asyncio.to_thread(load_schema, path)
            result = await reload_schema(self.app, schema)
        except AlyxError as e:
            return ReloadLine(subject, ("not applied",), str(e))
        if result.refused is not None:
            return ReloadLine(subject, (*result.changes, "not applied"), result.refused)
        parts = list(result.changes)
        if result.migrations:
            parts.extend(f"{name} applied" for name in result.migrations)
        if result.changes or result.migrations:
            parts.append("migration applied")
        else:
            parts.append("no change to apply")
        if result.dropped_subscriptions:
            parts.append(f"{result.dropped_subscriptions} subscription(s) dropped")
        return await self._with_clients(subject, parts, schema)

    async def _with_clients(self, subject: str, parts: list[str], schema: Schema) -> ReloadLine:
        try:
            written = await asyncio.to_thread(regenerate_clients, self.settings, schema)
        except (AlyxError, OSError, ImportError) as e:
            return ReloadLine(subject, (*parts, "clients not regenerated"), str(e))
        parts.append("clients regenerated" if written else "clients unchanged")
        return ReloadLine(subject, tuple(parts))

    # -- functions/ ------------------------------------------------------------------------
    async def _functions(self, changes: ProjectChanges) -> ReloadLine:
        shown = changes.function_paths
        subject = f"{shown[0] if len(shown) == 1 else ', '.join(shown)} changed"
        result = await reload_functions(self.app, sorted(changes.functions))
        parts: list[str] = []
        problems: list[str] = []
        for name in sorted(changes.functions):
            if name not in result.outcome:
                parts.append(f"{name} removed")
            elif result.outcome[name] is None:
                parts.append(f"{name} reloaded")
            else:
                parts.append(f"{name} not served")
                problems.append(str(result.outcome[name]))
        line = await self._with_clients(subject, parts, self.app[RUNTIME].catalog.schema)
        if problems:
            return ReloadLine(line.subject, line.parts, "\n".join(problems), "functions")
        return ReloadLine(line.subject, line.parts, line.problem, "functions")

    # -- the loop --------------------------------------------------------------------------
    async def _initial_clients(self) -> None:
        """Write the clients for the schema the server started with (only changed files)."""
        settings = self.settings
        try:
            written = await asyncio.to_thread(regenerate_clients, settings, self.app[RUNTIME].catalog.schema)
        except (AlyxError, OSError, ImportError) as e:
            self.console.show(ReloadLine("clients not generated", (), str(e)))
            return
        if written:
            languages = ", ".join(settings.dev.generate.languages)
            self.console.show(ReloadLine(f"clients generated ({languages})"))

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the project until `stop` is set, applying each burst of changes; bring
        the clients up to date meanwhile.

        The watch is in place once this task first yields to the loop (watchfiles sets
        it up before its first wait), so `dev_loop_context` starts watching before the
        server listens: no save made after the banner is missed.
        """
        clients = asyncio.get_running_loop().create_task(self._initial_clients())
        try:
            async for changes in watch_project(self.files, stop):
                await clients
                try:
                    await self.apply(changes)
                except Exception:
                    log.exception("the dev loop could not apply a change; it keeps watching")
        finally:
            clients.cancel()


def dev_loop_context(
    overrides: Mapping[str, object], console: DevConsole | None = None
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    """A cleanup context for the application: the dev loop runs while the server does."""

    @contextlib.asynccontextmanager
    async def loop(app: web.Application) -> AsyncIterator[None]:
        reloader = DevReloader(app, overrides, console or DevConsole())
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(reloader.run(stop), name="alyx-dev-loop")
        await asyncio.sleep(0)  # the task sets up its watch before the server listens
        try:
            yield
        finally:
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return loop
