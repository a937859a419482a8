"""Any timm or torchvision model as a backbone: ``get_backbone("timm:resnet50")``, ``"torchvision:vgg16"``, ...

Layers are named after the model's own modules: timm's ``feature_info`` (resnet ``act1``, ``layer1``..``layer4``;
ViT ``blocks.0``..``blocks.11``; ConvNeXt ``stages.0``..``stages.3``; VGG ``features.N``), torchvision's residual
stages (``layer1``..``layer4``), the blocks of ``features`` (MobileNet, EfficientNet, ConvNeXt; the ReLU / pooling
outputs for plain VGG / AlexNet / SqueezeNet layouts) and the encoder blocks of a ViT. Activations are taken with
forward hooks (the forward stops after the last requested layer). Token outputs (N, T, C) are reshaped to
(N, C, h, w) grids with the class / distillation / register tokens dropped. Geometry comes from tracing
(:meth:`Backbone.rf`), so ResNet layer2 has stride 8 and ViT blocks report a global rf with the patch stride.

Weights load through the libraries' own mechanisms only: torchvision's ``WeightsEnum.get_state_dict`` with
``check_hash=True`` and ``weights_only=True`` (the file name carries the SHA-256 prefix that is checked), timm
through the Hugging Face hub (safetensors where published, otherwise ``torch.load(weights_only=True)``). Without
a network (and without a cached copy) loading fails with one line saying the weights are not available offline.
torchvision and timm are imported lazily (extra ``convcorr[zoo]``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .base import Backbone, WeightsUnavailable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Stop(Exception):
    pass


def _import(lib: str):
    try:
        return __import__(lib)
    except ImportError as exc:
        raise ImportError(f"{lib} is not installed: pip install 'convcorr[zoo]' (torchvision and timm)") from exc


def _build_timm(model: str, pretrained: bool):
    timm = _import("timm")
    if not timm.list_models(model.split(".")[0]) and not timm.is_model(model):
        raise KeyError(f"timm has no model {model!r} (see timm.list_models())")
    kw = {}
    try:
        m = timm.create_model(model, pretrained=False, dynamic_img_size=True)
        kw["dynamic_img_size"] = True
    except TypeError:
        m = timm.create_model(model, pretrained=False)
    if pretrained:
        try:
            m = timm.create_model(model, pretrained=True, **kw)
        except Exception as exc:  # no network: huggingface_hub / urllib errors of many kinds
            hub = (m.pretrained_cfg or {}).get("hf_hub_id") or model
            raise WeightsUnavailable(
                f"pretrained weights for timm:{model} are not available offline (Hugging Face hub {hub}: "
                f"{type(exc).__name__}); use pretrained=False, or run once with a network to fill the cache"
            ) from None
    cfg = m.pretrained_cfg or {}
    layers = [f["module"] for f in m.feature_info] if getattr(m, "feature_info", None) else []
    chans = {f["module"]: f["num_chs"] for f in (m.feature_info or [])}
    return m, layers, chans, cfg


def _tv_layers(m: nn.Module) -> list[str]:
    names = dict(m.named_modules())
    if all(f"layer{i}" in names for i in range(1, 5)):  # ResNet, ResNeXt, wide ResNet
        return ["maxpool", "layer1", "layer2", "layer3", "layer4"]
    if "encoder.layers" in names and "conv_proj" in names:  # VisionTransformer
        return [f"encoder.layers.{n}" for n, _ in names["encoder.layers"].named_children()]
    feats = names.get("features")
    if isinstance(feats, nn.Sequential):
        kids = list(feats.named_children())
        plain = all(isinstance(c, (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.BatchNorm2d, nn.Dropout)) or
                    type(c).__name__ == "Fire" for _, c in kids)
        if plain:  # VGG / AlexNet / SqueezeNet layouts: activations after each ReLU, Fire module or pooling
            keep = [n for i, (n, c) in enumerate(kids)
                    if isinstance(c, (nn.MaxPool2d,)) or type(c).__name__ == "Fire" or
                    (isinstance(c, nn.ReLU) and not (i + 1 < len(kids) and isinstance(kids[i + 1][1], nn.ReLU)))]
            return [f"features.{n}" for n in keep]
        return [f"features.{n}" for n, _ in kids]
    raise KeyError(f"cannot name the layers of torchvision model {type(m).__name__}: use timm:... or a registered "
                   "backbone")


def _build_torchvision(model: str, pretrained: bool, weights: str | None):
    tv = _import("torchvision")
    try:
        builder = tv.models.get_model_builder(model)
    except ValueError as exc:
        raise KeyError(f"torchvision has no model {model!r} (see torchvision.models.list_models())") from exc
    m = builder(weights=None)
    cfg = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_size": (3, 224, 224)}
    if pretrained:
        enum = tv.models.get_model_weights(model)
        w = enum[weights] if weights else enum.DEFAULT
        try:
            sd = w.get_state_dict(progress=True, check_hash=True, weights_only=True)
        except Exception as exc:
            raise WeightsUnavailable(
                f"pretrained weights torchvision:{model} ({w}) are not available offline ({w.url}: "
                f"{type(exc).__name__}); use pretrained=False, or run once with a network to fill the cache"
            ) from None
        m.load_state_dict(sd)
        t = w.transforms()
        cfg = {"mean": tuple(t.mean), "std": tuple(t.std), "input_size": (3, t.crop_size[0], t.crop_size[0])}
    if hasattr(m, "image_size"):  # torchvision ViT: fixed size
        cfg["input_size"] = (3, m.image_size, m.image_size)
    return m, _tv_layers(m), {}, cfg


class ZooBackbone(Backbone):
    """A timm / torchvision model behind the :class:`Backbone` interface (see the module docstring).

    Args:
        spec: "timm:<model>" or "torchvision:<model>".
        weights: None (random init), "default" (the library's default pretrained weights) or, for torchvision,
            a weights enum member name such as "IMAGENET1K_V2".
    """

    global_layer = "pool"

    def __init__(self, spec: str, weights: str | None = None):
        super().__init__()
        source, _, model = spec.partition(":")
        if source not in ("timm", "torchvision") or not model:
            raise KeyError(f"backbone spec {spec!r}: expected 'timm:<model>' or 'torchvision:<model>'")
        self.name, self.source, self.model_name = spec, source, model
        pretrained = weights is not None
        if source == "timm":
            m, layers, chans, cfg = _build_timm(model, pretrained)
        else:
            m, layers, chans, cfg = _build_torchvision(model, pretrained, None if weights in (None, "default")
                                                       else weights)
        if not layers:
            raise KeyError(f"{spec}: the model exposes no feature layers")
        self.model = m
        self.layer_names = tuple(layers)
        self._chans = chans
        self.input_size = int(cfg.get("input_size", (3, 224, 224))[-1])
        self.register_buffer("_mean", torch.tensor(cfg.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.register_buffer("_std", torch.tensor(cfg.get("std", IMAGENET_STD)).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self._modules_by_name = dict(m.named_modules())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)

    # ---- token grids ------------------------------------------------------------------------------------
    def _prefix_and_patch(self) -> tuple[int, int]:
        m = self.model
        if self.source == "timm":
            prefix = int(getattr(m, "num_prefix_tokens", 0))
            pe = getattr(m, "patch_embed", None)
            p = pe.patch_size[0] if pe is not None and hasattr(pe, "patch_size") else None
        else:
            prefix, p = 1, getattr(m, "patch_size", None)
        return prefix, p

    def _to_grid(self, name: str, y, hw: tuple[int, int]) -> torch.Tensor:
        if isinstance(y, (tuple, list)):
            y = y[0]
        if y.ndim == 4:
            c = self._chans.get(name)
            if c is not None and y.shape[1] != c and y.shape[-1] == c:  # NHWC stage outputs
                y = y.permute(0, 3, 1, 2)
            return y
        if y.ndim == 3:
            prefix, p = self._prefix_and_patch()
            if not p:
                raise ValueError(f"{self.name} layer {name}: token output without a known patch size")
            h, w = hw[0] // p, hw[1] // p
            if y.shape[1] - prefix != h * w:
                raise ValueError(f"{self.name} layer {name}: {y.shape[1]} tokens, expected {prefix} prefix + {h}x{w}")
            return y[:, prefix:].reshape(y.shape[0], h, w, y.shape[2]).permute(0, 3, 1, 2)
        raise ValueError(f"{self.name} layer {name}: cannot interpret an output of shape {tuple(y.shape)}")

    def forward(self, x: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        layers = list(layers or self.layer_names)
        unknown = set(layers) - set(self.layer_names) - {self.global_layer}
        if unknown:
            raise KeyError(f"{self.name} has no layer(s) {sorted(unknown)}; layers: "
                           f"{self.layer_names + (self.global_layer,)}")
        want_global = self.global_layer in layers
        spatial = [l for l in layers if l != self.global_layer]
        out: dict[str, torch.Tensor] = {}
        hw = tuple(x.shape[-2:])
        handles = []

        def hook(name):
            def fn(_mod, _inp, y):
                out[name] = self._to_grid(name, y, hw)
                if not want_global and all(l in out for l in spatial):
                    raise _Stop
            return fn

        for l in spatial:
            handles.append(self._modules_by_name[l].register_forward_hook(hook(l)))
        try:
            if want_global:
                out[self.global_layer] = self._global(x)
            else:
                self._features(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return {l: out[l] for l in layers}

    def _features(self, x):
        m = self.model
        return m.forward_features(x) if hasattr(m, "forward_features") else m(x)

    def _global(self, x):
        m = self.model
        if self.source == "timm":
            return m.forward_head(m.forward_features(x), pre_logits=True)
        last = {}
        h = self._modules_by_name[self.layer_names[-1]].register_forward_hook(
            lambda _m, _i, y: last.setdefault("y", self._to_grid(self.layer_names[-1], y, tuple(x.shape[-2:]))))
        try:
            m(x)
        finally:
            h.remove()
        return last["y"].mean(dim=(2, 3))

    def classifier_head(self, glob: torch.Tensor) -> torch.Tensor:
        if self.source == "timm":
            return self.model.get_classifier()(glob)
        raise NotImplementedError(f"{self.name}: classify() is available for timm models only")
