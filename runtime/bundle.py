"""The policy bundle (format ``engram.bundle``, version 1): what ``run_sim.py export`` hands to the runtime.

A bundle is a **directory**::

    BUNDLE/
      bundle.json            the manifest (schema: runtime/schema/bundle.schema.json)
      encoders.safetensors   the semantic encoders of the enabled exit points (smtm policies only)

``bundle.json`` holds the policy exactly as the simulator ran it (calibration coefficients filled in), the
model it is for (name, fingerprint = SHA-256 of architecture and weights, blocks, exit points, input shape,
classes), the enabled exit points, the device profile it was tuned for (path, SHA-256, device, processor,
the profile's model fingerprint), the calibration trace the exit metric was fitted on, the simulator's
predicted metrics (and the trace they were predicted on), and the SHA-256 and size of every other file.
The encoders file is the project's encoders format (``kernels.reference.store.encoders_bytes``), bound to
the same fingerprint.

The reader (:func:`read_bundle`) refuses, naming the file and the field: a path that is no bundle, malformed
JSON, another format or version, a manifest that breaks the schema or contradicts itself, a missing or
damaged file (size or SHA-256 differs), and a bundle for another model than the one given. The writer
(:func:`export_bundle`) writes into a fresh temporary directory next to the target and renames it into place,
so a bundle is never half-written; it replaces an existing bundle, never another directory.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Annotated, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engram.fileio import json_safe
from engram.fingerprint import sha256_file
from engram.errors import EngramError, FormatError, MismatchError, from_validation_error
from runtime.encoders import ExitEncoder, read_encoders
from simulator.policy import Policy, check_policy

FORMAT_NAME = "engram.bundle"
FORMAT_VERSION = 1
MANIFEST = "bundle.json"
ENCODERS_FILE = "encoders.safetensors"
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "bundle.schema.json"
RUNNABLE_KINDS = ("smtm", "no-cache")  # what the runtime runs (the baselines and the oracle are simulator-only)

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class Fingerprint(_Strict):
    architecture: Sha256
    weights: Sha256


class ModelSection(_Strict):
    """The model the policy was tuned for; the runtime refuses to run the bundle with any other."""

    name: str = Field(..., min_length=1)
    fingerprint: Fingerprint
    blocks: list[str] = Field(..., min_length=1, description="Blocks in execution order.")
    exit_points: list[str] = Field(..., description="All of the model's exit points, in block order.")
    input_shape: list[int] = Field(..., min_length=3, max_length=3, description="(channels, height, width).")
    num_classes: int = Field(..., ge=1)


class ProfileSection(_Strict):
    """The device profile the policy was tuned (simulated) on."""

    path: str = Field(..., description="As given to export.")
    sha256: Sha256
    device: str = Field(..., description="The profile's device name.")
    target: str | None = Field(None, description="The profile's compilation target name, if it has one.")
    processor: str = Field(..., description="Processor the policy runs the model on.")
    fingerprint: Fingerprint = Field(..., description="The profile's model fingerprint (equal to model.fingerprint).")
    threads: int | None = Field(None, ge=1, description="TVM worker threads the profile's kernels were timed with; "
                                "the runtime runs with as many (absent: not recorded, all cores).")


class SourceFile(_Strict):
    path: str
    sha256: Sha256


class EncodersSection(_Strict):
    file: FileName
    exits: list[str] = Field(..., min_length=1, description="Exit points it holds: the enabled ones, in order.")
    dims: dict[str, int] = Field(..., description="Semantic vector dimensions per exit point.")


class FileEntry(_Strict):
    sha256: Sha256
    bytes: int = Field(..., ge=0)


class PredictedMetrics(BaseModel):
    """The simulator's metrics of the policy (``simulator.metrics``); the fields below at least."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)
    frames: int = Field(..., ge=1)
    mean_latency_ms: float = Field(..., ge=0)
    p99_latency_ms: float = Field(..., ge=0)
    accuracy: float = Field(..., ge=0, le=1)
    speedup: float = Field(..., ge=0)


class Predicted(_Strict):
    trace: SourceFile | None = Field(None, description="The recorded trace the metrics were simulated on.")
    metrics: PredictedMetrics


