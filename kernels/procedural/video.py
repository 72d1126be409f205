"""Scene parameters for a video: object instances that keep their look and move smoothly, in front of
a scene the camera pans across.

A video is a sequence of frames, each showing one object *instance* (an id chosen by the caller, e.g. one
per physical object). An instance's appearance (colour jitter, texture phase, pose, blur, noise level,
occluder) is drawn once from ``(seed, instance)``; while it stays in view it drifts, turns and breathes
slowly as a hand-held camera would see it, and every frame gets fresh sensor noise. The background and the
lighting belong to the video (the scene), not to the object: a large smooth colour field that the camera
pans across slowly, with lighting that drifts a little. Consecutive frames therefore look alike but never
identical, and two objects of one video share their surroundings, as in a real kitchen.
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
# Scene: the background is a window of 3x3 samples (SPACING cells apart) onto a GRID x GRID colour field;
# the camera pans it by up to PAN cells at PAN_HZ; brightness drifts by LIGHT_DRIFT.
GRID = 7
SPACING = 1.5
PAN = 1.2
PAN_HZ = (0.02, 0.12)
LIGHT_DRIFT = 0.1


def _scene(seed: int, video: int, strength: float) -> dict:
    """One video's background field, camera path and lighting."""
    r = np.random.default_rng([int(seed), int(video), 0x5C3E]).random(40 + 3 * GRID * GRID)
    s = strength
    grey = 0.25 + 0.5 * r[0]
    sat = 0.15 + 0.6 * s * r[1]
    raw = r[40:].reshape(3, GRID, GRID) * 0.7 + 0.15
    span = GRID - 1 - 2 * SPACING
    return {
        "field": grey * (1 - sat) + raw * sat,
        "p0": span * r[2:4],
        "pan_amp": PAN * s * r[4:6],
        "pan_hz": PAN_HZ[0] + (PAN_HZ[1] - PAN_HZ[0]) * r[6:8],
        "pan_phase": r[8:10],
        "span": span,
        "wave": np.array([0.12 * s * r[10], 2.0 + 8.0 * r[11], np.pi * r[12], 2 * np.pi * r[13]]),
        "brightness": np.exp(0.35 * s * (2 * r[14] - 1)),
        "light_hz": 0.01 + 0.05 * r[15],
        "light_phase": r[16],
        "gradient": 0.35 * s * r[17] * np.array([np.cos(2 * np.pi * r[18]), np.sin(2 * np.pi * r[18])]),
        "cast": np.exp(0.08 * s * (2 * r[19:22] - 1)),
    }


def _sample_field(field: np.ndarray, px: float, py: float) -> np.ndarray:
    """Bilinear samples of a (3, G, G) field on the 3x3 window whose corner is at (px, py)."""
    xs = px + SPACING * np.arange(3)
    ys = py + SPACING * np.arange(3)
    x0 = np.clip(np.floor(xs).astype(int), 0, GRID - 2)
    y0 = np.clip(np.floor(ys).astype(int), 0, GRID - 2)
    fx, fy = xs - x0, ys - y0
    f = field
    top = f[:, y0][:, :, x0] * (1 - fx) + f[:, y0][:, :, x0 + 1] * fx
    bot = f[:, y0 + 1][:, :, x0] * (1 - fx) + f[:, y0 + 1][:, :, x0 + 1] * fx
    return top * (1 - fy)[None, :, None] + bot * fy[None, :, None]


def video_scenes(
    labels: np.ndarray,
    instances: np.ndarray,
    time_s: np.ndarray,
    seed: int,
    strength: float = DEFAULT_STRENGTH,
    videos: np.ndarray | None = None,
) -> SceneParams:
    """Per-frame scene parameters for frames showing ``labels[i]`` as instance ``instances[i]`` at ``time_s[i]``
    (seconds since the video started) of video ``videos[i]`` (default: all one video).

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

    # The scene: background window panned by the camera, lighting drifting slowly, per video.
    vids = np.zeros(n, dtype=np.int64) if videos is None else np.asarray(videos, dtype=np.int64)
    if len(vids) != n:
        raise ValueError("videos must have one entry per frame")
    bg_grid = np.empty((n, 3, 3, 3))
    bg_wave = np.empty((n, 4))
    brightness = np.empty(n)
    gradient = np.empty((n, 2))
    cast = np.empty((n, 3))
    for v in np.unique(vids):
        rows = np.flatnonzero(vids == v)
        sc = _scene(seed, int(v), s)
        tv = time_s[rows]
        pan = sc["pan_amp"][None, :] * (np.sin(2 * np.pi * (sc["pan_hz"][None, :] * tv[:, None] + sc["pan_phase"][None, :]))
                                        - np.sin(2 * np.pi * sc["pan_phase"][None, :]))
        pos = np.clip(sc["p0"][None, :] + pan, 0.0, sc["span"])
        for k, r in enumerate(rows):
            bg_grid[r] = _sample_field(sc["field"], pos[k, 0], pos[k, 1])
        wave = np.tile(sc["wave"], (len(rows), 1))
        # The wave is painted on the scene, so it moves with the pan: a grid cell spans 1/SPACING of the
        # normalised image width (2 units across 2*SPACING cells).
        shift = (pos - sc["p0"][None, :]) / SPACING
        wave[:, 3] += 2 * np.pi * wave[:, 1] * 0.5 * (shift[:, 0] * np.cos(wave[:, 2]) + shift[:, 1] * np.sin(wave[:, 2]))
        bg_wave[rows] = wave
        brightness[rows] = sc["brightness"] * (1 + LIGHT_DRIFT * s * np.sin(2 * np.pi * (sc["light_hz"] * tv + sc["light_phase"])))
        gradient[rows] = sc["gradient"]
        cast[rows] = sc["cast"]

    box = base.occ_box.copy()
    box[:, 0] += dx * (0.5 + m[:, 6])  # the occluder moves, but not quite with the object
    box[:, 1] += dy * (0.5 + m[:, 7])

    # Fresh sensor noise per frame: a frame's noise seed depends on its instance and its time.
    frame_key = np.round(t * 1000).astype(np.int64)
    noise_seed = np.array(
        [np.random.default_rng([int(seed), int(k), int(ms), 0x5E]).integers(2**63) for k, ms in zip(instances, frame_key)],
        dtype=np.uint64,
    )
    # The occluder takes the scene's colours, like a hand or a pan in front of the object.
    occ_rgb = np.clip(bg_grid[:, :, 1, 1] * (0.6 + 0.8 * m[:, 8:9]), 0, 1)
    return base.with_(
        bg_grid=bg_grid,
        bg_wave=bg_wave,
        brightness=brightness,
        gradient=gradient,
        cast=cast,
        occ_rgb=occ_rgb,
        cx=base.cx + dx,
        cy=base.cy + dy,
        angle=base.angle + turn,
        radius=base.radius * breathe,
        occ_box=box,
        noise_seed=noise_seed,
    )
