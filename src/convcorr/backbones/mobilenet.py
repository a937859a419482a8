"""MobileNet V1 and V2 (ImageNet) from quantised TFLite flatbuffers, dequantised into torch modules.

Files (shared/weights/mobilenet-tflite, Apache-2.0): V1 1.0/224 = ``mobilenet_v1_1.0_224_quant_embedding_extractor
.tflite`` (convolutions up to the 1024-d average pool) + ``mobilenet_quant_v1_224_head_layers.tflite`` (the 1x1
logits convolution); V2 1.0/224 = ``mobilenet_v2_1.0_224_quant.tflite`` (uint8, per-tensor scales) or, with
``weights="tflite-tf2-ptq"``, ``tf2_mobilenet_v2_1.0_224_ptq.tflite`` (int8, per-channel scales). The flatbuffers
are parsed with the maintained ``tflite`` package (the TensorFlow Lite schema compiled for Python).

Conversion: weights ``w = scale[c] * (q - zero_point[c])`` per tensor or per output channel (the tensor's
``quantized_dimension``); int32 biases likewise with their own scales; CONV_2D weights (out, kh, kw, in) ->
(out, in, kh, kw); DEPTHWISE_CONV_2D (1, kh, kw, out) -> (out, 1, kh, kw) with groups = channels; fused ReLU6 /
ReLU kept; activations run in float (activation quantisation is not emulated). Every file op is matched in order
against the architecture defined here (kind, kernel, stride, padding, activation, shapes); any mismatch, bad
buffer size or parse error is a :class:`convcorr.core.errors.DataError` naming the file.

Padding is TensorFlow "SAME": total ``max((ceil(L / s) - 1) * s + k - L, 0)``, ``total // 2`` before and the rest
after, so a stride-2 layer on an even size pads only after and its column 0 is centred half a stride right of
pixel 0. The geometry therefore depends on the input size's parity; :meth:`Backbone.rf` traces it exactly at
the input size asked for. Input: RGB, ``x / 127.5 - 1``, 224x224. Classes: the files' 1001 outputs (0 =
background); :meth:`classify` returns the 1000 ImageNet logits (class i = label line i + 1).

Named layers: V1 ``Conv2d_0``, ``Conv2d_1_pointwise`` .. ``Conv2d_13_pointwise`` (the separable blocks' outputs);
V2 ``Conv``, ``expanded_conv``, ``expanded_conv_1`` .. ``expanded_conv_16``, ``Conv_1`` (TF's scope names).
Global feature ``pool``: the average of the last layer (1024-d / 1280-d).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import DataError
from ..runtime.paths import require_shared
from .base import BACKBONES, Backbone, WeightsStatus, shared_weights_status

_DIR = ("weights", "mobilenet-tflite")
_FILES = {
    "mobilenet_v1": {"tflite": ["mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
                                "mobilenet_quant_v1_224_head_layers.tflite"]},
    "mobilenet_v2": {"tflite": ["mobilenet_v2_1.0_224_quant.tflite"],
                     "tflite-tf2-ptq": ["tf2_mobilenet_v2_1.0_224_ptq.tflite"]},
}


class TFConv(nn.Module):
    """Conv2d with TensorFlow SAME padding (computed from the input size) and an optional fused ReLU6."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, depthwise: bool = False, act: str | None = "relu6"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=cin if depthwise else 1, bias=True)
        self.k, self.stride, self.depthwise, self.act = k, stride, depthwise, act

    @staticmethod
    def same_pad(L: int, k: int, s: int) -> tuple[int, int]:
        total = max((math.ceil(L / s) - 1) * s + k - L, 0)
        return total // 2, total - total // 2

    def forward(self, x):
        top, bottom = self.same_pad(x.shape[-2], self.k, self.stride)
        left, right = self.same_pad(x.shape[-1], self.k, self.stride)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        x = self.conv(x)
        if self.act == "relu6":
            x = torch.clamp(x, 0, 6)
        elif self.act == "relu":
            x = torch.relu(x)
        return x


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = TFConv(cin, mid, 1) if expand != 1 else None
        self.depthwise = TFConv(mid, mid, 3, stride, depthwise=True)
        self.project = TFConv(mid, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


def _v1_stages() -> dict[str, nn.Module]:
    st = {"Conv2d_0": TFConv(3, 32, 3, 2)}
    cin = 32
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for i, (c, s) in enumerate(cfg, 1):
        st[f"Conv2d_{i}_pointwise"] = nn.Sequential(TFConv(cin, cin, 3, s, depthwise=True), TFConv(cin, c, 1))
        cin = c
    return st


def _v2_stages() -> dict[str, nn.Module]:
    st = {"Conv": TFConv(3, 32, 3, 2), "expanded_conv": InvertedResidual(32, 16, 1, 1)}
    cin, j = 16, 1
    for t, c, n, s in [(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            st[f"expanded_conv_{j}"] = InvertedResidual(cin, c, s if i == 0 else 1, t)
            cin, j = c, j + 1
    st["Conv_1"] = TFConv(320, 1280, 1)
    return st


# ---- TFLite parsing ---------------------------------------------------------------------------------------
_NP = {0: np.float32, 2: np.int32, 3: np.uint8, 9: np.int8, 7: np.int16, 4: np.int64}
_ACT = {0: None, 1: "relu", 3: "relu6"}


def _read_tflite(path: Path) -> list[dict]:
    """The CONV_2D / DEPTHWISE_CONV_2D ops of a TFLite file, in execution order, with dequantised float weights.

    Returns:
        [{"kind": "conv" | "depthwise", "weight": (out, in, kh, kw) float32 (depthwise: (out, 1, kh, kw)),
          "bias": (out,), "stride": int, "padding": "SAME" | "VALID", "act": None | "relu" | "relu6",
          "name": output tensor name}, ...]; other ops are listed as {"kind": op name}.
    """
    try:
        import tflite
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the tflite package is needed for MobileNet weights: pip install 'convcorr[tflite]'") from exc
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        g = model.Subgraphs(0)

        def tensor(i, what):
            t = g.Tensors(i)
            shape = tuple(int(v) for v in t.ShapeAsNumpy())
            dt = _NP.get(t.Type())
            if dt is None:
                raise DataError(f"{path}: {what} tensor {t.Name().decode()!r} has unsupported type {t.Type()}")
            data = model.Buffers(t.Buffer()).DataAsNumpy()
            if isinstance(data, int) or data is None:
                raise DataError(f"{path}: {what} tensor {t.Name().decode()!r} has no data")
            n = int(np.prod(shape))
            if data.size != n * np.dtype(dt).itemsize:
                raise DataError(f"{path}: {what} tensor {t.Name().decode()!r}: {data.size} bytes for shape {shape} "
                                f"of {np.dtype(dt).name}")
            arr = np.frombuffer(data.tobytes(), dtype=np.dtype(dt).newbyteorder("<")).reshape(shape)
            q = t.Quantization()
            if dt is np.float32:
                return arr.astype(np.float32)
            if q is None or q.ScaleLength() == 0:
                raise DataError(f"{path}: quantised tensor {t.Name().decode()!r} without scales")
            scale = q.ScaleAsNumpy().astype(np.float64)
            zp = q.ZeroPointAsNumpy().astype(np.float64) if q.ZeroPointLength() else np.zeros_like(scale)
            if scale.size > 1:  # per-axis
                ax = q.QuantizedDimension()
                if scale.size != shape[ax] or zp.size not in (1, scale.size):
                    raise DataError(f"{path}: tensor {t.Name().decode()!r}: {scale.size} scales for axis {ax} of "
                                    f"shape {shape}")
                bshape = [1] * len(shape)
                bshape[ax] = -1
                scale, zp = scale.reshape(bshape), zp.reshape(bshape) if zp.size > 1 else zp
            out = (scale * (arr.astype(np.float64) - zp)).astype(np.float32)
            if not np.all(np.isfinite(out)):
                raise DataError(f"{path}: tensor {t.Name().decode()!r} has non-finite values")
            return out

        ops = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            out_name = g.Tensors(op.Outputs(0)).Name().decode().split(";")[0]
            if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                ops.append({"kind": kind, "name": out_name})
                continue
            opts = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            bo = op.BuiltinOptions()
            opts.Init(bo.Bytes, bo.Pos)
            if opts.StrideH() != opts.StrideW() or opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
                raise DataError(f"{path}: op {i} ({out_name}): unsupported strides / dilation")
            w = tensor(op.Inputs(1), "weight")
            b = tensor(op.Inputs(2), "bias") if op.InputsLength() > 2 and op.Inputs(2) >= 0 else None
            if w.ndim != 4:
                raise DataError(f"{path}: op {i} ({out_name}): weight of shape {w.shape}")
            w = w.transpose(0, 3, 1, 2) if kind == "CONV_2D" else w.transpose(3, 0, 1, 2)
            if b is None:
                b = np.zeros(w.shape[0], np.float32)
            if b.shape != (w.shape[0],):
                raise DataError(f"{path}: op {i} ({out_name}): {b.size} biases for {w.shape[0]} output channels")
            act = _ACT.get(opts.FusedActivationFunction(), "?")
            ops.append({"kind": "conv" if kind == "CONV_2D" else "depthwise", "weight": np.ascontiguousarray(w),
                        "bias": b, "stride": int(opts.StrideH()), "act": act, "name": out_name,
                        "padding": "SAME" if opts.Padding() == tflite.Padding.SAME else "VALID"})
        return ops
    except DataError:
        raise
    except Exception as exc:  # flatbuffer parse errors of any kind
        raise DataError(f"{path}: not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})") from exc


def _load_into(convs: list[TFConv], file_ops: list[dict], path_desc: str) -> None:
    """Copy the file's conv ops, in order, into ``convs`` after checking that they match."""
    conv_ops = [o for o in file_ops if o["kind"] in ("conv", "depthwise")]
    if len(conv_ops) != len(convs):
        raise DataError(f"{path_desc}: {len(conv_ops)} convolutions, the architecture has {len(convs)}")
    with torch.no_grad():
        for i, (m, o) in enumerate(zip(convs, conv_ops)):
            want = tuple(m.conv.weight.shape)
            if o["kind"] != ("depthwise" if m.depthwise else "conv") or tuple(o["weight"].shape) != want or \
                    o["stride"] != m.stride or o["padding"] != "SAME" or o["act"] != m.act:
                raise DataError(f"{path_desc}: convolution {i} ({o['name']}): {o['kind']} {o['weight'].shape} stride "
                                f"{o['stride']} {o['padding']} act {o['act']}, expected "
                                f"{'depthwise' if m.depthwise else 'conv'} {want} stride {m.stride} SAME act {m.act}")
            m.conv.weight.copy_(torch.from_numpy(o["weight"]))
            m.conv.bias.copy_(torch.from_numpy(o["bias"]))


def tflite_status(name: str) -> WeightsStatus:
    """Whether the default ("tflite") files of MobileNet ``name`` are in the shared folder."""
    for f in _FILES[name]["tflite"]:
        st = shared_weights_status(*_DIR, f)
        if not st:
            return st
    return WeightsStatus(True, f"shared/{'/'.join(_DIR)} ({' + '.join(_FILES[name]['tflite'])})")


class _MobileNet(Backbone):
    global_layer = "pool"
    input_size = 224
    _builder = None
    _head_in = 0

    def __init__(self, weights: str | None = "tflite", weights_dir: str | Path | None = None):
        super().__init__()
        files = _FILES[self.name]
        if weights is not None and weights not in files:
            raise ValueError(f"unknown {self.name} weights {weights!r}: use one of {sorted(files)} or None")
        self.stages = nn.ModuleDict(type(self)._builder())
        self.logits = TFConv(self._head_in, 1001, 1, act=None)
        if weights is not None:
            folder = Path(weights_dir) if weights_dir else require_shared(*_DIR)
            ops = []
            for f in files[weights]:
                p = folder / f
                if not p.is_file():
                    raise FileNotFoundError(f"{p}: MobileNet TFLite weights not found")
                ops += _read_tflite(p)
            convs = [m for m in self.modules() if isinstance(m, TFConv)]  # registration order = file order
            _load_into(convs, ops, " + ".join(str(folder / f) for f in files[weights]))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x / 127.5 - 1.0

    def global_head(self, last: torch.Tensor) -> torch.Tensor:
        return last.mean(dim=(2, 3))

    def classifier_head(self, glob: torch.Tensor) -> torch.Tensor:
        """(N, D) pooled feature -> (N, 1000) ImageNet logits (the files' background class 0 dropped)."""
        return self.logits(glob[:, :, None, None])[:, 1:, 0, 0]


@BACKBONES.register("mobilenet_v1", default_weights="tflite",
                    offline_available=functools.partial(tflite_status, "mobilenet_v1"))
class MobileNetV1(_MobileNet):
    """MobileNet V1 1.0 / 224 (TFLite uint8 weights, dequantised)."""

    name = "mobilenet_v1"
    layer_names = ("Conv2d_0",) + tuple(f"Conv2d_{i}_pointwise" for i in range(1, 14))
    _builder = staticmethod(_v1_stages)
    _head_in = 1024


@BACKBONES.register("mobilenet_v2", default_weights="tflite",
                    offline_available=functools.partial(tflite_status, "mobilenet_v2"))
class MobileNetV2(_MobileNet):
    """MobileNet V2 1.0 / 224 (TFLite uint8 per-tensor, or int8 per-channel "tflite-tf2-ptq", dequantised)."""

    name = "mobilenet_v2"
    layer_names = ("Conv", "expanded_conv") + tuple(f"expanded_conv_{i}" for i in range(1, 17)) + ("Conv_1",)
    _builder = staticmethod(_v2_stages)
    _head_in = 1280
