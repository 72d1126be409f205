"""Training is deterministic and an interrupted run resumes onto exactly the same path."""

import torch

from kernels.reference.train import TrainConfig, lr_at, train
from kernels.zoo.refnet import MBConvSpec, RefNetConfig

TINY = RefNetConfig(
    input_size=32,
    stem=8,
    blocks=(MBConvSpec(8, 8, 2, 1, 3, False), MBConvSpec(8, 16, 2, 2, 3, True)),
    exits=("b1",),
    head_hidden=32,
)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_interrupted_training_resumes_identically(tmp_path):
    cfg = TrainConfig(steps=6, batch=8, warmup=2, threads=1)
    straight, _ = train(cfg, TINY)
    ckpt = tmp_path / "ckpt.safetensors"

    class Stop(Exception):
        pass

    def stop_after_4(step, total, m):
        if step == 4:
            raise Stop

    try:
        train(cfg, TINY, checkpoint=ckpt, checkpoint_every=2, progress=stop_after_4)
    except Stop:
        pass
    assert ckpt.exists()
    resumed, log = train(cfg, TINY, checkpoint=ckpt, checkpoint_every=2)
    assert log["resumed_at"] == 4
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_reduces_the_loss():
    from kernels.procedural import render_images

    x, y = render_images(5, 256, 32, strength=0.0)
    y = torch.from_numpy(y)
    cfg = TrainConfig(steps=60, batch=32, warmup=5, lr=1e-2, threads=2, strength=0.0)
    untrained, _ = train(TrainConfig(steps=0, strength=0.0), TINY)
    trained, _ = train(cfg, TINY)
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(untrained(x), y)
        after = torch.nn.functional.cross_entropy(trained(x), y)
    assert after < before - 0.5


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0)
    assert lr_at(cfg, 0) == 0.1
    assert lr_at(cfg, 9) == 1.0
    assert lr_at(cfg, 10) == 1.0
    assert abs(lr_at(cfg, 55) - 0.5) < 1e-9
    assert lr_at(cfg, 99) < 0.01