class BundleManifest(_Strict):
    format: Literal["engram.bundle"] = FORMAT_NAME
    version: Literal[1] = FORMAT_VERSION
    created: str = Field(..., description="UTC time of export, ISO 8601.")
    generator: str = Field(..., description="Engram version that wrote the bundle.")
    policy: Policy = Field(..., description="The policy as run by the simulator (calibration filled in).")
    enabled_exits: list[str] = Field(..., description="Exit points the policy uses, in block order.")
    model: ModelSection
    profile: ProfileSection
    calibration: SourceFile | None = Field(None, description="Trace the calibrated exit metric was fitted on.")
    predicted: Predicted
    encoders: EncodersSection | None = Field(None, description="Present for smtm policies.")
    files: dict[FileName, FileEntry] = Field(..., description="Every other file of the bundle: SHA-256 and size.")

    @model_validator(mode="after")
    def _consistent(self) -> "BundleManifest":
        if self.policy.kind not in RUNNABLE_KINDS:
            raise ValueError(f"the runtime runs {' and '.join(map(repr, RUNNABLE_KINDS))} policies, not {self.policy.kind!r}")
        m = self.model
        if list(self.enabled_exits) != [e for e in m.exit_points if e in self.enabled_exits]:
            raise ValueError("enabled_exits must be exit points of the model, in block order")
        if self.profile.fingerprint != m.fingerprint:
            raise ValueError("the profile's model fingerprint differs from the model's")
        if self.policy.kind == "smtm":
            if self.encoders is None:
                raise ValueError("an smtm bundle needs an 'encoders' section")
            if list(self.encoders.exits) != list(self.enabled_exits):
                raise ValueError(f"encoders.exits {self.encoders.exits} must be the enabled exits {self.enabled_exits}")
            if set(self.encoders.dims) != set(self.encoders.exits):
                raise ValueError("encoders.dims must give every exit's dimensions")
            if self.encoders.file not in self.files:
                raise ValueError(f"encoders.file {self.encoders.file!r} is not listed in files")
        if MANIFEST in self.files:
            raise ValueError(f"files must not list {MANIFEST} itself")
        return self


def bundle_json_schema() -> dict:
    """The JSON Schema of ``bundle.json`` (generated from the models above; the policy's schema is embedded)."""
    schema = BundleManifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://engram.invalid/schema/bundle-1.json"
    return schema


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: BundleManifest
    encoders: dict[str, ExitEncoder]  # enabled exit -> encoder (empty for no-cache)

    @property
    def policy(self) -> Policy:
        return self.manifest.policy

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(self.manifest.enabled_exits)

    @property
    def model(self) -> ModelSection:
        return self.manifest.model

    @property
    def fingerprint(self) -> dict[str, str]:
        return self.manifest.model.fingerprint.model_dump()

    @property
    def predicted(self) -> dict[str, Any]:
        return self.manifest.predicted.metrics.model_dump()

    def check_model(self, model_or_fingerprint: Any) -> None:
        _check_model(self.manifest, model_or_fingerprint, self.path / MANIFEST)


def _fingerprint_of(model_or_fingerprint: Any) -> Mapping[str, str]:
    fp = model_or_fingerprint
    if hasattr(fp, "fingerprint") and callable(fp.fingerprint):
        fp = fp.fingerprint()
    if not isinstance(fp, Mapping):
        raise TypeError("expected a model (with fingerprint()) or a fingerprint mapping")
    return fp


def _check_model(manifest: BundleManifest, model_or_fingerprint: Any, where: Path) -> None:
    fp = _fingerprint_of(model_or_fingerprint)
    mine = manifest.model.fingerprint
    for k in ("architecture", "weights"):
        if fp.get(k) != getattr(mine, k):
            raise MismatchError(f"the bundle is for another model ({manifest.model.name}, {k} {getattr(mine, k)[:12]}..., "
                                f"given {str(fp.get(k))[:12]}...)", path=where, field=f"model.fingerprint.{k}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON has no {name})")


def parse_manifest(obj: Any, path: Path | str | None = None) -> BundleManifest:
    if not isinstance(obj, dict):
        raise FormatError("the manifest must be a JSON object", path=path)
    if obj.get("format") != FORMAT_NAME:
        raise FormatError(f"expected format {FORMAT_NAME!r}, found {obj.get('format')!r}", path=path, field="format")
    version = obj.get("version")
    if type(version) is not int or version != FORMAT_VERSION:  # noqa: E721 (true == 1 must not pass)
        newer = " (a newer Engram wrote it; update Engram)" if type(version) is int and version > FORMAT_VERSION else ""  # noqa: E721
        raise FormatError(f"unsupported version {version!r}{newer}; this Engram reads version {FORMAT_VERSION}",
                          path=path, field="version")
    try:
        return BundleManifest.model_validate(obj)
    except ValidationError as exc:
        raise from_validation_error(exc, path) from None


