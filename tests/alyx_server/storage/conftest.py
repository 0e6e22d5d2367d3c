"""The storage backends every storage test runs against: `local` (a folder in tmp_path)
and `s3` (a fresh bucket on a moto server started once for the session, tests/.../s3server.py).

`backend` is the parametrized name; `storage_overrides` the alyx.yaml settings choosing it
for a project; `storage` a `Storage` of that backend, closed after the test. The `s3` tests
are marked `slow` (each storage call is a round trip to moto, several times a folder's
cost), so the fast selection runs the storage tests on `local` alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from alyx_server.storage import LocalStorage, S3Options, S3Storage, Storage
from tests.alyx_server.storage.s3server import S3_ENVIRONMENT, MotoServer, make_bucket, s3_overrides


@pytest.fixture(scope="session")
def s3_environment() -> Iterator[None]:
    """The credentials in the environment, where the S3 client (and `alyx` processes) read them."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory, s3_environment: None) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.kill()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, object]:
    if backend == "local":
        return {}
    moto: MotoServer = request.getfixturevalue("moto")
    return s3_overrides(moto.endpoint, make_bucket(moto.endpoint))


@pytest.fixture
async def storage(
    tmp_path: Path, backend: str, storage_overrides: dict[str, object]
) -> AsyncIterator[Storage]:
    made: Storage
    if backend == "local":
        made = LocalStorage(tmp_path / "storage")
    else:
        made = S3Storage(
            S3Options(
                str(storage_overrides["storage.s3.bucket"]),
                str(storage_overrides["storage.s3.endpoint"]),
                path_style=True,
            )
        )
    yield made
    await made.close()
