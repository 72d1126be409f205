import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python run_sim.py ARGS`` as a user would, capturing output."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run_sim.py"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="session")
def reference_model():
    from kernels.reference.store import load_reference

    return load_reference()
