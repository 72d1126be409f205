"""Per-frame decisions of each policy kind: which exit a frame leaves at, its answer, what it costs.

An engine is asked about frames in arrival order (``decide(i)``), only for frames the device actually
processes (dropped frames are skipped), and returns the frame's service time. Everything it decides is kept in
per-frame arrays for the metrics, the report and the timeline. The stateful engines (the semantic cache,
FoggyCache) live in their own modules.
"""

from __future__ import annotations

import numpy as np

from profiles.format import INPUT_KEY
from simulator.device import DeviceModel
from simulator.policy import Policy
from simulator.workload import Workload

NOT_PROCESSED = -2
FULL = -1
INPUT = -3  # answered at the input (FoggyCache's records, a policy's input level): no block ran


class Engine:
    """Common state: per-frame result arrays and the device's cumulative costs along the enabled exits."""

    kind = "base"

    def __init__(self, workload: Workload, device: DeviceModel, policy: Policy, enabled: tuple[str, ...]) -> None:
        self.w = workload
        self.device = device
        self.policy = policy
        self.enabled = enabled
        self.proc = device.processor(policy.processor)
        n = len(workload)
        E = len(enabled)
        self.ex_idx = np.array([workload.exit_index(e) for e in enabled], dtype=np.int64)  # into workload arrays
        blocks = np.array([device.exit_block_index(e) for e in enabled], dtype=np.int64)
        cum_ms = np.cumsum(self.proc.block_ms)
        cum_mj = np.cumsum(self.proc.block_mj)
        self.prefix_ms = cum_ms[blocks] if E else np.zeros(0)
        self.prefix_mj = cum_mj[blocks] if E else np.zeros(0)
        self.full_ms = float(cum_ms[-1])
        self.full_mj = float(cum_mj[-1])
        self.exit_pos = np.full(n, NOT_PROCESSED, dtype=np.int64)  # index into enabled, FULL, or NOT_PROCESSED
        self.answer = np.full(n, -1, dtype=np.int64)
        self.level = np.full(n, -1, dtype=np.int8)  # cache level of a hit (0 hot, 1 cold), -1 otherwise
        self.compute_ms = np.zeros(n)
        self.lookup_ms = np.zeros(n)
        self.update_ms = np.zeros(n)
        self.energy_mj = np.zeros(n)  # active energy of the frame
        self.entries = np.zeros(n, dtype=np.int64)  # cache entries when the frame was decided
        self.input_ms = np.zeros(n)  # an input level's probe before the model (part of lookup_ms)
        self.lookups = np.zeros((n, E))  # lookup time charged at each enabled exit (for the timeline)
        self.cache_bytes = 0  # peak
        self.scene_changes: list[int] = []  # frames at which a scene change was acted on
        # Blocks in other than plain inference's conditions (a profile's runtime section): cold, because earlier
        # frames stopped before them or were answered at the input (which processed frame each block last ran in,
        # and what the frames since did instead), and after a lookup in the same frame.
        nb = len(self.proc.block_ms)
        cold = self.proc.cold_by_gap()
        self._cold = None
        if cold:
            # Rows: one per enabled exit, then the input row (zeros where the profile has no row).
            width = next(iter(cold.values())).shape[1]
            self._cold = np.zeros((E + 1, nb, width))
            for k, e in enumerate((*enabled, INPUT_KEY)):
                if e in cold:
                    self._cold[k] = cold[e]
        self._exit_block = [int(b) for b in blocks]
        self._last_ran = np.full(nb, -1, dtype=np.int64)
        self._served = 0
        # Per block, the row of what the frames since it last ran did: the latest that stopped at an enabled exit
        # (its index), E if they were all answered at the input, -1 if none has been processed since.
        self._since = np.full(nb, -1, dtype=np.int64)
        after = self.proc.after_lookup_ms
        self._after = np.array([after.get(e, np.zeros(nb)) for e in enabled]).reshape(E, nb) if after else None
        self._enabled_index = {e: k for k, e in enumerate(enabled)}
        self.cold_ms = np.zeros(n)  # the frame's blocks' cold price (part of compute_ms)
        self.after_lookup_ms = np.zeros(n)  # what its blocks cost more after its lookups (part of compute_ms)

    def serve(self, i: int) -> float:
        """Decide frame ``i`` and return its service time (seconds), with what its blocks cost beyond their plain
        price: those that earlier frames skipped by stopping at an exit point before them or by being answered at
        the input (cold), and those after one of its own lookups."""
        service = self.decide(i)
        if self._cold is None and self._after is None:
            return service
        pos = int(self.exit_pos[i])
        ran = len(self._last_ran) if pos == FULL else self._exit_block[pos] + 1 if pos >= 0 else 0
        cold = after = 0.0
        if self._cold is not None and ran:
            # Each block at the gap since it last ran, on the row of the latest exit a frame stopped at since then
            # (an input answer in between does not undo that frame's work), else the input row.
            sel = np.flatnonzero(self._since[:ran] >= 0)
            if len(sel):
                gaps = np.minimum(self._served - self._last_ran[sel] - 1, self._cold.shape[2] - 1)
                cold = float(self._cold[self._since[sel], sel, gaps].sum())
        if self._after is not None and ran:
            # Each block after the latest lookup before it in this frame.
            owner = np.full(ran, -1, dtype=np.int64)
            for e, _ in self.lookup_breakdown(i):
                k = self._enabled_index[e]
                owner[self._exit_block[k] + 1:] = k
            sel = np.flatnonzero(owner >= 0)
            after = float(self._after[owner[sel], sel].sum())
        self._last_ran[:ran] = self._served
        self._served += 1
        self._since[:ran] = -1
        if pos >= 0:
            self._since[ran:] = pos
        elif pos == INPUT and self._cold is not None:
            rest = self._since[ran:]
            rest[rest < 0] = len(self._cold) - 1  # the input row
        extra = cold + after
        if extra:
            self.cold_ms[i], self.after_lookup_ms[i] = cold, after
            self.compute_ms[i] += extra
            self.energy_mj[i] += extra * self.proc.active_mw / 1000.0
        return service + extra / 1000.0

    def service_ms(self, i: int) -> float:
        return self.compute_ms[i] + self.lookup_ms[i] + self.update_ms[i]

    def lookup_breakdown(self, i: int) -> list[tuple[str, float]]:
        """(exit, ms) of every lookup (or head) frame ``i`` paid for, in order (for the timeline)."""
        return [(e, float(ms)) for e, ms in zip(self.enabled, self.lookups[i]) if ms > 0]

    def decide(self, i: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class NoCacheEngine(Engine):
    kind = "no-cache"

    def decide(self, i: int) -> float:
        self.exit_pos[i] = FULL
        self.answer[i] = self.w.prediction[i]
        self.compute_ms[i] = self.full_ms
        self.energy_mj[i] = self.full_mj
        return self.full_ms / 1000.0


class BranchyEngine(Engine):
    """BranchyNet-style: a frame stops at the first enabled exit whose head's entropy is under its threshold.

    A head's cost is not in the profile; it is charged as a lookup against as many entries as the model has
    classes (the same number of multiply-accumulates: one dot product per class).
    """

    kind = "branchy"

    def __init__(self, *args) -> None:
        super().__init__(*args)
        thr = np.array([self.policy.branchy.thresholds[e] for e in self.enabled])
        ent = self.w.head_entropy[:, self.ex_idx]
        flags = ent <= thr[None, :]
        any_exit = flags.any(axis=1)
        first = np.where(any_exit, np.argmax(flags, axis=1), FULL)
        head = np.array([self.device.lookup_cost(e, self.w.num_classes) for e in self.enabled]).reshape(-1, 2)
        cum_head_ms = np.cumsum(head[:, 0])
        cum_head_mj = np.cumsum(head[:, 1])
        rows = np.arange(len(self.w))
        self._first = first
        self._answer = np.where(any_exit, self.w.head_pred[rows, self.ex_idx[np.maximum(first, 0)]], self.w.prediction)
        self._compute = np.where(any_exit, self.prefix_ms[np.maximum(first, 0)], self.full_ms)
        self._lookup = np.where(any_exit, cum_head_ms[np.maximum(first, 0)], cum_head_ms[-1])
        self._energy = np.where(any_exit, self.prefix_mj[np.maximum(first, 0)] + cum_head_mj[np.maximum(first, 0)],
                                self.full_mj + cum_head_mj[-1])
        visited = np.arange(len(self.enabled))[None, :] <= np.where(any_exit, first, len(self.enabled))[:, None]
        self._lookups = visited * head[None, :, 0]

    def decide(self, i: int) -> float:
        self.exit_pos[i] = self._first[i]
        self.answer[i] = self._answer[i]
        self.compute_ms[i] = self._compute[i]
        self.lookup_ms[i] = self._lookup[i]
        self.energy_mj[i] = self._energy[i]
        self.lookups[i] = self._lookups[i]
        return (self.compute_ms[i] + self.lookup_ms[i]) / 1000.0


class DeepCacheEngine(Engine):
    """DeepCache-style reuse of the previous frame's computation (answers are the full model's).

    With a share ``d`` of the frame changed since the previous processed frame of the same video, block ``b``
    (0-based, first ``max_blocks`` blocks only) recomputes ``min(1, d * (1 + growth)**(b + 1))`` of its
    output and reuses the rest; block matching costs ``overhead_fraction`` of the full latency. A frame whose
    predecessor was dropped, or the first of a video, has nothing to reuse.
    """

    kind = "deepcache"

    def __init__(self, *args) -> None:
        super().__init__(*args)
        cfg = self.policy.deepcache
        nb = len(self.proc.block_ms)
        k = min(cfg.max_blocks, nb)
        self._growth = (1.0 + cfg.growth) ** np.arange(1, k + 1)
        self._k = k
        self._overhead = cfg.overhead_fraction * self.full_ms
        self._last = -10

    def decide(self, i: int) -> float:
        w = self.w
        ms, mj = self.proc.block_ms, self.proc.block_mj
        reuse_ok = self._last == i - 1 and not w.new_video[i]
        self._last = i
        self.exit_pos[i] = FULL
        self.answer[i] = w.prediction[i]
        if reuse_ok:
            recompute = np.minimum(1.0, w.frame_diff[i] * self._growth)
            k = self._k
            compute = float(np.dot(ms[:k], recompute) + ms[k:].sum())
            energy = float(np.dot(mj[:k], recompute) + mj[k:].sum())
            overhead = self._overhead
        else:
            compute, energy, overhead = self.full_ms, self.full_mj, 0.0
        self.compute_ms[i] = compute
        self.lookup_ms[i] = overhead
        self.energy_mj[i] = energy + overhead * self.proc.active_mw / 1000.0
        return (compute + overhead) / 1000.0
