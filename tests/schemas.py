"""Schemas that tests across the tree share (each test file keeps the ones only it needs)."""

from __future__ import annotations

__all__ = ["NOTES"]

# One open collection: anyone may create, read, update and delete a note.
NOTES = """\
version: 1
collections:
  notes:
    fields:
      id:    { type: uuid, primary: true, default: auto }
      title: { type: string }
    rules: { create: "true", read: "true", update: "true", delete: "true" }
"""
