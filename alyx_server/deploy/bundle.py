"""The deploy bundle: a project's deployable files packed into one deterministic archive.

`build_bundle` (the CLI side) packs `schema.yaml`, `migrations/`, `functions/` and a
generated manifest member `alyx.deploy.json` (`{"format": 1, "files": {path: sha256},
"config": {key: value}}`) into a gzip'd tar whose bytes depend on the files' contents
only: entries sorted, mtime 0, owner 0/"" and mode 0o644 or 0o755, gzip mtime 0 and no
file name. The same project therefore gives the same bundle hash on any machine.

`read_bundle` (the server side) takes bytes from the network and trusts nothing: it
decompresses under a size limit (a gzip bomb stops at the limit, it is never inflated
past it), accepts regular files and folders with plain relative names under the allowed
top-level set only, refuses duplicates and members `build_bundle` never packs (a
`node_modules/`, `.venv/`, `__pycache__/` or `.git/` folder, a `.env*` file, a virtualenv's
`pyvenv.cfg`: deploy/project_files.py's rules, so a deploy cannot overwrite what a server
keeps for itself), and checks every file against the manifest.
Nothing is written to disk here; the caller decides where the files go.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import stat
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from alyx_server.config.registry import KEYS_BY_PATH
from alyx_server.deploy.project_files import deployable_config, left_out_by_name, project_files
from alyx_server.errors import PayloadTooLarge, ValidationError

__all__ = [
    "MANIFEST_NAME",
    "MAX_BUNDLE_MEMBERS",
    "MAX_BUNDLE_SIZE_DEFAULT",
    "Bundle",
    "BundleContents",
    "build_bundle",
    "deployable_config",
    "read_bundle",
]

MAX_BUNDLE_SIZE_DEFAULT = 50 * 1024 * 1024
"""The default of `deploy.max_bundle_size`: the largest archive, packed or unpacked."""
MAX_BUNDLE_MEMBERS = 10_000
MANIFEST_NAME = "alyx.deploy.json"
BUNDLE_FORMAT = 1

_TOP_FILES = frozenset({"schema.yaml", MANIFEST_NAME})
_TOP_FOLDERS = frozenset({"migrations", "functions"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 64 * 1024
_INVALID = "INVALID_BUNDLE"


@dataclass(frozen=True)
class Bundle:
    """A built bundle: the archive bytes, their hash, and what is inside."""

    data: bytes
    sha256: str
    files: Mapping[str, str]
    """Relative POSIX path -> hex sha256 of the file's content (the manifest excluded)."""
    config: Mapping[str, object]
    """The deployable alyx.yaml keys, dotted path -> value as written."""


@dataclass(frozen=True)
class BundleContents:
    """A bundle read and checked: every file's content, and the deployable config."""

    sha256: str
    files: Mapping[str, bytes]
    config: Mapping[str, object]


# --- building -----------------------------------------------------------------------------


def build_bundle(project: Path, *, max_size: int = MAX_BUNDLE_SIZE_DEFAULT) -> Bundle:
    """Pack `project` into a deterministic bundle; ValidationError names what is wrong."""
    project = project.resolve()
    sources = project_files(project)
    _check_total(sources, max_size)

    contents = {name: sources[name].read_bytes() for name in sorted(sources)}
    files = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    config = deployable_config(project)
    manifest = json.dumps(
        {"format": BUNDLE_FORMAT, "files": files, "config": config}, indent=2, sort_keys=True
    )
    members = {MANIFEST_NAME: (manifest.encode() + b"\n", False)}
    members.update({name: (data, _is_executable(sources[name])) for name, data in contents.items()})

    tar_bytes = _write_tar(members)
    if len(tar_bytes) > max_size:
        _too_big(len(tar_bytes), max_size, sources)
    data = _gzip(tar_bytes)
    return Bundle(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        files=MappingProxyType(files),
        config=MappingProxyType(config),
    )


def _is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXUSR)


