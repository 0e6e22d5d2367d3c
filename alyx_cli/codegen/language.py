"""What differs between target languages: where files go, how a comment starts, and the
Jinja filters that spell a field's type in that language."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Language"]


@dataclass(frozen=True, slots=True)
class Language:
    """A target language: its templates folder, output folder and type filters.

    `folder` is both the templates folder under `codegen_templates/` and the output folder
    under the generate output directory; `comment` starts the generated-file header;
    `blank_lines` is the most consecutive blank lines its formatter leaves (templates need
    not count them).
    """

    name: str
    folder: str
    comment: str
    filters: Mapping[str, Callable[..., Any]]
    blank_lines: int = 1
