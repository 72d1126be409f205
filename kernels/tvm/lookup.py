"""The semantic lookup at an exit point, as a TVM kernel: what the cache costs per frame.

``encode`` (global average pooling of the exit's feature map, subtract the PCA mean, project to ``d``
dimensions, L2-normalise; see ``kernels.reference.encoders``) followed by a cosine search against ``n``
cached entries (one matrix-vector product) and the top-1 score, its index and the runner-up score (what
a margin-based exit metric needs). ``n`` is a symbolic dimension, so one compiled module per exit point
serves every cache size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def lookup_module(feature_shape: tuple[int, int, int], dims: int):  # noqa: ANN201
    """Relax module ``main(x, mean, components_t, centres_t) -> (top1, index, top2)`` for one exit point.

    ``x``: (1, C, H, W) feature map; ``mean``: (1, C); ``components_t``: (C, d); ``centres_t``: (d, n).
    """
    from tvm import relax, tirx

    c, h, w = (int(v) for v in feature_shape)
    n = tirx.Var("n", "int64")
    f32 = "float32"
    x = relax.Var("x", relax.TensorType((1, c, h, w), f32))
    mean = relax.Var("mean", relax.TensorType((1, c), f32))
    comp = relax.Var("components_t", relax.TensorType((c, dims), f32))
    cent = relax.Var("centres_t", relax.TensorType((dims, n), f32))
    op = relax.op
    bb = relax.BlockBuilder()
    with bb.function("main", [x, mean, comp, cent]):
        with bb.dataflow():
            pooled = bb.emit(op.mean(x, axis=[2, 3]))
            z = bb.emit(op.matmul(op.subtract(pooled, mean), comp))
            norm = bb.emit(op.sqrt(op.add(op.sum(op.multiply(z, z), axis=[1], keepdims=True), relax.const(1e-24, f32))))
            v = bb.emit(op.divide(z, norm))
            scores = bb.emit(op.matmul(v, cent))
            best = bb.emit(op.max(scores, axis=[1], keepdims=True))
            index = bb.emit(op.argmax(scores, axis=1))
            masked = bb.emit(op.where(op.greater_equal(scores, best), relax.const(-np.inf, f32), scores))
            second = bb.emit(op.max(masked, axis=[1]))
            out = bb.emit_output(relax.Tuple([op.squeeze(best, axis=[1]), index, second]))
        bb.emit_func_output(out)
    return bb.get()


def compile_lookup(feature_shape: tuple[int, int, int], dims: int, target):  # noqa: ANN001, ANN201
    import tvm

    return tvm.compile(lookup_module(feature_shape, dims), target=target)


@dataclass
class LookupInputs:
    """Random but well-formed inputs: a feature map, an encoder and ``n`` unit-norm centres."""

    x: np.ndarray
    mean: np.ndarray
    components_t: np.ndarray
    centres_t: np.ndarray

    @classmethod
    def make(cls, feature_shape: tuple[int, int, int], dims: int, entries: int, seed: int = 0, encoder=None) -> "LookupInputs":  # noqa: ANN001
        rng = np.random.default_rng(seed)
        c = feature_shape[0]
        x = rng.standard_normal((1, *feature_shape)).astype(np.float32)
        if encoder is not None:
            mean = encoder.mean.reshape(1, c).astype(np.float32)
            comp_t = np.ascontiguousarray(encoder.components.T.astype(np.float32))
        else:
            mean = rng.standard_normal((1, c)).astype(np.float32)
            comp_t = np.linalg.qr(rng.standard_normal((c, dims)))[0].astype(np.float32) if c >= dims else \
                rng.standard_normal((c, dims)).astype(np.float32)
        cent = rng.standard_normal((entries, dims)).astype(np.float32)
        cent /= np.linalg.norm(cent, axis=1, keepdims=True)
        return cls(x, mean, comp_t, np.ascontiguousarray(cent.T))

    def arrays(self) -> list[np.ndarray]:
        return [self.x, self.mean, self.components_t, self.centres_t]

    def reference(self) -> tuple[float, int, float]:
        """numpy result, for checking the kernel."""
        pooled = self.x.mean(axis=(2, 3))
        z = (pooled - self.mean) @ self.components_t
        v = z / np.sqrt((z * z).sum(axis=1, keepdims=True) + 1e-24)
        s = (v @ self.centres_t)[0]
        i = int(np.argmax(s))
        rest = np.delete(s, i)
        return float(s[i]), i, float(rest.max()) if rest.size else float("-inf")
