"""Command-line interface: ``convcorr --help``.

Errors: every command runs inside :class:`ConvcorrGroup`, which turns user errors (bad data, options, paths:
:class:`convcorr.core.errors.UserError`, missing files, permissions, a full disk, ...) into one line ``Error: ...``
with exit status 2, and keeps internal errors (bugs) visible: their traceback is printed, exit status 1.
``convcorr --debug ...`` shows the traceback of user errors too. New commands get this for free.
"""
from __future__ import annotations

import errno
import traceback
from pathlib import Path

import click

from .core.errors import ConfigError, UserError

# ------------------------------------------------------------------------------------------------- error handling
#: OSError numbers that mean a problem with the user's paths or machine, not a bug
_USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOSPC,
                errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP, errno.EDQUOT, errno.EMFILE, errno.ENODEV}


def is_user_error(exc: BaseException) -> bool:
    """True for errors caused by the user's input or environment (shown as one line), False for bugs."""
    if isinstance(exc, (UserError, FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError,
                        FileExistsError)):
        return True
    return isinstance(exc, OSError) and getattr(exc, "errno", None) in _USER_ERRNOS


class UserFacingError(click.ClickException):
    """A user error shown as one line ``Error: ...``, exit status 2."""

    exit_code = 2


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, UserError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{exc.filename}: {msg}"
    return msg


class ConvcorrGroup(click.Group):
    """click group whose commands share one error policy (see the module docstring)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130)
        except Exception as exc:
            debug = bool(ctx.meta.get("convcorr.debug"))
            if is_user_error(exc):
                if debug:
                    click.echo(traceback.format_exc(), err=True)
                raise UserFacingError(_one_line(exc)) from exc
            # a bug: keep it visible
            click.echo(traceback.format_exc(), err=True)
            click.echo(f"internal error: {type(exc).__name__}: {_one_line(exc)}\n"
                       "This is a bug in convcorr; please report it with the traceback above.", err=True)
            raise click.exceptions.Exit(1)


# ----------------------------------------------------------------------------------------------- option parsing
def _split_set(item: str) -> tuple[str, str]:
    """One ``--set KEY=VALUE`` item -> (KEY, VALUE text) (:func:`convcorr.core.options.split_key_value`)."""
    from .core.options import split_key_value

    try:
        return split_key_value(item)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from exc


def parse_set_options(items: tuple[str, ...]) -> dict:
    """``--set`` items -> {key: :class:`convcorr.experiments.CliValue`} (:func:`convcorr.core.options.parse_value`
    + raw text), to be checked against each option's type by :func:`convcorr.experiments.resolve_conf`."""
    from .core.options import parse_value
    from .experiments import CliValue

    return {k: CliValue(parse_value(v), v) for k, v in map(_split_set, items)}


def parallel_options(f):
    """click decorator: ``--workers``, ``--executor``, ``--ray-address``, ``--resume`` (the parallel options every
    experiment has, :mod:`convcorr.experiments.workers`), passed to the command as ``parallel`` (a dict of the
    options given)."""
    from .runtime.parallel import EXECUTORS

    opts = [
        click.option("--workers", type=click.IntRange(1, None), default=None,
                     help="Processes (or Ray tasks) running the independent units of work; one thread each."),
        click.option("--executor", type=click.Choice(EXECUTORS), default=None,
                     help="serial, process (local pool; the default for --workers > 1) or ray."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="Ray cluster for --executor ray (default: start a local cluster)."),
        click.option("--resume", is_flag=True, default=None,
                     help="Keep per-unit results under OUT/tasks/ and reuse them when the same run is repeated."),
    ]

    def wrapper(*args, workers=None, executor=None, ray_address=None, resume=None, **kw):
        given = {"workers": workers, "executor": executor, "ray_address": ray_address, "resume": resume or None}
        return f(*args, parallel={k: v for k, v in given.items() if v is not None}, **kw)

    import functools

    wrapper = functools.wraps(f)(wrapper)
    for o in reversed(opts):
        wrapper = o(wrapper)
    return wrapper


def merge_parallel(overrides: dict, parallel: dict) -> dict:
    """``--set`` overrides plus the parallel flags; an option given both ways is a usage error."""
    twice = sorted(set(overrides) & set(parallel))
    if twice:
        raise click.UsageError(f"option(s) {twice} given both as a flag and with --set; give each once")
    return {**overrides, **parallel}


def check_backbone(ctx, param, value):
    """click callback: the name must be a registered backbone (one-line error listing them); names with a colon
    (plug-in families such as ``timm:<model>``) are left to :func:`convcorr.backbones.get_backbone`."""
    from .backbones import BACKBONES

    if value is not None and value not in BACKBONES and ":" not in value:
        raise click.BadParameter(str(BACKBONES.unknown(value)), ctx=ctx, param=param)
    return value


