import pytest
import torch
from torch import nn

from engram.errors import EngramError
from kernels.blockwise import BlockwiseModel, example_input
from kernels.summary import block_costs
from kernels.zoo import build_model
from kernels.zoo.refnet import block_input_sizes, nnmeter_key, RefNetConfig


@pytest.mark.parametrize("name,size", [("reference", 64), ("mobilenetv2", 96), ("resnet18", 96)])
def test_block_by_block_equals_whole_model(name, size):
    kw = {"input_size": size}
    model = build_model(name, **kw)
    x = example_input(model, batch=2)
    with torch.no_grad():
        whole = model(x)
        y = x
        for block_name in model.block_names:
            y = model.run_blocks(y, block_name, model.block_index(block_name) + 1)
        logits, exits = model.forward_exits(x)
        # Running up to an exit and resuming from it gives the same answer too.
        e = model.exit_points[1]
        resumed = model.run_blocks(model.run_blocks(x, 0, model.block_index(e) + 1), model.block_index(e) + 1)
    assert torch.equal(whole, y)
    assert torch.equal(whole, logits)
    assert torch.equal(whole, resumed)
    assert list(exits) == list(model.exit_points)
    assert whole.shape == (2, model.num_classes)


def test_known_parameter_counts():
    # The canonical sizes of these architectures (torchvision's, 1000 classes).
    assert sum(p.numel() for p in build_model("mobilenetv2").parameters()) == 3_504_872
    assert sum(p.numel() for p in build_model("resnet18").parameters()) == 11_689_512


def test_segments_partition_the_blocks():
    model = build_model("mobilenetv2")
    segs = model.segments()
    flat = [b for _, blocks in segs for b in blocks]
    assert flat == list(model.block_names)
    assert [e for e, _ in segs] == list(model.exit_points) + [None]


def test_exit_points_validated():
    blocks = [("a", nn.Identity()), ("b", nn.Identity()), ("c", nn.Identity())]
    with pytest.raises(EngramError, match="not a block"):
        BlockwiseModel("m", blocks, ["z"], (3, 8, 8), 10, {})
    with pytest.raises(EngramError, match="last block"):
        BlockwiseModel("m", blocks, ["c"], (3, 8, 8), 10, {})
    with pytest.raises(EngramError, match="block order"):
        BlockwiseModel("m", blocks, ["b", "a"], (3, 8, 8), 10, {})
    with pytest.raises(EngramError, match="unknown model"):
        build_model("vgg99")


def test_fingerprint_tracks_weights_not_training_counters():
    a = build_model("reference")
    fp = a.fingerprint()
    a.blocks["b1"].body[0][1].num_batches_tracked += 5
    assert a.fingerprint() == fp
    with torch.no_grad():
        a.blocks["b1"].body[0][0].weight[0, 0, 0, 0] += 1e-3
    assert a.fingerprint()["weights"] != fp["weights"]
    assert a.fingerprint()["architecture"] == fp["architecture"]


def test_block_costs_match_hand_count():
    model = build_model("resnet18")
    costs = {c.name: c for c in block_costs(model)}
    # 7x7x3 conv to 64 channels on a 112x112 output.
    assert costs["stem"].macs == 112 * 112 * 64 * 7 * 7 * 3
    assert costs["head"].macs == 512 * 1000
    assert costs["layer4"].output_shape == (512, 7, 7)
    assert sum(c.params for c in costs.values()) == 11_689_512


def test_reference_blocks_are_nnmeter_configurations():
    cfg = RefNetConfig()
    keys = [nnmeter_key(b, hw) for b, hw in zip(cfg.blocks, block_input_sizes(cfg))]
    assert keys[0] == "conv_32_16_16_2_1_hard_swish_3_nose"
    assert len(set(keys)) >= 4
