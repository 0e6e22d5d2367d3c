"""`${VAR}` / `${VAR:-default}` substitution."""

from __future__ import annotations

import pytest

from alyx_server.tools.envsubst import UnsetVariable, substitute

ENV = {"HOST": "db.local", "EMPTY": "", "PORT": "5432"}


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("${HOST}:${PORT}", "db.local:5432"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${HOST:-fallback}", "db.local"),
        ("${EMPTY}", ""),
        ("${MISSING:-}", ""),
        ("${MISSING:-a b:c}", "a b:c"),
        ("$${HOST}", "${HOST}"),
        ("pa$$word $HOST", "pa$$word $HOST"),
        ("no variables", "no variables"),
    ],
)
def test_substitute(text: str, result: str) -> None:
    assert substitute(text, ENV) == result


def test_an_unset_variable_names_itself_and_the_fix() -> None:
    with pytest.raises(UnsetVariable) as caught:
        substitute("x ${JWT_SECRET} y", ENV)
    assert caught.value.name == "JWT_SECRET"
    assert str(caught.value) == (
        "${JWT_SECRET} is not set (set JWT_SECRET, or give a default: ${JWT_SECRET:-value})"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${HOST", "unclosed ${ in '${HOST'"),
        ("${}", "bad variable reference '${}'"),
        ("${9X}", "bad variable reference '${9X}'"),
        ("${A B}", "bad variable reference '${A B}'"),
    ],
)
def test_malformed_references(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        substitute(text, ENV)
    forms = "use ${NAME} or ${NAME:-default}; write $${ for a literal ${"
    assert str(caught.value) == f"{message} ({forms})"
