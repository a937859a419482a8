"""Features at points of instance crops: conv-layer columns, SIFT descriptors, and dense (1-pixel-stride) conv maps.

Every instance is first cropped to its box enlarged by ``margin`` (fraction of the box width/height on every
side; outside the image is black) and resized to ``size x size`` pixels, the network input (paper Sec. 4). The
crop comes with exact point maps between original-image pixels and crop pixels (pixel-centre convention of
resampling, as :func:`convcorr.geometry.scale_points`). All points are (x, y) in pixels of the image the
features are computed on.

- :func:`conv_features_at`: for each point the feature of the column whose rf centre is nearest
  (``backbone.rf(layer).pixel_to_column``; the crop is fed to the network at its own size).
- :func:`sift_features_at`: SIFT descriptor of the paper's "radius" r (bin size r / 2, 4 x 4 bins span 2r px)
  centred exactly at each point (:func:`convcorr.sift.sift_at_points`).
- :func:`dense_conv_grid`: a layer on one crop, either at its native stride or at 1-pixel stride
  (:class:`PixelConvFeatures`: exact, the crop is shifted by every offset within one stride and re-run).
- :func:`cached`: a tiny on-disk NPZ cache in ``cache_dir()/features`` keyed by instance id + feature name
  (:func:`backbone_cache_tag`: backbone, weights digest, layer, size, margin) + a content digest of the input +
  the feature code version; written atomically, corrupt entries rebuilt, an unusable folder means no caching.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .geometry import RFGeometry
from .sift import radius_to_bin_size, sift_at_points


# --------------------------------------------------------------------------------------------------------- crops
def crop_box(inst, margin: float = 0.1, size: int = 227) -> tuple[np.ndarray, Callable, Callable]:
    """Crop of the instance's box (+ ``margin``) resized to (size, size, 3) uint8, with exact point maps.

    Returns:
        (crop (size, size, 3) uint8, to_crop, from_crop): ``to_crop(xy (N, 2) original px) -> (N, 2) crop px``
        and its inverse ``from_crop``.
    """
    from .transfer import crop_instance

    if size <= 0:
        raise ValueError(f"crop_box: size must be positive, got {size}")
    crop, t = crop_instance(inst, margin, size)
    return crop, t.to_crop, t.from_crop


# --------------------------------------------------------------------------------------------- features at points
def conv_features_at(backbone, crops: Sequence[np.ndarray], xy: Sequence[np.ndarray], layers: Sequence[str],
                     batch_size: int = 16) -> dict[str, np.ndarray]:
    """Feature of the column whose rf centre is nearest each point.

    Args:
        crops: N images (S, S, 3) uint8 fed to the network at their own size (all the same size).
        xy: N arrays (K_i, 2) of points in crop pixels.
        layers: spatial layer names of ``backbone``.
    Returns:
        {layer: (sum K_i, C) float32} rows in the order of the points.
    """
    crops, xy = list(crops), [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in xy]
    if len(crops) != len(xy):
        raise ValueError(f"conv_features_at: {len(crops)} crops but {len(xy)} point arrays")
    if not crops:
        return {l: np.zeros((0, 0), np.float32) for l in layers}
    acts = backbone.extract(crops, list(layers), size=None, batch_size=batch_size)
    out = {}
    for l in layers:
        g = backbone.rf(l)
        rows = []
        for a, p in zip(acts[l], xy):
            cr = g.pixel_to_column(p, a.shape[:2])
            rows.append(a[cr[:, 1], cr[:, 0]])
        out[l] = np.concatenate(rows).astype(np.float32)
    return out


def sift_features_at(crops, xy, radius: float) -> np.ndarray:
    """SIFT descriptors of the paper's ``radius`` r (bin size r / 2) centred exactly at points.

    Args:
        crops: one image (H, W[, 3]) with ``xy`` (K, 2), or a sequence of images with a sequence of (K_i, 2).
        radius: SIFT radius in pixels (the descriptor spans 2r px).
    Returns:
        (K, 128) or (sum K_i, 128) float32, rows in the order of the points.
    """
    if isinstance(crops, np.ndarray) and crops.ndim in (2, 3) and crops.dtype != object:
        return sift_at_points(crops, np.asarray(xy, dtype=np.float64).reshape(-1, 2), radius_to_bin_size(radius))
    crops, xy = list(crops), list(xy)
    if len(crops) != len(xy):
        raise ValueError(f"sift_features_at: {len(crops)} crops but {len(xy)} point arrays")
    if not crops:
        return np.zeros((0, 128), np.float32)
    return np.concatenate([sift_features_at(c, p, radius) for c, p in zip(crops, xy)])


# ------------------------------------------------------------------------------------------------ dense features
class PixelConvFeatures:
    """Conv features of one image at 1-pixel stride, computed exactly by shifting the input.

    For every shift (sx, sy) in [0, stride)^2 the image translated by (-sx, -sy) (zero fill on the right/bottom) is
    fed to the network, so column (c, r) of that pass is centred at pixel (offset + stride * c + sx,
    offset + stride * r + sy) of the original image; together the passes cover every pixel. ``stride^2``
    forward passes (256 for AlexNet conv3-pool5), done once per image for all requested layers. Pixels
    left of/above the first column centre are clamped to it (and likewise beyond the last one).
    """

    def __init__(self, backbone, image: np.ndarray, layers: Sequence[str], batch_size: int = 32):
        self.backbone = backbone
        self.layers = list(layers)
        self.image_hw = image.shape[:2]
        self.geoms = {l: backbone.rf(l) for l in self.layers}
        self.smax = smax = int(max(g.stride for g in self.geoms.values()))
        H, W = image.shape[:2]
        shifted, self.shifts = [], []
        for sy in range(smax):
            for sx in range(smax):
                im = np.zeros_like(image)
                im[: H - sy, : W - sx] = image[sy:, sx:]
                shifted.append(im)
                self.shifts.append((sx, sy))
        self.acts = backbone.extract(shifted, self.layers, size=None, batch_size=batch_size)
        self.index = {s: i for i, s in enumerate(self.shifts)}

    def at(self, layer: str, xy: np.ndarray) -> np.ndarray:
        """(M, C) features at integer pixels ``xy`` (M, 2) (rounded)."""
        g = self.geoms[layer]
        a = self.acts[layer]
        xy = np.rint(np.asarray(xy, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
        st = int(g.stride)
        rel = np.maximum(xy - int(round(g.offset)), 0)
        s = rel % st
        cr = rel // st
        h, w = a.shape[1:3]
        cr[:, 0] = np.clip(cr[:, 0], 0, w - 1)
        cr[:, 1] = np.clip(cr[:, 1], 0, h - 1)
        idx = s[:, 1] * self.smax + s[:, 0]  # shifts are enumerated row-major: index = sy * smax + sx
        return a[idx, cr[:, 1], cr[:, 0]]

    def grid(self, layer: str) -> np.ndarray:
        """(H, W, C) features at every pixel of the image (pixel (x, y) -> row y, column x)."""
        H, W = self.image_hw
        xs, ys = np.meshgrid(np.arange(W), np.arange(H))
        return self.at(layer, np.stack([xs.ravel(), ys.ravel()], 1)).reshape(H, W, -1)


def dense_conv_grid(backbone, crop: np.ndarray, layer: str, pixel_stride: bool = False
                    ) -> tuple[np.ndarray, RFGeometry]:
    """One layer of ``backbone`` on one crop fed at its own size.

    Returns:
        (features (h, w, C) float32, geometry): with ``pixel_stride=False`` the native grid and
        ``backbone.rf(layer)``; with ``pixel_stride=True`` the exact 1-pixel-stride map (H, W, C) of
        :class:`PixelConvFeatures` and ``RFGeometry(size, 1, 0)`` (column (x, y) centred at pixel (x, y)).
    """
    g = backbone.rf(layer)
    if pixel_stride:
        return PixelConvFeatures(backbone, crop, [layer]).grid(layer), RFGeometry(g.size, 1.0, 0.0)
    return backbone.extract([crop], [layer], size=None)[layer][0], g


# --------------------------------------------------------------------------------------------------------- cache
#: version of the feature code: bump it when a change to the feature functions changes their output, so that
#: entries written by older code are never reused (it is part of every cache key)
FEATURE_CODE_VERSION = "2"


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", str(s)).strip("_")[:80] or "_"


def _full_key(inst_id: str, name: str, digest: str | None, version: str) -> str:
    return f"v{version}|{inst_id}|{name}|{digest or ''}"


def cache_path(inst_id: str, name: str, digest: str | None = None, root: Path | None = None,
               version: str = FEATURE_CODE_VERSION) -> Path:
    """NPZ path of a cached feature: ``root/features/<inst_id>/<name>-<hash>.npz``.

    The readable parts are sanitised (and shortened); ``<hash>`` is a sha1 of the exact instance id, name, digest
    and code ``version``, so two different keys never share a file even when their sanitised names coincide.
    """
    from .paths import cache_dir

    root = Path(root) if root is not None else cache_dir()
    h = hashlib.sha1(_full_key(inst_id, name, digest, version).encode()).hexdigest()[:16]
    return root / "features" / _safe(inst_id) / f"{_safe(name)}-{h}.npz"


def array_digest(*arrays: np.ndarray) -> str:
    """Short content hash (sha1, 12 hex digits) of arrays (values, dtypes and shapes)."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


