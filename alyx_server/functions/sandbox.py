"""How a worker process is started: inside bubblewrap when it is installed, else plainly.

Inside bubblewrap a worker sees only

    /usr (and /lib*, /bin as the host has them)   the system's programs and libraries
    <python prefix>                               the interpreter, when not under /usr
    /alyx/runtime                                 runtimes/<lang>: executor and SDK
    /alyx/node_modules/@alyx/functions            the Node SDK (Node only)
    /alyx/function                                the function's folder, or its one file
    /alyx/api.sock                                the internal API's socket
    /tmp (private tmpfs), /proc, /dev

all read-only except /tmp (the root itself too: nothing can be created beside the
function, in /alyx or in /), with an empty environment plus the manifest's `env`, no
network unless the manifest says `network: true`, no capabilities, new namespaces, and
death with the server. The data directory, the project and the JWT secret are simply
not there. Without bubblewrap, the worker runs as the server's user with only the
environment cleared; `FunctionService` warns about it at start.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alyx_server.functions.manifest import FunctionSpec

__all__ = ["SANDBOX_SOCKET", "Launch", "ProcessSandbox", "Runtimes"]

SANDBOX_SOCKET = "/alyx/api.sock"
_SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
# Read only when the function may use the network: name resolution and TLS roots.
_NETWORK_FILES = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
    "/etc/ssl", "/etc/ca-certificates", "/etc/pki",
)  # fmt: skip
_BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}


@dataclass(frozen=True, slots=True)
class Runtimes:
    """Where the executors and interpreters are on this machine."""

    folder: Path
    python: str
    python_prefix: Path
    node: str | None

    @classmethod
    def detect(cls, folder: Path) -> Runtimes:
        """The runtimes shipped with Alyx, the interpreter running Alyx, and `node` on PATH."""
        python = str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())
        return cls(folder, python, Path(sys.base_prefix).resolve(), shutil.which("node"))


@dataclass(frozen=True, slots=True)
class Launch:
    """A worker's command line and environment, and the paths as the worker sees them."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    alyx_url: str
    sandboxed: bool
    # Host path -> path seen by the worker, to show load errors with real file names.
    mounts: Mapping[str, str]


class ProcessSandbox:
    """Builds the `Launch` of a function's worker; see the module docstring."""

    def __init__(self, runtimes: Runtimes, socket_path: Path, *, bwrap: str | None) -> None:
        self.runtimes = runtimes
        self.socket_path = socket_path
        self.bwrap = bwrap

    def launch(self, spec: FunctionSpec) -> Launch:
        if self.bwrap is not None:
            return self._bubblewrap(spec, self.bwrap)
        return self._plain(spec)

    def _executor(self, spec: FunctionSpec, runtime_dir: str, file: str, url: str) -> list[str]:
        """The executor's command: `<name> <file> <internal API url>` (the url for its warm-up)."""
        if spec.runtime == "python":
            return [self.runtimes.python, "-I", "-B", f"{runtime_dir}/executor.py", spec.name, file, url]
        node = self.runtimes.node
        if node is None:
            raise FileNotFoundError("node is not installed: Node.js functions cannot run (install nodejs)")
        return [node, f"{runtime_dir}/executor.mjs", spec.name, file, url]

    def _plain(self, spec: FunctionSpec) -> Launch:
        runtime_dir = self.runtimes.folder / spec.runtime
        url = f"unix://{self.socket_path}"
        argv = self._executor(spec, str(runtime_dir), str(spec.source), url)
        env = {**_BASE_ENV, **spec.env}
        if spec.runtime == "node":
            # Outside the sandbox "@alyx/functions" resolves through a loader hook (ES
            # modules) and NODE_PATH (require).
            argv[1:1] = ["--import", (runtime_dir / "register-hook.mjs").as_uri()]
            env["NODE_PATH"] = str(runtime_dir / "packages")
        cwd = spec.folder or spec.source.parent
        return Launch(argv, env, str(cwd), url, False, {})

    def _bubblewrap(self, spec: FunctionSpec, bwrap: str) -> Launch:
        runtime_dir = self.runtimes.folder / spec.runtime
        args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"]
        if spec.network:
            args.append("--share-net")
        args += ["--clearenv", *self._system_mounts(spec)]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/alyx"]
        args += ["--ro-bind", str(runtime_dir), "/alyx/runtime"]
        if spec.runtime == "node":
            args += ["--ro-bind", str(runtime_dir / "packages"), "/alyx/node_modules"]
        mounts: dict[str, str] = {}
        if spec.folder is not None:
            args += ["--ro-bind", str(spec.folder), "/alyx/function"]
            inner = f"/alyx/function/{spec.source.name}"
            mounts[str(spec.folder)] = "/alyx/function"
        else:
            inner = f"/alyx/function/{spec.source.name}"
            args += ["--dir", "/alyx/function", "--ro-bind", str(spec.source), inner]
            mounts[str(spec.source)] = inner
        args += ["--bind", str(self.socket_path), SANDBOX_SOCKET]
        # bwrap builds the root on a writable tmpfs: without this a function could create
        # files in /alyx/function (beside a one-file function), /alyx or /. Last of the
        # mounts, so the private /tmp (its own mount) stays writable.
        args += ["--remount-ro", "/"]
        env = {**_BASE_ENV, **spec.env}
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--chdir", "/alyx/function", "--"]
        argv = args + self._executor(spec, "/alyx/runtime", inner, f"unix://{SANDBOX_SOCKET}")
        return Launch(argv, {}, "/", f"unix://{SANDBOX_SOCKET}", True, mounts)

    def _system_mounts(self, spec: FunctionSpec) -> list[str]:
        out: list[str] = []
        for top in _SYSTEM:
            path = Path(top)
            if path.is_symlink():
                out += ["--symlink", str(path.readlink()), top]
            elif path.is_dir():
                out += ["--ro-bind", top, top]
        prefix = self.runtimes.python_prefix
        if spec.runtime == "python" and not any(prefix.is_relative_to(top) for top in _SYSTEM):
            out += ["--ro-bind", str(prefix), str(prefix)]
        if spec.network:
            for name in _NETWORK_FILES:
                out += ["--ro-bind-try", name, name]
        return out
