"""SqueezeNet 1.0 (Iandola et al. 2016) with the ImageNet weights of Deep Compression (Han et al. 2016).

Architecture (Caffe ``SqueezeNet_deploy.prototxt`` = torchvision ``squeezenet1_0``): conv1 96x7x7/2 -> ReLU ->
max pool 3/2 (ceil) -> fire2, fire3, fire4 -> pool -> fire5..fire8 -> pool -> fire9 -> conv10 (1000x1x1) -> ReLU
-> global average = logits. A fire module: squeeze 1x1 -> ReLU -> [expand 1x1, expand 3x3 pad 1] -> ReLU, concat.
Named layers: conv1, pool1, fire2..fire9, pool4, pool8 (after the pooling that follows fire4 / fire8), conv10
(class maps); global feature ``pool`` = average of fire9 (512-d). Input: Caffe style, BGR 0..255 minus the mean
(104, 117, 123), 227x227.

Weights file ``compressed_SqueezeNet.net`` (shared/weights/squeezenet1.0-deepcompression, BSD licence): little-
endian; ``L`` uint32 non-zero counts (one per conv layer, prototxt order; ``L`` = 26), then per layer: a 256-entry
float32 codebook, the float32 biases (one per output channel), ``nz`` uint8 codebook indices, and ``ceil(nz / 2)``
bytes of 4-bit gaps (low nibble first); the k-th stored weight sits at flat position ``sum_{i<=k}(gap_i + 1) - 1``
of the (out, in, kh, kw) blob (gaps longer than 15 are bridged by stored zeros, codebook entry 0). Decoded with
numpy; every count, length and index is checked against the architecture (:class:`convcorr.core.errors.DataError`
naming the file otherwise).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import DataError
from ..runtime.paths import require_shared
from .base import BACKBONES, Backbone, WeightsStatus, shared_weights_status

CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
# (squeeze, expand1x1, expand3x3) per fire module, fire2..fire9
_FIRES = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128), (48, 192, 192), (48, 192, 192),
          (64, 256, 256), (64, 256, 256)]


class Fire(nn.Module):
    def __init__(self, cin: int, s: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, s, 1)
        self.expand1x1 = nn.Conv2d(s, e1, 1)
        self.expand3x3 = nn.Conv2d(s, e3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)


def _conv_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """(torchvision state-dict key prefix, weight shape) of the 26 convolutions in file order."""
    out = [("features.0", (96, 3, 7, 7))]
    idx = [3, 4, 5, 7, 8, 9, 10, 12]
    cin = 96
    for i, (s, e1, e3) in zip(idx, _FIRES):
        out += [(f"features.{i}.squeeze", (s, cin, 1, 1)), (f"features.{i}.expand1x1", (e1, s, 1, 1)),
                (f"features.{i}.expand3x3", (e3, s, 3, 3))]
        cin = e1 + e3
    out.append(("classifier.1", (1000, cin, 1, 1)))
    return out


def decode_deep_compression(path: str | Path, shapes: list[tuple[str, tuple[int, ...]]] | None = None,
                            bits: int = 8) -> dict[str, np.ndarray]:
    """Decode a Deep Compression ``.net`` file into {"<key>.weight": float32 array, "<key>.bias": ...}.

    Args:
        path: the compressed file.
        shapes: (state-dict key prefix, weight shape) of each layer in file order (default: SqueezeNet 1.0).
        bits: codebook index width (8 for SqueezeNet: the file size then matches exactly).
    Raises:
        DataError (naming the file): wrong size, counts larger than the layer, indices outside the blob,
        non-finite codebooks.
    """
    path = Path(path)
    shapes = shapes or _conv_shapes()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the SqueezeNet weights ({exc})") from exc
    L = len(shapes)
    if len(raw) < 4 * L:
        raise DataError(f"{path}: {len(raw)} bytes, too short for {L} layer headers")
    nz = np.frombuffer(raw, "<u4", count=L).astype(np.int64)
    sizes = [int(np.prod(s)) for _, s in shapes]
    expected = 4 * L + sum(4 * 2 ** bits + 4 * s[0] + (int(z) - 1) // (8 // bits) + 1 + (int(z) - 1) // 2 + 1
                           for (_, s), z in zip(shapes, nz))
    if expected != len(raw):
        raise DataError(f"{path}: {len(raw)} bytes, but the {L} layer headers imply {expected}: not a Deep "
                        f"Compression file of this architecture ({bits}-bit codebooks)")
    out: dict[str, np.ndarray] = {}
    pos = 4 * L
    for (key, shape), z, size in zip(shapes, nz, sizes):
        if not 0 < z:
            raise DataError(f"{path}: layer {key} has {z} stored weights")
        codebook = np.frombuffer(raw, "<f4", count=2 ** bits, offset=pos).astype(np.float32)
        pos += 4 * 2 ** bits
        bias = np.frombuffer(raw, "<f4", count=shape[0], offset=pos).astype(np.float32)
        pos += 4 * shape[0]
        n_code = (int(z) - 1) // (8 // bits) + 1
        codes = np.frombuffer(raw, np.uint8, count=n_code, offset=pos)
        pos += n_code
        n_ind = (int(z) - 1) // 2 + 1
        ind_bytes = np.frombuffer(raw, np.uint8, count=n_ind, offset=pos)
        pos += n_ind
        if bits != 8:
            raise DataError(f"{path}: only 8-bit codebooks are supported")
        gaps = np.empty(2 * n_ind, np.int64)
        gaps[0::2] = ind_bytes & 0x0F
        gaps[1::2] = ind_bytes >> 4
        idx = np.cumsum(gaps[:z] + 1) - 1
        if idx[-1] >= size:
            raise DataError(f"{path}: layer {key}: weight index {idx[-1]} outside its {size} weights "
                            f"{'x'.join(map(str, shape))}")
        if not (np.all(np.isfinite(codebook)) and np.all(np.isfinite(bias))):
            raise DataError(f"{path}: layer {key}: non-finite codebook or bias values")
        w = np.zeros(size, np.float32)
        w[idx] = codebook[codes[:z]]
        out[f"{key}.weight"] = w.reshape(shape)
        out[f"{key}.bias"] = bias
    return out


def deep_compression_status() -> WeightsStatus:
    """Whether the Deep Compression SqueezeNet file is in the shared folder."""
    return shared_weights_status("weights", "squeezenet1.0-deepcompression", "compressed_SqueezeNet.net")


@BACKBONES.register("squeezenet1_0", default_weights="deep-compression", offline_available=deep_compression_status)
class SqueezeNet10(Backbone):
    """SqueezeNet 1.0 (torchvision layout) with Deep Compression ImageNet weights.

    Args:
        weights: "deep-compression" (shared file) or None (random initialisation).
        weights_file: path of ``compressed_SqueezeNet.net`` (default: in shared/weights).
    """

    name = "squeezenet1_0"
    layer_names = ("conv1", "pool1", "fire2", "fire3", "fire4", "pool4", "fire5", "fire6", "fire7", "fire8",
                   "pool8", "fire9", "conv10")
    global_layer = "pool"
    input_size = 227

    def __init__(self, weights: str | None = "deep-compression", weights_file: str | Path | None = None):
        super().__init__()
        if weights not in ("deep-compression", None):
            raise ValueError(f"unknown SqueezeNet weights {weights!r}: use 'deep-compression' or None")
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
        fires, cin = [], 96
        for s, e1, e3 in _FIRES:
            fires.append(Fire(cin, s, e1, e3))
            cin = e1 + e3
        self.features = nn.Sequential(nn.Conv2d(3, 96, 7, 2), nn.ReLU(), pool(), fires[0], fires[1], fires[2],
                                      pool(), fires[3], fires[4], fires[5], fires[6], pool(), fires[7])
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, 1000, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        f = self.features
        self.stages = nn.ModuleDict({
            "conv1": nn.Sequential(f[0], f[1]), "pool1": f[2], "fire2": f[3], "fire3": f[4], "fire4": f[5],
            "pool4": f[6], "fire5": f[7], "fire6": f[8], "fire7": f[9], "fire8": f[10], "pool8": f[11],
            "fire9": f[12], "conv10": nn.Sequential(self.classifier[1], self.classifier[2]),
        })
        if weights == "deep-compression":
            path = Path(weights_file) if weights_file else require_shared(
                "weights", "squeezenet1.0-deepcompression", "compressed_SqueezeNet.net")
            sd = {k: torch.from_numpy(v) for k, v in decode_deep_compression(path).items()}
            own = {k: v for k, v in self.state_dict().items() if not k.startswith("stages.")}
            missing = set(own) - set(sd)
            if missing:
                raise DataError(f"{path}: no weights for {sorted(missing)}")
            for k, v in sd.items():
                if tuple(own[k].shape) != tuple(v.shape):
                    raise DataError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
            self.load_state_dict(sd, strict=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) - torch.tensor(CAFFE_MEAN_BGR, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        layers = list(layers or self.layer_names)
        if self.global_layer in layers:  # global feature: average of fire9 (conv10 is the classifier)
            spatial = [l for l in layers if l != self.global_layer]
            out = super().forward(x, spatial + ["fire9"])
            out[self.global_layer] = out["fire9"].mean(dim=(2, 3))
            return {l: out[l] for l in layers}
        return super().forward(x, layers)

    @torch.no_grad()
    def classify(self, images, batch_size: int = 16) -> np.ndarray:
        """(N, 1000) ImageNet logits: global average of the conv10 class maps."""
        maps = self.extract(images, ["conv10"], batch_size=batch_size)["conv10"]
        return maps.mean(axis=(1, 2))
