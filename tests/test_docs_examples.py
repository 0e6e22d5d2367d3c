"""Every example in docs/*.md and the README's "A short tour", checked or run as written.

The fenced blocks with a language are examples; a block without one is a synopsis or
what a command prints, and is left alone. Each example is handled by its language:

- `json`: parsed (one document, or one document per line);
- `yaml`: loaded by what reads such a file: a whole `schema.yaml` by the schema loader
  and its rules compiled; a fragment of one (`rules:`, `indexes:`, a field) inside the
  example schema of docs/schema.md; a migration file by the migration loader; a function
  manifest by the manifest loader, beside the page's function;
- `python`, `js`: parsed (Python with top-level `await`; JavaScript by `node --check`);
- `sh`: run by bash in a scaffolded project (a runner below per block sets the project up
  the way the text around the block describes), and what it did is asserted.

A block that cannot run as written (it needs root, a remote target, or a terminal) is
marked in the page by a comment on the line before it, `<!-- not-run: reason -->`; the
reasons are listed by a test, and each needs a reason. docs/getting-started.md is followed
by tests/test_getting_started.py in a real browser, so it is left out here.
"""

from __future__ import annotations

import ast
import base64
import datetime
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from joserfc.jwk import ECKey

from alyx_cli.main import cli
from alyx_server.config import load_settings
from alyx_server.functions import Defaults
from alyx_server.functions.manifest import parse_manifest
from alyx_server.migrations.files import parse_migration
from alyx_server.rules.load import compile_schema_rules
from alyx_server.schema.loader import parse_schema
from tests.servers import AlyxProcess, cli_environment, free_port, port_is_free

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
README = REPO / "README.md"
BIN = Path(sys.executable).parent
FOLLOWED_ELSEWHERE = {"getting-started.md"}
NOT_RUN = re.compile(r"<!-- not-run: (?P<reason>.*?) -->")
FENCE = re.compile(r"^```(?P<language>\S*)\s*$")


@dataclass(frozen=True)
class Example:
    """One fenced block of a page, with the not-run reason written before it, if any."""

    page: str
    line: int
    language: str
    text: str
    not_run: str | None

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def page_examples(path: Path) -> list[Example]:
    """The fenced blocks of page `path` (a block's line is its opening fence's)."""
    return examples_in(path.read_text(encoding="utf-8"), path.name)


def examples_in(text: str, label: str, first_line: int = 1) -> list[Example]:
    """The fenced blocks of markdown `text`, its first line numbered `first_line`."""
    lines = text.splitlines()
    found: list[Example] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = i + 1
        while not lines[end].startswith("```"):
            end += 1
        before = NOT_RUN.fullmatch(lines[i - 1].strip()) if i > 0 else None
        body = "\n".join(lines[i + 1 : end]) + "\n"
        reason = before.group("reason") if before else None
        found.append(Example(label, first_line + i, opening.group("language"), body, reason))
        i = end + 1
    return found


def all_examples() -> list[Example]:
    pages = sorted(p for p in DOCS.glob("*.md") if p.name not in FOLLOWED_ELSEWHERE)
    return [ex for page in pages for ex in page_examples(page) if ex.language]


def examples_of(language: str) -> list[Example]:
    return [ex for ex in all_examples() if ex.language == language and ex.not_run is None]


def one(page: str, language: str, contains: str) -> Example:
    """The one example of `page` in `language` whose text holds `contains`."""
    hits = [ex for ex in page_examples(DOCS / page) if ex.language == language and contains in ex.text]
    assert len(hits) == 1, f"{page}: expected one {language} block with {contains!r}, found {len(hits)}"
    return hits[0]


# --- running the command line -------------------------------------------------------------


