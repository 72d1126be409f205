"""The device as a SimPy discrete-event model.

The camera delivers frame ``i`` at ``arrival_s[i]``. The processor that runs the model is a SimPy resource
of capacity one; a frame holds it for its whole service (the blocks it runs, its lookups, its cache update:
the engine decides those when the frame starts). Frames that arrive while it is busy wait in its queue, up
to ``queue.capacity`` of them; beyond that the newest arrival (or, by policy, the oldest waiting frame) is
dropped. A frame is one SimPy process: per-block events would cost far more and change nothing, since
nothing else can use the processor in the middle of a frame.

Fast path: a frame that finds the processor idle and will finish before the next frame arrives cannot meet
any other frame, so the camera process serves it inline instead of with a request, a process, a timeout and
a release; a whole run of such frames is served inline and the clock catches up in one timeout at the end of
the run (at the frame rates where a cache matters most frames are such; the queueing model is untouched,
since whenever two frames could meet the resource is used).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import simpy

from simulator.policy import QueueConfig


@dataclass
class DesResult:
    start_s: np.ndarray  # service start (nan if dropped)
    finish_s: np.ndarray  # service end (nan if dropped)
    dropped: np.ndarray  # bool
    end_s: float  # simulated time when the last frame left


def run_des(arrival_s: np.ndarray, decide, queue: QueueConfig) -> DesResult:
    """Replay arrivals through one processor; ``decide(i) -> service seconds`` is called at service start."""
    n = len(arrival_s)
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    dropped = np.zeros(n, dtype=bool)
    env = simpy.Environment(initial_time=float(arrival_s[0]) if n else 0.0)
    proc = simpy.Resource(env, capacity=1)
    waiting: deque = deque()  # (frame, request) in arrival order, not yet started

    def frame(i: int, req, service: float | None = None):
        yield req
        if service is None:
            waiting.popleft()
            start[i] = env.now
            service = decide(i)
        yield env.timeout(service)
        proc.release(req)
        finish[i] = env.now

    def camera():
        i = 0
        while i < n:
            t = arrival_s[i]
            if t > env.now:
                yield env.timeout(t - env.now)
            if proc.count < proc.capacity and not waiting:
                # A run of frames that each find the processor idle and finish before the next arrival meets no
                # other frame: serve them inline and let the clock catch up in one timeout when the run ends.
                while True:
                    start[i] = t
                    service = decide(i)
                    nxt = arrival_s[i + 1] if i + 1 < n else np.inf
                    if t + service > nxt:
                        break
                    finish[i] = t + service
                    i += 1
                    if i == n:
                        yield env.timeout(t + service - env.now)
                        return
                    t = nxt
                if t > env.now:
                    yield env.timeout(t - env.now)
                env.process(frame(i, proc.request(), service))
                i += 1
                continue
            if len(waiting) >= queue.capacity:
                if queue.drop == "newest" or not waiting:
                    dropped[i] = True
                    i += 1
                    continue
                j, old = waiting.popleft()
                old.cancel()
                dropped[j] = True
            req = proc.request()
            waiting.append((i, req))
            env.process(frame(i, req))
            i += 1

    env.process(camera())
    env.run()
    return DesResult(start, finish, dropped, float(env.now))
