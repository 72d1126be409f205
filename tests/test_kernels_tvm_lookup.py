"""The semantic-lookup kernel computes what the encoders do, for any number of cached entries."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.tvm.lookup import LookupInputs, compile_lookup
from kernels.tvm.targets import local_target


@pytest.fixture(scope="module")
def vm():
    import tvm
    from tvm import relax

    ex = compile_lookup((32, 8, 8), 16, local_target().target)
    return relax.VirtualMachine(ex, tvm.cpu())


@pytest.mark.parametrize("n", [1, 2, 5, 1024])
def test_lookup_matches_numpy(vm, n):
    import tvm

    li = LookupInputs.make((32, 8, 8), 16, n, seed=n)
    top1, idx, top2 = vm["main"](*[tvm.runtime.tensor(a, tvm.cpu()) for a in li.arrays()])
    want1, want_i, want2 = li.reference()
    assert int(idx.numpy()[0]) == want_i
    assert float(top1.numpy()[0]) == pytest.approx(want1, abs=1e-5)
    if n > 1:
        assert float(top2.numpy()[0]) == pytest.approx(want2, abs=1e-5)
    else:
        assert float(top2.numpy()[0]) < -1e30


def test_lookup_with_a_real_encoder(vm):
    import tvm

    from kernels.reference.encoders import SemanticEncoder

    rng = np.random.default_rng(0)
    comp = np.linalg.qr(rng.standard_normal((32, 16)))[0].T.astype(np.float32)
    enc = SemanticEncoder("b3", rng.standard_normal(32).astype(np.float32), comp, np.zeros((4, 16), np.float32))
    li = LookupInputs.make((32, 8, 8), 16, 64, seed=1, encoder=enc)
    _, idx, _ = vm["main"](*[tvm.runtime.tensor(a, tvm.cpu()) for a in li.arrays()])
    import torch

    v = enc.encode(torch.from_numpy(li.x))
    assert int(idx.numpy()[0]) == int(np.argmax(v @ li.centres_t))
