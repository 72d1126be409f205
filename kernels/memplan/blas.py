"""Run numpy's BLAS single-threaded while the row-by-row executor works.

The executor multiplies many small matrices (one output row at a time). OpenBLAS splits even those over
its threads, and on a busy two-core machine the threads spin waiting for each other: a (8 x 3456) @
(3456 x 256) product took 63 ms with two threads and 0.3 ms with one. OpenBLAS reads its thread count
from the environment only when it loads, so it is set here through its C API, and restored afterwards.
Where no OpenBLAS is found (another BLAS, another platform) this does nothing.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Iterator

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")
_found: list[tuple[object, object]] | None = None


def _libraries() -> list[tuple[object, object]]:
    global _found
    if _found is not None:
        return _found
    _found = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line and ".so" in line}
    except OSError:
        return _found
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        getter = next((getattr(lib, g) for g in _GETTERS if hasattr(lib, g)), None)
        if setter is not None and getter is not None:
            _found.append((setter, getter))
    return _found


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    import numpy  # noqa: F401  (make sure numpy's OpenBLAS is loaded before looking for it)

    libs = _libraries()
    before = []
    for setter, getter in libs:
        before.append(int(getter()))
        setter(1)
    try:
        yield
    finally:
        for (setter, _), n in zip(libs, before):
            setter(n)
