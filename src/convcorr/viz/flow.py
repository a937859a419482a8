"""Pictures of a correspondence: flow colour coding with a colour-wheel legend, and A|B side by side with lines.

Flow colours follow the Middlebury convention: hue = direction of the displacement (dx, dy) (x right, y down),
saturation = magnitude / ``max_mag`` (white = no motion), black = no correspondence.
"""
from __future__ import annotations

import numpy as np

from .report import save_figure


def flow_to_color(disp: np.ndarray, max_mag: float | None = None) -> np.ndarray:
    """(H, W, 2) displacement (dx, dy) -> (H, W, 3) uint8 RGB (NaN -> black).

    Args:
        max_mag: magnitude shown fully saturated (default: the 99th percentile of the finite magnitudes).
    """
    from matplotlib.colors import hsv_to_rgb

    d = np.asarray(disp, dtype=np.float64)
    ok = np.all(np.isfinite(d), axis=-1)
    mag = np.hypot(d[..., 0], d[..., 1])
    if max_mag is None:
        max_mag = float(np.percentile(mag[ok], 99)) if ok.any() else 1.0
    max_mag = max(float(max_mag), 1e-9)
    ang = np.arctan2(np.where(ok, d[..., 1], 0), np.where(ok, d[..., 0], 0))
    hsv = np.stack([(ang / (2 * np.pi)) % 1.0, np.clip(np.where(ok, mag, 0) / max_mag, 0, 1), np.ones(d.shape[:2])], -1)
    rgb = hsv_to_rgb(hsv)
    rgb[~ok] = 0.0
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def color_wheel(size: int = 101, max_mag: float = 1.0) -> np.ndarray:
    """(size, size, 3) uint8 legend: the colour of displacement (x - c, y - c) * max_mag / c inside the disc."""
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    d = np.stack([xs - c, ys - c], -1) * (max_mag / c)
    img = flow_to_color(d, max_mag)
    img[np.hypot(xs - c, ys - c) > c] = 255
    return img


def save_flow_figure(disp: np.ndarray, path, title: str = "") -> float:
    """Write the flow colour image with a colour-wheel legend (magnitude scale in pixels); returns max_mag."""
    import matplotlib.pyplot as plt

    ok = np.all(np.isfinite(disp), axis=-1)
    mag = np.hypot(disp[..., 0], disp[..., 1])
    max_mag = float(np.percentile(mag[ok], 99)) if ok.any() else 1.0
    max_mag = max(max_mag, 1.0)
    H, W = disp.shape[:2]
    fig = plt.figure(figsize=(6.0 * W / max(H, W) + 1.8, 6.0 * H / max(H, W) + 0.6))
    ax = fig.add_axes([0.02, 0.05, 0.7, 0.88])
    ax.imshow(flow_to_color(disp, max_mag))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    leg = fig.add_axes([0.76, 0.55, 0.22, 0.3])
    leg.imshow(color_wheel(101, max_mag), extent=[-max_mag, max_mag, max_mag, -max_mag])
    leg.set_title("dx, dy (px)", fontsize=7)
    leg.tick_params(labelsize=6)
    save_figure(fig, path, dpi=120)
    return max_mag


def save_pairs_figure(img_a: np.ndarray, img_b: np.ndarray, pa: np.ndarray, pb: np.ndarray, path,
                      title: str = "") -> None:
    """A | B side by side (tops aligned, B right of A) with a line from every A point to its B point."""
    import matplotlib.pyplot as plt

    Ha, Wa = img_a.shape[:2]
    Hb, Wb = img_b.shape[:2]
    gap = max(4, int(0.02 * (Wa + Wb)))
    W, H = Wa + gap + Wb, max(Ha, Hb)
    fig = plt.figure(figsize=(10.0, 10.0 * H / W + 0.4))
    ax = fig.add_axes([0, 0, 1, 0.95])
    ax.imshow(img_a, extent=[-0.5, Wa - 0.5, Ha - 0.5, -0.5])
    ax.imshow(img_b, extent=[Wa + gap - 0.5, Wa + gap + Wb - 0.5, Hb - 0.5, -0.5])
    ok = np.all(np.isfinite(pa), 1) & np.all(np.isfinite(pb), 1)
    colors = plt.cm.hsv(np.linspace(0, 1, max(int(ok.sum()), 1), endpoint=False))
    for (a, b), col in zip(zip(pa[ok], pb[ok]), colors):
        ax.plot([a[0], b[0] + Wa + gap], [a[1], b[1]], "-", color=col, lw=0.7)
        ax.plot(a[0], a[1], "o", color=col, ms=2.5)
        ax.plot(b[0] + Wa + gap, b[1], "o", color=col, ms=2.5)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.axis("off")
    fig.suptitle(title, fontsize=8)
    save_figure(fig, path, dpi=120)
