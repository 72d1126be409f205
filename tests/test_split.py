"""A user's own torch module, cut at named submodules, runs block by block like the zoo's."""

import pytest
import torch
from torch import nn

from engram.errors import EngramError
from kernels.blockwise import BlockwiseModel


class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class UserNet(nn.Module):
    """Not a Sequential: residual stages, functional calls and a flatten in forward()."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stage1 = nn.Sequential(Res(8), Res(8))
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.stage2 = Res(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.stage1(x)
        x = self.stage2(torch.relu(self.down(x)))
        return self.fc(torch.flatten(x.mean((2, 3)), 1))


class SkipAcross(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.a(x)
        return self.b(y) + x  # x crosses the cut after `a`


def test_user_module_split_matches_original():
    torch.manual_seed(0)
    net = UserNet().eval()
    model = BlockwiseModel.from_module(net, ["stage1", "stage2"], (3, 32, 32), 5, name="usernet")
    assert model.block_names == ("stage1", "stage2", "head")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        out, exits = model.forward_exits(x)
        s1 = net.stage1(torch.relu(net.stem(x)))
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(exits["stage1"], s1, atol=1e-6)
    assert exits["stage2"].shape == (3, 16, 8, 8)
    fp = model.fingerprint()
    assert fp["architecture"] and fp["weights"]


def test_sequential_split_on_child_names():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model = BlockwiseModel.from_module(seq, ["1", "2"], (3, 16, 16), 2)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), seq(x))
        _, exits = model.forward_exits(x)
    assert exits["2"].shape == (2, 4, 12, 12)


def test_cut_inside_a_skip_connection_is_refused():
    with pytest.raises(EngramError, match="only one tensor is live"):
        BlockwiseModel.from_module(SkipAcross(), ["a"], (3, 8, 8), 3)


def test_bad_exit_names_are_refused():
    with pytest.raises(EngramError, match="not a submodule"):
        BlockwiseModel.from_module(UserNet(), ["stage9"], (3, 32, 32), 5)
    with pytest.raises(EngramError, match="execution order"):
        BlockwiseModel.from_module(UserNet(), ["stage2", "stage1"], (3, 32, 32), 5)
