"""Command-line interface: ``convcorr --help``.

Errors: every command runs inside :class:`ConvcorrGroup`, which turns user errors (bad data, options, paths:
:class:`convcorr.types.UserError`, missing files, permissions, a full disk, ...) into one line ``Error: ...``
with exit status 2, and keeps internal errors (bugs) visible: their traceback is printed, exit status 1.
``convcorr --debug ...`` shows the traceback of user errors too. New commands get this for free.
"""
from __future__ import annotations

import ast
import errno
import traceback
from pathlib import Path

import click

from .experiments import EXPERIMENTS
from .types import ConfigError, UserError

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
_WORDS = {"true": True, "false": False, "none": None, "null": None}


def _parse_value(v: str):
    if v.strip().lower() in _WORDS:
        return _WORDS[v.strip().lower()]
    try:
        return ast.literal_eval(v.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return v


def _split_set(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
    k, v = item.split("=", 1)
    if not k.strip():
        raise click.BadParameter(f"{item!r}: empty KEY in KEY=VALUE", param_hint="--set")
    return k.strip(), v


def _parse_overrides(items: tuple[str, ...]) -> dict:
    """``--set KEY=VALUE`` items -> {key: value}: Python literals, true/false/none, else the text itself."""
    return {k: _parse_value(v) for k, v in map(_split_set, items)}


def parse_set_options(items: tuple[str, ...]) -> dict:
    """``--set`` items -> {key: :class:`convcorr.experiments.CliValue`} (literal reading + raw text), to be checked
    against each option's type by :func:`convcorr.experiments.resolve_conf`."""
    from .experiments import CliValue

    return {k: CliValue(_parse_value(v), v) for k, v in map(_split_set, items)}


def check_backbone(ctx, param, value):
    """click callback: the name must be a registered backbone (one-line error listing them); names with a colon
    (plug-in families such as ``timm:<model>``) are left to :func:`convcorr.backbones.get_backbone`."""
    from .backbones import BACKBONES

    if value is not None and value not in BACKBONES and ":" not in value:
        raise click.BadParameter(f"unknown backbone {value!r}; available: {', '.join(sorted(BACKBONES))}",
                                 ctx=ctx, param=param)
    return value


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
    from .receptive_field import format_rf_table

    bb = get_backbone(backbone, pretrained=False)
    try:
        table = format_rf_table(bb, input_size=input_size)
    except RuntimeError as exc:  # e.g. kernel larger than the input
        raise ConfigError(f"--input-size {input_size} is too small for {backbone} ({_one_line(exc)})") from exc
    click.echo(table)


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
@click.option("--force", is_flag=True, help="Write into a non-empty folder that is not a report of this experiment, "
              "or through a symlinked folder.")
def experiment_cmd(name: str, out_dir: Path | None, preset: str, sets: tuple[str, ...], force: bool) -> None:
    """Run a named experiment (a paper table) and write report.md, results.json and figures.

    `all` runs every experiment into subfolders of --out and writes an index report.md. Options and presets of
    every experiment are checked before any work starts.
    """
    from . import experiments

    overrides = parse_set_options(sets)
    if name == "all":
        path = run_all(out_dir or Path("report"), preset, overrides, force=force)
    else:
        path = experiments.run(name, out_dir or Path("runs") / name, preset, overrides, force=force)
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


def run_all(out_dir: Path, preset: str = "default", overrides: dict | None = None, force: bool = False) -> Path:
    """Run every experiment (each with the given preset when it has one) and index the reports.

    Every experiment's preset, option names and option types are validated, and the output folders checked,
    before the first experiment starts.
    """
    from . import experiments
    from .report import atomic_write_text, prepare_out_dir

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
def visualize_cmd(out_dir: Path, preset: str, sets: tuple[str, ...], force: bool) -> None:
    """Feature visualisation (paper Figures 1 and 2): nearest-neighbour reconstructions and average rfs (PNGs)."""
    from . import experiments

    path = experiments.run("visualize", out_dir, preset, parse_set_options(sets), force=force)
    click.echo(f"report written to {path}")


def main() -> None:
    """Entry point (errors are handled by :class:`ConvcorrGroup`)."""
    cli(standalone_mode=True)


if __name__ == "__main__":
    main()
