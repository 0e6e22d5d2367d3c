"""The deploy bundle: what `alyx deploy` packs, and what the server accepts from the network.

Building runs on real project folders; the attacks on `read_bundle` are archives built by
hand with tarfile, the way an attacker holding a deploy token would send them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alyx_server.config import KEYS, KeyType, load_settings
from alyx_server.deploy import build_bundle, deployable_config, read_bundle
from alyx_server.errors import PayloadTooLarge, ValidationError

SCHEMA = "collections:\n  posts:\n    fields:\n      title: {type: string}\n"
ALYX_YAML = """\
server:
  port: 9000
  host: 0.0.0.0
  max_body_size: 2MiB
auth:
  jwt:
    secret: a-very-secret-signing-key-of-more-than-32-chars
    access_ttl: 5m
  smtp:
    password: hunter2-smtp
rules.eval_budget: 50000
logging: {level: debug}
database: {path: /var/lib/alyx/alyx.db}
"""


def make_project(root: Path) -> Path:
    """A small project with every kind of file a bundle takes or leaves out."""
    files = {
        "schema.yaml": SCHEMA,
        "alyx.yaml": ALYX_YAML,
        "migrations/001_init.yaml": "operations: []\n",
        "functions/hello.js": "export default () => 'hi'\n",
        "functions/hello.yaml": "name: hello\n",
        "functions/stats/index.py": "def handler(req):\n    return 1\n",
        "functions/stats/requirements.txt": "requests==2.32.0\n",
        "functions/package-lock.json": "{}\n",
        "functions/node_modules/left-pad/index.js": "module.exports = 1\n",
        "functions/stats/.venv/lib/site.py": "x = 1\n",
        "functions/stats/venv/lib/site.py": "x = 1\n",
        "functions/stats/env/pyvenv.cfg": "home = /usr\n",
        "functions/stats/env/lib/site.py": "x = 1\n",
        "functions/stats/__pycache__/index.cpython-311.pyc": "\0\0",
        "functions/.env": "API_KEY=secret\n",
        "functions/.env.production": "API_KEY=secret\n",
        "functions/.git/config": "[core]\n",
        "functions/debug.log": "noise\n",
        "functions/fixtures/big.json": "[]\n",
        "functions/keep/notes.md": "kept\n",
        "data/alyx.db": "SQLite format 3\0",
        ".env": "ALYX_AUTH_JWT_SECRET=x\n",
        "generated/client.ts": "export {}\n",
        ".alyxignore": "# local only\n*.log\nfixtures/\n\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "app")


# --- building ------------------------------------------------------------------------------


def test_a_bundle_holds_the_deployable_files_and_a_manifest(project: Path) -> None:
    bundle = build_bundle(project)
    assert sorted(bundle.files) == [
        "functions/hello.js",
        "functions/hello.yaml",
        "functions/keep/notes.md",
        "functions/package-lock.json",
        "functions/stats/index.py",
        "functions/stats/requirements.txt",
        "migrations/001_init.yaml",
        "schema.yaml",
    ]
    assert bundle.sha256 == hashlib.sha256(bundle.data).hexdigest()
    assert bundle.files["schema.yaml"] == hashlib.sha256(SCHEMA.encode()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(bundle.data), mode="r:gz") as tar:
        members = tar.getmembers()
        names = [member.name for member in members]
        manifest = json.loads(tar.extractfile("alyx.deploy.json").read())  # type: ignore[union-attr]
    assert names == sorted(names) and names[0] == "alyx.deploy.json"
    assert all(m.isreg() and m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    assert manifest == {"format": 1, "files": dict(bundle.files), "config": dict(bundle.config)}
    contents = read_bundle(bundle.data, expected_sha256=bundle.sha256)
    assert contents.sha256 == bundle.sha256
    assert contents.files["schema.yaml"] == SCHEMA.encode()
    assert set(contents.files) == set(bundle.files)


def test_the_same_project_gives_the_same_bytes_whatever_the_mtimes_and_file_order(
    tmp_path: Path,
) -> None:
    first = build_bundle(make_project(tmp_path / "one"))
    assert build_bundle(tmp_path / "one").data == first.data
    # Another folder, files written in reverse order, with other timestamps.
    other = tmp_path / "two"
    for path in sorted((tmp_path / "one").rglob("*"), reverse=True):
        if path.is_file():
            target = other / path.relative_to(tmp_path / "one")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
            os.utime(target, (1_000_000, 1_000_000))
    second = build_bundle(other)
    assert second.data == first.data
    assert second.sha256 == first.sha256


_NAMES = st.text(alphabet="abcXYZ_-.é0", min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


@given(
    tree=st.dictionaries(
        st.lists(_NAMES, min_size=1, max_size=3).map(lambda parts: "functions/" + "/".join(parts)),
        st.binary(max_size=64),
        max_size=8,
    ),
    seed=st.randoms(use_true_random=False),
)
def test_any_tree_builds_the_same_bytes_in_any_write_order_and_reads_back(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, bytes], seed: random.Random
) -> None:
    names = sorted(tree)
    # A name that is also another's folder cannot exist on disk; keep the first.
    kept = [n for n in names if not any(o.startswith(n + "/") for o in names)]
    kept = [n for n in kept if not n.rsplit("/", 1)[-1].startswith(".env")]
    hashes = set()
    for _ in range(2):
        root = tmp_path_factory.mktemp("tree")
        (root / "schema.yaml").write_text(SCHEMA)
        order = list(kept)
        seed.shuffle(order)
        for name in order:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tree[name])
            os.utime(path, (seed.randrange(2**31), seed.randrange(2**31)))
        bundle = build_bundle(root)
        hashes.add(bundle.sha256)
        contents = read_bundle(bundle.data, expected_sha256=bundle.sha256)
        assert dict(contents.files) == {"schema.yaml": SCHEMA.encode(), **{n: tree[n] for n in kept}}
    assert len(hashes) == 1


def test_a_content_change_changes_the_hash_and_that_files_sha_only(project: Path) -> None:
    before = build_bundle(project)
    (project / "functions" / "hello.js").write_text("export default () => 'hello'\n")
    after = build_bundle(project)
    assert after.sha256 != before.sha256
    changed = {name for name in before.files if before.files[name] != after.files[name]}
    assert changed == {"functions/hello.js"}


def test_the_executable_bit_is_kept_and_nothing_else_of_the_mode(project: Path) -> None:
    script = project / "functions" / "hello.js"
    script.chmod(0o700)
    (project / "schema.yaml").chmod(0o600)
    bundle = build_bundle(project)
    with tarfile.open(fileobj=io.BytesIO(bundle.data), mode="r:gz") as tar:
        modes = {member.name: member.mode for member in tar.getmembers()}
    assert modes["functions/hello.js"] == 0o755
    assert modes["schema.yaml"] == 0o644


def test_only_deployable_config_travels_and_secrets_never_do(project: Path) -> None:
    bundle = build_bundle(project)
    assert dict(bundle.config) == {
        "server.max_body_size": "2MiB",
        "auth.jwt.access_ttl": "5m",
        "rules.eval_budget": "50000",
        "logging.level": "debug",
    }
    assert deployable_config(project) == dict(bundle.config)
    for secret in (b"a-very-secret-signing-key", b"hunter2-smtp", b"API_KEY", b"/var/lib/alyx"):
        assert secret not in gzip.decompress(bundle.data)


def test_config_values_travel_as_written_without_substitution(project: Path) -> None:
    (project / "alyx.yaml").write_text("logging:\n  level: ${LOG_LEVEL:-info}\n")
    assert deployable_config(project) == {"logging.level": "${LOG_LEVEL:-info}"}


def test_config_values_mean_on_the_server_what_they_mean_in_the_project(tmp_path: Path) -> None:
    """The server reads the bundle's values as overrides; the typed result must equal what
    alyx.yaml itself gives, for the forms YAML reads surprisingly (off, 1:30, null)."""
    project = tmp_path / "app"
    project.mkdir()
    (project / "schema.yaml").write_text(SCHEMA)
    (project / "alyx.yaml").write_text(
        "auth:\n"
        "  rate_limit: {login: off, register: '10/minute', reset:}\n"
        "  password.require_upper: yes\n"
        "  jwt.access_ttl: 90\n"
        "  bcrypt_cost: 0x0c\n"
        "server.cors.allowed_origins: [https://app.example.com, 'https://b.example.com']\n"
        "rules: {eval_budget: 1_000_000}\n"
        "functions: {timeout: 1m30s}\n"
        "realtime: {max_message_size: 128KiB}\n"
    )
    config = build_bundle(project).config
    assert config["auth.rate_limit.login"] == "off"
    assert config["auth.rate_limit.reset"] is None
    from_file = load_settings(project, environ={})
    empty = tmp_path / "server"
    empty.mkdir()
    on_server = load_settings(empty, environ={}, overrides=dict(config))
    assert set(config) == {
        "auth.rate_limit.login", "auth.rate_limit.register", "auth.rate_limit.reset",
        "auth.password.require_upper", "auth.jwt.access_ttl", "auth.bcrypt_cost",
        "server.cors.allowed_origins", "rules.eval_budget", "functions.timeout",
        "realtime.max_message_size",
    }  # fmt: skip
    for key in config:
        assert on_server.get(key) == from_file.get(key), key
    assert on_server.auth.rate_limit.login is None
    assert on_server.rules.eval_budget == 1_000_000


def test_no_deployable_key_is_a_secret_a_path_or_an_smtp_setting() -> None:
    deployable = [key for key in KEYS if key.deployable]
    assert deployable, "some keys must be deployable"
    for key in deployable:
        assert key.type not in (KeyType.SECRET, KeyType.PATH), key.path
        assert not key.path.startswith(("server.host", "server.port", "database.", "auth.smtp.")), key.path
        assert key.path not in ("server.trusted_proxies", "auth.jwt.secret"), key.path


def test_an_oversized_project_is_refused_naming_size_limit_and_biggest_files(project: Path) -> None:
    (project / "functions" / "model.bin").write_bytes(b"\1" * 300_000)
    (project / "functions" / "weights.bin").write_bytes(b"\2" * 200_000)
    with pytest.raises(ValidationError) as caught:
        build_bundle(project, max_size=256 * 1024)
    message = caught.value.message
    assert message.startswith("the bundle is 488.")
    assert "over the limit of 256.0 KiB (deploy.max_bundle_size)" in message
    assert "biggest files: functions/model.bin (293.0 KiB), functions/weights.bin (195.3 KiB)" in message
    assert ".alyxignore" in message


def test_a_symlink_in_the_project_is_refused_by_name(project: Path) -> None:
    (project / "functions" / "passwd.txt").symlink_to("/etc/passwd")
    with pytest.raises(ValidationError, match=r"functions/passwd\.txt: a symbolic link; a bundle holds"):
        build_bundle(project)


def test_anchored_and_folder_patterns_and_what_always_travels(project: Path) -> None:
    (project / ".alyxignore").write_text("/functions/hello.yaml\nnotes.md/\n")
    (project / "functions" / "report" / "data").mkdir(parents=True)
    (project / "functions" / "report" / "data" / "template.html").write_text("<p></p>\n")
    (project / "functions" / "sub").mkdir()
    (project / "functions" / "sub" / "hello.yaml").write_text("name: sub\n")
    pnpm_store = project.parent / "store"
    pnpm_store.mkdir()
    (project / "functions" / "stats" / "node_modules").symlink_to(pnpm_store)
    files = set(build_bundle(project).files)
    assert "functions/hello.yaml" not in files  # anchored: only that path
    assert "functions/sub/hello.yaml" in files
    assert "functions/keep/notes.md" in files  # a trailing / matches folders only
    assert "functions/report/data/template.html" in files  # only the project's data/ stays home
    assert not any("node_modules" in name for name in files)


def test_a_project_without_schema_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no schema\.yaml here; run alyx deploy in the project folder"):
        build_bundle(tmp_path)


def test_a_negated_alyxignore_pattern_is_refused_with_its_line(project: Path) -> None:
    (project / ".alyxignore").write_text("*.log\n!keep.log\n")
    with pytest.raises(ValidationError, match=r"\.alyxignore:2: negated patterns \(!keep\.log\)"):
        build_bundle(project)


# --- reading: attacks built by hand ---------------------------------------------------------


def entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **extra: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for attribute, value in extra.items():
        setattr(info, attribute, value)
    return info


def pack(
    files: dict[str, bytes],
    *,
    extra: tuple[tuple[tarfile.TarInfo, bytes], ...] = (),
    manifest: dict[str, object] | None = None,
) -> bytes:
    """A gzip'd tar with a correct manifest for `files`, then the hostile `extra` entries."""
    if manifest is None:
        hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        manifest = {"format": 1, "files": hashes, "config": {}}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        document = json.dumps(manifest).encode()
        tar.addfile(entry("alyx.deploy.json", document), io.BytesIO(document))
        for name, data in files.items():
            tar.addfile(entry(name, data), io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return gzip.compress(raw.getvalue(), mtime=0)


GOOD = {"schema.yaml": SCHEMA.encode(), "functions/hello.js": b"x"}


def refused(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ValidationError) as caught:
        read_bundle(data, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "INVALID_BUNDLE"
    assert caught.value.status == 400
    return caught.value.message


def test_a_well_formed_hand_built_bundle_is_read() -> None:
    contents = read_bundle(pack(GOOD))
    assert dict(contents.files) == GOOD
    assert dict(contents.config) == {}


@pytest.mark.parametrize(
    ("info", "data", "message"),
    [
        (entry("functions/../../x", b"x"), b"x", "member 'functions/../../x' has an empty, '.' or '..'"),
        (entry("../x", b"x"), b"x", "member '../x' has an empty, '.' or '..' path component"),
        (entry("/etc/passwd", b"x"), b"x", "member '/etc/passwd' is an absolute path"),
        (entry("functions\\..\\x", b"x"), b"x", "holds a backslash, NUL or control character"),
        (entry("functions//x", b"x"), b"x", "has an empty, '.' or '..' path component"),
        (
            entry("functions/evil", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
            b"",
            "'functions/evil' is a symbolic link; only regular files and folders may travel",
        ),
        (
            entry("functions/hard", kind=tarfile.LNKTYPE, linkname="schema.yaml"),
            b"",
            "'functions/hard' is a hard link",
        ),
        (
            entry("functions/tty", kind=tarfile.CHRTYPE, devmajor=5, devminor=0),
            b"",
            "'functions/tty' is a character device",
        ),
        (
            entry("functions/disk", kind=tarfile.BLKTYPE, devmajor=8, devminor=0),
            b"",
            "'functions/disk' is a block device",
        ),
        (entry("functions/pipe", kind=tarfile.FIFOTYPE), b"", "'functions/pipe' is a FIFO"),
        (entry("functions/hello.js", b"y"), b"y", "'functions/hello.js' appears twice"),
        (entry("alyx.deploy.json", b"{}"), b"{}", "'alyx.deploy.json' appears twice"),
        (entry(".ssh/authorized_keys", b"k"), b"k", "member '.ssh/authorized_keys' is outside"),
        (entry("alyx.yaml", b"k"), b"k", "member 'alyx.yaml' is outside"),
        (entry("data/alyx.db", b"k"), b"k", "member 'data/alyx.db' is outside"),
        (entry("functions", kind=tarfile.REGTYPE), b"", "member 'functions' is outside"),
        (entry("schema.yaml/x", b"k"), b"k", "member 'schema.yaml/x' is outside"),
    ],
    ids=lambda value: value.name if isinstance(value, tarfile.TarInfo) else "",
)
def test_hostile_members_are_refused_by_name(info: tarfile.TarInfo, data: bytes, message: str) -> None:
    assert message in refused(pack(GOOD, extra=((info, data),)))


def test_a_pax_header_cannot_smuggle_a_path_past_the_checks() -> None:
    smuggled = entry("functions/innocent.js", b"x", pax_headers={"path": "functions/../../etc/cron.d/x"})
    message = refused(pack(GOOD, extra=((smuggled, b"x"),)))
    assert "member 'functions/../../etc/cron.d/x' has an empty, '.' or '..' path component" in message


def test_a_file_and_a_folder_of_the_same_name_are_refused() -> None:
    files = {**GOOD, "functions/a": b"1", "functions/a/b.js": b"2"}
    assert "'functions/a' is both a file and the folder of 'functions/a/b.js'" in refused(pack(files))
    folder = entry("functions/hello.js", kind=tarfile.DIRTYPE)
    assert "'functions/hello.js' appears twice" in refused(pack(GOOD, extra=((folder, b""),)))


def test_a_manifest_that_disagrees_with_the_contents_is_refused() -> None:
    good_hashes = {name: hashlib.sha256(data).hexdigest() for name, data in GOOD.items()}
    wrong = {**good_hashes, "functions/hello.js": hashlib.sha256(b"other").hexdigest()}
    message = refused(pack(GOOD, manifest={"format": 1, "files": wrong, "config": {}}))
    assert "'functions/hello.js' has sha256 " + good_hashes["functions/hello.js"] in message
    missing = {"schema.yaml": good_hashes["schema.yaml"]}
    message = refused(pack(GOOD, manifest={"format": 1, "files": missing, "config": {}}))
    assert "'functions/hello.js' is not listed in alyx.deploy.json" in message
    extra = {**good_hashes, "functions/ghost.js": good_hashes["schema.yaml"]}
    message = refused(pack(GOOD, manifest={"format": 1, "files": extra, "config": {}}))
    assert "alyx.deploy.json lists 'functions/ghost.js', which the bundle does not hold" in message


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("auth.jwt.secret", "config key 'auth.jwt.secret' is not deployable"),
        ("server.port", "config key 'server.port' is not deployable"),
        ("no.such.key", "config key 'no.such.key' is not deployable"),
    ],
)
def test_config_keys_that_are_not_deployable_are_refused(key: str, message: str) -> None:
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in GOOD.items()}
    manifest = {"format": 1, "files": hashes, "config": {key: "x" * 40}}
    assert message in refused(pack(GOOD, manifest=manifest))


