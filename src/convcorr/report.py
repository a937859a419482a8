"""Experiment reports: a Markdown file, a JSON file and figures in one folder."""
from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating,)):
        x = float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   floatfmt: str = "{:.3f}") -> str:
    """Render a list of dicts as a Markdown table (floats formatted with floatfmt)."""
    if not rows:
        return "_(no rows)_\n"
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "n/a" if not np.isfinite(v) else floatfmt.format(v)
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] * len(columns)) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out) + "\n"


class Report:
    """Collects Markdown sections, results and figures; ``save()`` writes them.

    Example::

        rep = Report(out_dir, "Table 2: keypoint transfer", conf)
        rep.section("Results", markdown_table(rows))
        rep.figure(fig, "neighbours.png", "Warped neighbours")
        rep.results["pck"] = {...}
        rep.save()  # -> out_dir/report.md, out_dir/results.json
    """

    def __init__(self, out_dir: str | Path, title: str, conf: Mapping[str, Any] | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.conf = dict(conf or {})
        self.parts: list[str] = []
        self.results: dict[str, Any] = {}
        self.figures: list[str] = []

    def section(self, heading: str, body: str) -> None:
        self.parts.append(f"## {heading}\n\n{body.rstrip()}\n")

    def figure(self, fig, name: str, caption: str = "", dpi: int = 110) -> Path:
        """Save a matplotlib figure into the report folder and link it."""
        import matplotlib.pyplot as plt

        path = self.out_dir / name
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(name)
        self.parts.append(f"![{caption or name}]({name})\n\n{caption}\n")
        return path

    def save(self) -> Path:
        meta = {
            "title": self.title,
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
        try:
            import torch

            meta["torch"] = torch.__version__
            meta["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        except Exception:  # pragma: no cover
            pass
        payload = {"meta": meta, "config": self.conf, "results": self.results, "figures": self.figures}
        (self.out_dir / "results.json").write_text(json.dumps(_jsonable(payload), indent=2))
        conf_md = "\n".join(f"- `{k}`: `{v}`" for k, v in self.conf.items())
        md = f"# {self.title}\n\n_Generated {meta['created']} by convcorr._\n\n"
        if conf_md:
            md += f"## Configuration\n\n{conf_md}\n\n"
        md += "\n".join(self.parts)
        path = self.out_dir / "report.md"
        path.write_text(md)
        return path


def progress(iterable: Iterable, desc: str, total: int | None = None, **kw):
    """tqdm progress bar on stderr (quiet when CONVCORR_QUIET=1)."""
    import os

    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=os.environ.get("CONVCORR_QUIET") == "1",
                dynamic_ncols=True, leave=False, **kw)
