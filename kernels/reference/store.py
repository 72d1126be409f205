"""The shipped reference model on disk: weights and semantic encoders as safetensors (no pickle).

``refnet.safetensors`` holds the state dict; its metadata carries the architecture, the training
settings and the measured accuracy. ``encoders.safetensors`` holds, per exit point, the PCA mean and
components and the class centres; its metadata names the model fingerprint it was fitted for, so an
encoder file can never be paired with other weights by mistake. ``heads.safetensors`` holds the
BranchyNet-style linear head of each exit point, bound to the model the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as save_numpy_bytes
from safetensors.torch import save_file as save_torch

from engram.errors import FormatError, MismatchError
from engram.fileio import atomic_path
from kernels.blockwise import BlockwiseModel
from kernels.reference.encoders import SemanticEncoder
from kernels.reference.heads import ExitHead
from kernels.reference.tensorfile import VERSION as TENSORFILE_VERSION
from kernels.reference.tensorfile import check_fitted_for, encoder_tensors, read_engram_file
from kernels.zoo.refnet import RefNetConfig, refnet

DATA_DIR = Path(__file__).resolve().parent / "data"
MODEL_FILE = "refnet.safetensors"
ENCODER_FILE = "encoders.safetensors"
HEADS_FILE = "heads.safetensors"
MODEL_FORMAT = "engram.refnet"
ENCODER_FORMAT = "engram.semantic-encoders"
HEADS_FORMAT = "engram.exit-heads"
VERSION = TENSORFILE_VERSION
HEADS_KIND = "linear classifier on globally average-pooled exit features (logistic regression)"


@dataclass
class ReferenceModel:
    model: BlockwiseModel
    encoders: dict[str, SemanticEncoder]
    heads: dict[str, ExitHead]
    meta: dict[str, Any] = field(default_factory=dict)  # training settings and recorded metrics
    encoder_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> dict[str, str]:
        return self.model.fingerprint()


def _exit_arrays_bytes(arrays: dict[str, np.ndarray], fmt: str, fp: dict[str, str], meta: dict[str, Any]) -> bytes:
    """Per-exit arrays bound to a model fingerprint (encoders, heads), as safetensors file bytes."""
    full = {"format": fmt, "version": VERSION, "model_fingerprint": fp, **meta}
    return save_numpy_bytes(arrays, metadata={"engram": json.dumps(full, sort_keys=True)})


def encoders_bytes(encoders: dict[str, SemanticEncoder], fp: dict[str, str], meta: dict[str, Any] | None = None) -> bytes:
    """An encoders file (as ``encoders.safetensors``) for the model with fingerprint ``fp``; ``load_encoders`` reads it."""
    arrays: dict[str, np.ndarray] = {}
    for e, enc in encoders.items():
        arrays[f"{e}.mean"] = enc.mean
        arrays[f"{e}.components"] = enc.components
        arrays[f"{e}.centres"] = enc.centres
    enc_meta = {"exits": list(encoders), "dims": {e: enc.dims for e, enc in encoders.items()}, **(meta or {})}
    return _exit_arrays_bytes(arrays, ENCODER_FORMAT, fp, enc_meta)


def heads_bytes(heads: dict[str, ExitHead], fp: dict[str, str], meta: dict[str, Any] | None = None) -> bytes:
    """An exit-heads file (as ``heads.safetensors``) for the model with fingerprint ``fp``; ``load_heads`` reads it."""
    arrays: dict[str, np.ndarray] = {}
    for e, h in heads.items():
        arrays[f"{e}.weight"] = h.weight
        arrays[f"{e}.bias"] = h.bias
    head_meta = {"exits": list(heads), "kind": HEADS_KIND, **(meta or {})}
    return _exit_arrays_bytes(arrays, HEADS_FORMAT, fp, head_meta)


def save_reference(ref: ReferenceModel, directory: Path) -> tuple[Path, Path, Path]:
    directory = Path(directory)
    fp = ref.model.fingerprint()
    arch = RefNetConfig.from_json({k: v for k, v in ref.model.architecture.items() if k != "kind"})
    model_meta = {"format": MODEL_FORMAT, "version": VERSION, "arch": arch.to_json(), "fingerprint": fp, **ref.meta}
    tensors = {k: v.detach().contiguous() for k, v in ref.model.state_dict().items()}
    mpath = directory / MODEL_FILE
    with atomic_path(mpath) as tmp:
        save_torch(tensors, str(tmp), metadata={"engram": json.dumps(model_meta, sort_keys=True)})

    epath = directory / ENCODER_FILE
    with atomic_path(epath) as tmp:
        tmp.write_bytes(encoders_bytes(ref.encoders, fp, ref.encoder_meta))
    hpath = directory / HEADS_FILE
    with atomic_path(hpath) as tmp:
        tmp.write_bytes(heads_bytes(ref.heads, fp))
    return mpath, epath, hpath


def _read(path: Path, framework: str, expected_format: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return read_engram_file(path, framework, expected_format, VERSION)


def load_model(path: Path) -> tuple[BlockwiseModel, dict[str, Any]]:
    path = Path(path)
    meta, tensors = _read(path, "pt", MODEL_FORMAT)
    try:
        arch = RefNetConfig.from_json(meta["arch"])
        model = refnet(arch)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"invalid architecture description ({exc})", path=path, field="arch") from None
    missing = sorted(set(model.state_dict()) - set(tensors))
    extra = sorted(set(tensors) - set(model.state_dict()))
    if missing or extra:
        raise FormatError(f"weights do not match the architecture (missing {missing[:3]}, unexpected {extra[:3]})", path=path, field="tensors")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise FormatError(f"weights do not match the architecture ({first})", path=path, field="tensors") from None
    model.eval()
    fp = model.fingerprint()
    if meta.get("fingerprint") and meta["fingerprint"] != fp:
        raise FormatError("weights are damaged: their hash differs from the one recorded when saved", path=path, field="fingerprint")
    return model, meta


def load_encoders(path: Path, model: BlockwiseModel) -> tuple[dict[str, SemanticEncoder], dict[str, Any]]:
    path = Path(path)
    meta, arrays = _read(path, "numpy", ENCODER_FORMAT)
    check_fitted_for(meta, model.fingerprint(), path, "encoders")
    encoders = {e: SemanticEncoder(e, *t) for e, t in encoder_tensors(meta, arrays, path, None, model.num_classes).items()}
    if list(encoders) != list(model.exit_points):
        raise MismatchError(f"encoders cover exits {list(encoders)}, the model has {list(model.exit_points)}", path=path, field="exits")
    return encoders, meta


def load_heads(path: Path, model: BlockwiseModel) -> dict[str, ExitHead]:
    path = Path(path)
    meta, arrays = _read(path, "numpy", HEADS_FORMAT)
    check_fitted_for(meta, model.fingerprint(), path, "exit heads")
    heads = {}
    for e in meta.get("exits", []):
        try:
            w, b = arrays[f"{e}.weight"], arrays[f"{e}.bias"]
        except KeyError as exc:
            raise FormatError(f"missing tensor {exc.args[0]}", path=path, field=e) from None
        if w.ndim != 2 or w.shape[0] != model.num_classes or b.shape != (model.num_classes,):
            raise FormatError("inconsistent tensor shapes", path=path, field=e)
        heads[e] = ExitHead(e, w, b)
    if list(heads) != list(model.exit_points):
        raise MismatchError(f"heads cover exits {list(heads)}, the model has {list(model.exit_points)}", path=path, field="exits")
    return heads


def load_reference(directory: Path | None = None) -> ReferenceModel:
    """Load the trained reference CNN and its encoders (default: the copy shipped with Engram)."""
    directory = Path(directory) if directory is not None else DATA_DIR
    model, meta = load_model(directory / MODEL_FILE)
    encoders, enc_meta = load_encoders(directory / ENCODER_FILE, model)
    heads = load_heads(directory / HEADS_FILE, model)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "arch", "fingerprint")}
    enc_meta = {k: v for k, v in enc_meta.items() if k not in ("format", "version", "model_fingerprint", "exits", "dims")}
    return ReferenceModel(model, encoders, heads, meta, enc_meta)
