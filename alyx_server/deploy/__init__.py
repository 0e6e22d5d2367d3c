"""Deploy: ship a project to a running server (bundle, plan, execute, rollback).

build_bundle(project)            the project's deployable files as one deterministic archive
read_bundle(data, max_size=...)  a received archive, checked member by member
deployable_config(project)       the alyx.yaml keys that travel with a bundle
"""

from alyx_server.deploy.bundle import (
    MAX_BUNDLE_SIZE_DEFAULT,
    Bundle,
    BundleContents,
    build_bundle,
    deployable_config,
    read_bundle,
)

__all__ = [
    "MAX_BUNDLE_SIZE_DEFAULT",
    "Bundle",
    "BundleContents",
    "build_bundle",
    "deployable_config",
    "read_bundle",
]
