"""Alyx server runtime: schema, database, migrations and (later) the HTTP API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
