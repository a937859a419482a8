"""Writes a PF-WILLOW test_pairs.csv fixture in the real layout (shared by tests)."""
import numpy as np

HEADER = (["imageA", "imageB"] + [f"XA{i}" for i in range(1, 11)] + [f"YA{i}" for i in range(1, 11)]
          + [f"XB{i}" for i in range(1, 11)] + [f"YB{i}" for i in range(1, 11)])


def write_pf_willow(folder, rows=None):
    xa, ya = np.arange(10) * 10.0 + 5, np.arange(10) * 3.0 + 20
    rows = rows or [("PF-dataset/car(G)/2008_000021.png", "PF-dataset/car(G)/2008_000052.png"),
                    ("PF-dataset/car(G)/2008_000052.png", "PF-dataset/car(G)/2008_000085.png"),
                    ("PF-dataset/duck(S)/060_0001.png", "PF-dataset/duck(S)/060_0007.png")]
    lines = [",".join(HEADER)]
    for a, b in rows:
        lines.append(",".join([a, b] + [f"{v:g}" for v in (*xa, *ya, *(xa + 7), *(ya[::-1] + 1))]))
    path = folder / "test_pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
