"""Per-device latency predictor for blocks a phone's look-up table does not cover.

nn-Meter's look-up tables (``profiles/data/nn_meter``) hold measured latencies of ~1,800 MBConv blocks
(plus a few first convolutions and final pooling blocks) per phone. A block of ours that is in the table is
imported as measured; every other block is predicted by a model fitted on that phone's table:

1. **Roofline-style base** (extrapolates): latency = sum of non-negative per-operation costs, each a
   coefficient times a count: multiply-accumulates of 1x1 expand / 1x1 project / 3x3 and 5x5 depthwise /
   dense k x k / fully-connected / squeeze-excite layers, elements through activations, depthwise inputs,
   block outputs, global pools and residual adds, plus a fixed cost per block and per kernel. Fitted by
   non-negative least squares on relative error (every entry weighs the same whatever its size).
2. **Boosted residual** (interpolates): gradient-boosted trees (XGBoost, 400 rounds of depth 4,
   deterministic: one thread, seed 0) on the MBConv configuration and the base's features predict
   log(measured / base). Trees are constant outside the range they were fitted on, so for a configuration
   outside the table (smaller maps, more channels) the base's scaling carries the prediction.

Blocks that are not MBConv (a stem convolution, a classifier head) get the base alone, composed from its
per-operation coefficients. :func:`cross_validate` reports the error on table entries held out from the fit
(nn-Meter claims 99% of predictions within +-10% on these phones).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

from engram.errors import EngramError

# ----------------------------------------------------------------------------------------------------------
# Operation configurations
# ----------------------------------------------------------------------------------------------------------

KEY_MBCONV = re.compile(r"^conv_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_(hard_swish|relu|swish)_(\d+)_(se|nose)$")
KEY_FIRST = re.compile(r"^firstconv_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)$")
KEY_MBPOOL = re.compile(r"^mbpool_(\d+)_(\d+)_(\d+)_(\d+)_(hard_swish|relu|swish)$")


@dataclass(frozen=True)
class MBConvOp:
    """Inverted residual block: [1x1 expand] -> k x k depthwise (stride) -> [SE] -> 1x1 project [+ residual]."""

    hw: int  # input height = width
    cin: int
    cout: int
    expand: float  # hidden channels / cin (an integer in nn-Meter's tables)
    stride: int
    kernel: int
    se: bool
    act: str = "hard_swish"
    expand_conv: bool | None = None  # None: there is a 1x1 expansion iff expand != 1

    @property
    def hidden(self) -> int:
        return int(round(self.cin * self.expand))

    @property
    def has_expand(self) -> bool:
        return self.expand != 1 if self.expand_conv is None else self.expand_conv

    @property
    def key(self) -> str:
        e = int(self.expand) if float(self.expand).is_integer() else f"{self.expand:g}"
        extra = "" if self.expand_conv is None or self.expand_conv == (self.expand != 1) else "_expconv"
        return f"conv_{self.hw}_{self.cin}_{self.cout}_{e}_{self.stride}_{self.act}_{self.kernel}_{'se' if self.se else 'nose'}{extra}"


@dataclass(frozen=True)
class ConvOp:
    """Dense k x k convolution + activation (a stem)."""

    hw: int
    cin: int
    cout: int
    kernel: int
    stride: int

    @property
    def key(self) -> str:
        return f"firstconv_{self.hw}_{self.cin}_{self.cout}_{self.stride}_{self.kernel}"


@dataclass(frozen=True)
class HeadOp:
    """[1x1 conv cin -> hidden + activation] -> global average pool -> fully connected to ``classes``."""

    hw: int
    cin: int
    hidden: int  # 0: no 1x1 conv
    classes: int

    @property
    def key(self) -> str:
        # nn-Meter's "MBPool" block is a head with hidden = 6 x cin (key: mbpool_{hw}_{cin}_{classes}_6_{act})
        if self.hidden == 6 * self.cin:
            return f"mbpool_{self.hw}_{self.cin}_{self.classes}_6_hard_swish"
        return f"head_{self.hw}_{self.cin}_{self.hidden}_{self.classes}"


Op = Union[MBConvOp, ConvOp, HeadOp]


def parse_key(key: str) -> Op | None:
    """The operation a look-up-table key describes (``None`` for keys of other block kinds)."""
    m = KEY_MBCONV.match(key)
    if m:
        hw, cin, cout, e, s = (int(v) for v in m.groups()[:5])
        return MBConvOp(hw, cin, cout, e, s, int(m.group(7)), m.group(8) == "se", m.group(6))
    m = KEY_FIRST.match(key)
    if m:
        hw, cin, cout, s, k = (int(v) for v in m.groups())
        return ConvOp(hw, cin, cout, k, s)
    m = KEY_MBPOOL.match(key)
    if m:
        hw, cin, classes, e = (int(v) for v in m.groups()[:4])
        return HeadOp(hw, cin, cin * e, classes)
    return None


def _out(hw: int, stride: int) -> int:
    return -(-hw // stride)


FEATURES = ("exp_macs", "proj_macs", "dw3_macs", "dw5_macs", "dense_macs", "fc_macs", "se_macs", "act_elems",
            "dw_in_elems", "out_elems", "gap_elems", "se_count", "res_elems", "blocks", "kernels")


def base_features(op: Op) -> np.ndarray:
    f = dict.fromkeys(FEATURES, 0.0)
    if isinstance(op, MBConvOp):
        hid = op.hidden
        ho = _out(op.hw, op.stride)
        kernels = 2
        if op.has_expand:
            f["exp_macs"] = op.hw * op.hw * op.cin * hid
            f["act_elems"] += op.hw * op.hw * hid
            kernels += 1
        f["dw3_macs" if op.kernel <= 3 else "dw5_macs"] = ho * ho * hid * op.kernel * op.kernel
        f["dw_in_elems"] = op.hw * op.hw * hid
        f["act_elems"] += ho * ho * hid
        f["proj_macs"] = ho * ho * hid * op.cout
        f["out_elems"] = ho * ho * op.cout
        if op.se:
            mid = max(8, int(hid * 0.25 + 4) // 8 * 8)
            f["se_macs"] = 2 * hid * mid
            f["gap_elems"] = ho * ho * hid
            f["se_count"] = 1
            kernels += 3
        if op.stride == 1 and op.cin == op.cout:
            f["res_elems"] = ho * ho * op.cout
        f["blocks"] = 1
        f["kernels"] = kernels
    elif isinstance(op, ConvOp):
        ho = _out(op.hw, op.stride)
        f["dense_macs"] = ho * ho * op.cout * op.cin * op.kernel * op.kernel
        f["act_elems"] = ho * ho * op.cout
        f["out_elems"] = ho * ho * op.cout
        f["kernels"] = 1
    elif isinstance(op, HeadOp):
        c = op.cin
        k = 2
        if op.hidden:
            f["exp_macs"] = op.hw * op.hw * op.cin * op.hidden
            f["act_elems"] = op.hw * op.hw * op.hidden
            c = op.hidden
            k += 1
        f["gap_elems"] = op.hw * op.hw * c
        f["fc_macs"] = c * op.classes
        f["out_elems"] = op.classes
        f["kernels"] = k
    else:  # pragma: no cover
        raise TypeError(op)
    return np.array([f[k] for k in FEATURES], dtype=np.float64)


def _tree_features(op: MBConvOp, base: float, feats: np.ndarray) -> np.ndarray:
    head = [op.hw, op.cin, op.cout, float(op.expand), op.stride, op.kernel, int(op.se), math.log(max(base, 1e-9))]
    return np.concatenate([np.array(head, dtype=np.float64), np.log1p(feats)])


# ----------------------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------------------

XGB_PARAMS = {"max_depth": 4, "eta": 0.05, "subsample": 0.8, "nthread": 1, "seed": 0, "objective": "reg:squarederror"}
XGB_ROUNDS = 400


def parse_lut(entries: Mapping[str, float]) -> list[tuple[str, Op, float]]:
    """Usable ``(key, op, latency_ms)`` rows of a look-up table (other block kinds are skipped)."""
    out = []
    for k, v in entries.items():
        op = parse_key(k)
        if op is None:
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise EngramError(f"look-up table entry {k!r} is not a positive latency: {v!r}")
        out.append((k, op, float(v)))
    return out


@dataclass
class LatencyPredictor:
    """Fitted on one device's table; :meth:`predict` gives milliseconds."""

    device: str
    theta: np.ndarray  # per-feature cost (ms per unit, after scaling)
    scale: np.ndarray
    booster: Any = None  # xgboost.Booster on MBConv rows, or None
    rows: int = 0
    table: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, entries: Mapping[str, float] | Sequence[tuple[str, Op, float]], device: str = "", residual: bool = True) -> "LatencyPredictor":
        rows = parse_lut(entries) if isinstance(entries, Mapping) else list(entries)
        if len(rows) < len(FEATURES) + 2:
            raise EngramError(f"only {len(rows)} usable look-up-table entries: too few to fit a predictor")
        X = np.stack([base_features(op) for _, op, _ in rows])
        y = np.array([v for _, _, v in rows])
        scale = X.max(axis=0)
        scale[scale == 0] = 1.0
        from scipy.optimize import nnls

        theta, _ = nnls(X / scale / y[:, None], np.ones(len(y)), maxiter=50 * X.shape[1])
        pred = cls(device, theta, scale, None, len(rows), {k: v for k, _, v in rows})
        if residual:
            mb = [(op, v) for _, op, v in rows if isinstance(op, MBConvOp)]
            if len(mb) >= 50:
                import xgboost as xgb

                F, t = [], []
                for op, v in mb:
                    feats = base_features(op)
                    b = pred.base(op)
                    F.append(_tree_features(op, b, feats))
                    t.append(math.log(v / b))
                pred.booster = xgb.train(XGB_PARAMS, xgb.DMatrix(np.stack(F), label=np.array(t)), XGB_ROUNDS)
        return pred

    def base(self, op: Op) -> float:
        return float(max((base_features(op) / self.scale) @ self.theta, 1e-6))

    def predict(self, op: Op) -> float:
        """Predicted latency (ms) of one operation (never the table value: see :meth:`lookup`)."""
        b = self.base(op)
        if self.booster is not None and isinstance(op, MBConvOp):
            import xgboost as xgb

            r = float(self.booster.predict(xgb.DMatrix(_tree_features(op, b, base_features(op))[None, :]))[0])
            return b * math.exp(r)
        return b

    def lookup(self, op: Op) -> tuple[float, bool]:
        """``(latency_ms, measured)``: the table's value when it has this operation, else a prediction."""
        v = self.table.get(op.key)
        if v is not None:
            return v, True
        return self.predict(op), False

    def coefficients(self) -> dict[str, float]:
        """Fitted cost per unit of each feature (ms per MAC, per element, per block...)."""
        return {k: float(t / s) for k, t, s in zip(FEATURES, self.theta, self.scale)}