class ExperimentName(click.Choice):
    """click type of an experiment name: the registered experiments (listed when first needed, so that
    ``convcorr --help`` does not import them) and "all"; an unknown name names the closest ones."""

    name = "experiment"

    def __init__(self) -> None:
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        from .experiments import EXPERIMENTS

        return tuple(sorted(EXPERIMENTS.names())) + ("all",)

    def convert(self, value, param, ctx):
        from .experiments import EXPERIMENTS

        if value == "all" or value in EXPERIMENTS:
            return value
        self.fail(str(EXPERIMENTS.unknown(value)), param, ctx)


# ------------------------------------------------------------------------------------------------------ commands
@click.group(cls=ConvcorrGroup)
@click.version_option(package_name="convcorr")
@click.option("--debug", is_flag=True, help="Show tracebacks for user errors too (internal errors always show one).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Do convnets learn correspondence? Reproduce and extend Long, Zhang & Darrell (NIPS 2014)."""
    ctx.meta["convcorr.debug"] = debug


@cli.command("rf")
@click.option("--backbone", default="alexnet", show_default=True, callback=check_backbone,
              help="Backbone name (see `convcorr backbones`).")
@click.option("--input-size", default=None, type=click.IntRange(1, 4096),
              help="Square input side in pixels (default: the backbone's).")
def rf_cmd(backbone: str, input_size: int | None) -> None:
    """Print receptive-field size, stride and centre offset of every layer (paper Table 1)."""
    from .backbones import get_backbone
    from .numerics.rf.compose import format_rf_table

    try:
        bb = get_backbone(backbone, pretrained=False)
    except (KeyError, ImportError) as exc:
        raise click.BadParameter(str(exc.args[0] if exc.args else exc), param_hint="--backbone") from exc
    try:
        table = format_rf_table(bb, input_size=input_size)
    except RuntimeError as exc:  # e.g. kernel larger than the input
        raise ConfigError(f"--input-size {input_size} is too small for {backbone} ({_one_line(exc)})") from exc
    click.echo(table)


@cli.command("backbones")
@click.option("--input-size", default=None, type=int,
              help="Square input side for the rf table (default: each backbone's own input size).")
@click.option("--with", "extra", multiple=True, metavar="SPEC",
              help="Also describe a library model, e.g. --with timm:resnet50 (random weights; repeatable).")
def backbones_cmd(input_size: int | None, extra: tuple[str, ...]) -> None:
    """List backbones: layers with rf size / stride / offset, and whether pretrained weights are on this machine."""
    from .backbones import BACKBONES, ZOO_EXAMPLES, get_backbone, offline_weights
    from .numerics.rf.compose import format_rf_table

    for name in BACKBONES.names() + list(extra):
        if name in BACKBONES:
            st = offline_weights(name)
            status = f"pretrained weights {'available: ' if st else 'NOT available: '}{st.where}"
        else:
            status = "library model (weights download with a network; tables use random weights)"
        try:
            bb = get_backbone(name, pretrained=False, device="cpu")
        except (KeyError, ImportError) as exc:
            raise click.BadParameter(str(exc.args[0] if exc.args else exc), param_hint="--with") from exc
        click.echo(f"== {name}: {status}")
        click.echo(format_rf_table(bb, input_size=input_size))
        click.echo("")
    click.echo("Any timm or torchvision model also works as 'timm:<model>' or 'torchvision:<model>' (e.g. "
               f"{', '.join(ZOO_EXAMPLES[:3])}, timm:vit_small_patch14_dinov2.lvd142m); layers are named after the "
               "model's own stages / blocks. Describe one with --with SPEC. Pretrained weights for these download "
               "through torchvision (hash-checked) or the Hugging Face hub and need a network the first time.")


@cli.command("experiment")
@click.argument("name", type=ExperimentName())
@click.option("--out", "out_dir", default=None, type=click.Path(path_type=Path),
              help="Output folder (default: runs/NAME).")
@click.option("--preset", default="default", show_default=True, help="Named configuration preset.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config option (repeatable); KEY.SUB=VALUE sets one entry of a dict option, e.g. "
                   "matcher_options.flow.beta=0.01.")
@click.option("--force", is_flag=True, help="Write into a non-empty folder that is not a report of this experiment, "
              "or through a symlinked folder.")
@click.option("--list", "list_options", is_flag=True,
              help="Print the presets and every option (type, default, one-line help) and exit.")
@click.option("--print-config", is_flag=True,
              help="Print the resolved configuration (JSON) as it would run, with --preset and --set, and exit.")
@parallel_options
def experiment_cmd(name: str, out_dir: Path | None, preset: str, sets: tuple[str, ...], force: bool,
                   list_options: bool, print_config: bool, parallel: dict) -> None:
    """Run a named experiment (a paper table) and write report.md, results.json and figures.

    The experiment is one of those in the usage line (built-in or installed plug-ins), or `all`, which runs every
    experiment into subfolders of --out and writes an index report.md. Options and presets of every experiment
    are checked before any work starts.

    `--list` shows the presets and options of NAME (type, default, one-line help); `--print-config` prints the
    configuration NAME would run with (the preset plus every --set) as JSON, without running.
    """
    import json

    from . import experiments

    names = experiments.EXPERIMENTS.names() if name == "all" else [name]
    if list_options:
        click.echo("\n".join(experiments.describe(n) for n in names), nl=False)
        return
    overrides = merge_parallel(parse_set_options(sets), parallel)
    if print_config:
        if name == "all":
            plan = experiments.plan_all(preset, overrides)
            doc = {n: {"preset": p, "config": c} for n, (p, c) in plan.items()}
        else:
            doc = experiments.resolve_conf(name, preset, overrides)
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    if name == "all":
        path = run_all(out_dir or Path("report"), preset, overrides, force=force)
    else:
        path = experiments.run(name, out_dir or Path("runs") / name, preset, overrides, force=force)
    click.echo(f"report written to {path}")



def headline_table(markdown: str) -> str:
    """The headline of a report for the index: the first table of a section with 95% intervals (else the first
    results table outside Configuration/Protocol/Data), plus the paired-differences table when there is one."""
    tables: list[tuple[str, str]] = []
    heading, skip = "", True
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            heading = line[3:]
            skip = heading in ("Configuration", "Protocol") or heading.startswith("Data")
            seen = False
        elif line.startswith("|") and not skip and not seen:
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            tables.append((heading, "\n".join(lines[i:j])))
            seen, i = True, j
            continue
        i += 1
    if not tables:
        return "_(no table)_"
    main = next((t for t in tables if "95%" in t[0]), tables[0])
    out = [main] + [t for t in tables if t[0].startswith("Paired differences") and t is not main][:1]
    return "\n\n".join(f"_{h}_\n\n{t}" for h, t in out)


def run_all(out_dir: Path, preset: str = "default", overrides: dict | None = None, force: bool = False) -> Path:
    """Run every experiment (each with the given preset when it has one) and index the reports.

    Every experiment's preset, option names and option types are validated, and the output folders checked,
    before the first experiment starts.
    """
    from . import experiments
    from .runtime.io import atomic_write_text
    from .viz.report import prepare_out_dir

    plan = experiments.plan_all(preset, overrides)
    out_dir = prepare_out_dir(Path(out_dir), "all", force=force)
    for name in plan:
        sub = out_dir / name
        if sub.is_symlink() or sub.exists():
            prepare_out_dir(sub, name, force=force)  # refuses a foreign folder before any work
    lines = ["# convcorr report", "",
             "Every experiment of the paper run on the embedded default data (real annotated photos from the shared "
             "folder plus synthetic warps with exact keypoints); the headline table of each report is repeated "
             "here, follow the links for protocols, figures and all numbers.", ""]
    for name, (p, conf) in plan.items():
        click.echo(f"== {name} (preset {p})", err=True)
        path = experiments.run(name, out_dir / name, p, conf=conf, force=force)
        text = path.read_text()
        first = text.split("\n", 1)[0].lstrip("# ")
        lines += [f"## [{name}: {first}]({name}/report.md)", "", headline_table(text), ""]
    return atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")


@cli.command("visualize")
@click.option("--out", "out_dir", default=Path("runs/visualize"), type=click.Path(path_type=Path), show_default=True)
@click.option("--preset", default="default", show_default=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--force", is_flag=True, help="Write into a non-empty folder that is not a visualize report.")
@parallel_options
def visualize_cmd(out_dir: Path, preset: str, sets: tuple[str, ...], force: bool, parallel: dict) -> None:
    """Feature visualisation (paper Figures 1 and 2): nearest-neighbour reconstructions and average rfs (PNGs)."""
    from . import experiments

    path = experiments.run("visualize", out_dir, preset, merge_parallel(parse_set_options(sets), parallel),
                           force=force)
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
@click.option("--force", is_flag=True, help="Write into a non-empty folder that is not an align result.")
def align_cmd(image_a: Path, image_b: Path, features: str, matcher: str, sets: tuple[str, ...], out_dir: Path,
              points_path: Path | None, grid_n: int, max_side: int, one_way: bool, force: bool) -> None:
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

    from .core.images import load_image
    from .correspondence import correspond
    from .core.options import parse_value
    from .viz.flow import save_flow_figure, save_pairs_figure

    options = {k: parse_value(v) for k, v in map(_split_set, sets)}
    img_a, img_b = load_image(image_a), load_image(image_b)
    pts_a = _align_points(points_path, img_a.shape[:2]) if points_path else _grid_points(img_a.shape[:2], grid_n)
    from .features.base import get_features
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
    import io

    from .runtime.io import atomic_write_bytes, atomic_write_text
    from .viz.report import prepare_out_dir

    prepare_out_dir(out_dir, "align", force=force)
    png = io.BytesIO()
    Image.fromarray(c.warp(img_b)).save(png, format="PNG")
    atomic_write_bytes(out_dir / "warped.png", png.getvalue())
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
    atomic_write_text(out_dir / "correspondences.json", json.dumps(doc, indent=1, default=str))
    click.echo(f"wrote warped.png, pairs.png, flow.png, correspondences.json to {out_dir}")


def main() -> None:
    """Entry point (errors are handled by :class:`ConvcorrGroup`)."""
    cli(standalone_mode=True)


if __name__ == "__main__":
    main()
