"""Function discovery: `functions/<name>.{js,mjs,py}` or `functions/<name>/index.{js,mjs,py}`,
each with its manifest `functions/<name>.yaml` beside it.

    runtime: python | node        (default: from the file's extension)
    timeout: 10s                  (default: functions.timeout)
    memory: 128MiB                (default: functions.memory)
    env: { KEY: value }           the only environment the function sees
    input:  { field: {type: ...} }   schema.yaml field syntax, checked before dispatch
    output: { field: {type: ...} }   checked on the way back
    rule: "auth != null"          CEL over auth, request and input; none: admins only
    network: false                outbound network (default off)
    privileged: false             database calls skip the rules
    job: { max_attempts: 5 }      also a job of the queue (functions/job_manifest.py)
    on, before, schedule, every, timezone, catch_up
                                  run on writes and on time (triggers.py)

A function's name is its file's (or folder's) name: a lower-case letter, then letters,
digits, `_` or `-` (`getStats`, `get_stats`, `get-stats`). It is the URL
`/api/functions/<name>` and a method of the generated clients, so two names that differ
only in case, `_` or `-` are refused: the clients (and case-insensitive file systems)
could not tell them apart.

`discover_functions` never stops at the first bad function: each problem (a manifest that
does not parse, a Python file with a syntax error, two sources for one name, a bad name)
is reported once, with its file and line, and the other functions are served.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from alyx_server.errors import Location, SchemaError
from alyx_server.functions.job_manifest import JobOptions, parse_job
from alyx_server.functions.triggers import (
    AfterHook,
    BeforeHook,
    Schedule,
    parse_after,
    parse_before,
    parse_schedule,
)
from alyx_server.functions.values import FieldSet
from alyx_server.schema.model import Field
from alyx_server.schema.validate import SchemaSource, expect_mapping, parse_field, reject_unknown
from alyx_server.tools.durations import parse_duration
from alyx_server.tools.sizes import parse_size
from alyx_server.tools.yaml_lines import YamlEntry, YamlError, YamlMapping, YamlScalar, kind_name, parse_yaml

__all__ = [
    "EXTENSIONS",
    "MANIFEST_KEYS",
    "NAME_RULE",
    "Defaults",
    "Discovery",
    "FunctionProblem",
    "FunctionSpec",
    "Runtime",
    "discover_functions",
    "parse_manifest",
]

Runtime = Literal["python", "node"]
EXTENSIONS: Mapping[str, Runtime] = MappingProxyType({".py": "python", ".js": "node", ".mjs": "node"})
MANIFEST_KEYS = (
    "runtime", "timeout", "memory", "env", "input", "output", "rule", "network", "privileged",
    "on", "before", "schedule", "every", "timezone", "catch_up", "job",
)  # fmt: skip
FUNCTION_NAME = re.compile(r"[a-z][A-Za-z0-9_-]*")
NAME_RULE = (
    "a function name starts with a lower-case letter, then letters, digits, _ or - (getStats, "
    "get_stats, get-stats): it is the URL /api/functions/<name> and a method of the generated clients"
)
# Options of schema.yaml fields that mean nothing for a function's input or output.
_COLLECTION_ONLY = ("primary", "unique", "index", "references", "onDelete", "onUpdate", "internal")
_MIN_MEMORY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a manifest leaves out: `functions.timeout` and `functions.memory`."""

    timeout: float = 30.0
    memory: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One discovered function and its manifest, ready to run."""

    name: str
    runtime: Runtime
    source: Path
    manifest: Path | None
    timeout: float
    memory: int
    env: Mapping[str, str] = field(default_factory=dict)
    input: FieldSet | None = None
    output: FieldSet | None = None
    rule: str | None = None
    rule_location: Location | None = None
    network: bool = False
    privileged: bool = False
    on: AfterHook | None = None
    before: BeforeHook | None = None
    schedule: Schedule | None = None
    job: JobOptions | None = None

    @property
    def folder(self) -> Path | None:
        """The function's own folder (`functions/<name>/`), or None for a single file."""
        return self.source.parent if self.source.stem == "index" else None


@dataclass(frozen=True, slots=True)
class FunctionProblem:
    """A function that cannot be served, and why (the message starts with file:line)."""

    name: str
    message: str
    file: Path


@dataclass(frozen=True, slots=True)
class Discovery:
    functions: Mapping[str, FunctionSpec]
    problems: tuple[FunctionProblem, ...]


