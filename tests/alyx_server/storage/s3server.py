"""A real S3-compatible server on loopback for the storage tests: moto's standalone server
(`moto_server`, from the `moto[server]` test dependency) as a subprocess on a free port.

`MotoServer.start()` waits until the port answers; `kill()` stops it at once (SIGKILL), as
a crashed or unplugged service; `start()` again brings it back on the same port (empty:
moto keeps its buckets in memory). `make_bucket` creates a bucket with a plain PUT (the
server does not check signatures). `S3_ENVIRONMENT` holds the credentials the tests give
through the environment, as a deployment would.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.servers import DEADLINE, free_port

__all__ = ["S3_ENVIRONMENT", "MotoServer", "make_bucket", "s3_overrides"]

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "alyx-test-key",
    "AWS_SECRET_ACCESS_KEY": "alyx-test-secret",  # a made-up value for a loopback server
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


class MotoServer:
    """`moto_server` on `127.0.0.1:<port>`, its console in `log`."""

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"moto_server exited:\n{self.log.read_text(errors='replace')}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=5) as answer,
            ):
                if answer.status == 200:
                    return self
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"moto_server did not start:\n{self.log.read_text(errors='replace')}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        self.process = None


def make_bucket(endpoint: str, name: str | None = None) -> str:
    """A new empty bucket on the server; its name."""
    name = name or f"alyx-{uuid.uuid4().hex[:20]}"
    request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
    with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
        assert answer.status == 200
    return name


def s3_overrides(endpoint: str, bucket: str) -> dict[str, object]:
    """alyx.yaml settings of the s3 backend on that server and bucket."""
    return {
        "storage.backend": "s3",
        "storage.s3.bucket": bucket,
        "storage.s3.endpoint": endpoint,
        "storage.s3.path_style": True,
    }
