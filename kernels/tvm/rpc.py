"""Where kernels run: this machine, or a device behind TVM's RPC server (``rpc://HOST:PORT[/KEY]``).

A phone runs TVM's RPC app (or ``python -m tvm.exec.rpc_server`` on a board); the host compiles, exports
each module as a library, uploads it under a unique name (re-uploading a name crashed the server's
worker in TVM 0.27), loads it remotely and times it there with ``time_evaluator``, so no host<->device
copy is inside a measurement.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engram.errors import EngramError
from kernels.tvm.targets import TargetSpec

RPC_URL = re.compile(r"^rpc://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})(?:/(?P<key>[A-Za-z0-9_.:-]+))?/?$")


@dataclass(frozen=True)
class DeviceAddress:
    kind: str  # local | rpc
    host: str | None = None
    port: int | None = None
    key: str | None = None

    @property
    def url(self) -> str:
        if self.kind == "local":
            return "local"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"rpc://{host}:{self.port}" + (f"/{self.key}" if self.key else "")


def parse_device(text: str) -> DeviceAddress:
    """``local`` or ``rpc://HOST:PORT[/KEY]``."""
    if text == "local":
        return DeviceAddress("local")
    m = RPC_URL.match(text or "")
    if not m:
        raise EngramError(f"device must be 'local' or rpc://HOST:PORT[/KEY], got {text!r}")
    port = int(m["port"])
    if not 0 < port < 65536:
        raise EngramError(f"port {port} out of range in {text!r}")
    return DeviceAddress("rpc", m["host"].strip("[]"), port, m["key"])


@dataclass
class Session:
    address: DeviceAddress
    target: TargetSpec
    device: Any
    remote: Any = None
    _tmp: Path | None = None
    _loaded: list = field(default_factory=list)

    def load(self, executable: Any, name: str) -> Any:
        """A Relax VM for ``executable`` on this session's device."""
        from tvm import relax

        if self.remote is None:
            return relax.VirtualMachine(executable, self.device)
        assert self._tmp is not None
        fname = f"engram_{uuid.uuid4().hex[:12]}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}.so"
        path = self._tmp / fname
        _export(executable, path, self.target)
        self.remote.upload(str(path))
        rlib = self.remote.load_module(fname)
        self._loaded.append(rlib)
        return relax.VirtualMachine(rlib, self.device)

    def tensor(self, array: np.ndarray) -> Any:
        import tvm

        return tvm.runtime.tensor(np.ascontiguousarray(array), self.device)

    def close(self) -> None:
        self._loaded.clear()
        self.remote = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _export(executable: Any, path: Path, target: TargetSpec) -> None:
    """Export a VM executable as a shared library the remote side can load."""
    import platform

    triple = str(target.target.host.attrs.get("mtriple", "") if target.target.host is not None else "") or \
        str(target.target.attrs.get("mtriple", ""))
    if not triple or triple.startswith(platform.machine()):
        executable.export_library(str(path))
        return
    import os

    from tvm.support import cc, ndk

    if triple.endswith("android") and os.environ.get("TVM_NDK_CC"):
        executable.export_library(str(path), fcompile=ndk.create_shared)
        return
    compiler = shutil.which(f"{triple.split('-')[0]}-linux-gnu-gcc")
    if compiler is None:
        raise EngramError(f"cannot link a {triple} library here: install gcc-aarch64-linux-gnu or set TVM_NDK_CC "
                          "(Android NDK clang)")
    executable.export_library(str(path), fcompile=cc.cross_compiler(compiler))


def open_session(device: str | DeviceAddress, target: TargetSpec, timeout_s: float = 30.0) -> Session:
    """Connect to ``device`` (``local`` or ``rpc://...``) for kernels compiled for ``target``."""
    import tvm

    addr = device if isinstance(device, DeviceAddress) else parse_device(device)
    if addr.kind == "local":
        if not target.runnable_locally:
            raise EngramError(f"target {target.name} cannot run on this machine; profile it through rpc://HOST:PORT")
        return Session(addr, target, tvm.cpu(0))
    from tvm import rpc

    try:
        remote = rpc.connect(addr.host, addr.port, key=addr.key or "", session_timeout=0)
    except Exception as exc:  # noqa: BLE001 - TVM raises plain TVMError/RuntimeError for every network failure
        raise EngramError(f"cannot connect to {addr.url}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    dev = remote.cpu(0) if target.kind == "cpu" else remote.cl(0)
    return Session(addr, target, dev, remote, Path(tempfile.mkdtemp(prefix="engram-rpc-")))