def read_bundle(path: str | Path, model: Any) -> Bundle:
    """Read and check a bundle for ``model`` (a BlockwiseModel, or its fingerprint ``{"architecture", "weights"}``;
    ``None`` skips only that check)."""
    d = Path(path)
    if not d.exists():
        raise FormatError("bundle not found", path=d)
    if not d.is_dir():
        raise FormatError("not a bundle: a bundle is a directory (with bundle.json)", path=d)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise FormatError(f"not a bundle: no {MANIFEST}", path=d)
    try:
        text = mpath.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FormatError("not UTF-8 text", path=mpath) from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise FormatError(f"not valid JSON ({exc.msg}, column {exc.colno})", path=mpath, line=exc.lineno) from None
    except ValueError as exc:
        raise FormatError(str(exc), path=mpath) from None
    manifest = parse_manifest(obj, mpath)

    for name, entry in manifest.files.items():
        f = d / name
        if not f.is_file():
            raise FormatError(f"missing file {name} (listed in {MANIFEST})", path=f, field=f"files.{name}")
        size = f.stat().st_size
        if size != entry.bytes:
            raise FormatError(f"damaged: {size} bytes, {MANIFEST} says {entry.bytes}", path=f, field=f"files.{name}.bytes")
        got = sha256_file(f)
        if got != entry.sha256:
            raise FormatError(f"damaged: SHA-256 {got[:12]}... differs from {entry.sha256[:12]}... in {MANIFEST}",
                              path=f, field=f"files.{name}.sha256")

    m = manifest.model
    enabled = check_policy(manifest.policy, tuple(m.exit_points), (manifest.profile.processor,), str(mpath))
    if list(enabled) != list(manifest.enabled_exits):
        raise FormatError(f"enabled_exits {manifest.enabled_exits} differ from the policy's exits {list(enabled)}",
                          path=mpath, field="enabled_exits")
    if model is not None:
        _check_model(manifest, model, mpath)
    encoders: dict[str, ExitEncoder] = {}
    if manifest.encoders is not None:
        fp = manifest.model.fingerprint.model_dump()
        encoders, _ = read_encoders(d / manifest.encoders.file, fp, manifest.encoders.exits, m.num_classes)
        for e, enc in encoders.items():
            if enc.dims != manifest.encoders.dims[e]:
                raise FormatError(f"encoder {e!r} has {enc.dims} dimensions, {MANIFEST} says {manifest.encoders.dims[e]}",
                                  path=mpath, field=f"encoders.dims.{e}")
    return Bundle(d, manifest, encoders)


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------

DEFAULT_ENCODERS = Path(__file__).resolve().parents[1] / "kernels" / "reference" / "data" / "encoders.safetensors"


def check_runnable(policy: Policy, where: str | None = None) -> None:
    """Refuse a policy the runtime does not run (the baselines and the oracle are simulator-only)."""
    if policy.kind not in RUNNABLE_KINDS:
        raise EngramError(f"the runtime runs {' and '.join(map(repr, RUNNABLE_KINDS))} policies; {policy.kind!r} is a "
                          "simulator baseline", path=where, field="kind")


def check_output(out: str | os.PathLike[str]) -> None:
    """Refuse to write a bundle over anything but nothing, an empty directory or another bundle."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise EngramError("exists and is not a bundle directory; refusing to replace it", path=out)
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise EngramError(f"exists and is not a bundle (no {MANIFEST}); refusing to replace it", path=out)


def _write_directory_atomic(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a fresh directory next to ``out``, then rename it to ``out``.

    An existing bundle at ``out`` is replaced; any other existing file or non-empty directory is refused.
    """
    from engram.fileio import write_bytes_atomic

    out = Path(out)
    check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        for name, data in files.items():
            if name != MANIFEST:
                write_bytes_atomic(tmp / name, data)
        write_bytes_atomic(tmp / MANIFEST, files[MANIFEST])  # last
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; give it the mode a plain mkdir would have
        if out.exists():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


