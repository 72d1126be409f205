import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)

# TVM's pool starts once per process, with whatever count the first caller asks for: pin this one to the shipped
# local profile's (1), so that in-process runs do not depend on which test happens to start it.
from kernels.tvm.threads import use_threads  # noqa: E402

use_threads(1)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python run_sim.py ARGS`` as a user would, capturing output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run_sim.py"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="session")
def reference_model():
    from kernels.reference.store import load_reference

    return load_reference()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rpc_server(tmp_path):
    """A TVM RPC server on 127.0.0.1 in its own process group (a phone stands in), stopped after the test."""
    port = free_port()
    log = open(tmp_path / "rpc.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port),
                             "--port-end", str(port + 1)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"rpc_server exited: {(tmp_path / 'rpc.log').read_text()[-2000:]}")
            if "bind to" in (tmp_path / "rpc.log").read_text():
                break
            time.sleep(0.2)
        else:
            pytest.fail("rpc_server did not start")
        yield f"rpc://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``run_sim.py ARGS`` in this process: exit status, stdout, stderr."""
    from engram.cli import main

    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def export_default_bundle(out: Path, policy: str = "smtm") -> tuple[Path, str]:
    """``run_sim.py export --policy POLICY --out OUT`` on the defaults (shipped profile, trace, calibration trace);
    the bundle's path and what the command printed."""
    import contextlib
    import io

    from engram.cli import main

    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = main(["export", "--policy", policy, "--out", str(out)])
    assert rc == 0, err.getvalue()
    return out, buf.getvalue()

