"""How many worker threads TVM's CPU thread pool runs in this process.

TVM reads ``TVM_NUM_THREADS`` once, when its pool starts (the first parallel kernel, or
``tvm.runtime.num_threads()``), and keeps that pool for the life of the process
(``runtime.config_threadpool`` did not change the count here). Left unset on x86 it takes half the logical CPUs,
assuming hyper-threading: one on this 2-vCPU machine, and that default ran the whole reference CNN at 0.89-1.06 ms
against 0.67-0.77 ms with ``TVM_NUM_THREADS=1`` and 0.53-0.56 ms with 2, in three alternating runs of each
(2026-11-22). A profile is only a prediction for the runtime if both run with the same count, so every command that
times or runs kernels here sets it explicitly, and a profile records it.
"""

from __future__ import annotations

import os

ENV = "TVM_NUM_THREADS"


def all_cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def use_threads(n: int | None = None) -> int:
    """Ask for ``n`` worker threads (default: all cores) and start TVM's pool; returns the count in force, which
    differs from ``n`` only when the pool had already started in this process (then it cannot change)."""
    want = int(n) if n else all_cores()
    os.environ[ENV] = str(want)
    import tvm

    cpus = os.sched_getaffinity(0)
    got = int(tvm.runtime.num_threads())
    # Starting the pool pins the calling thread to one CPU (with one TVM thread, to CPU 0), and every thread it
    # starts later inherits that: torch's and BLAS's, which then share one CPU (the test suite took 15 min
    # instead of 7 so). Kernels ran as fast with the calling thread let go again (0.69-0.71 against 0.69-0.73 ms).
    os.sched_setaffinity(0, cpus)
    return got
