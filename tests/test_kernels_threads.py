"""TVM's thread pool: ``use_threads`` starts it with the count asked for (default: all cores), and a pool that has
started keeps its count (so a profile records what its kernels really ran with). Each case runs in a fresh
interpreter: the pool is per process and this one's may have started already."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT


def _counts(code: str) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", "from kernels.tvm.threads import use_threads\n" + code],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return [int(v) for v in r.stdout.split()]


@pytest.mark.parametrize("first", [1, 2])
def test_the_pool_runs_the_count_asked_for_and_keeps_it(first):
    other = 3 - first
    assert _counts(f"print(use_threads({first})); print(use_threads({other}))") == [first, first]


def test_default_is_every_core_not_tvms_half():
    # TVM's own default on x86 is half the logical CPUs; ours is all that this process may use.
    assert _counts("import os; print(use_threads(), len(os.sched_getaffinity(0)))") == [len(os.sched_getaffinity(0))] * 2


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: nothing to pin to")
def test_the_calling_thread_keeps_its_cpus():
    # TVM pins the thread that starts its pool; threads started from it later (torch's) would inherit one CPU.
    # (The child starts on every CPU: it would inherit a pinned parent's one.)
    code = ("import os; os.sched_setaffinity(0, range(os.cpu_count())); a = os.sched_getaffinity(0); use_threads(1); "
            "print(int(os.sched_getaffinity(0) == a))")
    assert _counts(code) == [1]
