"""The policy's input level on the device (``input_reuse``): the simulator's semantics, one frame at a time.

Every frame is described (``engram.input_descriptor``: 4x4 RGB thumbnail, centred, L2-normalised) before anything
else. If the video's last frame that ran the model is at least ``similarity`` (cosine) like it, and fewer than
``max_run`` frames in a row have reused that frame's answer, the frame reuses it and runs no block; otherwise the
frame runs the model and becomes the one later frames are compared with.

The descriptor is rounded to float16, the precision a recorded trace stores it at and so the one the simulator
compares (``runtime.smtm.SEARCH_DTYPE``), and the comparison is the same float32 dot product.
"""

from __future__ import annotations

import numpy as np

from engram.input_descriptor import describe_input
from runtime.smtm import SEARCH_DTYPE


class InputLevel:
    def __init__(self, similarity: float, max_run: int) -> None:
        self.similarity = float(similarity)
        self.max_run = int(max_run)
        self.anchor: np.ndarray | None = None  # the last frame that ran the model, this video
        self.answer = -1  # its answer
        self.run = 0  # frames that reused it since

    def describe(self, frame: np.ndarray) -> np.ndarray:
        """The frame's descriptor ``(48,)`` float32, at the precision the simulator compares."""
        return describe_input(frame.reshape(1, *frame.shape[-3:]))[0].astype(SEARCH_DTYPE).astype(np.float32)

    def reuse(self, desc: np.ndarray, new_video: bool) -> int | None:
        """The answer this frame reuses, or None when it has to run the model."""
        if new_video:
            self.anchor = None
        if self.anchor is None or self.run >= self.max_run or float(desc @ self.anchor) < self.similarity:
            return None
        self.run += 1
        return self.answer

    def ran(self, desc: np.ndarray, answer: int) -> None:
        """The frame ran the model (to an exit or to the end) and answered ``answer``."""
        self.anchor, self.answer, self.run = desc, int(answer), 0
