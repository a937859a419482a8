"""Command-line interface: ``convcorr --help``."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import click

from .experiments import EXPERIMENTS
from .types import DataError


def _parse_overrides(items: tuple[str, ...]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        k, v = item.split("=", 1)
        words = {"true": True, "false": False, "none": None, "null": None}
        if v.strip().lower() in words:
            out[k.strip()] = words[v.strip().lower()]
            continue
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


@click.group()
@click.version_option(package_name="convcorr")
def cli() -> None:
    """Do convnets learn correspondence? Reproduce and extend Long, Zhang & Darrell (NIPS 2014)."""


@cli.command("rf")
@click.option("--backbone", default="alexnet", show_default=True, help="Backbone name (see `convcorr backbones`).")
@click.option("--input-size", default=None, type=int, help="Square input side in pixels (default: the backbone's).")
def rf_cmd(backbone: str, input_size: int | None) -> None:
    """Print receptive-field size, stride and centre offset of every layer (paper Table 1)."""
    from .backbones import get_backbone
    from .receptive_field import format_rf_table

    bb = get_backbone(backbone, pretrained=False)
    click.echo(format_rf_table(bb, input_size=input_size))


@cli.command("backbones")
def backbones_cmd() -> None:
    """List available backbones and their layers."""
    from .backbones import BACKBONES

    for name, cls in BACKBONES.items():
        click.echo(f"{name}: layers {', '.join(cls.layer_names)}")


@cli.command("experiment")
@click.argument("name", type=click.Choice(sorted(EXPERIMENTS) + ["all"]))
@click.option("--out", "out_dir", default=None, type=click.Path(path_type=Path),
              help="Output folder (default: runs/NAME).")
@click.option("--preset", default="default", show_default=True, help="Named configuration preset.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config option (repeatable).")
def experiment_cmd(name: str, out_dir: Path | None, preset: str, sets: tuple[str, ...]) -> None:
    """Run a named experiment (a paper table) and write report.md, results.json and figures.

    `all` runs every experiment into subfolders of --out and writes an index report.md.
    """
    from . import experiments

    overrides = _parse_overrides(sets)
    try:
        if name == "all":
            out_dir = out_dir or Path("report")
            path = run_all(out_dir, preset, overrides)
        else:
            path = experiments.run(name, out_dir or Path("runs") / name, preset, overrides)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from exc
    click.echo(f"report written to {path}")


def headline_table(markdown: str) -> str:
    """The first results table of a report (the first Markdown table outside Configuration/Protocol), with its heading."""
    heading, skip = "", True
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            heading = line[3:]
            skip = heading in ("Configuration", "Protocol")
        elif line.startswith("|") and not skip:
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            return f"_{heading}_\n\n" + "\n".join(lines[i:j])
    return "_(no table)_"


def run_all(out_dir: Path, preset: str = "default", overrides: dict | None = None) -> Path:
    """Run every experiment (each with the given preset when it has one) and index the reports."""
    from . import experiments

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# convcorr report", "",
             "Every experiment of the paper run on the embedded default data (real annotated photos from the shared "
             "folder plus synthetic warps with exact keypoints); the headline table of each report is repeated "
             "here, follow the links for protocols, figures and all numbers.", ""]
    for name in EXPERIMENTS:
        mod = experiments.get_experiment(name)
        p = preset if preset in mod.CONFIGS else "default"
        ov = {k: v for k, v in (overrides or {}).items() if k in mod.CONFIGS[p]}
        click.echo(f"== {name} (preset {p})", err=True)
        path = experiments.run(name, out_dir / name, p, ov)
        text = path.read_text()
        first = text.split("\n", 1)[0].lstrip("# ")
        lines += [f"## [{name}: {first}]({name}/report.md)", "", headline_table(text), ""]
    index = out_dir / "report.md"
    index.write_text("\n".join(lines) + "\n")
    return index


@cli.command("visualize")
@click.option("--out", "out_dir", default=Path("runs/visualize"), type=click.Path(path_type=Path), show_default=True)
@click.option("--preset", default="default", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
def visualize_cmd(out_dir: Path, preset: str, sets: tuple[str, ...]) -> None:
    """Feature visualisation (paper Figures 1 and 2): nearest-neighbour reconstructions and average rfs (PNGs)."""
    from . import experiments

    try:
        path = experiments.run("visualize", out_dir, preset, _parse_overrides(sets))
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from exc
    click.echo(f"report written to {path}")


# ---------------------------------------------------------------------------------------------------- align (#7)
def _align_points(path: Path, hw: tuple[int, int]):
    """Points of A from a JSON file: [[x, y], ...] or {"points": [[x, y], ...]}, (x, y) pixels of the original A."""
    import json

    import numpy as np

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: cannot read JSON points ({exc})", param_hint="--points") from exc
    pts = data.get("points") if isinstance(data, dict) else data
    try:
        arr = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 2 or not len(arr) or not np.isfinite(arr).all():
        raise click.BadParameter(f"{path}: expected a non-empty list of [x, y] pairs (or {{\"points\": [...]}})",
                                 param_hint="--points")
    H, W = hw
    bad = np.flatnonzero((arr[:, 0] < -0.5) | (arr[:, 0] > W - 0.5) | (arr[:, 1] < -0.5) | (arr[:, 1] > H - 0.5))
    if len(bad):
        raise click.BadParameter(f"{path}: point {bad[0]} {arr[bad[0]].tolist()} lies outside image A "
                                 f"({W} x {H} px)", param_hint="--points")
    return arr


def _grid_points(hw: tuple[int, int], n: int):
    """An n x n grid of points over the central 80% of an (H, W) image."""
    import numpy as np

    H, W = hw
    xs = np.linspace(0.1 * (W - 1), 0.9 * (W - 1), n)
    ys = np.linspace(0.1 * (H - 1), 0.9 * (H - 1), n)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


@cli.command("align")
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@click.option("--features", default="alexnet:conv4", show_default=True,
              help="Dense features: 'sift', 'sift:step=4,bin=4', '<backbone>:<layer>', hypercolumn "
                   "'alexnet:conv3+conv4'.")
@click.option("--matcher", default="flow", show_default=True, help="Matcher: flow, nn, mnn, softargmax.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Matcher option (repeatable), e.g. --set beta=0.01 --set radius=6 (flow), --set window=5.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--points", "points_path", default=None, type=click.Path(path_type=Path),
              help="JSON file of points in A ([[x, y], ...], original pixels); default: a grid of points.")
@click.option("--grid", "grid_n", default=8, show_default=True, type=click.IntRange(1, 100),
              help="Grid of N x N points over A when --points is not given.")
@click.option("--max-side", default=256, show_default=True, type=click.IntRange(0, None),
              help="Resize each image so its longer side has this many pixels before computing features "
                   "(aspect ratio kept; 0 = use the images as they are).")
@click.option("--one-way", is_flag=True, help="Match A -> B only (B -> A by exact inversion).")
def align_cmd(image_a: Path, image_b: Path, features: str, matcher: str, sets: tuple[str, ...], out_dir: Path,
              points_path: Path | None, grid_n: int, max_side: int, one_way: bool) -> None:
    """Dense correspondence between your own two images A and B (any sizes and aspect ratios).

    Each image is resized (bilinear, aspect ratio kept) so that its longer side is --max-side pixels, features
    are computed on the resized images, and all results are mapped back exactly to ORIGINAL pixels (pixel-centre
    convention). Writes into --out: warped.png (B warped onto A), pairs.png (A|B with correspondence lines),
    flow.png (flow colour coding of A -> B with a colour-wheel legend) and correspondences.json ((x, y) points
    in pixels of the original A and B, with the features, matcher and options used).
    """
    import json

    import numpy as np
    from PIL import Image

    from .correspondence import correspond
    from .dense import parse_options
    from .flowviz import save_flow_figure, save_pairs_figure
    from .types import load_image

    options: dict = {}
    for item in sets:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        try:
            options.update(parse_options(item, item))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--set") from exc
    img_a, img_b = load_image(image_a), load_image(image_b)
    pts_a = _align_points(points_path, img_a.shape[:2]) if points_path else _grid_points(img_a.shape[:2], grid_n)
    from .dense import get_features
    from .matchers import get_matcher

    try:
        feats = get_features(features)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--features") from exc
    try:
        m = get_matcher(matcher, **options)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--matcher/--set") from exc
    try:
        c = correspond(img_a, img_b, feats, m, max_side=max_side or None, both=not one_way)
    except ValueError as exc:  # e.g. an image too small for the layer
        raise click.UsageError(str(exc)) from exc
    pts_b = c.transfer(pts_a)
    Hb, Wb = img_b.shape[:2]
    outside = np.flatnonzero(np.all(np.isfinite(pts_b), 1) & ((pts_b[:, 0] < -0.5) | (pts_b[:, 0] > Wb - 0.5)
                                                             | (pts_b[:, 1] < -0.5) | (pts_b[:, 1] > Hb - 0.5)))
    pts_b = np.column_stack([np.clip(pts_b[:, 0], -0.5, Wb - 0.5), np.clip(pts_b[:, 1], -0.5, Hb - 0.5)])
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(c.warp(img_b)).save(out_dir / "warped.png")
    label = f"{c.spec['features']} + {m.name}"
    save_pairs_figure(img_a, img_b, pts_a, pts_b, out_dir / "pairs.png", f"{image_a.name} -> {image_b.name}: {label}")
    H, W = img_a.shape[:2]
    disp = c.forward - np.stack(np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float)), -1)
    save_flow_figure(disp, out_dir / "flow.png", f"A -> B displacement, {label}")
    tolist = lambda a: [[None if not np.isfinite(v) else round(float(v), 3) for v in row] for row in a]
    doc = {
        "convention": "(x, y) pixels of the ORIGINAL images, x right, y down, top-left pixel centre at (0, 0)",
        "image_a": {"path": str(image_a), "width": int(W), "height": int(H)},
        "image_b": {"path": str(image_b), "width": int(Wb), "height": int(Hb)},
        "features": c.spec["features"], "matcher": m.name, "options": m.options,
        "resize": {"max_side": c.spec["max_side"], "work_a_hw": c.spec["work_a_hw"],
                   "work_b_hw": c.spec["work_b_hw"]},
        "both_directions": not one_way, "energy": float(c.energy),
        "points_source": str(points_path) if points_path else f"{grid_n} x {grid_n} grid over A",
        "points_a": tolist(pts_a), "points_b": tolist(pts_b),
        "clipped_to_b": outside.tolist(),
    }
    (out_dir / "correspondences.json").write_text(json.dumps(doc, indent=1, default=str))
    click.echo(f"wrote warped.png, pairs.png, flow.png, correspondences.json to {out_dir}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except (FileNotFoundError, DataError) as exc:  # missing weights / bad data: one clear line, no traceback
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