def discover_functions(folder: Path, defaults: Defaults, *, root: Path | None = None) -> Discovery:
    """Every function under `folder`; file names in messages are relative to `root`."""
    if not folder.is_dir():
        return Discovery(MappingProxyType({}), ())
    shown = root if root is not None else folder.parent
    sources, problems, named = _sources(folder, shown)
    functions: dict[str, FunctionSpec] = {}
    for name, source in sorted(sources.items()):
        manifest = folder / f"{name}.yaml"
        try:
            spec = parse_manifest(name, source, manifest if manifest.is_file() else None, defaults, shown)
            _check_python_syntax(spec, shown)
        except SchemaError as e:
            problems.append(FunctionProblem(name, str(e), manifest if manifest.is_file() else source))
            continue
        functions[name] = spec
    for manifest in sorted(folder.glob("*.yaml")):
        # A source with a problem of its own has that one message, not a second one here.
        if manifest.stem not in named and not manifest.stem.startswith((".", "_")):
            message = (
                f"{_shown(manifest, shown)}: a manifest without a function: add "
                f"{manifest.stem}.py, {manifest.stem}.mjs or {manifest.stem}/index.mjs beside it"
            )
            problems.append(FunctionProblem(manifest.stem, message, manifest))
    return Discovery(MappingProxyType(functions), tuple(problems))


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _sources(folder: Path, shown: Path) -> tuple[dict[str, Path], list[FunctionProblem], set[str]]:
    """Name -> the one source of each servable function; the problems; every name found."""
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")) or entry.name == "node_modules":
            continue
        if entry.is_file() and entry.suffix in EXTENSIONS:
            found.setdefault(entry.stem, []).append(entry)
        elif entry.is_dir():
            for ext in EXTENSIONS:
                index = entry / f"index{ext}"
                if index.is_file():
                    found.setdefault(entry.name, []).append(index)
    sources: dict[str, Path] = {}
    problems: list[FunctionProblem] = []
    for name, paths in found.items():
        listed = ", ".join(_shown(p, shown) for p in paths)
        if len(paths) > 1:
            message = f"{_shown(paths[0], shown)}: function {name!r} has several sources ({listed}); keep one"
            problems.append(FunctionProblem(name, message, paths[0]))
        elif not FUNCTION_NAME.fullmatch(name):
            manifest = folder / f"{name}.yaml"
            also = f" and its manifest {_shown(manifest, shown)}" if manifest.is_file() else ""
            message = f"{_shown(paths[0], shown)}: {name!r} is not a valid function name: {NAME_RULE}"
            message += f"; rename it{also}"
            problems.append(FunctionProblem(name, message, paths[0]))
        else:
            sources[name] = paths[0]
    for name, others in _lookalikes(sources).items():
        source = sources.pop(name)
        listed = ", ".join(f"{other!r} ({_shown(found[other][0], shown)})" for other in others)
        message = (
            f"{_shown(source, shown)}: function {name!r} and {listed} differ only in case, _ or -, "
            "which the generated clients and case-insensitive file systems cannot tell apart; rename one"
        )
        problems.append(FunctionProblem(name, message, source))
    return sources, problems, set(found)


def _lookalikes(sources: Mapping[str, Path]) -> dict[str, list[str]]:
    """Each name that another one matches but for case, `_` and `-`, with those others."""
    groups: dict[str, list[str]] = {}
    for name in sorted(sources):
        groups.setdefault(re.sub(r"[_-]", "", name).lower(), []).append(name)
    return {n: [o for o in group if o != n] for group in groups.values() if len(group) > 1 for n in group}


def _check_python_syntax(spec: FunctionSpec, shown: Path) -> None:
    """A Python syntax error found at discovery, with its line (Node's show when it loads)."""
    if spec.runtime != "python":
        return
    try:
        compile(spec.source.read_bytes(), str(spec.source), "exec", dont_inherit=True)
    except SyntaxError as e:
        where = Location(_shown(spec.source, shown), e.lineno, e.offset)
        raise SchemaError(f"syntax error: {e.msg}", where, hint="the function cannot load") from e
    except (OSError, ValueError) as e:
        raise SchemaError(f"cannot read the function: {e}", Location(_shown(spec.source, shown))) from e


def parse_manifest(
    name: str, source: Path, manifest: Path | None, defaults: Defaults, shown: Path
) -> FunctionSpec:
    """The FunctionSpec of `source` with its manifest (None: every default, no rule)."""
    runtime = EXTENSIONS[source.suffix]
    if manifest is None:
        return FunctionSpec(name, runtime, source, None, defaults.timeout, defaults.memory)
    filename = _shown(manifest, shown)
    src = SchemaSource(filename)
    body = _read(src, manifest)
    if body is None:
        return FunctionSpec(name, runtime, source, manifest, defaults.timeout, defaults.memory)
    reject_unknown(src, body, "", MANIFEST_KEYS, "manifest key")
    declared = _runtime(src, body.get("runtime"), runtime, source)
    rule_entry = body.get("rule")
    rule = _rule(src, rule_entry)
    timeout = _amount(src, body.get("timeout"), parse_duration, defaults.timeout, (0.001, "1ms"))
    return FunctionSpec(
        name=name,
        runtime=declared,
        source=source,
        manifest=manifest,
        timeout=timeout,
        memory=int(_amount(src, body.get("memory"), parse_size, defaults.memory, (_MIN_MEMORY, "16MiB"))),
        env=_env(src, body.get("env")),
        input=_fields(src, body.get("input"), "input"),
        output=_fields(src, body.get("output"), "output"),
        rule=rule,
        rule_location=src.location(rule_entry.value, "rule") if rule and rule_entry else None,
        network=_flag(src, body.get("network")),
        privileged=_flag(src, body.get("privileged")),
        on=parse_after(src, body.get("on")),
        before=parse_before(src, body.get("before")),
        schedule=parse_schedule(src, body),
        job=parse_job(src, body.get("job"), timeout),
    )


