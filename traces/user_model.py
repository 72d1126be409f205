"""A user's own model for ``trace record``: ``--model path/to/file.py:factory``.

The file is imported, ``factory()`` must return a ``torch.nn.Module``; optional weights come from a
safetensors state dict. The module is cut at the named exit points with
:meth:`kernels.blockwise.BlockwiseModel.from_module` and checked once on a dummy input, so that a wrong
input size or class count fails before any frame is read. Everything the user can get wrong is an
:class:`EngramError` naming the file (and the option).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engram.fingerprint import sha256_file
from engram.errors import EngramError, FormatError

NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # RGB in [0, 1] (the reference CNN)
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class Normalisation:
    """Model input = (RGB in [0, 1] - mean) / std, per channel."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, images: np.ndarray) -> np.ndarray:
        if self.name == "unit":
            return images
        m = np.asarray(self.mean, np.float32)[None, :, None, None]
        s = np.asarray(self.std, np.float32)[None, :, None, None]
        return (images - m) / s

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std),
                "rule": "(RGB in [0, 1] - mean) / std per channel"}


def parse_normalisation(text: str) -> Normalisation:
    """``unit``, ``imagenet`` or ``R,G,B/R,G,B`` (mean/std of RGB in [0, 1])."""
    key = text.strip().lower()
    if key in NORMALISATIONS:
        mean, std = NORMALISATIONS[key]
        return Normalisation(key, mean, std)
    mean_text, sep, std_text = text.partition("/")
    try:
        mean = tuple(float(v) for v in mean_text.split(","))
        std = tuple(float(v) for v in std_text.split(","))
    except ValueError:
        mean = std = ()
    if not sep or len(mean) != 3 or len(std) != 3 or not all(np.isfinite(mean + std)) or min(std) <= 0:
        raise EngramError(f"{text!r}: expected unit, imagenet or MEAN_R,MEAN_G,MEAN_B/STD_R,STD_G,STD_B "
                          "(of RGB in [0, 1], std > 0)", field="--normalize")
    return Normalisation("custom", mean, std)  # type: ignore[arg-type]