def export_bundle(policy: Policy | str | os.PathLike[str], profile_path: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], predicted_metrics: Mapping[str, Any],
                  calibration_trace_path: str | os.PathLike[str] | None = None, *,
                  trace_path: str | os.PathLike[str] | None = None,
                  encoders_path: str | os.PathLike[str] | None = None) -> Path:
    """Write a bundle for ``policy`` (a Policy, a preset name or a policy JSON file) tuned on the profile at
    ``profile_path``.

    ``predicted_metrics``: the simulator's metrics of this policy (``simulate(...).metrics``), simulated on
    ``trace_path`` when given. A calibrated exit metric without coefficients is fitted on
    ``calibration_trace_path`` exactly as ``simulate`` does (``simulator.run.resolve``). ``encoders_path``: the
    encoders file of the profile's model (default: the shipped reference CNN's); it must carry the profile's
    fingerprint. Returns the bundle's path.
    """
    import engram
    from kernels.reference.store import encoders_bytes
    from profiles.format import read_profile
    from simulator.device import from_profile
    from simulator.exit_metric import LOGISTIC_METRICS
    from simulator.policy import load_policy
    from simulator.presets import PRESETS, preset
    from simulator.run import resolve

    profile_path = Path(profile_path)
    profile = read_profile(profile_path)
    device = from_profile(profile)
    where = None
    if isinstance(policy, str) and policy in PRESETS:
        policy = preset(policy, device.exits)
    elif not isinstance(policy, Policy):
        where = str(policy)
        policy = load_policy(Path(policy))
    check_runnable(policy, where)
    calibrated = policy.kind == "smtm" and policy.metric.kind in LOGISTIC_METRICS
    if calibration_trace_path is not None and not Path(calibration_trace_path).is_file():
        raise FormatError("file not found", path=calibration_trace_path)
    calibration = None
    if calibrated and policy.metric.calibration is None and calibration_trace_path is not None:
        from simulator.workload import check_fit, from_recorded
        from traces.format import read_recorded_trace

        calibration = from_recorded(read_recorded_trace(calibration_trace_path), calibration_trace_path)
        check_fit(calibration, device, str(calibration_trace_path), str(profile_path))
    policy, enabled = resolve(policy, calibration, device, calibration, where)
    # The calibration trace is recorded where a calibrated metric's coefficients came (or, when the policy
    # arrives with them, were declared to come) from it.
    calib_info = None
    if calibrated and calibration_trace_path is not None:
        calib_info = {"path": str(calibration_trace_path), "sha256": sha256_file(Path(calibration_trace_path))}
    fp = dict(profile.fingerprint)

    enc_src = Path(encoders_path) if encoders_path is not None else DEFAULT_ENCODERS
    all_enc, enc_meta = read_encoders(enc_src, fp, None)
    missing = [e for e in device.exits if e not in all_enc]
    if missing:
        raise MismatchError(f"no encoder for the profile's exit point {missing[0]!r}", path=enc_src, field="exits")
    if not all_enc:
        raise FormatError("the encoders file holds no exit point", path=enc_src, field="exits")
    num_classes = int(next(iter(all_enc.values())).centres.shape[0])

    files: dict[str, bytes] = {}
    encoders_section = None
    if policy.kind == "smtm":
        chosen = {e: all_enc[e] for e in enabled}
        extra = {k: v for k, v in enc_meta.items() if k not in ("format", "version", "model_fingerprint", "exits", "dims")}
        extra["source"] = str(enc_src)
        files[ENCODERS_FILE] = encoders_bytes(chosen, fp, extra)
        encoders_section = {"file": ENCODERS_FILE, "exits": list(enabled), "dims": {e: chosen[e].dims for e in enabled}}

    metrics = json_safe(dict(predicted_metrics))
    trace_info = None
    if trace_path is not None:
        trace_info = {"path": str(trace_path), "sha256": sha256_file(Path(trace_path))}
    target = (profile.device.target or {}).get("name")
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "generator": f"engram {engram.__version__}",
        "policy": policy.to_json(),
        "enabled_exits": list(enabled),
        "model": {
            "name": profile.model.name,
            "fingerprint": fp,
            "blocks": list(device.blocks),
            "exit_points": list(device.exits),
            "input_shape": [int(v) for v in profile.model.input_shape],
            "num_classes": num_classes,
        },
        "profile": {
            "path": str(profile_path),
            "sha256": sha256_file(profile_path),
            "device": device.name,
            "target": target,
            "processor": policy.processor or device.default_processor,
            "fingerprint": fp,
            "threads": profile.device.threads,
        },
        "calibration": calib_info,
        "predicted": {"trace": trace_info, "metrics": metrics},
        "encoders": encoders_section,
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in files.items()},
    }
    parse_manifest(manifest, Path(out_dir) / MANIFEST)  # never write what the reader would refuse
    files[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    _write_directory_atomic(Path(out_dir), files)
    return Path(out_dir)
