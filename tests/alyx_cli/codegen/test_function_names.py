"""camelCase function names (`sendMessage`, `getURL`), as JavaScript users write them, next to
snake and kebab ones: each generated client names them validly and compiles (`tsc --strict`,
`gofmt`/`go vet`/`go build`, `mypy --strict`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.alyx_cli.codegen.conftest import (
    GOLDEN_PROJECT,
    check_go,
    check_python,
    check_typescript,
    generate_project,
)

HANDLER = "from alyx_functions import define_function\n\nf = define_function(handler=lambda i, c: {})\n"
SEND = """\
input:
  to_user: { type: uuid }
  text:    { type: string }
  mood:    { type: string, enum: [happy, sad], nullable: true }
output:
  sent_at: { type: timestamp }
rule: "auth != null"
"""
FETCH = "input: { url: { type: string } }\noutput: { status: { type: int } }\nrule: 'true'\n"
FUNCTIONS = {"sendMessage": SEND, "getURL": FETCH, "clear-all": FETCH, "count_words": FETCH}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "functions").mkdir(parents=True)
    shutil.copy(GOLDEN_PROJECT / "schema.yaml", root / "schema.yaml")
    for name, manifest in FUNCTIONS.items():
        (root / "functions" / f"{name}.py").write_text(HANDLER)
        (root / "functions" / f"{name}.yaml").write_text(manifest)
    return root


def test_typescript_names_camel_case_functions_as_written(project: Path, tsc: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate_project(project, out, ("typescript",))
    index = (out / "typescript" / "index.ts").read_text()
    assert "sendMessage(input: SendMessageInput): Promise<SendMessageOutput>;" in index
    assert "getURL(input: GetURLInput): Promise<GetURLOutput>;" in index
    assert 'this.callFunction<SendMessageInput, SendMessageOutput>("sendMessage", input)' in index
    assert "clearAll(input: ClearAllInput)" in index and "countWords(input: CountWordsInput)" in index
    check_typescript(out / "typescript", tsc, tmp_path)


def test_go_names_camel_case_functions_as_exported_methods(
    project: Path, go: str, tmp_path: Path, tool_cache: Path
) -> None:
    out = tmp_path / "out"
    generate_project(project, out, ("go",))
    client = (out / "go" / "client.go").read_text()
    assert "func (f *Functions) SendMessage(ctx context.Context, input SendMessageInput)" in client
    assert 'callFunction[SendMessageOutput](ctx, f.t, "sendMessage", input)' in client
    assert "func (f *Functions) GetURL(ctx context.Context, input GetURLInput)" in client
    check_go(out / "go", go, tool_cache)


def test_python_keeps_camel_case_function_names(project: Path, tmp_path: Path, tool_cache: Path) -> None:
    out = tmp_path / "out"
    generate_project(project, out, ("python",))
    client = (out / "python" / "alyx_client" / "client.py").read_text()
    assert "def sendMessage(self, data: SendMessageInput) -> SendMessageOutput:" in client
    assert "self._client.call_function('sendMessage', data)" in client
    assert "def clear_all(self, data: ClearAllInput)" in client
    check_python(out / "python", tool_cache)
