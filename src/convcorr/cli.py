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

    try:
        bb = get_backbone(backbone, pretrained=False)
    except (KeyError, ImportError) as exc:
        raise click.BadParameter(str(exc.args[0] if exc.args else exc), param_hint="--backbone") from exc
    click.echo(format_rf_table(bb, input_size=input_size))


@cli.command("backbones")
@click.option("--input-size", default=None, type=int,
              help="Square input side for the rf table (default: each backbone's own input size).")
@click.option("--with", "extra", multiple=True, metavar="SPEC",
              help="Also describe a library model, e.g. --with timm:resnet50 (random weights; repeatable).")
def backbones_cmd(input_size: int | None, extra: tuple[str, ...]) -> None:
    """List backbones: layers with rf size / stride / offset, and whether pretrained weights are on this machine."""
    from .backbones import BACKBONES, ZOO_EXAMPLES, get_backbone
    from .receptive_field import format_rf_table

    for name in list(BACKBONES) + list(extra):
        if name in BACKBONES:
            ok, where = BACKBONES[name].pretrained_status()
            status = f"pretrained weights {'available: ' if ok else 'NOT available: '}{where}"
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


def main() -> None:
    try:
        cli(standalone_mode=True)
    except (FileNotFoundError, DataError) as exc:  # missing weights / bad data: one clear line, no traceback
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
