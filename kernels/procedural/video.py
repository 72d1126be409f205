"""Scene parameters for a video: object instances that keep their look and move smoothly.

A video is a sequence of frames, each showing one object *instance* (an id chosen by the caller, e.g. a
new id whenever the object in view changes). An instance's appearance (colour jitter, texture phase,
background, lighting, blur, occluder) is drawn once from ``(seed, instance)``; while it stays in view it
drifts, turns and breathes slowly as a hand-held camera would see it, and every frame gets fresh sensor
noise. Consecutive frames of an instance therefore look alike, but never identical.
"""

from __future__ import annotations

import numpy as np

from kernels.procedural.scene import DEFAULT_STRENGTH, SceneParams, sample_scenes

# Motion ranges at strength 1 (halved at the default 0.5): drift amplitude as a share of the free space
# around the object, drift and breathing frequencies (Hz), turning speed (rad/s), size change.
DRIFT = 0.35
DRIFT_HZ = (0.05, 0.35)
TURN_RATE = 0.6
BREATHE = 0.12


def video_scenes(
    labels: np.ndarray,
    instances: np.ndarray,
    time_s: np.ndarray,
    seed: int,
    strength: float = DEFAULT_STRENGTH,
) -> SceneParams:
    """Per-frame scene parameters for frames showing ``labels[i]`` as instance ``instances[i]`` at ``time_s[i]``.

    Instance ids must be non-negative; an instance must always show the same class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    instances = np.asarray(instances, dtype=np.int64)
    time_s = np.asarray(time_s, dtype=np.float64)
    n = len(labels)
    if not (len(instances) == len(time_s) == n):
        raise ValueError("labels, instances and time_s must have the same length")
    if n == 0:
        return sample_scenes(seed, 0, strength=strength)
    uniq, first, inverse = np.unique(instances, return_index=True, return_inverse=True)
    if np.any(labels != labels[first][inverse]):
        raise ValueError("an instance id shows more than one class")
    if uniq[0] < 0:
        raise ValueError("instance ids must be non-negative")

    # Appearance: one draw per instance, then broadcast to its frames.
    parts = [sample_scenes(seed, 1, start=int(k), strength=strength, labels=[labels[f]]) for k, f in zip(uniq, first)]
    base = SceneParams.concat(parts).take(inverse)

    # Motion: a few random sinusoids per instance, evaluated at the time since the instance appeared.
    m = np.array([np.random.default_rng([int(seed), int(k), 0x7F]).random(10) for k in uniq])[inverse]
    start_time = np.full(len(uniq), np.inf)
    np.minimum.at(start_time, inverse, time_s)
    t = time_s - start_time[inverse]
    s = float(strength)
    f1 = DRIFT_HZ[0] + (DRIFT_HZ[1] - DRIFT_HZ[0]) * m[:, 0]
    f2 = DRIFT_HZ[0] + (DRIFT_HZ[1] - DRIFT_HZ[0]) * m[:, 1]
    room = np.clip(1.0 - base.radius - np.maximum(np.abs(base.cx), np.abs(base.cy)), 0.0, None)
    amp = DRIFT * s * room
    dx = amp * (np.sin(2 * np.pi * (f1 * t + m[:, 2])) - np.sin(2 * np.pi * m[:, 2]))
    dy = amp * (np.sin(2 * np.pi * (f2 * t + m[:, 3])) - np.sin(2 * np.pi * m[:, 3]))
    turn = TURN_RATE * s * (2 * m[:, 4] - 1) * t
    breathe = 1.0 + BREATHE * s * np.sin(2 * np.pi * (0.5 * f1 * t)) * (2 * m[:, 5] - 1)

    box = base.occ_box.copy()
    box[:, 0] += dx * (0.5 + m[:, 6])  # the occluder moves, but not quite with the object
    box[:, 1] += dy * (0.5 + m[:, 7])

    # Fresh sensor noise per frame: a frame's noise seed depends on its instance and its time.
    frame_key = np.round(t * 1000).astype(np.int64)
    noise_seed = np.array(
        [np.random.default_rng([int(seed), int(k), int(ms), 0x5E]).integers(2**63) for k, ms in zip(instances, frame_key)],
        dtype=np.uint64,
    )
    return base.with_(
        cx=base.cx + dx,
        cy=base.cy + dy,
        angle=base.angle + turn,
        radius=base.radius * breathe,
        occ_box=box,
        noise_seed=noise_seed,
    )
