"""Experiment reports: a Markdown file, a JSON file and figures in one folder.

Safety: every file is written atomically (a unique temporary file in the same folder, then ``os.replace``), so a
failed write (disk full, interrupt) leaves the previous file intact and a symlink in the folder is replaced, never
written through. :func:`prepare_out_dir` marks a report folder with :data:`MARKER` (the experiment's name) and
refuses to write into a non-empty folder that is not a previous report of the same experiment, or into a
symlinked folder, unless ``force=True`` (``--force`` on the command line).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..runtime.io import atomic_write, atomic_write_text

#: marker file of a convcorr report folder: {"convcorr_report": 1, "experiment": name, "created": ...}
MARKER = ".convcorr-report.json"


def save_figure(fig, path: str | Path, dpi: int = 110, **savefig_kw) -> Path:
    """Save a matplotlib figure atomically (:func:`atomic_write`; format from the file suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format=path.suffix.lstrip(".") or None, dpi=dpi,
                                                         **savefig_kw))
    finally:
        plt.close(fig)


def read_marker(out_dir: str | Path) -> dict | None:
    """The report marker of a folder ({"experiment": ...}), or None when absent or unreadable."""
    p = Path(out_dir) / MARKER
    try:
        if p.is_symlink() or not p.is_file():
            return None
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) and d.get("convcorr_report") == 1 else None
    except (OSError, ValueError):
        return None


def prepare_out_dir(out_dir: str | Path, experiment: str, force: bool = False) -> Path:
    """Check and create a report folder for ``experiment`` and mark it (:data:`MARKER`).

    Refused (ConfigError naming the folder) unless ``force``: a symlinked folder; a non-empty folder without the
    marker of the same experiment (a foreign folder or another experiment's report). Always refused: a path under
    a file, or a file where the folder should be.
    """
    from ..core.errors import ConfigError

    out_dir = Path(out_dir)
    if out_dir.is_symlink() and not force:
        raise ConfigError(f"{out_dir}: output folder is a symlink (to {os.readlink(out_dir)}); refusing to write "
                          "through it (use --force to allow it)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: output path exists and is not a folder")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{out_dir}: cannot create the output folder, {parent} is a file")
            break
    if out_dir.is_dir() and not force:
        try:
            entries = [e for e in os.listdir(out_dir)]
        except OSError as exc:
            raise ConfigError(f"{out_dir}: cannot list the output folder ({exc.strerror or exc})") from exc
        if entries:
            mark = read_marker(out_dir)
            if mark is None:
                raise ConfigError(f"{out_dir}: output folder is not empty and is not a convcorr report; refusing to "
                                  "write into it (choose another --out or use --force)")
            if mark.get("experiment") != experiment:
                raise ConfigError(f"{out_dir}: output folder holds a report of {mark.get('experiment')!r}, not "
                                  f"{experiment!r}; refusing to overwrite it (choose another --out or use --force)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / MARKER, json.dumps({
            "convcorr_report": 1, "experiment": experiment,
            "created": _dt.datetime.now().isoformat(timespec="seconds")}) + "\n")
    except OSError as exc:
        raise ConfigError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})") from exc
    return out_dir


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
        return str(v).replace("|", "\\|")  # a bare pipe would split the cell

    out = ["| " + " | ".join(str(c).replace("|", "\\|") for c in columns) + " |", "|" + "|".join(["---"] * len(columns)) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out) + "\n"


class Report:
    """Collects Markdown sections, results and figures; ``save()`` writes them.

    Example::

        rep = Report(out_dir, "Table 2: keypoint transfer", conf)
        rep.section("Results", markdown_table(rows))
        rep.figure(fig, "neighbours.png", "Warped neighbours")
        rep.results["pck"] = {...}
        rep.save()  # -> out_dir/report.md, out_dir/results.json (each written atomically)
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
        """Save a matplotlib figure into the report folder (atomically) and link it."""
        path = save_figure(fig, self.out_dir / name, dpi=dpi, bbox_inches="tight")
        self.figures.append(name)
        self.parts.append(f"![{caption or name}]({name})\n\n{caption}\n")
        return path

    def save(self) -> Path:
        """Write results.json (``meta``: title, time and :func:`convcorr.runtime.provenance.provenance`;
        ``config``; ``results``; ``figures``) and report.md (title, provenance line, configuration, sections)."""
        from ..runtime.device import default_device
        from ..runtime.provenance import provenance

        meta = {"title": self.title, "created": _dt.datetime.now().isoformat(timespec="seconds"),
                **provenance(device=default_device())}
        meta["torch"] = meta["versions"]["torch"]
        payload = {"meta": meta, "config": self.conf, "results": self.results, "figures": self.figures}
        atomic_write_text(self.out_dir / "results.json", json.dumps(_jsonable(payload), indent=2))
        conf_md = "\n".join(f"- `{k}`: `{v}`" for k, v in self.conf.items())
        md = f"# {self.title}\n\n_Generated {meta['created']} by {provenance_line(meta)}._\n\n"
        if conf_md:
            md += f"## Configuration\n\n{conf_md}\n\n"
        md += "\n".join(self.parts)
        return atomic_write_text(self.out_dir / "report.md", md)


def provenance_line(meta: Mapping[str, Any]) -> str:
    """One line for a report: ``convcorr 0.1.0 (commit 1a2b3c4d5e6f, modified), command `convcorr experiment ...```
    from a results.json ``meta`` block."""
    import shlex

    git = meta.get("git")
    dirty = ", modified" if git and git.get("dirty") else ""
    commit = f"commit {git['commit'][:12]}{dirty}" if git else "not a git checkout"
    argv = list(meta.get("command") or [])
    if argv:
        argv[0] = Path(argv[0]).name
        if argv[0] in ("cli.py", "__main__.py"):  # python -m convcorr.cli
            argv[0] = "convcorr"
    command = shlex.join(argv)
    code = f"`` {command} ``" if "`" in command else f"`{command}`" if command else "unknown"  # `` fences a `
    return f"convcorr {meta.get('convcorr') or '(unknown version)'} ({commit}), command {code}"


def category_report(categories) -> tuple[str, list[dict]]:
    """(Markdown section text, rows) of :func:`category_summary` for ``categories``: what the reports rest on."""
    from ..datasets.embedded import category_summary

    rows = category_summary(categories=list(categories))
    return (markdown_table(rows) + "\nInstances whose object is cut off (box touching the image border while "
            "keypoints are missing, or fewer than half the keypoints annotated) are dropped; `objects` < "
            "`instances` where one object appears in several images (FreiHAND's backgrounds).", rows)