# ----------------------------------------------------------------------------------------------------------
# Held-out error
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutError:
    name: str
    n: int
    within_10: float  # share of held-out entries predicted within +-10%
    within_5: float
    median_abs: float
    p99_abs: float
    max_abs: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "within_10pct": round(self.within_10, 4),
                "within_5pct": round(self.within_5, 4), "median_abs_error": round(self.median_abs, 4),
                "p99_abs_error": round(self.p99_abs, 4), "max_abs_error": round(self.max_abs, 4)}


def _summary(name: str, rel: np.ndarray) -> HeldOutError:
    a = np.abs(rel)
    return HeldOutError(name, len(a), float(np.mean(a <= 0.10)), float(np.mean(a <= 0.05)), float(np.median(a)),
                        float(np.percentile(a, 99)), float(a.max()))


def cross_validate(entries: Mapping[str, float], folds: int = 5, seed: int = 0, residual: bool = True) -> dict[str, HeldOutError]:
    """Held-out errors: ``mbconv`` (k-fold over the MBConv entries), ``mbconv_smallest_maps`` (fit without the
    smallest feature-map size, test on it: the extrapolation our 8x8 blocks need), ``firstconv`` and ``mbpool``
    (leave one out)."""
    rows = parse_lut(entries)
    mb = [i for i, (_, op, _) in enumerate(rows) if isinstance(op, MBConvOp)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(mb)
    rel = np.zeros(len(rows))
    for part in np.array_split(order, folds):
        held = set(int(i) for i in part)
        model = LatencyPredictor.fit([r for i, r in enumerate(rows) if i not in held], residual=residual)
        for i in held:
            rel[i] = model.predict(rows[i][1]) / rows[i][2] - 1
    out = {"mbconv": _summary(f"MBConv, {folds}-fold", rel[mb])}

    smallest = min(rows[i][1].hw for i in mb)
    held = [i for i in mb if rows[i][1].hw == smallest]
    model = LatencyPredictor.fit([r for i, r in enumerate(rows) if i not in set(held)], residual=residual)
    out["mbconv_smallest_maps"] = _summary(f"MBConv at {smallest}x{smallest}, fitted without them",
                                           np.array([model.predict(rows[i][1]) / rows[i][2] - 1 for i in held]))
    for kind, cls in (("firstconv", ConvOp), ("mbpool", HeadOp)):
        idx = [i for i, (_, op, _) in enumerate(rows) if isinstance(op, cls)]
        if len(idx) < 3:
            continue
        errs = []
        for i in idx:
            model = LatencyPredictor.fit([r for j, r in enumerate(rows) if j != i], residual=False)
            errs.append(model.predict(rows[i][1]) / rows[i][2] - 1)
        out[kind] = _summary(f"{kind}, leave-one-out", np.array(errs))
    return out


# ----------------------------------------------------------------------------------------------------------
# Torch blocks -> operations
# ----------------------------------------------------------------------------------------------------------


def _act_name(mods: Iterable[Any]) -> str:
    from torch import nn

    for m in mods:
        if isinstance(m, nn.Hardswish):
            return "hard_swish"
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            return "relu"
        if isinstance(m, nn.SiLU):
            return "swish"
    return "hard_swish"


def block_ops(block: Any, input_shape: Sequence[int]) -> list[Op]:
    """The operations of a torch block (zoo layers: MBConv, ConvBNAct, ClassifierHead, plain Conv2d/Linear).

    Raises :class:`EngramError` for layers it cannot describe (use the CSV importer for such models).
    """
    import torch
    from torch import nn

    from kernels.layers import ClassifierHead, ConvBNAct, MBConv, SqueezeExcite

    ops: list[tuple[int, Op]] = []
    hooks = []
    order = [0]
    covered: set[int] = set()

    def mbconv_hook(mod: Any, inputs: Any, output: Any) -> None:
        x = inputs[0]
        convs = [m for m in mod.body.modules() if isinstance(m, nn.Conv2d) and not _inside_se(mod, m)]
        dw = next(c for c in convs if c.groups > 1 and c.groups == c.in_channels)
        cin = convs[0].in_channels
        se = any(isinstance(m, SqueezeExcite) for m in mod.body.modules())
        ops.append((order[0], MBConvOp(int(x.shape[-1]), cin, convs[-1].out_channels, dw.in_channels // cin,
                                       dw.stride[0], dw.kernel_size[0], se, _act_name(mod.modules()))))
        order[0] += 1

    def head_hook(mod: Any, inputs: Any, output: Any) -> None:
        x = inputs[0]
        hidden = mod.conv[0].out_channels if isinstance(mod.conv, ConvBNAct) else 0
        ops.append((order[0], HeadOp(int(x.shape[-1]), int(x.shape[1]), hidden, mod.fc.out_features)))
        order[0] += 1

    def conv_hook(mod: Any, inputs: Any, output: Any) -> None:
        if id(mod) in covered:
            return
        x = inputs[0]
        if mod.groups != 1:
            raise EngramError(f"cannot predict a stand-alone grouped convolution ({mod})")
        ops.append((order[0], ConvOp(int(x.shape[-1]), mod.in_channels, mod.out_channels, mod.kernel_size[0], mod.stride[0])))
        order[0] += 1

    def linear_hook(mod: Any, inputs: Any, output: Any) -> None:
        if id(mod) in covered:
            return
        ops.append((order[0], HeadOp(1, mod.in_features, 0, mod.out_features)))
        order[0] += 1

    for m in block.modules():
        if isinstance(m, MBConv):
            hooks.append(m.register_forward_hook(mbconv_hook))
            covered.update(id(s) for s in m.modules())
        elif isinstance(m, ClassifierHead):
            hooks.append(m.register_forward_hook(head_hook))
            covered.update(id(s) for s in m.modules())
    for m in block.modules():
        if id(m) in covered:
            continue
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif len(list(m.children())) == 0 and not isinstance(
                m, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.Identity, nn.Dropout, nn.Flatten,
                    nn.AdaptiveAvgPool2d)):
            for h in hooks:
                h.remove()
            raise EngramError(f"cannot predict the latency of a {type(m).__name__} layer; import measured latencies "
                              "with `run_sim.py profile import-csv` instead")
    try:
        with torch.no_grad():
            block.eval()(torch.zeros((1, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
    if not ops:
        raise EngramError("block has no convolution or linear layer to predict")
    return [op for _, op in sorted(ops, key=lambda t: t[0])]


def _inside_se(mbconv: Any, conv: Any) -> bool:
    from kernels.layers import SqueezeExcite

    return any(isinstance(m, SqueezeExcite) and any(c is conv for c in m.modules()) for m in mbconv.modules())