def _check_total(sources: Mapping[str, Path], max_size: int) -> None:
    total = sum(path.stat().st_size for path in sources.values())
    if total > max_size:
        _too_big(total, max_size, sources)


def _too_big(size: int, max_size: int, sources: Mapping[str, Path]) -> None:
    sizes = sorted(((path.stat().st_size, name) for name, path in sources.items()), reverse=True)
    biggest = ", ".join(f"{name} ({_human(n)})" for n, name in sizes[:3])
    raise ValidationError(
        f"the bundle is {_human(size)}, over the limit of {_human(max_size)} "
        f"(deploy.max_bundle_size); biggest files: {biggest}. List files that need not "
        "travel in .alyxignore, or raise deploy.max_bundle_size on the server",
        code="BUNDLE_TOO_LARGE",
    )


def _human(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


def _write_tar(members: Mapping[str, tuple[bytes, bool]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            data, executable = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o755 if executable else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as out:
        out.write(data)
    return buffer.getvalue()


# --- reading ------------------------------------------------------------------------------


def read_bundle(
    data: bytes, *, max_size: int = MAX_BUNDLE_SIZE_DEFAULT, expected_sha256: str | None = None
) -> BundleContents:
    """Check and unpack bundle bytes received from a client.

    Raises ValidationError (code INVALID_BUNDLE) naming the offending member, or
    PayloadTooLarge when the archive, packed or unpacked, is over `max_size`."""
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and expected_sha256.strip().lower() != digest:
        raise _invalid(
            f"the bundle's sha256 is {digest}, not {expected_sha256!r} as announced; "
            "it was changed or cut short on the way, send it again"
        )
    if len(data) > max_size:
        raise _oversized(len(data), max_size, "packed")
    raw = _inflate(data, max_size)
    files, manifest = _read_members(raw)
    config = _check_manifest(manifest, files)
    if "schema.yaml" not in files:
        raise _invalid("the bundle has no schema.yaml")
    return BundleContents(sha256=digest, files=MappingProxyType(files), config=MappingProxyType(config))


def _invalid(message: str) -> ValidationError:
    return ValidationError(f"invalid bundle: {message}", code=_INVALID)


def _oversized(size: int, max_size: int, how: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the bundle is over {_human(max_size)} {how} (deploy.max_bundle_size)"
        + (f": {_human(size)}" if how == "packed" else "")
        + "; leave large files out with .alyxignore, or raise deploy.max_bundle_size"
    )


def _inflate(data: bytes, max_size: int) -> bytes:
    """Gunzip `data`, stopping as soon as the output passes `max_size` (gzip bombs)."""
    if data[:2] != b"\x1f\x8b":
        raise _invalid("not a gzip'd tar archive (it does not start with the gzip header)")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while pending and not inflater.eof:
            chunk = inflater.decompress(pending, _CHUNK)
            pending = inflater.unconsumed_tail
            out += chunk
            if len(out) > max_size:
                raise _oversized(len(out), max_size, "unpacked")
            if not chunk and not pending:
                break
        if not inflater.eof:
            out += inflater.flush()
    except zlib.error as e:
        raise _invalid(f"the gzip stream is corrupt ({e})") from e
    if len(out) > max_size:
        raise _oversized(len(out), max_size, "unpacked")
    if not inflater.eof:
        raise _invalid("the gzip stream is cut short")
    if inflater.unused_data:
        raise _invalid("unexpected data after the end of the gzip stream")
    return bytes(out)


def _read_members(raw: bytes) -> tuple[dict[str, bytes], bytes]:
    files: dict[str, bytes] = {}
    folders: set[str] = set()
    manifest: bytes | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for count, member in enumerate(_members(tar), start=1):
                if count > MAX_BUNDLE_MEMBERS:
                    raise _invalid(f"more than {MAX_BUNDLE_MEMBERS} members")
                name = _check_name(member)
                if name in files or name in folders or (name == MANIFEST_NAME and manifest is not None):
                    raise _invalid(f"{name!r} appears twice")
                if member.isdir():
                    if name in _TOP_FILES:
                        raise _invalid(f"{name!r} must be a file, not a folder")
                    folders.add(name)
                    continue
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    raise _invalid(f"{name!r} is {_kind(member)}; only regular files and folders may travel")
                extracted = tar.extractfile(member)
                content = extracted.read() if extracted is not None else b""
                if len(content) != member.size:
                    raise _invalid(f"{name!r} is cut short")
                if name == MANIFEST_NAME:
                    manifest = content
                else:
                    files[name] = content
    except tarfile.TarError as e:
        raise _invalid(f"not a readable tar archive ({e})") from e
    for name in files:
        parts = name.split("/")
        for end in range(1, len(parts)):
            parent = "/".join(parts[:end])
            if parent in files:
                raise _invalid(f"{parent!r} is both a file and the folder of {name!r}")
    if manifest is None:
        raise _invalid(f"no {MANIFEST_NAME} member (bundles are built by alyx deploy)")
    return files, manifest


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def _check_name(member: tarfile.TarInfo) -> str:
    name = member.name
    shown = repr(name)
    if not name or "\x00" in name or "\\" in name or any(ord(c) < 0x20 for c in name):
        raise _invalid(f"member name {shown} holds a backslash, NUL or control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(f"member name {shown} is not UTF-8") from None
    if name.startswith("/"):
        raise _invalid(f"member {shown} is an absolute path; names must be relative")
    name = name.removesuffix("/") if member.isdir() else name
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _invalid(f"member {shown} has an empty, '.' or '..' path component")
    if parts[0] in _TOP_FOLDERS and (len(parts) > 1 or member.isdir()):
        reason = left_out_by_name(name + "/-" if member.isdir() else name)
        if reason is not None:
            raise _invalid(f"member {shown}: {reason} (alyx deploy leaves it out)")
        return name
    if name in _TOP_FILES:
        return name
    raise _invalid(
        f"member {shown} is outside what a bundle holds "
        "(schema.yaml, migrations/, functions/, alyx.deploy.json)"
    )


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr():
        return "a character device"
    if member.isblk():
        return "a block device"
    if member.isfifo():
        return "a FIFO"
    return f"an entry of tar type {member.type!r}"


def _check_manifest(manifest: bytes, files: Mapping[str, bytes]) -> dict[str, object]:
    try:
        document = json.loads(manifest)
    except (ValueError, UnicodeDecodeError) as e:
        raise _invalid(f"{MANIFEST_NAME} is not JSON ({e})") from e
    version = document.get("format") if isinstance(document, dict) else None
    if not isinstance(document, dict) or type(version) is not int or version != BUNDLE_FORMAT:
        raise _invalid(f"{MANIFEST_NAME} is not a format {BUNDLE_FORMAT} manifest")
    listed = document.get("files")
    config = document.get("config", {})
    if not isinstance(listed, dict) or not isinstance(config, dict):
        raise _invalid(f"{MANIFEST_NAME} needs a 'files' and a 'config' object")
    for name in sorted(set(listed) | set(files)):
        if name not in files:
            raise _invalid(f"{MANIFEST_NAME} lists {name!r}, which the bundle does not hold")
        expected = listed.get(name)
        if expected is None:
            raise _invalid(f"{name!r} is not listed in {MANIFEST_NAME}")
        actual = hashlib.sha256(files[name]).hexdigest()
        if not isinstance(expected, str) or not _HEX64.fullmatch(expected) or expected != actual:
            raise _invalid(f"{name!r} has sha256 {actual}, but {MANIFEST_NAME} says {expected!r}")
    for key in sorted(config):
        registered = KEYS_BY_PATH.get(key)
        if registered is None or not registered.deployable:
            raise _invalid(
                f"config key {key!r} is not deployable; only keys marked deployable in "
                "docs/configuration.md travel with a bundle"
            )
        value = config[key]
        if not (_is_scalar(value) or (isinstance(value, list) and all(map(_is_scalar, value)))):
            raise _invalid(f"config key {key!r}: expected a single value or a list, got {value!r}")
    return dict(config)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
