"""The Caffe reference AlexNet (bvlc_alexnet / CaffeNet layout) and torchvision's AlexNet.

Caffe layout: conv1 96x11x11/4 -> ReLU -> LRN -> pool 3/2; conv2 256x5x5 pad 2 groups 2 -> ReLU -> LRN -> pool;
conv3 384x3x3 pad 1; conv4 384x3x3 pad 1 groups 2; conv5 256x3x3 pad 1 groups 2 -> ReLU; pool5 3/2;
fc6, fc7 (4096, ReLU), fc8 (1000). Named activations: conv1..conv5 after their ReLU (before LRN / pooling),
pool5 after pooling, fc7 after its ReLU. Input: BGR, 0..255, minus the mean (104, 117, 123), 227x227.

Weights: the 8-bit copy in ``shared/weights/alexnet-caffe-q8`` (integers in Caffe blob order, float = int / 128;
fc6/fc7 weights are absent there) or torchvision's AlexNet (different layout: 64/192/384/256/256 channels, no LRN or
groups, RGB ImageNet normalisation, 224x224), downloaded once from its official URL into torch's hub cache and
checked against the published sha256 prefix on every load. The default (:func:`default_alexnet_weights`) is the
Caffe copy when the shared folder holds it, else torchvision's; without either (offline, no shared folder) loading
fails with one line saying how to provide weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..runtime.paths import cache_dir, require_shared, shared_root
from .base import BACKBONES, Backbone, WeightsStatus, WeightsUnavailable, shared_weights_status

TORCHVISION_ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
#: torchvision's checkpoint file name (``<torch hub dir>/checkpoints/<this>``; the sha256 prefix is in the name)
TORCHVISION_ALEXNET_FILE = TORCHVISION_ALEXNET_URL.rsplit("/", 1)[1]
#: the Caffe copy's folder below the shared folder
CAFFE_Q8_DIR = ("weights", "alexnet-caffe-q8")
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_Q8_SHAPES = {
    "conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
    "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216), "fc7": (4096, 4096),
    "fc8": (1000, 4096),
}


#: output channels of each layer: the expected bias length
_Q8_BIAS = {"conv1": 96, "conv2": 256, "conv3": 384, "conv4": 384, "conv5": 256, "fc6": 4096, "fc7": 4096,
            "fc8": 1000}


class LocalResponseNorm(nn.Module):
    """Caffe's across-channel LRN, ``b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_c'^2)^beta`` (window
    ``c - size//2 .. c + (size-1)//2``, zero-padded): the same function as :class:`torch.nn.LocalResponseNorm`
    (equal to float32 rounding, tested) but ~2x faster on CPU: the window sum is ``size`` shifted in-place adds
    instead of a 3-D average pooling, and ``^-0.75`` is ``rsqrt * sqrt(rsqrt)``. (N, C, H, W) -> same shape;
    other ranks fall back to :func:`torch.nn.functional.local_response_norm`.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return nn.functional.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        sq = x * x
        acc = sq.clone()
        for d in range(1, self.size // 2 + 1):  # channels before c
            acc[:, d:] += sq[:, :-d]
        for d in range(1, (self.size - 1) // 2 + 1):  # channels after c
            acc[:, :-d] += sq[:, d:]
        acc.mul_(self.alpha / self.size).add_(self.k)
        if self.beta == 0.75:
            r = acc.rsqrt_()
            return x * (r * r.sqrt())
        return x / acc.pow_(self.beta)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _parse_ints(f: Path) -> np.ndarray:
    """Integers of one weight file: whitespace-separated text (.txt) or raw signed bytes (.bin).

    Raises DataError naming the file when it cannot be read or holds something other than integers.
    """
    from ..core.errors import DataError

    try:
        data = f.read_bytes()
    except OSError as exc:
        raise DataError(f"{f}: cannot read weight file ({exc.strerror or exc})") from exc
    if f.suffix == ".txt":
        try:
            return np.array(data.split(), dtype=np.int64).astype(np.int32)
        except (ValueError, OverflowError) as exc:
            raise DataError(f"{f}: malformed weight file, expected whitespace-separated integers ({exc})") from exc
    # fc8_wt.bin: 4096000 bytes = 1000 x 4096 signed int8, no header (mean ~0, values -5..5 mostly)
    return np.frombuffer(data, dtype=np.int8).astype(np.int32)


def validate_q8(weights: dict[str, np.ndarray], files: dict[str, Path] | None = None) -> None:
    """Check every known blob's element count / shape (weights) and length (biases).

    Raises DataError naming the file (``files[stem]``, else the stem) of the first mismatch.
    """
    from ..core.errors import DataError

    for stem, arr in weights.items():
        layer, _, part = stem.partition("_")
        where = (files or {}).get(stem, stem)
        if part == "wt" and layer in _Q8_SHAPES:
            shape = _Q8_SHAPES[layer]
            if arr.size != int(np.prod(shape)):
                raise DataError(f"{where}: {arr.size} values, expected {'x'.join(map(str, shape))} = "
                                f"{int(np.prod(shape))}")
        elif part == "bias" and layer in _Q8_BIAS:
            if arr.ndim != 1 or arr.size != _Q8_BIAS[layer]:
                raise DataError(f"{where}: bias of {arr.size} values, expected {_Q8_BIAS[layer]}")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise DataError(f"{where}: non-finite weights")


def _read_weights_cache(cache: Path, stems: set) -> dict[str, np.ndarray] | None:
    """Parsed weights from the NPZ cache, or None when absent, corrupt or not matching ``stems`` (then re-parsed)."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception:  # missing, truncated, corrupt, unreadable
        return None
    if set(out) != stems:
        return None
    try:
        validate_q8(out)
    except ValueError:
        return None
    for stem, arr in out.items():
        layer, _, part = stem.partition("_")
        if part == "wt" and layer in _Q8_SHAPES and arr.shape != _Q8_SHAPES[layer]:
            return None
    return out


def _write_weights_cache(cache: Path, out: dict[str, np.ndarray]) -> None:
    """Atomic NPZ write (unique temporary name + os.replace); an unwritable cache only warns."""
    import warnings

    from ..runtime.io import atomic_write

    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda fh: np.savez(fh, **out))
    except OSError as exc:
        warnings.warn(f"cannot write the AlexNet weights cache {cache} ({exc}); continuing without it",
                      RuntimeWarning, stacklevel=3)


def load_caffe_q8(folder: str | Path | None = None, use_cache: bool = True) -> dict[str, np.ndarray]:
    """Parse the 8-bit Caffe AlexNet weights into float32 arrays (float = int / 128).

    Returns:
        {'conv1_wt': (96, 3, 11, 11), 'conv1_bias': (96,), ..., 'fc8_wt': (1000, 4096), 'fc6_bias': (4096,), ...};
        weight blobs in Caffe order (out, in / groups, kh, kw). Keys are the file stems present in ``folder``.

    Every known blob is validated (element count of weights, length of biases, parse errors): a DataError names
    the file. Parsed arrays are cached as NPZ in :func:`convcorr.runtime.paths.cache_dir`, keyed by a sha1 of the files'
    names and contents (so a changed file is re-parsed); a corrupt or stale cache file is ignored and rewritten,
    an unwritable cache folder only warns.
    """
    import hashlib

    folder = Path(folder) if folder else require_shared("weights", "alexnet-caffe-q8")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: AlexNet caffe-q8 weight folder not found")
    files = sorted(f for f in folder.iterdir() if f.suffix in (".txt", ".bin") and f.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: no *.txt / *.bin weight files")
    h = hashlib.sha1()
    for f in files:
        h.update(f.name.encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError as exc:
            from ..core.errors import DataError

            raise DataError(f"{f}: cannot read weight file ({exc.strerror or exc})") from exc
        h.update(b"\0")
    stems = {f.stem for f in files}
    cache = None
    if use_cache:
        try:
            cache = cache_dir() / f"alexnet-caffe-q8-{h.hexdigest()[:16]}.npz"
        except OSError:
            cache = None
        if cache is not None:
            hit = _read_weights_cache(cache, stems)
            if hit is not None:
                return hit
    out: dict[str, np.ndarray] = {}
    by_stem = {f.stem: f for f in files}
    for f in files:
        out[f.stem] = _parse_ints(f).astype(np.float32) / 128.0
    validate_q8(out, by_stem)
    for stem, arr in out.items():
        layer, _, part = stem.partition("_")
        if part == "wt" and layer in _Q8_SHAPES:
            out[stem] = arr.reshape(_Q8_SHAPES[layer])
    if cache is not None:
        _write_weights_cache(cache, out)
    return out


def default_alexnet_weights(weights_dir: str | Path | None = None) -> str:
    """AlexNet's default weights: "caffe-q8" (the paper's Caffe network, which every experiment's numbers rest on)
    when ``weights_dir`` is given or the shared folder holds ``weights/alexnet-caffe-q8``, else "torchvision"
    (the official checkpoint, downloaded once into torch's hub cache, hash-checked)."""
    if weights_dir is not None:
        return "caffe-q8"
    root = shared_root()
    return "caffe-q8" if root is not None and root.joinpath(*CAFFE_Q8_DIR).is_dir() else "torchvision"


def torchvision_checkpoint_path() -> Path:
    """Where torchvision's AlexNet checkpoint is (or will be) in torch's hub cache ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET_FILE


def _sha256_prefix_ok(path: Path, prefix: str) -> bool:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest().startswith(prefix)


def load_checkpoint(url: str, model_dir: str | Path | None = None) -> dict:
    """State dict of a published checkpoint: downloaded once into the torch hub cache, hash-checked on EVERY load
    (the sha256 prefix in torchvision file names, ``name-<sha256 prefix>.pth``), read with ``weights_only=True``.

    A planted or corrupted file in the hub cache is therefore refused (DataError naming it) instead of executed.
    A failed download (no network, proxy, HTTP error, unwritable cache) raises :class:`WeightsUnavailable`; a
    download whose hash does not match raises DataError.
    """
    import re

    from ..core.errors import DataError

    fname = url.rsplit("/", 1)[-1]
    m = re.search(r"-([0-9a-f]{6,64})\.", fname)
    prefix = m.group(1) if m else None
    folder = Path(model_dir) if model_dir else Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / fname
    if not path.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=True)
        except OSError as exc:  # URLError, HTTPError, timeouts, DNS, an unwritable hub folder
            why = " ".join(str(exc).split())  # one line
            raise WeightsUnavailable(f"could not download {url} ({type(exc).__name__}: {why})") from exc
        except RuntimeError as exc:  # torch.hub: the downloaded file's sha256 does not match the prefix
            raise DataError(f"{url}: the download does not match the published sha256 prefix {prefix} "
                            f"({' '.join(str(exc).split())})") from exc
    if prefix is not None and not _sha256_prefix_ok(path, prefix):
        raise DataError(f"{path}: sha256 does not start with {prefix} as published in {url}; "
                        "the file is corrupt or was replaced: delete it to download it again")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot load checkpoint with weights_only=True ({type(exc).__name__}: {exc})") from exc
    if not isinstance(sd, dict):
        raise DataError(f"{path}: checkpoint is not a state dict")
    return sd


def default_weights_status() -> WeightsStatus:
    """Whether the default weights (:func:`default_alexnet_weights`) are on this machine: the 8-bit Caffe copy in
    the shared folder, else torchvision's checkpoint in torch's hub cache."""
    status = shared_weights_status(*CAFFE_Q8_DIR)
    if status:
        return status
    if torchvision_checkpoint_path().is_file():
        return WeightsStatus(True, f"torchvision checkpoint {torchvision_checkpoint_path()} ({status.where})")
    return WeightsStatus(False, f"{status.where}; torchvision's {TORCHVISION_ALEXNET_FILE} is downloaded on first use "
                                "(network)")


@BACKBONES.register("alexnet", default_weights=default_alexnet_weights, offline_available=default_weights_status)
class AlexNet(Backbone):
    """AlexNet with named layers conv1..conv5, pool5 and global feature fc7.

    Args:
        weights: "caffe-q8" (shared 8-bit Caffe reference weights), "torchvision" (download), or None (random init);
            :func:`convcorr.backbones.get_backbone` chooses :func:`default_alexnet_weights` when none is given.
        weights_dir: folder of the caffe-q8 weights (default: shared/weights/alexnet-caffe-q8).
    """

    name = "alexnet"
    layer_names = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5")
    global_layer = "fc7"
    input_size = 227

    def __init__(self, weights: str | None = "caffe-q8", weights_dir: str | Path | None = None):
        super().__init__()
        if weights not in ("caffe-q8", "torchvision", None):
            raise ValueError(f"unknown AlexNet weights {weights!r}: use 'caffe-q8', 'torchvision' or None")
        self.variant = "torchvision" if weights == "torchvision" else "caffe"
        tv = self.variant == "torchvision"
        c = (64, 192, 384, 256, 256) if tv else (96, 256, 384, 384, 256)
        g = (1, 1, 1, 1, 1) if tv else (1, 2, 1, 2, 2)
        norm = (lambda: nn.Identity()) if tv else (lambda: LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=not tv)
        self.input_size = 224 if tv else 227
        self.conv = nn.ModuleList([
            nn.Conv2d(3, c[0], 11, 4, padding=2 if tv else 0),
            nn.Conv2d(c[0], c[1], 5, 1, padding=2, groups=g[1]),
            nn.Conv2d(c[1], c[2], 3, 1, padding=1),
            nn.Conv2d(c[2], c[3], 3, 1, padding=1, groups=g[3]),
            nn.Conv2d(c[3], c[4], 3, 1, padding=1, groups=g[4]),
        ])
        self.stages = nn.ModuleDict({
            "conv1": nn.Sequential(self.conv[0], nn.ReLU()),
            "conv2": nn.Sequential(norm(), pool(), self.conv[1], nn.ReLU()),
            "conv3": nn.Sequential(norm(), pool(), self.conv[2], nn.ReLU()),
            "conv4": nn.Sequential(self.conv[3], nn.ReLU()),
            "conv5": nn.Sequential(self.conv[4], nn.ReLU()),
            "pool5": pool(),
        })
        self.avgpool = nn.AdaptiveAvgPool2d(6) if tv else nn.Identity()
        self.fc6 = nn.Linear(256 * 36, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)
        self.missing: list[str] = []
        if weights == "caffe-q8":
            self._load_q8(weights_dir)
        elif weights == "torchvision":
            self._load_torchvision()
        elif weights is not None:
            raise ValueError(f"unknown AlexNet weights {weights!r}: use 'caffe-q8', 'torchvision' or None")

    def _load_q8(self, folder) -> None:
        w = load_caffe_q8(folder)
        need = [f"conv{i}_{p}" for i in range(1, 6) for p in ("wt", "bias")] + ["fc8_wt", "fc8_bias"]
        absent = [k for k in need if k not in w]
        if absent:
            raise FileNotFoundError(f"{folder or 'shared/weights/alexnet-caffe-q8'}: missing weight files for {absent}")
        with torch.no_grad():
            for i, conv in enumerate(self.conv, 1):
                conv.weight.copy_(torch.from_numpy(w[f"conv{i}_wt"]))
                conv.bias.copy_(torch.from_numpy(w[f"conv{i}_bias"]))
            self.fc8.weight.copy_(torch.from_numpy(w["fc8_wt"]))
            self.fc8.bias.copy_(torch.from_numpy(w["fc8_bias"]))
            for fc in ("fc6", "fc7"):  # absent from the shared copy; loaded when a complete folder is given
                for part, attr in (("wt", "weight"), ("bias", "bias")):
                    if f"{fc}_{part}" in w:
                        getattr(getattr(self, fc), attr).copy_(torch.from_numpy(w[f"{fc}_{part}"]))
        self.missing = [f"{k}.txt" for k in ("fc6_wt", "fc7_wt") if k not in w]
        self.weights_dir = Path(folder) if folder else require_shared("weights", "alexnet-caffe-q8")

    def _load_torchvision(self) -> None:
        from ..core.errors import DataError

        try:
            sd = load_checkpoint(TORCHVISION_ALEXNET_URL)
        except WeightsUnavailable as exc:  # no network, proxy, ...
            raise WeightsUnavailable(
                f"AlexNet weights unavailable: {exc}. Provide them: set CONVCORR_SHARED to a folder holding "
                f"{'/'.join(CAFFE_Q8_DIR)} (then the default), or put torchvision's {TORCHVISION_ALEXNET_FILE} "
                f"into {torchvision_checkpoint_path().parent} (torch's hub cache, $TORCH_HOME), or pass "
                "weights='caffe-q8' with weights_dir=FOLDER (get_backbone) or pretrained=False") from None
        idx = {0: 0, 3: 1, 6: 2, 8: 3, 10: 4}
        pairs = [(self.conv[i].weight, f"features.{j}.weight") for j, i in idx.items()]
        pairs += [(self.conv[i].bias, f"features.{j}.bias") for j, i in idx.items()]
        for name, j in (("fc6", 1), ("fc7", 4), ("fc8", 6)):
            pairs += [(getattr(self, name).weight, f"classifier.{j}.weight"),
                      (getattr(self, name).bias, f"classifier.{j}.bias")]
        with torch.no_grad():
            for param, key in pairs:
                t = sd.get(key)
                if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(param.shape):
                    got = tuple(t.shape) if isinstance(t, torch.Tensor) else "missing"
                    raise DataError(f"torchvision AlexNet checkpoint: {key} is {got}, expected {tuple(param.shape)}")
                param.copy_(t)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "torchvision":
            m = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255
            s = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255
            return (x - m) / s
        bgr = x.flip(1)
        return bgr - torch.tensor(CAFFE_MEAN_BGR, device=x.device).view(1, 3, 1, 1)

    def global_head(self, last: torch.Tensor) -> torch.Tensor:
        if self.missing:
            raise RuntimeError(
                f"AlexNet fc7 (and fc8 logits) cannot be computed: the weight files {', '.join(self.missing)} are "
                f"absent from {self.weights_dir} (the caffe-q8 copy ships conv1..conv5 and fc8 weights only). Use "
                "pool5 or another backbone's global feature (e.g. efficientnet_lite0) for neighbour retrieval, or "
                "weights='torchvision' with internet access."
            )
        x = torch.flatten(self.avgpool(last), 1)
        if x.shape[1] != self.fc6.in_features:
            raise ValueError(f"fc7 needs a {self.input_size}x{self.input_size} input (pool5 must be 6x6)")
        return torch.relu(self.fc7(torch.relu(self.fc6(x))))

    def classifier_head(self, glob: torch.Tensor) -> torch.Tensor:
        return self.fc8(glob)
