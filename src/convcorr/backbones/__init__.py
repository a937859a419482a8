"""Backbones behind one interface (:class:`Backbone`): named layer activations, rf geometry, global features.

>>> bb = get_backbone("alexnet")                     # Caffe reference AlexNet, 8-bit weights from shared/
>>> acts = bb.extract(images, ["conv4"])             # {"conv4": (N, h, w, 384)}
>>> bb.rf("conv4")                                   # RFGeometry(size=131, stride=16, offset=...)

Registry (:data:`BACKBONES`): every backbone registers itself in its own module with its facts, the default weight
source (``default_weights``) and whether those weights are on this machine (``offline_available()``)::

    @BACKBONES.register("mynet", default_weights="imagenet", offline_available=lambda: WeightsStatus(True, "..."))
    class MyNet(Backbone): ...

Other packages add backbones through the entry-point group ``convcorr.backbones``.
"""
from __future__ import annotations

import torch

from ..runtime.device import default_device
from .alexnet import AlexNet
from .base import BACKBONES, Backbone, WeightsStatus
from .efficientnet import EfficientNetLite0
from .mobilenet import MobileNetV1, MobileNetV2
from .squeezenet import SqueezeNet10
from .zoo import WeightsUnavailable, ZooBackbone

#: prefixes of specs built from a model library: "timm:resnet50", "torchvision:vgg16", ...
ZOO_PREFIXES = ("timm", "torchvision")
#: library models whose geometry and feature shapes the tests check (random weights, offline), as examples
ZOO_EXAMPLES = ("timm:resnet18", "timm:vgg11", "timm:vit_tiny_patch16_224", "torchvision:resnet18",
                "torchvision:mobilenet_v3_small")
_CACHE: dict = {}


def is_zoo_spec(name: str) -> bool:
    """True for "timm:<model>" / "torchvision:<model>" (a model library's model, :class:`ZooBackbone`)."""
    return isinstance(name, str) and ":" in name and name.split(":", 1)[0] in ZOO_PREFIXES


def default_weights(name: str, **kw) -> str:
    """The weight source ``get_backbone(name, **kw)`` loads when none is given: the registered ``default_weights``
    fact (a string, or a callable returning one, called with those of the backbone's keyword arguments ``kw`` it
    takes, e.g. AlexNet's ``weights_dir``), "default" when the backbone declares none or for library models."""
    if is_zoo_spec(name):
        return "default"
    w = BACKBONES.fact(name, "default_weights", "default")
    if callable(w):
        import inspect

        takes = inspect.signature(w).parameters
        w = w(**{k: v for k, v in kw.items() if k in takes})
    return str(w)


def offline_weights(name: str) -> WeightsStatus:
    """Whether backbone ``name``'s default weights are on this machine (``offline_available`` fact; library models
    and backbones that declare nothing: not known to be)."""
    if is_zoo_spec(name):
        return WeightsStatus(False, "library model (weights download with a network)")
    check = BACKBONES.fact(name, "offline_available")
    if check is None:
        return WeightsStatus(False, "the backbone declares no offline weights")
    st = check()
    return st if isinstance(st, WeightsStatus) else WeightsStatus(bool(st), "declared by the backbone")


def get_backbone(name: str, pretrained: bool = True, device: str | torch.device | None = None,
                 weights: str | None = None, cache: bool = True, **kw) -> Backbone:
    """Build a backbone in eval mode on ``device`` (default: CUDA when available).

    Args:
        name: one of :data:`BACKBONES`, or "timm:<model>" / "torchvision:<model>" (:class:`ZooBackbone`).
        pretrained: load weights (False: random initialisation, e.g. for rf tables).
        weights: weight source, e.g. "caffe-q8" or "torchvision" for AlexNet (default: :func:`default_weights`).
        cache: reuse an already built instance with the same arguments (models are frozen: no gradients).
        **kw: passed to the backbone class (e.g. ``weights_dir`` for AlexNet).
    Returns:
        the backbone, in eval mode, on ``device`` or :func:`convcorr.runtime.device.default_device`.
    Raises:
        UnknownName (a KeyError): an unknown name, with the closest registered names.
    """
    zoo = is_zoo_spec(name)
    cls = None if zoo else BACKBONES.get(name)
    w = (weights or default_weights(name, **kw)) if pretrained else None
    dev = torch.device(device) if device is not None else default_device()
    key = (name, w, str(dev), tuple(sorted((k, str(v)) for k, v in kw.items())))
    if cache and key in _CACHE:
        return _CACHE[key]
    model = (ZooBackbone(name, weights=w, **kw) if zoo else cls(weights=w, **kw)).eval().to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    if cache:
        _CACHE[key] = model
    return model


def layer_names(name: str) -> tuple[str, ...]:
    """The spatial layers of backbone ``name``, read from a built object (random weights, CPU; cached)."""
    return tuple(get_backbone(name, pretrained=False, device="cpu").layer_names)


__all__ = ["Backbone", "AlexNet", "EfficientNetLite0", "SqueezeNet10", "MobileNetV1", "MobileNetV2", "ZooBackbone",
           "WeightsUnavailable", "WeightsStatus", "BACKBONES", "ZOO_PREFIXES", "ZOO_EXAMPLES", "get_backbone",
           "default_weights", "offline_weights", "is_zoo_spec", "layer_names"]
