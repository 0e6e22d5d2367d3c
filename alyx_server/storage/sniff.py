"""What a file is, from its first bytes: the content type Alyx stores and serves.

The name and the `Content-Type` a client sends are never trusted. Binary formats are told
by their magic bytes (the `filetype` package: images, audio, video, archives, fonts, PDF,
no native library needed); `filetype` knows no text formats, so markup a browser would run
(HTML, SVG, XML) is recognised here, and any other UTF-8 text is `text/plain`. Anything
else is `application/octet-stream`.

`is_passive` says which types a browser shows without running anything (raster images,
audio, video, plain text, PDF); every other type is served as an attachment.
"""

from __future__ import annotations

import re

import filetype

__all__ = ["SNIFF_BYTES", "is_passive", "mime_allowed", "sniff"]

SNIFF_BYTES = 8192
"""How many leading bytes `sniff` wants (fewer when the file is shorter)."""

_MARKUP = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|script|iframe|object|embed|meta|style|title|a\s|img\s|"
    rb"svg|div|table|form|frameset|base|link|br|p[\s>]|h1|b[\s>]|font|!--)",
    re.IGNORECASE,
)
_PASSIVE = frozenset(
    {
        "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
        "image/x-icon", "image/heic", "image/heif", "image/tiff", "text/plain", "application/pdf",
    }
)  # fmt: skip


def sniff(head: bytes) -> str:
    """The content type of a file starting with `head` (see the module docstring)."""
    kind = filetype.guess_mime(head) if head else None
    if isinstance(kind, str):
        return kind
    text = head.lstrip(b"\xef\xbb\xbf\x00\t\n\r\x0c ")
    start = text[:1024].lower()
    if b"<svg" in start or (start.startswith(b"<?xml") and b"<svg" in text.lower()):
        return "image/svg+xml"
    if _MARKUP.search(text[:1024]):
        return "text/html"
    if start.startswith(b"<?xml") or start.startswith(b"<!doctype") or start.startswith(b"<"):
        return "application/xml" if start.startswith(b"<?xml") else "text/html"
    if _is_text(head):
        return "text/plain"
    return "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        return e.start >= len(head) - 3 and e.reason == "unexpected end of data"
    return True


def mime_allowed(mime: str, allowed: tuple[str, ...]) -> bool:
    """Whether `mime` matches one of `allowed` (`image/*` patterns too); empty allows all."""
    if not allowed:
        return True
    major = mime.split("/", 1)[0]
    return any(a == mime or (a.endswith("/*") and a[:-2] == major) for a in allowed)


def is_passive(mime: str) -> bool:
    """Whether a browser shows `mime` without running anything in it (served inline)."""
    return mime in _PASSIVE or mime.startswith(("audio/", "video/"))