def _env() -> dict[str, str]:
    """No ALYX_* variable of the developer's; the virtual environment's bin first on PATH."""
    return cli_environment(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", NO_COLOR="1")


def sh(script: str, cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`script` run by `bash -e` in `cwd`, with the virtual environment's bin first on PATH."""
    done = subprocess.run(
        ["bash", "-e"], input=script, capture_output=True, text=True, cwd=cwd, env=_env(), timeout=300
    )
    if check:
        assert done.returncode == 0, f"{script}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def blog(tmp_path: Path, *, migrated: bool = True) -> Path:
    """A blog project in tmp_path/app, its database migrated unless told otherwise."""
    sh("alyx init app -t blog" + ("\ncd app && alyx migrate apply" if migrated else ""), tmp_path)
    return tmp_path / "app"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


# --- the checks of each language --------------------------------------------------------------


def _json_documents(text: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("example", examples_of("json"), ids=lambda ex: ex.name)
def test_json_examples_parse(example: Example) -> None:
    try:
        documents = _json_documents(example.text)
    except json.JSONDecodeError as e:
        pytest.fail(f"{example.name}: not JSON (one document, or one per line): {e}")
    assert documents, example.name


def _base_schema() -> dict[str, Any]:
    """docs/schema.md's example schema, which the pages' fragments are written against."""
    base: dict[str, Any] = yaml.safe_load(one("schema.md", "yaml", "collections:").text)
    return base


def _check_schema(data: dict[str, Any], label: str) -> None:
    schema = parse_schema(yaml.safe_dump(data, sort_keys=False), filename=label)
    compile_schema_rules(schema)


def _check_manifest(example: Example, tmp_path: Path) -> None:
    function = one(example.page, "python", "define_function")
    name = re.search(r"^# functions/(\w+)\.py$", function.text, flags=re.MULTILINE)
    assert name, f"{function.name}: the function's first line names its file"
    source = tmp_path / "functions" / f"{name.group(1)}.py"
    source.parent.mkdir()
    source.write_text(function.text, encoding="utf-8")
    manifest = source.with_suffix(".yaml")
    manifest.write_text(example.text, encoding="utf-8")
    spec = parse_manifest(name.group(1), source, manifest, Defaults(), tmp_path)
    assert spec.rule == "auth != null" and spec.input and spec.output


def _check_automation_manifest(example: Example, tmp_path: Path) -> None:
    """A hook or schedule manifest (docs/automation.md) parses, against a stand-in function."""
    source = tmp_path / "functions" / "example.py"
    source.parent.mkdir()
    source.write_text("", encoding="utf-8")
    manifest = source.with_suffix(".yaml")
    manifest.write_text(example.text, encoding="utf-8")
    spec = parse_manifest("example", source, manifest, Defaults(), tmp_path)
    assert spec.on or spec.before or spec.schedule or spec.job, example.name


def _check_webhooks_yaml(example: Example, tmp_path: Path) -> None:
    """alyx.yaml's webhooks (docs/automation.md): loaded as the server loads them."""
    (tmp_path / "alyx.yaml").write_text(example.text, encoding="utf-8")
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    environ = {name: secret for name in re.findall(r"\$\{(\w+)\}", example.text)}
    settings = load_settings(tmp_path, mode="dev", environ=environ)
    assert settings.webhook_targets, example.name


def _check_alyx_yaml(example: Example, tmp_path: Path) -> None:
    """An alyx.yaml (docs/auth.md's OAuth providers): loaded as the server loads it, with
    each `${VAR}` set and each key file it names made."""
    for key_file in re.findall(r"private_key_file: (\S+)", example.text):
        (tmp_path / key_file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key_file).write_text(ECKey.generate_key("P-256").as_pem().decode(), encoding="utf-8")
    (tmp_path / "alyx.yaml").write_text(example.text, encoding="utf-8")
    environ = {name: "a-secret" for name in re.findall(r"\$\{(\w+)\}", example.text)}
    settings = load_settings(tmp_path, mode="dev", environ=environ)
    assert settings.oauth_providers, example.name


def check_yaml(example: Example, tmp_path: Path) -> None:
    data = yaml.safe_load(example.text)
    assert isinstance(data, dict), f"{example.name}: expected a mapping"
    if "auth" in data:
        _check_alyx_yaml(example, tmp_path)
    elif "collections" in data:
        _check_schema(data, example.name)
    elif "operations" in data:
        path = Path(f"{data['version']:03d}_{data['name']}.yaml")
        migration = parse_migration(example.text.encode(), path=path, label=example.name)
        assert len(migration.steps) == len(data["operations"])
    elif "runtime" in data:
        _check_manifest(example, tmp_path)
    elif "webhooks" in data:
        _check_webhooks_yaml(example, tmp_path)
    elif "storage" in data:  # alyx.yaml's file storage (docs/files.md)
        (tmp_path / "alyx.yaml").write_text(example.text, encoding="utf-8")
        settings = load_settings(tmp_path, mode="dev", environ={})
        assert settings.storage.backend == data["storage"].get("backend", "local"), example.name
    elif set(data) & {"on", True, "before", "schedule", "every", "job"}:  # YAML 1.1 loads `on:` as True
        _check_automation_manifest(example, tmp_path)
    else:
        base = _base_schema()
        posts = base["collections"]["posts"]
        if set(data) <= {"rules", "indexes"}:
            posts.update(data)
        else:
            posts["fields"].update(data)
        _check_schema(base, example.name)


@pytest.mark.parametrize("example", examples_of("yaml"), ids=lambda ex: ex.name)
def test_yaml_examples_load(example: Example, tmp_path: Path) -> None:
    check_yaml(example, tmp_path)


@pytest.mark.parametrize("example", examples_of("python"), ids=lambda ex: ex.name)
def test_python_examples_parse(example: Example) -> None:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    compile(example.text, example.name, "exec", flags=flags)


@pytest.mark.parametrize("example", examples_of("js"), ids=lambda ex: ex.name)
def test_javascript_examples_parse(example: Example, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "Node.js is missing: make test installs Debian's nodejs"
    module = tmp_path / "example.mjs"
    module.write_text(example.text, encoding="utf-8")
    done = subprocess.run([node, "--check", str(module)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{example.name}: {done.stderr}"


# --- the shell blocks, one runner each -------------------------------------------------------


def run_init(example: Example, tmp_path: Path) -> None:
    sh(example.text, tmp_path)
    assert "posts:" in (tmp_path / "myapp" / "schema.yaml").read_text()
    assert "todos:" in (tmp_path / "schema.yaml").read_text()


def run_migrate(example: Example, tmp_path: Path) -> None:
    project = blog(tmp_path)
    schema = project / "schema.yaml"
    schema.write_text(re.sub(r"^      slug:.*\n", "", schema.read_text(), flags=re.MULTILINE))
    out = sh(example.text, project).stdout
    assert "BLOCKED" in out
    assert (project / "migrations" / "001_drop_slug.yaml").is_file()
    assert "applied 001_drop_slug" in out
    assert "rolled back 001_drop_slug" in out and "rolled back auto" in out


def run_db(example: Example, tmp_path: Path) -> None:
    sh("alyx init app", tmp_path)
    project = tmp_path / "app"
    (project / "schema.yaml").write_text(one("cli.md", "yaml", "authors:").text)
    seed = one("cli.md", "json", '"authors"')
    (project / "seed.json").write_text(seed.text)
    sh("alyx migrate apply", project)
    out = sh(example.text, project).stdout
    assert out.count("seeded 2 collections, 2 docs") == 2, out
    assert yaml.safe_load((project / "backup.yaml").read_text())["authors"][0]["name"] == "Ada"
    assert (project / "backups" / f"{datetime.date.today():%Y-%m-%d}.db").is_file()
    with sqlite3.connect(project / "data" / "alyx.db") as conn:
        assert conn.execute("SELECT name FROM authors").fetchall() == [("Ada",)]
        assert conn.execute("SELECT title FROM posts").fetchall() == [("Hello",)]


def run_serve(example: Example, tmp_path: Path) -> None:
    project = blog(tmp_path)
    port = 8090 if port_is_free(8090) else free_port()
    script = example.text.replace("-p 8090", f"-p {port}")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", script],
            cwd=project,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for _ in range(600):
            assert server.poll() is None, log.read_text()
            if _answers(f"http://127.0.0.1:{port}/health/ready"):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"alyx serve did not get ready:\n{log.read_text()}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    served = log.read_text()
    assert f"serving {project} at http://127.0.0.1:{port}" in served, served


def run_workers(example: Example, tmp_path: Path) -> None:
    """docs/workers.md: `alyx serve --workers 2` answers from both workers, then stops on SIGTERM."""
    project = blog(tmp_path)
    port = 8090 if port_is_free(8090) else free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", example.text.replace("-p 8090", f"-p {port}")],
            cwd=project, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        for _ in range(600):
            assert server.poll() is None, log.read_text()
            if "(serve, 2 workers)" in log.read_text():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"alyx serve --workers 2 did not get ready:\n{log.read_text()}")
        seen = set()
        for _ in range(600):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
                seen.add(answer.headers["X-Alyx-Worker"])
            if seen == {"1", "2"}:
                break
            time.sleep(0.05)  # worker 2 starts once worker 1 is ready
        assert seen == {"1", "2"}, seen
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert server.returncode == 0, log.read_text()
    assert f"serving {project} at http://127.0.0.1:{port} (serve, 2 workers)" in log.read_text()


def run_generate(example: Example, tmp_path: Path) -> None:
    project = blog(tmp_path, migrated=False)
    sh(example.text, project)
    assert (project / "generated" / "typescript" / "index.ts").is_file()
    assert list((project / "generated" / "python").rglob("*.py"))
    assert not (project / "generated" / "go").exists()


def run_admin(example: Example, tmp_path: Path) -> None:
    project = blog(tmp_path)
    out = sh(example.text, project).stdout
    assert "administrator ada@example.com created (id " in out
    listed = json.loads(out[out.index("[") : out.rindex("]") + 1])
    assert [(t["name"], t["kind"]) for t in listed] == [("ci", "deploy")]
    assert re.search(r"token 'ci' \(\S+\) revoked", out), out


def run_first_server(example: Example, tmp_path: Path) -> None:
    out = sh(example.text, tmp_path).stdout
    url, token = (tmp_path / "ci.env").read_text().splitlines()
    assert url == "ALYX_DEPLOY_URL=https://api.example.com"
    assert token.startswith("ALYX_DEPLOY_TOKEN=alyx_deploy_"), token
    assert out == f"{url}\n{token}\n"
    assert (tmp_path / "alyx-server" / "data" / ".jwt_secret").is_file()


def run_deploy(example: Example, tmp_path: Path) -> None:
    """The first server made by the page's block before, served, then the project deployed."""
    port = free_port()
    first = one("deploy.md", "sh", "alyx init --server alyx-server")
    sh(first.text.replace(" --url ", f" --port {port} --url "), tmp_path)
    sh("alyx init myapp -t blog", tmp_path)
    server = tmp_path / "alyx-server"
    with AlyxProcess(server, "serve", port=port, log=tmp_path / "serve.log"):
        out = sh(example.text.replace("8090", str(port)), tmp_path).stdout
    assert "Deploy plan for http://127.0.0.1:" in out and "+ publish (added)" in out, out
    assert "dry run: nothing was changed" in out
    assert re.search(r"deployed version 1 to http://127\.0\.0\.1:\d+ in \d+ ms", out), out
    assert re.search(r"^v1  applied  .*  by ci-deploy  first deploy$", out, flags=re.MULTILINE), out
    assert re.search(r"version 1, idle$", out, flags=re.MULTILINE), out
    assert (server / "functions" / "publish.mjs").read_bytes() == (
        tmp_path / "myapp" / "functions" / "publish.mjs"
    ).read_bytes()
    with sqlite3.connect(server / "data" / "alyx.db") as conn:
        assert conn.execute("SELECT count(*) FROM posts").fetchone() == (0,)


SHELL_RUNNERS: dict[tuple[str, str], Callable[[Example, Path], None]] = {
    ("deploy.md", "alyx init --server"): run_first_server,
    ("deploy.md", "cd myapp"): run_deploy,
    ("cli.md", "alyx init myapp -t blog"): run_init,
    ("cli.md", "alyx migrate status"): run_migrate,
    ("cli.md", "alyx db seed seed.json"): run_db,
    ("cli.md", "alyx serve"): run_serve,
    ("workers.md", "alyx serve --workers 2"): run_workers,
    ("cli.md", "alyx generate -l"): run_generate,
    ("cli.md", "alyx admin create ada@example.com"): run_admin,
}


def runner_of(example: Example) -> Callable[[Example, Path], None] | None:
    first = example.text.splitlines()[0]
    hits = [run for (page, start), run in SHELL_RUNNERS.items() if page == example.page and start in first]
    return hits[0] if len(hits) == 1 else None


@pytest.mark.parametrize("example", examples_of("sh"), ids=lambda ex: ex.name)
def test_shell_examples_run(example: Example, tmp_path: Path) -> None:
    run = runner_of(example)
    assert run is not None, (
        f"{example.name}: no runner for this block; add one to SHELL_RUNNERS, or write "
        "<!-- not-run: reason --> on the line before it"
    )
    run(example, tmp_path)


def test_every_example_is_checked_or_says_why_not() -> None:
    """Each block with a language has a check here, or a reason in the page."""
    checked = {"json", "yaml", "python", "js", "sh"}
    unchecked = [ex.name for ex in all_examples() if ex.language not in checked and ex.not_run is None]
    assert unchecked == [], f"blocks with no check and no <!-- not-run: reason -->: {unchecked}"
    reasons = [(ex.name, ex.not_run) for ex in all_examples() if ex.not_run is not None]
    assert all(reason and reason.strip() for _, reason in reasons), reasons
    listing = "\n".join(f"  {name}: {reason}" for name, reason in reasons)
    print(f"\n{len(reasons)} docs examples not run as written:\n{listing}")
    assert len(reasons) == 23, f"the not-run blocks changed; review them:\n{listing}"


def test_not_run_comments_stand_right_before_a_block() -> None:
    """A stray or misplaced marker would silently exempt nothing; each one comes before a block."""
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if NOT_RUN.search(line):
                following = lines[number] if number < len(lines) else ""
                assert FENCE.match(following), (
                    f"{page.name}:{number}: not-run comment not followed by a block"
                )


# --- the README's tour ----------------------------------------------------------------------


def tour_examples() -> list[Example]:
    """The blocks of the README's "A short tour" section."""
    section = "## A short tour"
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.index("\n## ", start + len(section))
    return examples_in(text[start:end], "README.md", text[:start].count("\n") + 1)


def test_the_readme_tour_schema_is_the_blog_templates() -> None:
    (schema,) = [ex for ex in tour_examples() if ex.language == "yaml"]
    shown = yaml.safe_load(schema.text)
    _check_schema(shown, schema.name)
    template = yaml.safe_load((REPO / "scaffolds" / "blog" / "schema.yaml").read_text())
    for name, collection in shown["collections"].items():
        real = template["collections"][name]
        for field, definition in collection["fields"].items():
            assert real["fields"][field] == definition, (
                f"README.md: {name}.{field} differs from the blog template"
            )
        assert collection["rules"]["read"] == real["rules"]["read"]


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    blocks = [ex.text for ex in tour_examples() if ex.language == "sh"]
    assert len(blocks) == 4
    assert blocks[0].startswith("export PATH=")
    done = sh("\n".join(blocks), tmp_path)
    project = tmp_path / "myapp"
    assert (project / "data" / "alyx.db").is_file()
    assert (project / "migrations" / "001_rename_slug.yaml").is_file()
    assert "created migrations/001_rename_slug.yaml" in done.stdout
    assert json.loads((project / "dump.json").read_text()) == {"comments": [], "posts": []}
    assert (project / "backup.db").is_file()
    status = sh("alyx migrate status", project).stdout
    assert "001_rename_slug" in status


# --- docs/cli.md against the program ---------------------------------------------------------


def cli_sections() -> dict[str, str]:
    """docs/cli.md's text under each `## ` heading, by heading."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


Leaf = tuple[tuple[str, ...], click.Command]


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[Leaf]:
    """Every command that runs something, with its path of names below `alyx`."""
    found: list[Leaf] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += leaf_commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def option_names(command: click.Command) -> list[str]:
    names = [n for p in command.params if isinstance(p, click.Option) for n in (*p.opts, *p.secondary_opts)]
    return [n for n in names if n not in {"-h", "--help"}]


def mentions(text: str, option: str) -> bool:
    """Whether `text` names `option` (`-f` is not found inside `--force`)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_cli_md_documents_every_command_and_option() -> None:
    assert isinstance(cli, click.Group)
    sections = cli_sections()
    shared = sections["Working on a project: `-C/--dir`"]
    intro = (DOCS / "cli.md").read_text(encoding="utf-8").split("\n## ")[0]
    for option in option_names(cli):
        assert mentions(intro, option), f"docs/cli.md: alyx {option} is not described"
    missing: list[str] = []
    for path, command in leaf_commands(cli):
        section = sections.get(f"alyx {path[0]}")
        if section is None:
            missing.append(f"a section '## alyx {path[0]}'")
            continue
        named = f"alyx {' '.join(path)}" in section or f"`{path[-1]}" in section
        if len(path) > 1 and not named:
            missing.append(f"alyx {' '.join(path)}")
        for option in option_names(command):
            if option in {"-C", "--dir"}:
                if f"`alyx {path[0]}`" not in shared:
                    missing.append(f"alyx {path[0]} in the -C/--dir section")
            elif not mentions(section, option):
                missing.append(f"alyx {' '.join(path)} {option}")
    assert missing == [], f"docs/cli.md leaves out: {', '.join(missing)}"
