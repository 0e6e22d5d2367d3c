"""Serverless functions: discovery, sandboxed warm worker pools, invocation.

manifest.py   discover_functions, FunctionSpec, manifest parsing
values.py     FieldSet: input and output checked like documents
"""

from alyx_server.functions.manifest import (
    Defaults,
    Discovery,
    FunctionProblem,
    FunctionSpec,
    discover_functions,
)
from alyx_server.functions.values import FieldSet

__all__ = [
    "Defaults",
    "Discovery",
    "FieldSet",
    "FunctionProblem",
    "FunctionSpec",
    "discover_functions",
]
