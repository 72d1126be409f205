"""The timers the profiler uses, on plain Python callables whose cost is known (sleeps)."""

import time

import numpy as np
import pytest

from kernels.tvm.timing import CallTimer, ChainTimer, latency_stats, trimmed


def _sleeper(ms: float, seen: list):
    def f(x):
        seen.append(x)
        time.sleep(ms / 1000.0)
        return x + 1

    return f


def test_chain_feeds_each_block_the_previous_output_and_times_each(monkeypatch):
    """On a clock that only the blocks advance (a sleep can overshoot by milliseconds on a loaded machine), each
    block is charged exactly its own cost and the pass its sum."""
    clock = [0]
    monkeypatch.setattr(time, "perf_counter_ns", lambda: clock[0])
    seen: list = []

    def block(ms: float):
        def f(x):
            seen.append(x)
            clock[0] += int(ms * 1e6)
            return x + 1
        return f

    per_block, total = ChainTimer([block(2.0), block(6.0), block(1.0)], 10).run()
    assert seen == [10, 11, 12]
    assert per_block.tolist() == pytest.approx([2.0, 6.0, 1.0], abs=1e-12)
    assert total == pytest.approx(9.0, abs=1e-12)


def test_chain_calibration_and_sample_run_the_passes():
    seen: list = []
    chain = ChainTimer([_sleeper(1.0, seen), _sleeper(1.0, seen)], 0)
    passes = chain.calibrate(8.0)
    assert 1 <= passes <= 4  # about 8 ms of passes that take at least 2 ms (more on a loaded machine)
    chain.passes = 3
    seen.clear()
    per_block, total = chain.sample_ms()
    assert len(seen) == 2 * 3
    assert per_block.min() >= 1.0 and total >= per_block.sum()


def _clocked(costs_ns: list, clock: list):
    """A block that advances a fake clock by the next of ``costs_ns`` each time it is called."""
    it = iter(costs_ns)

    def f(x):
        clock[0] += next(it)
        return x

    return f


def test_chain_sample_drops_its_slowest_passes_whole(monkeypatch):
    """One pass that an interrupt hits (50x the block's cost) is dropped for every block, so the blocks still add up
    to the total; the rest are averaged. Without trimming the spike is in the mean."""
    clock = [0]
    monkeypatch.setattr(time, "perf_counter_ns", lambda: clock[0])
    costs = [1_000_000, 1_000_000, 50_000_000, 1_000_000, 1_200_000]
    for run_trim, want in ((0.25, 1.05), (0.0, 10.84)):
        chain = ChainTimer([_clocked(costs, clock), _clocked([2_000_000] * 5, clock)], 0, run_trim=run_trim)
        chain.passes = 5
        per_block, total = chain.sample_ms()
        assert per_block.tolist() == pytest.approx([want, 2.0])
        assert total == pytest.approx(want + 2.0)


def test_call_timer_drops_its_slowest_calls(monkeypatch):
    clock = [0]
    monkeypatch.setattr(time, "perf_counter_ns", lambda: clock[0])
    calls = []
    f = _clocked([300_000, 200_000, 9_000_000, 250_000, 400_000], clock)
    t = CallTimer(lambda x: calls.append(x) or f(x), "x", number=5)
    assert t.sample_ms() == pytest.approx(0.2875)  # the fastest 4 of 5 calls
    assert calls == ["x"] * 5


@pytest.mark.parametrize("trim", [0.0, 0.2, 0.5])
def test_trimming_drops_only_the_slowest(trim):
    samples = [1.0, 1.1, 0.9, 50.0, 1.05, 0.95, 1.0, 40.0, 1.02, 0.98]
    kept = trimmed(samples, trim)
    assert len(kept) == int(np.ceil(len(samples) * (1 - trim)))
    assert kept.min() == 0.9
    st = latency_stats(samples, 0.2)
    assert st["max_ms"] < 40.0 and st["samples"] == 8 and st["min_ms"] <= st["median_ms"] <= st["p90_ms"]


def test_call_overhead_is_the_clamped_median_of_the_differences():
    from kernels.tvm.timing import call_overhead_ms

    assert call_overhead_ms([0.004, 0.002, 0.1, 0.003, -0.001]) == pytest.approx(0.003)  # one outlier, one negative
    assert call_overhead_ms([-0.002, -0.001, 0.0005]) == 0.0  # noise around nothing is nothing
    assert call_overhead_ms([]) == 0.0


def test_kernel_timer_times_runs_one_by_one_and_drops_the_slowest():
    """Against a stand-in VM that records how time_evaluator is asked and answers per-run times (seconds)."""
    from types import SimpleNamespace

    from kernels.tvm.timing import KernelTimer

    asked = []

    class VM:
        def set_input(self, func, *args):
            asked.append(("set_input", func, args))

        def time_evaluator(self, name, dev, number, repeat):
            asked.append(("time_evaluator", name, number, repeat))
            return lambda func: SimpleNamespace(results=[0.001] * (repeat - 1) + [0.5])  # one run hit by an interrupt

    t = KernelTimer(VM(), "cpu", ["x"], number=7, func="b1")
    assert t.sample_ms() == pytest.approx(1.0)
    assert asked[0] == ("set_input", "b1", ("x",)) and asked[-1] == ("time_evaluator", "invoke_stateful", 1, 7)
