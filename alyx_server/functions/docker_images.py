"""The images of the Docker backend's workers, built from `runtimes/<lang>/Dockerfile`.

    alyx-runtime-python:<digest>   FROM alyx-python-base:local + executor and SDK
    alyx-runtime-node:<digest>     FROM alyx-node-base:local + executor and @alyx/functions

The digest covers the build context (the runtime folder, less `__pycache__`) and the id
of the base image, so an upgraded Alyx or a re-imported base builds a new image, and an
unchanged one is built only once per engine; older images of a runtime are removed when
a new one is built (unless a container still uses them). Nothing is ever pulled: a
missing base image is an error that says how to make one, checked before the build
(whose `FROM` would otherwise try a registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from pathlib import Path

import docker
import docker.errors

__all__ = ["DEFAULT_BASE_IMAGES", "ImageError", "RuntimeImages"]

DEFAULT_BASE_IMAGES: Mapping[str, str] = {
    "python": "alyx-python-base:local",
    "node": "alyx-node-base:local",
}
_IGNORED = ("__pycache__",)


class ImageError(Exception):
    """A runtime image could not be had (missing base image, failed build)."""


def context_digest(folder: Path, base_id: str) -> str:
    """A short digest of every file of a build context and of the base image's id."""
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part in _IGNORED for part in path.relative_to(folder).parts):
            continue
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class RuntimeImages:
    """Builds (once) and names the image of each runtime; see the module docstring."""

    def __init__(
        self,
        client: docker.DockerClient,
        runtimes_folder: Path,
        base_images: Mapping[str, str] = DEFAULT_BASE_IMAGES,
    ) -> None:
        self.client = client
        self.folder = runtimes_folder
        self.base_images = dict(base_images)
        self._tags: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def tag(self, runtime: str) -> str:
        """The image tag of `runtime`, built on first use (ImageError)."""
        known = self._tags.get(runtime)
        if known is not None:
            return known
        lock = self._locks.setdefault(runtime, asyncio.Lock())
        async with lock:
            if runtime not in self._tags:
                self._tags[runtime] = await asyncio.to_thread(self._ensure, runtime)
        return self._tags[runtime]

    def _ensure(self, runtime: str) -> str:
        context = self.folder / runtime
        dockerfile = context / "Dockerfile"
        if not dockerfile.is_file():
            raise ImageError(f"no Dockerfile for the {runtime} runtime at {dockerfile}")
        base = self.base_images.get(runtime, f"alyx-{runtime}-base:local")
        try:
            base_id = str(self.client.images.get(base).id)
        except docker.errors.ImageNotFound as e:
            raise ImageError(
                f"the base image {base} of the {runtime} runtime is missing from the Docker engine; "
                f"import a root filesystem with {'python3' if runtime == 'python' else 'nodejs'} "
                f"under that name (docs/functions.md, 'Docker backend', shows how with debootstrap)"
            ) from e
        tag = f"alyx-runtime-{runtime}:{context_digest(context, base_id)}"
        try:
            self.client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        try:
            self.client.images.build(
                path=str(context),
                tag=tag,
                buildargs={"BASE": base},
                pull=False,
                rm=True,
                forcerm=True,
                network_mode="none",
                labels={"alyx.runtime": runtime},
            )
        except (docker.errors.BuildError, docker.errors.APIError) as e:
            raise ImageError(f"building the {runtime} runtime image from {dockerfile} failed: {e}") from e
        self._remove_older(runtime, tag)
        return tag

    def _remove_older(self, runtime: str, tag: str) -> None:
        """Older images of the runtime (another Alyx, another base) unless a container uses them."""
        for image in self.client.images.list(filters={"label": f"alyx.runtime={runtime}"}):
            if tag in image.tags:
                continue
            for old in image.tags or [str(image.id)]:
                # An image still in use by a container (another server) stays: APIError 409.
                with contextlib.suppress(docker.errors.APIError):
                    self.client.images.remove(old, noprune=False)
