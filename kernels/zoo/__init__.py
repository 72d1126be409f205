"""The model zoo: plain-torch CNNs cut into named blocks with candidate exit points."""

from __future__ import annotations

from typing import Callable

from engram.errors import EngramError
from kernels.blockwise import BlockwiseModel
from kernels.zoo.mobilenetv2 import mobilenetv2
from kernels.zoo.refnet import RefNetConfig, refnet
from kernels.zoo.resnet18 import resnet18

_BUILDERS: dict[str, Callable[..., BlockwiseModel]] = {
    "reference": lambda **kw: refnet(RefNetConfig(**kw)),
    "mobilenetv2": mobilenetv2,
    "resnet18": resnet18,
}


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def build_model(name: str, **kwargs) -> BlockwiseModel:
    """A freshly initialised zoo model (random weights); see ``kernels.reference`` for the trained one."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise EngramError(f"unknown model {name!r}; the zoo has: {', '.join(list_models())}") from None
    return builder(**kwargs).eval()


__all__ = ["BlockwiseModel", "RefNetConfig", "build_model", "list_models", "mobilenetv2", "refnet", "resnet18"]
