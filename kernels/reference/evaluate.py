"""Accuracy of the reference model on freshly rendered images: the final classifier's top-1 and, at each
exit point, the nearest-class-centre accuracy of the semantic vectors (how well a warm cache could do)."""

from __future__ import annotations

from typing import Any


from kernels.procedural import DEFAULT_STRENGTH, render_images
from kernels.reference.encoders import pooled_exit_features
from kernels.reference.store import ReferenceModel
from kernels.summary import block_costs

EVAL_BATCH = 500


def evaluate(ref: ReferenceModel, images: int, seed: int, strength: float = DEFAULT_STRENGTH) -> dict[str, Any]:
    model = ref.model
    size = model.input_shape[1]
    correct = 0
    exit_correct = {e: 0 for e in model.exit_points}
    for start in range(0, images, EVAL_BATCH):
        n = min(EVAL_BATCH, images - start)
        x, y = render_images(seed, n, size, start=start, strength=strength)
        logits, pooled = pooled_exit_features(model, x)
        correct += int((logits.argmax(1) == y).sum())
        for e, enc in ref.encoders.items():
            exit_correct[e] += int((enc.nearest_centre(enc.encode_pooled(pooled[e])) == y).sum())
    costs = {c.name: c for c in block_costs(model)}
    total = sum(c.macs for c in costs.values())
    cum, cum_share = 0, {}
    for name, c in costs.items():
        cum += c.macs
        cum_share[name] = cum / total
    return {
        "model": model.name,
        "images": images,
        "seed": seed,
        "strength": strength,
        "classes": model.num_classes,
        "top1": correct / images,
        "exits": list(model.exit_points),
        "exit_accuracy": [exit_correct[e] / images for e in model.exit_points],
        "semantic_dims": [ref.encoders[e].dims for e in model.exit_points],
        "exit_feature_shapes": [list(costs[e].output_shape) for e in model.exit_points],
        "exit_macs_share": [round(cum_share[e], 4) for e in model.exit_points],
        "macs": total,
        "params": sum(p.numel() for p in model.parameters()),
        "fingerprint": model.fingerprint(),
    }