def parse_input_size(text: str) -> tuple[int, int]:
    """``HxW`` or ``N`` (square)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if not m:
        raise EngramError(f"{text!r}: expected HxW, e.g. 224x224", field="--input-size")
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) else h
    if h < 1 or w < 1:
        raise EngramError(f"{text!r}: height and width must be >= 1", field="--input-size")
    return h, w


def parse_model_ref(text: str) -> tuple[Path, str] | None:
    """``path/to/file.py:factory`` -> (path, factory); None for anything else (reference, a directory)."""
    path, sep, factory = text.rpartition(":")
    if sep and path.endswith(".py"):
        if not factory.isidentifier():
            raise EngramError(f"{text!r}: {factory!r} is not a Python function name", field="--model")
        return Path(path), factory
    if text.endswith(".py"):
        raise EngramError(f"{text!r}: name the function that builds the model, as FILE.py:FUNCTION", field="--model")
    return None


def read_class_names(path: Path) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"not a readable UTF-8 text file ({exc})", path=path) from None
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise FormatError(f"class {name!r} repeats line {seen[name]}", path=path, line=i)
        seen[name] = i
        names.append(name)
    if not names:
        raise FormatError("no class names (one per line)", path=path)
    return tuple(names)


@dataclass
class UserModel:
    model: Any  # kernels.blockwise.BlockwiseModel
    class_names: tuple[str, ...]
    provenance: dict[str, Any]


def _import_factory(path: Path, factory: str):
    if not path.is_file():
        raise EngramError("model file not found", path=path, field="--model")
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"_engram_user_model_{stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - .py files always get a spec
        raise EngramError("cannot import this file", path=path, field="--model")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(mod_name, None)
        raise EngramError(f"syntax error: {exc.msg}", path=path, line=exc.lineno, field="--model") from None
    except Exception as exc:  # the user's code may raise anything while importing
        sys.modules.pop(mod_name, None)
        raise EngramError(f"importing the file failed ({type(exc).__name__}: {exc})", path=path, field="--model") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == mod_name)
        hint = f" (callables defined there: {', '.join(found[:8])})" if found else ""
        raise EngramError(f"no function {factory!r} in the file{hint}", path=path, field="--model")
    return fn


def _load_weights(module, weights: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not weights.is_file():
        raise FormatError("weights file not found", path=weights, field="--weights")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"not a readable safetensors file ({exc})", path=weights, field="--weights") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise FormatError(f"the state dict does not match the model (missing {missing[:3]}, unexpected {extra[:3]})",
                          path=weights, field="--weights")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise FormatError(f"the state dict does not match the model ({first})", path=weights, field="--weights") from None


def load_user_model(
    path: Path,
    factory: str,
    exit_points: list[str],
    input_size: tuple[int, int],
    num_classes: int | None,
    class_names: tuple[str, ...] | None = None,
    weights: Path | None = None,
) -> UserModel:
    import torch
    from torch import nn

    from kernels.blockwise import BlockwiseModel

    path = Path(path)
    if class_names is not None:
        if num_classes is not None and num_classes != len(class_names):
            raise EngramError(f"--num-classes {num_classes} but {len(class_names)} names in --class-names", field="--num-classes")
        num_classes = len(class_names)
    if num_classes is None:
        raise EngramError("a user's model needs --num-classes (or --class-names)", field="--num-classes")
    if not exit_points:
        raise EngramError("a user's model needs --exit-points (submodule names, e.g. layer2,layer3)", field="--exit-points")
    fn = _import_factory(path, factory)
    try:
        module = fn()
    except Exception as exc:  # the user's code
        raise EngramError(f"{factory}() failed ({type(exc).__name__}: {exc})", path=path, field="--model") from None
    if not isinstance(module, nn.Module):
        raise EngramError(f"{factory}() returned {type(module).__name__}, not a torch.nn.Module", path=path, field="--model")
    if weights is not None:
        _load_weights(module, Path(weights))
    module.eval()
    h, w = input_size
    try:
        model = BlockwiseModel.from_module(module, exit_points, (3, h, w), num_classes, name=f"{path.stem}.{factory}")
    except EngramError as exc:
        raise EngramError(exc.message, path=path, field="--exit-points") from None
    try:
        with torch.no_grad():
            out, exits = model.forward_exits(torch.zeros(1, 3, h, w))
    except Exception as exc:  # shape errors surface as RuntimeError from inside the user's layers
        raise EngramError(f"the model fails on a 1x3x{h}x{w} input ({type(exc).__name__}: {_first_line(exc)}); "
                          "check --input-size", path=path, field="--input-size") from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise EngramError(f"the model's output has shape {tuple(out.shape)}, expected (batch, {num_classes}) logits "
                          "from --num-classes", path=path, field="--num-classes")
    for e, f in exits.items():
        if f.ndim < 2:
            raise EngramError(f"exit point {e!r} outputs shape {tuple(f.shape)}: need (batch, channels, ...)",
                              path=path, field="--exit-points")
    names = class_names if class_names is not None else tuple(str(i) for i in range(num_classes))
    prov: dict[str, Any] = {
        "kind": "user",
        "file": str(path),
        "file_sha256": sha256_file(path),
        "factory": factory,
        "weights": str(weights) if weights is not None else None,
        "weights_sha256": sha256_file(Path(weights)) if weights is not None else None,
        "exit_points": list(exit_points),
        "input_shape": [3, h, w],
        "num_classes": num_classes,
        "split": "kernels.blockwise.BlockwiseModel.from_module (torch.fx)",
    }
    return UserModel(model, names, prov)


def pool(feature: "Any") -> np.ndarray:
    """Global average pooling of an exit's output over everything after the channel axis."""
    if feature.ndim > 2:
        feature = feature.flatten(2).mean(2)
    return feature.detach().cpu().numpy().astype(np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__
