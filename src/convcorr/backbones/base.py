"""One interface for every backbone: named layer activations, rf geometry, global features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import UserError
from ..core.geometry import RFGeometry
from ..core.images import resize_image
from ..core.registry import Registry
from ..numerics.rf.trace import GeometryError, trace_geometry
from ..runtime.progress import progress


class WeightsUnavailable(UserError, RuntimeError):
    """Pretrained weights cannot be obtained here (no network and no cached copy); the message says how to
    provide them. A UserError: the CLI prints it as one line."""


@dataclass(frozen=True)
class WeightsStatus:
    """Whether a backbone's default weights are on this machine (true as a bool when they are), and where from /
    why not."""

    available: bool
    where: str

    def __bool__(self) -> bool:
        return self.available


def shared_weights_status(*parts: str) -> WeightsStatus:
    """Status of weights at a path below the shared folder (e.g. ``("weights", "alexnet-caffe-q8")``)."""
    from ..runtime.paths import shared_root

    root = shared_root()
    if root is None:
        return WeightsStatus(False, "shared folder not found (set CONVCORR_SHARED)")
    p = root.joinpath(*parts)
    return WeightsStatus(True, f"shared/{'/'.join(parts)}") if p.exists() else WeightsStatus(False, f"missing: {p}")


class Backbone(nn.Module):
    """Base class of convcorr backbones.

    Subclasses build ``self.stages`` (an ``nn.ModuleDict`` of consecutive stages
    whose outputs are the named layers, in order) and implement ``normalize``
    (uint8 RGB batch -> network input) and optionally ``global_head``. A registered
    subclass (:data:`BACKBONES`) is built as ``cls(weights=<weight source or None>, **kw)``;
    everything else is read from the built object.

    Attributes:
        name: registry name (set on registration when the class does not set it).
        layer_names: ordered names of the spatial layers (on the object: they may depend on the built model).
        global_layer: name of the global (image-level) feature.
        input_size: default square input side in pixels.
    """

    name: str = "backbone"
    layer_names: tuple[str, ...] = ()
    global_layer: str = ""
    input_size: int = 224

    # ---- to implement -------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float RGB in 0..255 -> network input."""
        raise NotImplementedError

    def global_head(self, last: torch.Tensor) -> torch.Tensor:
        """Output of the last stage -> (N, D) global feature."""
        raise NotImplementedError(f"{self.name} has no global feature")

    def classifier_head(self, glob: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no classifier")

    # ---- shared -------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def preprocess(self, images: Sequence[np.ndarray], size: int | tuple[int, int] | None = -1) -> torch.Tensor:
        """List of (H, W, 3) uint8 RGB images -> normalised (N, 3, h, w) tensor on the backbone's device.

        Args:
            size: int or (h, w) to resize every image to; -1 (default) = ``input_size``;
                None keeps the images' own size (they must all be equal).
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if size == -1:
            size = self.input_size
        if isinstance(size, int):
            size = (size, size)
        arrs = []
        for im in images:
            im = np.asarray(im)
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"expected (H, W, 3) uint8 RGB images, got {im.shape} {im.dtype}")
            arrs.append(resize_image(im, size) if size is not None else im)
        if len({a.shape for a in arrs}) != 1:
            raise ValueError("images differ in size: pass size=... to resize them")
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().to(self.device)
        return self.normalize(x)

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Run the network on a normalised batch; returns {layer: (N, C, h, w)} for the requested layers
        (the global layer name gives (N, D))."""
        layers = list(layers or self.layer_names)
        unknown = set(layers) - set(self.layer_names) - {self.global_layer}
        if unknown:
            raise KeyError(f"{self.name} has no layer(s) {sorted(unknown)}; layers: {self.layer_names + (self.global_layer,)}")
        want_global = self.global_layer in layers
        last = self.layer_names[-1] if want_global else max(layers, key=self.layer_names.index)
        out = {}
        for name, stage in self.stages.items():
            x = stage(x)
            if name in layers:
                out[name] = x
            if name == last:
                break
        if want_global:
            out[self.global_layer] = self.global_head(x)
        return out

    @torch.no_grad()
    def extract(self, images: Sequence[np.ndarray], layers: Sequence[str], size: int | tuple[int, int] | None = -1,
                batch_size: int = 16) -> dict[str, np.ndarray]:
        """Layer activations as numpy, computed in batches without gradients on the backbone's device.

        Args:
            images: list of (H, W, 3) uint8 RGB images (or one image).
            layers: names from ``layer_names`` and/or ``global_layer``.
            size: see :meth:`preprocess` (-1: ``input_size``; None: keep the images' common size).
            batch_size: images per forward pass. A progress bar is shown only for more than 4 batches.
        Returns:
            {layer: (N, h, w, C) float32} ((N, D) for the global layer), on the CPU.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        layers = list(layers)
        starts = range(0, len(images), batch_size)
        if len(starts) > 4:
            starts = progress(starts, desc=f"{self.name} features", total=len(starts))
        chunks: dict[str, list[np.ndarray]] = {l: [] for l in layers}
        for i in starts:
            acts = self(self.preprocess(images[i:i + batch_size], size), layers)
            for l in layers:
                a = acts[l]
                a = a.permute(0, 2, 3, 1) if a.ndim == 4 else a
                chunks[l].append(a.float().cpu().numpy())
        return {l: np.concatenate(v) for l, v in chunks.items()}

    def global_features(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """(N, D) global feature (``global_layer``) of each image at ``input_size``."""
        return self.extract(images, [self.global_layer], batch_size=batch_size)[self.global_layer]

    @torch.no_grad()
    def classify(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """(N, 1000) ImageNet logits (class i = line i + 1 of the 1001-line TF label file with background)."""
        g = torch.from_numpy(self.global_features(images, batch_size)).to(self.device)
        return self.classifier_head(g).cpu().numpy()

    def geometries(self, input_size: int | tuple[int, int] | None = None) -> dict[str, RFGeometry]:
        """Receptive-field geometry of every spatial layer at an (h, w) (or square) input size (default
        ``input_size``), traced along the network's actual data flow (:func:`convcorr.numerics.rf.compose.
        trace_geometry`): residual shortcuts never enlarge the stride, layers after global mixing have
        ``size == inf``. Layers the analysis cannot follow are absent here and raise in :meth:`rf`."""
        hw = self._hw(input_size)
        cache = self.__dict__.setdefault("_geom_cache", {})
        if hw not in cache:
            p = next(self.parameters())
            x = torch.zeros(1, 3, *hw, device=p.device, dtype=p.dtype if p.is_floating_point() else torch.float32)
            try:
                geoms, errors = trace_geometry(lambda t: self(t, self.layer_names), x), {}
            except (GeometryError, RuntimeError):  # an op not followed, or deep layers too small at this size
                geoms, errors = {}, {}
                for layer in self.layer_names:  # locate the failure: layers before it still get a geometry
                    try:
                        geoms.update(trace_geometry(lambda t: self(t, [layer]), x))
                    except GeometryError as exc:
                        errors[layer] = exc
                    except RuntimeError as exc:
                        errors[layer] = GeometryError(f"{self.name} layer {layer!r} cannot be computed at input size "
                                                      f"{hw[0]}x{hw[1]}: {str(exc).splitlines()[0]}")
            cache[hw] = (geoms, errors)
        return dict(cache[hw][0])

    def _hw(self, input_size) -> tuple[int, int]:
        if input_size is None:
            input_size = self.input_size
        return (int(input_size), int(input_size)) if isinstance(input_size, (int, float)) else tuple(map(int, input_size))

    def rf(self, layer: str, input_size: int | tuple[int, int] | None = None) -> RFGeometry:
        """Receptive-field geometry of ``layer`` in network-input pixels at ``input_size`` (default: the backbone's;
        only TF-"same"-padded networks depend on it), traced through the actual computation.

        Raises:
            KeyError: unknown layer.
            GeometryError: the analysis cannot follow the network up to this layer (no silent number).
        """
        if layer not in self.layer_names:
            raise KeyError(f"{self.name} has no spatial layer {layer!r}; layers: {self.layer_names}")
        geoms = self.geometries(input_size)
        if layer not in geoms:
            raise self._geom_cache[self._hw(input_size)][1][layer]
        return geoms[layer]


def _check_backbone(name: str, cls, facts: dict) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise TypeError(f"backbone {name!r} must be a subclass of convcorr.backbones.Backbone, got {cls!r}")
    unknown = set(facts) - set(BACKBONE_FACTS)
    if unknown:
        raise ValueError(f"backbone {name!r}: unknown fact(s) {sorted(unknown)}; facts: {list(BACKBONE_FACTS)}")
    if "name" not in cls.__dict__:
        cls.name = name


#: the facts a backbone may declare on registration (all optional)
BACKBONE_FACTS = {
    "default_weights": "weight source used when none is asked for (pretrained): a string, or a callable returning "
                       "one (e.g. choosing what this machine has); default 'default'",
    "offline_available": "callable -> WeightsStatus: whether the default weights are on this machine, where from / "
                         "why not",
}

#: name -> Backbone subclass; a backbone registers itself in its own file with
#: ``@BACKBONES.register("name", default_weights=..., offline_available=...)``, other packages through the
#: entry-point group ``convcorr.backbones`` (:class:`convcorr.core.registry.Registry`)
BACKBONES = Registry("backbone", group="convcorr.backbones", on_register=_check_backbone,
                     builtins=[f"convcorr.backbones.{m}" for m in ("alexnet", "efficientnet", "squeezenet", "mobilenet")],
                     hint="(or 'timm:<model>' / 'torchvision:<model>')")