_WEIGHTS_DIGESTS: "weakref.WeakKeyDictionary" = None  # type: ignore[assignment]


def weights_digest(model) -> str:
    """Content hash (sha1, 16 hex digits) of a torch module's parameters and buffers (names, shapes, values).

    Part of every cache key of features computed by ``model``: different weights never share cache entries.
    Memoised per module object and recomputed after in-place changes of its tensors (torch version counters);
    about 0.3 s for AlexNet's 61M parameters.
    """
    global _WEIGHTS_DIGESTS
    import weakref

    if _WEIGHTS_DIGESTS is None:
        _WEIGHTS_DIGESTS = weakref.WeakKeyDictionary()
    sd = model.state_dict()
    versions = tuple(getattr(t, "_version", 0) for t in sd.values())  # in-place updates bump these
    try:
        memo = _WEIGHTS_DIGESTS.get(model)
    except TypeError:  # pragma: no cover - not weak-referenceable
        memo = None
    if memo is not None and memo[0] == versions:
        return memo[1]
    h = hashlib.sha1()
    for k, t in sorted(sd.items()):
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    d = h.hexdigest()[:16]
    try:
        _WEIGHTS_DIGESTS[model] = (versions, d)
    except TypeError:  # pragma: no cover
        pass
    return d


def backbone_cache_tag(backbone, layer: str, size: int | None = None, margin: float | None = None) -> str:
    """Cache name of a backbone layer's features: backbone name, weights digest, layer, input size and crop margin."""
    parts = [getattr(backbone, "name", type(backbone).__name__), f"w{weights_digest(backbone)}", layer]
    if size is not None:
        parts.append(f"s{size}")
    if margin is not None:
        parts.append(f"m{margin:g}")
    return "-".join(parts)


