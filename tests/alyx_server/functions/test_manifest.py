"""Function discovery and manifests: every problem located, the other functions kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from alyx_server.errors import ValidationError
from alyx_server.functions import Defaults, discover_functions

UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def write(folder: Path, files: dict[str, str]) -> Path:
    functions = folder / "functions"
    for name, text in files.items():
        path = functions / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return functions


def test_both_layouts_and_a_full_manifest(tmp_path: Path) -> None:
    functions = write(
        tmp_path,
        {
            "hello.py": "x = 1\n",
            "publish/index.mjs": "export default 1;\n",
            "publish.yaml": (
                "runtime: node\ntimeout: 2s\nmemory: 64MiB\nenv: { API: https://x.test, N: 3, ON: true }\n"
                "input:\n  post_id: { type: uuid }\n  note: { type: string, maxLength: 5, default: hi }\n"
                'output:\n  ok: { type: bool }\nrule: "auth != null"\nnetwork: true\nprivileged: true\n'
            ),
        },
    )
    found = discover_functions(functions, Defaults(timeout=30.0, memory=256 << 20))
    assert found.problems == ()
    hello, publish = found.functions["hello"], found.functions["publish"]
    assert (hello.runtime, hello.timeout, hello.memory, hello.rule, hello.folder) == (
        "python",
        30.0,
        256 << 20,
        None,
        None,
    )
    assert publish.runtime == "node" and publish.folder == functions / "publish"
    assert (publish.timeout, publish.memory, publish.network, publish.privileged) == (
        2.0,
        64 << 20,
        True,
        True,
    )
    assert dict(publish.env) == {"API": "https://x.test", "N": "3", "ON": "true"}
    assert publish.rule == "auth != null"
    assert str(publish.rule_location) == "functions/publish.yaml:10:7: rule"
    assert publish.input is not None
    assert publish.input.check({"post_id": UUID}) == {"post_id": UUID, "note": "hi"}


def test_input_is_checked_like_a_document(tmp_path: Path) -> None:
    functions = write(
        tmp_path,
        {
            "f.py": "",
            "f.yaml": (
                "input:\n  id: { type: uuid }\n  n: { type: int, min: 1 }\n"
                "  tag: { type: string, nullable: true }\n"
            ),
        },
    )
    spec = discover_functions(functions, Defaults()).functions["f"]
    assert spec.input is not None
    with pytest.raises(ValidationError) as caught:
        spec.input.check({"n": 0, "extra": True})
    assert {(d["field"], d["code"]) for d in caught.value.details} == {
        ("extra", "unknown_field"),
        ("id", "required"),
        ("n", "min_value"),
    }
    assert "n must be at least 1" in caught.value.message
    with pytest.raises(ValidationError, match="input must be a JSON object"):
        spec.input.check([1])


def test_bad_manifests_are_located_and_the_others_still_load(tmp_path: Path) -> None:
    functions = write(
        tmp_path,
        {
            "good.py": "",
            "typo.py": "",
            "typo.yaml": "runtime: python\ntimout: 3s\n",
            "badtype.mjs": "",
            "badtype.yaml": "input:\n  x: { type: strng }\n",
            "yaml.py": "",
            "yaml.yaml": "input: [unclosed\n",
            "slow.py": "",
            "slow.yaml": "timeout: soon\n",
            "wrong.py": "",
            "wrong.yaml": "runtime: node\n",
            "syntax.py": "def f(:\n    pass\n",
            "orphan.yaml": "rule: 'true'\n",
            "twice.py": "",
            "twice/index.mjs": "",
            "refs.py": "",
            "refs.yaml": "input:\n  x: { type: uuid, references: posts.id }\n",
        },
    )
    found = discover_functions(functions, Defaults())
    assert sorted(found.functions) == ["good"]
    messages = {p.name: p.message for p in found.problems}
    assert messages["typo"].startswith('functions/typo.yaml:2:1: timout: unknown manifest key "timout"')
    assert 'did you mean "timeout"?' in messages["typo"]
    assert messages["badtype"].startswith(
        'functions/badtype.yaml:2:14: input.x.type: unknown field type "strng" (did you mean "string"?'
    )
    assert messages["yaml"].startswith("functions/yaml.yaml:2:1: invalid YAML")
    assert messages["slow"].startswith(
        "functions/slow.yaml:1:10: timeout: 'soon' is not a duration such as 10s"
    )
    assert messages["wrong"] == (
        "functions/wrong.yaml:1:10: runtime: runtime node cannot run wrong.py (.py files run on python)"
    )
    assert messages["syntax"].startswith("functions/syntax.py:1:7: syntax error: ")
    assert messages["orphan"].startswith("functions/orphan.yaml: a manifest without a function")
    assert "has several sources (functions/twice/index.mjs, functions/twice.py)" in messages["twice"]
    assert messages["refs"].startswith(
        "functions/refs.yaml:2:20: input.x.references: references is a collection field option"
    )


def test_no_folder_means_no_functions(tmp_path: Path) -> None:
    found = discover_functions(tmp_path / "functions", Defaults())
    assert dict(found.functions) == {} and found.problems == ()


def test_helpers_and_hidden_files_are_not_functions(tmp_path: Path) -> None:
    functions = write(
        tmp_path, {"_shared.py": "", ".hidden.py": "", "node_modules/x/index.js": "", "ok.js": ""}
    )
    found = discover_functions(functions, Defaults())
    assert list(found.functions) == ["ok"] and found.problems == ()
