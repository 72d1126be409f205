"""The reference workload's images: seeded, vectorised, procedurally rendered objects.

``sample_scenes`` draws the parameters of each image (class, pose, lighting, ...) from a seed;
``render`` turns parameters into pixels. Keeping the two apart lets the trace recorder move one object
instance smoothly through a video by interpolating its parameters.
"""

from kernels.procedural.catalogue import CATALOGUE, Catalogue
from kernels.procedural.render import render
from kernels.procedural.scene import DEFAULT_STRENGTH, SceneParams, sample_scenes

__all__ = ["CATALOGUE", "Catalogue", "DEFAULT_STRENGTH", "SceneParams", "render", "render_images", "sample_scenes"]


def render_images(seed: int, n: int, size: int = 64, start: int = 0, strength: float = DEFAULT_STRENGTH, labels=None):
    """Convenience: sample ``n`` scenes (images ``start .. start+n-1`` of ``seed``) and render them.

    Returns ``(images, labels)``: a float32 tensor (n, 3, size, size) in [0, 1] and an int64 array.
    """
    params = sample_scenes(seed, n, start=start, strength=strength, labels=labels)
    return render(params, size), params.class_id.copy()