def test_a_manifest_of_another_format_or_with_nested_config_values_is_refused() -> None:
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in GOOD.items()}
    manifest: dict[str, object]
    for version in (2, True, "1", None):
        manifest = {"format": version, "files": hashes, "config": {}}
        assert "alyx.deploy.json is not a format 1 manifest" in refused(pack(GOOD, manifest=manifest))
    manifest = {"format": 1, "files": hashes, "config": {"logging.level": {"x": 1}}}
    message = refused(pack(GOOD, manifest=manifest))
    assert "config key 'logging.level': expected a single value or a list, got {'x': 1}" in message


def test_a_missing_manifest_or_schema_is_refused() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.addfile(entry("schema.yaml", b"x"), io.BytesIO(b"x"))
    assert "no alyx.deploy.json member" in refused(gzip.compress(raw.getvalue()))
    assert "the bundle has no schema.yaml" in refused(pack({"functions/a.js": b"x"}))


def test_a_hash_other_than_the_announced_one_is_refused() -> None:
    data = pack(GOOD)
    message = refused(data, expected_sha256="0" * 64)
    assert f"the bundle's sha256 is {hashlib.sha256(data).hexdigest()}, not '{'0' * 64}'" in message
    assert read_bundle(data, expected_sha256=hashlib.sha256(data).hexdigest().upper()).files


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda data: b"PK\3\4 a zip file", "not a gzip'd tar archive"),
        (lambda data: gzip.compress(b"just text, not a tar" * 30), "not a readable tar archive"),
        (lambda data: data[: len(data) // 2], "the gzip stream is cut short"),
        (lambda data: data + b"more", "unexpected data after the end of the gzip stream"),
        (lambda data: data[:20] + bytes(b ^ 0xFF for b in data[20:40]) + data[40:], "invalid bundle"),
    ],
    ids=["zip", "text", "truncated", "trailing", "corrupt"],
)
def test_what_is_not_a_gzipped_tar_is_refused(corrupt: Callable[[bytes], bytes], message: str) -> None:
    assert message in refused(corrupt(pack(GOOD)))