def _read(src: SchemaSource, path: Path) -> YamlMapping | None:
    try:
        root = parse_yaml(path.read_text(encoding="utf-8"))
    except YamlError as e:
        where = Location(src.filename, e.line, e.column)
        raise SchemaError(f"invalid YAML: {e.message}", where, hint="fix the YAML syntax here") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SchemaError(f"cannot read the manifest: {e}", Location(src.filename)) from e
    if root is None or (isinstance(root, YamlScalar) and root.value is None):
        return None
    return expect_mapping(src, root, "", "a function manifest", "runtime: python")


def _scalar(src: SchemaSource, entry: YamlEntry, kinds: tuple[type, ...], want: str) -> object:
    node = entry.value
    if not isinstance(node, YamlScalar) or not isinstance(node.value, kinds):
        message = f"{entry.name} must be {want}, not {kind_name(node)}"
        raise src.error(message, node, entry.name, f"write {want}")
    return node.value


def _runtime(src: SchemaSource, entry: YamlEntry | None, inferred: Runtime, source: Path) -> Runtime:
    if entry is None:
        return inferred
    value = _scalar(src, entry, (str,), "python or node")
    if value not in ("python", "node"):
        raise src.error(f"unknown runtime {value!r}", entry.value, "runtime", "runtimes are: python, node")
    if value != inferred:
        raise src.error(
            f"runtime {value} cannot run {source.name}",
            entry.value, "runtime", f"{source.suffix} files run on {inferred}",
        )  # fmt: skip
    return inferred


def _amount(
    src: SchemaSource,
    entry: YamlEntry | None,
    parse: Callable[[str], float],
    default: float,
    minimum: tuple[float, str],
) -> float:
    if entry is None:
        return default
    example = "a duration such as 10s" if entry.name == "timeout" else "a size such as 128MiB"
    raw = _scalar(src, entry, (str, int, float), example)
    try:
        value = float(parse(str(raw)))
    except ValueError as e:
        message = f"{raw!r} is not {example}"
        raise src.error(message, entry.value, entry.name, "e.g. timeout: 10s, memory: 128MiB") from e
    if value < minimum[0]:
        message = f"{entry.name} {raw} is too small"
        raise src.error(message, entry.value, entry.name, f"the least is {minimum[1]}")
    return value


def _env(src: SchemaSource, entry: YamlEntry | None) -> Mapping[str, str]:
    if entry is None or (isinstance(entry.value, YamlScalar) and entry.value.value is None):
        return MappingProxyType({})
    body = expect_mapping(src, entry.value, "env", "env", "env: { API_URL: https://example.com }")
    out: dict[str, str] = {}
    for item in body:
        node = item.value
        if not isinstance(node, YamlScalar) or isinstance(node.value, bytes):
            raise src.error(f"env.{item.name} must be a plain value", node, f"env.{item.name}", "quote it")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", item.name):
            message = f"{item.name!r} is not a variable name"
            raise src.error(message, item.key, f"env.{item.name}", "use A-Z, a-z, 0-9 and _")
        value = node.value
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out[item.name] = "" if value is None else text
    return MappingProxyType(out)


def _fields(src: SchemaSource, entry: YamlEntry | None, what: str) -> FieldSet | None:
    if entry is None or (isinstance(entry.value, YamlScalar) and entry.value.value is None):
        return None
    body = expect_mapping(src, entry.value, what, what, f"{what}: {{ post_id: {{ type: uuid }} }}")
    fields: list[Field] = []
    for item in body:
        path = f"{what}.{item.name}"
        if isinstance(item.value, YamlMapping):
            for option in item.value:
                if option.name in _COLLECTION_ONLY:
                    raise src.error(
                        f"{option.name} is a collection field option, not one of a function's {what}",
                        option.key, f"{path}.{option.name}",
                        "input and output fields take type, nullable, default and validations",
                    )  # fmt: skip
        fields.append(parse_field(src, item, path))
    return FieldSet(tuple(fields), what)


def _rule(src: SchemaSource, entry: YamlEntry | None) -> str | None:
    if entry is None or (isinstance(entry.value, YamlScalar) and entry.value.value is None):
        return None
    value = _scalar(src, entry, (str,), 'a CEL expression such as "auth != null"')
    text = str(value).strip()
    if not text:
        raise src.error("rule is empty", entry.value, "rule", 'write a CEL expression such as "auth != null"')
    return text


def _flag(src: SchemaSource, entry: YamlEntry | None) -> bool:
    if entry is None:
        return False
    return bool(_scalar(src, entry, (bool,), "true or false"))
