"""How `alyx deploy` shows a plan: what the server answered to prepare, as text for people.

The plan is the JSON of `POST /api/admin/deploy/prepare` (docs/deploy.md). Sections with
nothing in them are left out; destructive steps and keys that need a restart are shown in
red, and the backup the server takes before a destructive deploy is said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Group
from rich.text import Text

__all__ = ["render_plan"]

_WARN = "bold red"


def render_plan(plan: Mapping[str, object], target: str) -> Group:
    """The plan as Rich renderables: one headline, then one section per kind of change."""
    lines: list[Text] = []
    version = plan.get("version")
    head = Text("Deploy plan for ", style="bold")
    head.append(target)
    if version is not None:
        head.append(f" (version {version})")
    lines.append(head)
    if plan.get("empty"):
        lines.append(Text("  nothing to change: the server already runs this project"))
        return Group(*lines)
    schema = _mapping(plan.get("schema"))
    changes = [_mapping(change) for change in _list(schema.get("changes"))]
    if changes:
        lines.append(Text("Schema changes:", style="bold"))
        for change in changes:
            style = _WARN if change.get("destructive") else ""
            lines.append(
                Text(f"  {'! ' if change.get('destructive') else ''}{change.get('text', '')}", style=style)
            )
    migrations = _list(schema.get("migrations"))
    if migrations:
        lines.append(Text("Migrations to run:", style="bold"))
        lines.extend(Text(f"  {name}") for name in migrations)
    functions = _mapping(plan.get("functions"))
    marks = (("added", "+", "green"), ("changed", "~", "yellow"), ("removed", "-", "red"))
    if any(_list(functions.get(kind)) for kind, _, _ in marks):
        lines.append(Text("Functions:", style="bold"))
        for kind, mark, style in marks:
            for name in _list(functions.get(kind)):
                lines.append(Text(f"  {mark} {name} ({kind})", style=style))
    config = [_mapping(change) for change in _list(_mapping(plan.get("config")).get("changed"))]
    if config:
        lines.append(Text("Config keys:", style="bold"))
        for change in config:
            line = Text(f"  ~ {change.get('key')}: {_show(change.get('from'))} -> {_show(change.get('to'))}")
            if change.get("restart"):
                line.append(" (needs a restart of the server)", style=_WARN)
            lines.append(line)
    warnings = _list(plan.get("warnings"))
    if warnings:
        lines.append(Text("Warnings:", style=_WARN))
        lines.extend(Text(f"  ! {warning}", style=_WARN) for warning in warnings)
    if plan.get("backup"):
        lines.append(
            Text("A copy of the database is taken before this deploy (for rollback --restore-backup).")
        )
    return Group(*lines)


def _show(value: object) -> str:
    return "(unset)" if value is None else str(value)


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[object]:
    return value if isinstance(value, list) else []