_warned_dirs: set = set()


def _warn_unwritable(where, exc) -> None:
    import warnings

    key = str(where)
    if key not in _warned_dirs:
        _warned_dirs.add(key)
        warnings.warn(f"feature cache {where} is not usable ({exc}); continuing without caching", RuntimeWarning,
                      stacklevel=3)


def read_cache_entry(path: Path, key: str) -> np.ndarray | None:
    """The value stored at ``path`` for ``key``, or None when absent, unreadable, corrupt or for another key."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key" not in z.files or "value" not in z.files or str(z["key"]) != key:
                return None
            return z["value"]
    except FileNotFoundError:
        return None
    except Exception:  # corrupt, truncated or unreadable entry: rebuilt by the caller
        return None


def write_cache_entry(path: Path, key: str, value: np.ndarray) -> bool:
    """Write ``value`` for ``key`` atomically (unique temporary file in the same folder + ``os.replace``).

    Concurrent writers of the same entry never collide and readers never see a partial file. Returns False (after
    one warning per folder) when the folder cannot be written, e.g. read-only or full: the caller goes on
    without caching.
    """
    from .report import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: np.savez(fh, key=np.array(key), value=value))
        return True
    except OSError as exc:
        _warn_unwritable(path.parent, exc)
        return False


def cached(inst_id: str, name: str, compute: Callable[[], np.ndarray], digest: str | None = None,
           root: Path | None = None, enabled: bool = True, version: str = FEATURE_CODE_VERSION) -> np.ndarray:
    """``compute()`` once per (instance id, feature name, digest, code version); later calls load the NPZ.

    ``name`` must encode everything the value depends on besides the input content: for backbone features use
    :func:`backbone_cache_tag` (backbone, weights digest, layer, input size, crop margin); ``digest`` (e.g.
    :func:`array_digest` of the crop and points) covers the input. ``version`` (default
    :data:`FEATURE_CODE_VERSION`) is the code version of the feature function.

    A corrupt, truncated or unreadable entry is recomputed and rewritten; entries are written atomically with
    unique temporary names (safe for concurrent processes sharing the cache); an unusable cache folder
    (read-only, full, a file in the way) degrades to computing without caching, with one warning.
    """
    if not enabled:
        return np.asarray(compute())
    key = _full_key(inst_id, name, digest, version)
    try:
        p = cache_path(inst_id, name, digest, root, version)
    except OSError as exc:  # cache_dir() cannot be created
        _warn_unwritable(root or "$CONVCORR_CACHE", exc)
        return np.asarray(compute())
    v = read_cache_entry(p, key)
    if v is not None:
        return v
    value = np.asarray(compute())
    write_cache_entry(p, key, value)
    return value


# ------------------------------------------------------------------------------------ dense-feature plug-ins
from .dense import DenseFeatures, FeatureGrid, parse_options, register_features  # noqa: E402


@register_features("sift")
class DenseSiftFeatures(DenseFeatures):
    """Dense SIFT (VLFeat ``vl_dsift`` conventions, :func:`convcorr.sift.dense_sift_grid`) as a plug-in.

    Spec: ``"sift"`` or ``"sift:step=8,bin=8"``; ``radius=r`` is the paper's SIFT radius (``bin = r / 2``).

    Args:
        step: distance between descriptor centres in pixels (grid stride).
        bin: spatial bin side in pixels (the descriptor spans 4 bins).
        smooth, magnif, flat_window, window_size, contrast_threshold: see :func:`convcorr.sift.dense_sift_grid`.
    """

    def __init__(self, step: int = 8, bin: float = 8, radius: float | None = None, **sift_kw):
        if radius is not None:
            bin = radius_to_bin_size(float(radius))
        if not isinstance(step, (int, float, np.integer, np.floating)) or int(step) != step or int(step) < 1:
            raise ValueError(f"features 'sift': step must be a positive integer, got {step!r}")
        if not isinstance(bin, (int, float, np.integer, np.floating)) or not float(bin) >= 1:
            raise ValueError(f"features 'sift': bin must be >= 1 pixel, got {bin!r}")
        allowed = {"smooth", "magnif", "flat_window", "window_size", "contrast_threshold"}
        unknown = set(sift_kw) - allowed
        if unknown:
            raise ValueError(f"features 'sift': unknown option(s) {sorted(unknown)}; "
                             f"valid: {sorted(allowed | {'step', 'bin', 'radius'})}")
        self.step, self.bin, self.sift_kw = int(step), float(bin), dict(sift_kw)
        extra = "".join(f",{k}={v}" for k, v in sorted(self.sift_kw.items()))
        self.spec = f"sift:step={self.step},bin={self.bin:g}{extra}"

    @classmethod
    def from_spec(cls, rest: str, **options) -> "DenseSiftFeatures":
        return cls(**{**parse_options(rest, f"sift:{rest}"), **options})

    def compute(self, image: np.ndarray) -> FeatureGrid:
        from .sift import dense_sift_grid

        image = np.asarray(image)
        d, geom = dense_sift_grid(image, step=self.step, bin_size=self.bin, **self.sift_kw)
        if d.shape[0] < 1 or d.shape[1] < 1:
            raise ValueError(f"features {self.spec!r}: image {image.shape[:2]} is too small for a 4 x {self.bin:g} px "
                             "descriptor")
        return FeatureGrid(d, geom, image.shape[:2], self.spec)

    def at_points(self, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """(N, 128) descriptors centred exactly at the points (:func:`convcorr.sift.sift_at_points`)."""
        return sift_at_points(np.asarray(image), np.asarray(xy, dtype=np.float64).reshape(-1, 2), self.bin,
                              **self.sift_kw)


def _resample_grid(a: np.ndarray, g: RFGeometry, centres_x: np.ndarray, centres_y: np.ndarray) -> np.ndarray:
    """Bilinear samples of a (h, w, C) grid with geometry ``g`` at pixel positions (clamped to the outer columns).

    Returns (len(centres_y), len(centres_x), C)."""
    h, w = a.shape[:2]

    def axis(pos, n):
        u = np.clip((pos - g.offset) / g.stride, 0, n - 1)
        i0 = np.minimum(np.floor(u).astype(np.int64), max(n - 2, 0))
        t = u - i0 if n > 1 else np.zeros_like(u)
        return i0, np.minimum(i0 + 1, n - 1), t

    x0, x1, tx = axis(centres_x, w)
    y0, y1, ty = axis(centres_y, h)
    top = a[y0][:, x0] * (1 - tx)[None, :, None] + a[y0][:, x1] * tx[None, :, None]
    bot = a[y1][:, x0] * (1 - tx)[None, :, None] + a[y1][:, x1] * tx[None, :, None]
    return (top * (1 - ty)[:, None, None] + bot * ty[:, None, None]).astype(np.float32)


@register_features("backbone")
class BackboneLayerFeatures(DenseFeatures):
    """One layer (or a hypercolumn of several layers) of a backbone as a plug-in.

    Spec: ``"<backbone>:<layer>"`` or ``"<backbone>:<layer>+<layer>..."`` (the layers are the part after the LAST
    colon). Images are fed at their own size (no resizing), so the grid's geometry is ``backbone.rf(layer)`` in
    the image's pixels. A hypercolumn resamples every layer bilinearly to the column centres of the
    finest-stride layer (clamped at the borders), L2-normalises each layer's columns (``normalize_layers``, so
    every layer weighs the same) and concatenates them; its geometry is the finest layer's centres with the
    largest receptive field.

    Args:
        backbone: a :class:`convcorr.backbones.Backbone` object or a registered name.
        layers: layer name(s).
        device, weights: passed to :func:`convcorr.backbones.get_backbone` when ``backbone`` is a name.
        batch_size: images per forward pass in :meth:`compute_many`.
    """

    def __init__(self, backbone, layers, device=None, weights: str | None = None, batch_size: int = 16,
                 normalize_layers: bool = True):
        from .backbones import get_backbone

        if isinstance(backbone, str):
            kw = {k: v for k, v in (("device", device), ("weights", weights)) if v is not None}
            try:
                backbone = get_backbone(backbone, **kw)
            except KeyError as exc:
                raise ValueError(f"features: {exc.args[0]}") from exc
        self.backbone = backbone
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise ValueError(f"features: no layer given for backbone {backbone.name!r}")
        bad = [l for l in self.layers if l not in backbone.layer_names]
        if bad:
            raise ValueError(f"features: backbone {backbone.name!r} has no spatial layer(s) {bad}; "
                             f"layers: {list(backbone.layer_names)}")
        self.batch_size, self.normalize_layers = int(batch_size), bool(normalize_layers)
        self.geoms = {l: backbone.rf(l) for l in self.layers}
        self.spec = f"{backbone.name}:{'+'.join(self.layers)}"

    @classmethod
    def from_spec(cls, spec: str, backbone=None, **options) -> "BackboneLayerFeatures":
        name, _, layers = spec.rpartition(":")
        if backbone is None:
            if not name or not layers:
                raise ValueError(f"features {spec!r}: expected '<backbone>:<layer>' (e.g. 'alexnet:conv4')")
            backbone = name
        return cls(backbone, [l.strip() for l in layers.split("+") if l.strip()], **options)

    @property
    def cache_key(self) -> str:
        w = getattr(self.backbone, "weights", None) or getattr(self.backbone, "variant", None)
        # the weights digest (issue #10): other weights under the same name never reuse cached features
        return (f"{self.spec}[{w}]-w{weights_digest(self.backbone)}"
                + ("" if self.normalize_layers or len(self.layers) == 1 else "-raw"))

    @property
    def geometry(self) -> RFGeometry:
        fine = min(self.layers, key=lambda l: self.geoms[l].stride)
        g = self.geoms[fine]
        return RFGeometry(max(self.geoms[l].size for l in self.layers), g.stride, g.offset)

    def _grids(self, acts: dict, n: int, image_hw) -> list[FeatureGrid]:
        out = []
        for i in range(n):
            if len(self.layers) == 1:
                l = self.layers[0]
                a = acts[l][i]
                if a.shape[0] < 1 or a.shape[1] < 1:
                    raise ValueError(f"features {self.spec!r}: image {image_hw} is too small for layer {l}")
                out.append(FeatureGrid(a, self.geoms[l], image_hw, self.spec))
                continue
            geom = self.geometry
            fine = min(self.layers, key=lambda l: self.geoms[l].stride)
            h, w = acts[fine][i].shape[:2]
            cx, cy = geom.column_centers(w), geom.column_centers(h)
            parts = []
            for l in self.layers:
                a = _resample_grid(acts[l][i], self.geoms[l], cx, cy)
                if self.normalize_layers:
                    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
                parts.append(a.astype(np.float32))
            out.append(FeatureGrid(np.concatenate(parts, -1), geom, image_hw, self.spec))
        return out

    def compute(self, image: np.ndarray) -> FeatureGrid:
        return self.compute_many([image])[0]

    def compute_many(self, images: Sequence[np.ndarray]) -> list[FeatureGrid]:
        """Grids of several images; images of equal size go through the network in batches."""
        images = [np.asarray(im) for im in images]
        out: list = [None] * len(images)
        by_size: dict = {}
        for i, im in enumerate(images):
            by_size.setdefault(im.shape, []).append(i)
        for shape, idx in by_size.items():
            acts = self.backbone.extract([images[i] for i in idx], self.layers, size=None,
                                         batch_size=self.batch_size)
            for i, g in zip(idx, self._grids(acts, len(idx), shape[:2])):
                out[i] = g
        return out


def _group_by_backbone(feats: dict) -> tuple[dict, dict]:
    """Split {name: DenseFeatures} into {id(backbone): (backbone, {name: layer})} for single-layer backbone
    plug-ins (computed together, one forward pass per image) and the rest."""
    groups: dict = {}
    rest = {}
    for n, f in feats.items():
        if isinstance(f, BackboneLayerFeatures) and len(f.layers) == 1:
            groups.setdefault(id(f.backbone), (f.backbone, {}))[1][n] = f.layers[0]
        else:
            rest[n] = f
    return groups, rest


def features_at_points(feats: dict, image: np.ndarray, xy: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (N, C)} features of several plug-ins at the points (x, y) of one image: each plug-in's
    :meth:`~convcorr.dense.DenseFeatures.at_points` (exact SIFT at the point; nearest column for backbone
    layers, all layers of one backbone from one forward pass)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    groups, rest = _group_by_backbone(feats)
    out = {n: f.at_points(image, xy) for n, f in rest.items()}
    for bb, layers in groups.values():
        got = conv_features_at(bb, [image], [xy], sorted(set(layers.values())))
        out.update({n: got[l] for n, l in layers.items()})
    return {n: out[n] for n in feats}


def features_at_pixels(feats: dict, image: np.ndarray, xy: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (N, C)} features at 1-pixel stride: for each integer pixel (x, y) (clipped into the image) the
    feature of a column centred EXACTLY there: dense SIFT computed at the pixel; backbone layers by
    :class:`PixelConvFeatures` (the image shifted by every offset within one stride and re-run; one set of passes
    per backbone for all its layers). Other plug-ins: :meth:`~convcorr.dense.DenseFeatures.at_points`."""
    H, W = np.asarray(image).shape[:2]
    xy = np.clip(np.rint(np.asarray(xy, dtype=np.float64).reshape(-1, 2)), 0, [W - 1, H - 1])
    groups, rest = _group_by_backbone(feats)
    out = {n: f.at_points(image, xy) for n, f in rest.items()}
    for bb, layers in groups.values():
        pix = PixelConvFeatures(bb, image, sorted(set(layers.values())))
        out.update({n: pix.at(l, xy) for n, l in layers.items()})
    return {n: out[n] for n in feats}