def test_too_many_members_are_refused() -> None:
    files = {**GOOD, **{f"functions/f{n}.js": b"" for n in range(10_001)}}
    assert "more than 10000 members" in refused(pack(files))


def test_an_oversized_packed_bundle_is_refused_with_413() -> None:
    data = pack({**GOOD, "functions/noise.bin": os.urandom(200_000)})
    with pytest.raises(PayloadTooLarge) as caught:
        read_bundle(data, max_size=100_000)
    assert caught.value.status == 413
    assert caught.value.message.startswith("the bundle is over 97.7 KiB packed (deploy.max_bundle_size): ")


def test_a_gzip_bomb_is_refused_without_inflating_it_into_memory() -> None:
    # 64 MiB of zeros packs to about 64 KiB; the limit is 1 MiB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush()
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge) as caught:
            read_bundle(bomb, max_size=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.message.startswith("the bundle is over 1.0 MiB unpacked (deploy.max_bundle_size)")
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while reading a bomb"


def test_the_alyxignore_example_of_docs_deploy_md_does_what_the_page_says(project: Path) -> None:
    page = (Path(__file__).parents[3] / "docs" / "deploy.md").read_text(encoding="utf-8")
    example = page.split("**`.alyxignore`**", 1)[1].split("```\n", 2)[1]
    (project / ".alyxignore").write_text(example)
    (project / "functions" / "stats" / "sample.csv").write_text("a,b\n")
    (project / "functions" / "sample.csv").write_text("a,b\n")
    files = set(build_bundle(project).files)
    assert "functions/fixtures/big.json" not in files
    assert "functions/debug.log" not in files
    assert "functions/stats/sample.csv" not in files
    assert "functions/sample.csv" in files
