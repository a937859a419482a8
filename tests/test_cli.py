from click.testing import CliRunner

from convcorr.cli import cli, parse_set_options


def test_parse_set_options_types():
    o = parse_set_options(("a=3", "b=0.5", "c=[1, 2]", "d=true", "e=False", "f=None", "g=conv4", "h=/data/voc",
                           "i=x=y"))
    assert {k: v.parsed for k, v in o.items()} == {"a": 3, "b": 0.5, "c": [1, 2], "d": True, "e": False, "f": None,
                                                   "g": "conv4", "h": "/data/voc", "i": "x=y"}
    assert o["c"].raw == "[1, 2]"


def test_cli_rf_and_errors():
    r = CliRunner().invoke(cli, ["rf", "--backbone", "alexnet"])
    assert r.exit_code == 0 and "conv4" in r.output and "131" in r.output
    r = CliRunner().invoke(cli, ["experiment", "table1", "--set", "nope=1"])
    assert r.exit_code != 0 and "no option 'nope'" in r.output
    r = CliRunner().invoke(cli, ["experiment", "table1", "--set", "novalue"])
    assert r.exit_code != 0 and "KEY=VALUE" in r.output
    r = CliRunner().invoke(cli, ["backbones"])
    assert "alexnet" in r.output and "efficientnet_lite0" in r.output


def test_headline_table():
    from convcorr.cli import headline_table

    md = "# T\n\n## Configuration\n\n| a | b |\n|---|---|\n\n## Results\n\ntext\n\n| m | v |\n|---|---|\n| x | 1 |\n\nafter"
    assert headline_table(md) == "_Results_\n\n| m | v |\n|---|---|\n| x | 1 |"


def test_headline_table_prefers_intervals_and_adds_paired_differences():
    from convcorr.cli import headline_table

    md = ("# T\n\n## Data (real photos)\n\n| c | n |\n|---|---|\n\n## Points\n\n| m | v |\n|---|---|\n| x | 1 |\n\n"
          "## PCK with 95% intervals\n\n| m | v |\n|---|---|\n| x | 1 [0, 2] |\n\n## Paired differences (same)\n\n"
          "| d | v |\n|---|---|\n| a - b | +1 [-1, 2] |\n")
    out = headline_table(md)
    assert out.startswith("_PCK with 95% intervals_") and "| x | 1 [0, 2] |" in out
    assert "_Paired differences (same)_" in out and "| c | n |" not in out and "| x | 1 |" not in out


# ------------------------------------------------------------------------------------------- error policy (#10)
import click  # noqa: E402
import pytest  # noqa: E402

from convcorr import experiments  # noqa: E402
from convcorr.viz.report import MARKER  # noqa: E402


def _run(args):
    return CliRunner().invoke(cli, args)


def _one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    err = [l for l in r.output.splitlines() if l.startswith("Error:")]
    assert len(err) == 1, r.output
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.fixture
def fast_experiments(monkeypatch):
    """Every experiment's main replaced by a stub that records its conf and writes a tiny report."""
    calls = []

    def fake_main(name):
        def main(conf, out_dir):
            from convcorr.viz.report import Report

            calls.append((name, dict(conf)))
            r = Report(out_dir, f"{name} title", conf)
            r.section("Results", "| a |\n|---|\n| 1 |\n")
            return r.save()
        return main

    for n in experiments.EXPERIMENTS:
        monkeypatch.setattr(experiments.get_experiment(n), "main", fake_main(n))
    return calls


def test_user_errors_are_one_line_with_status_2(tmp_path):
    _one_line_error(_run(["rf", "--backbone", "vgg99"]), "unknown backbone 'vgg99'", "alexnet")
    _one_line_error(_run(["rf", "--input-size", "5"]), "--input-size 5 is too small for alexnet")
    _one_line_error(_run(["rf", "--input-size", "-3"]), "--input-size")
    _one_line_error(_run(["rf", "--input-size", "abc"]), "--input-size")
    _one_line_error(_run(["experiment", "table2", "--set", "n_queries=abc"]),
                    "experiment 'table2'", "'n_queries' expects int or None", "'abc'")
    _one_line_error(_run(["experiment", "table3", "--set", "layers=conv4"]),
                    "'layers' expects list", "layers='[\"conv4\"]'")
    _one_line_error(_run(["experiment", "table2", "--set", "features=alexnet:conv4"]), "'features' expects list")
    _one_line_error(_run(["experiment", "table3", "--set", "layers=[4]"]), "list of str")
    _one_line_error(_run(["experiment", "table2", "--set", "strength=true"]), "'strength' expects float")
    _one_line_error(_run(["experiment", "table2", "--set", "matcher_options.flow.beta=true"]),
                    "'matcher_options.flow.beta' expects float")
    _one_line_error(_run(["experiment", "table2", "--set", "n_warps=2"]),
                    "experiment 'table2': option 'n_warps' is now 'n_synthetic' (--set n_synthetic=2)")
    _one_line_error(_run(["experiment", "table2", "--set", "n_querys=2"]), "did you mean 'n_queries'")
    _one_line_error(_run(["experiment", "tabel2"]), "unknown experiment 'tabel2'; did you mean 'table2'")
    _one_line_error(_run(["experiment", "table3", "--set", "nope=1"]), "experiment 'table3' has no option 'nope'")
    _one_line_error(_run(["experiment", "table3", "--preset", "strict"]), "experiment 'table3' has no preset")
    _one_line_error(_run(["experiment", "table1", "--set", "=3"]), "empty KEY")
    (tmp_path / "afile").write_text("x")
    _one_line_error(_run(["experiment", "table1", "--out", str(tmp_path / "afile" / "out")]), "afile is a file")


def test_errors_name_the_right_experiment(tmp_path):
    # table3 and table4 share table2's data pool: their errors must say table3 / table4
    for name in ("table3", "table4"):
        line = _one_line_error(_run(["experiment", name, "--preset", "paper", "--out", str(tmp_path / name)]),
                               f"{name}: dataset 'berkeley' needs --set root=")
        assert "table2" not in line


def test_set_values_are_typed_and_converted(fast_experiments, tmp_path):
    r = _run(["experiment", "table2", "--out", str(tmp_path / "t2"), "--set", "matcher_options.flow.beta=1",
              "--set", "root=2011", "--set", "n_queries=none", "--set", "features=['sift']",
              "--set", "matcher_options.flow.coarse_to_fine=true", "--set", "strength=2"])
    assert r.exit_code == 0, r.output
    (name, conf), = fast_experiments
    flow = conf["matcher_options"]["flow"]
    assert name == "table2" and flow["beta"] == 1.0 and isinstance(flow["beta"], float)
    assert conf["root"] == "2011" and conf["n_queries"] is None and conf["features"] == ["sift"]
    assert flow["coarse_to_fine"] is True and flow["n_iter"] == 8  # the other flow options kept
    assert conf["strength"] == 2.0 and isinstance(conf["strength"], float)


def test_all_validates_every_experiment_before_any_work(fast_experiments, tmp_path):
    out = tmp_path / "rep"
    _one_line_error(_run(["experiment", "all", "--out", str(out), "--set", "nope=1"]), "no experiment has option")
    _one_line_error(_run(["experiment", "all", "--out", str(out), "--preset", "nope"]), "no experiment has a preset")
    # n_synthetic is an int option of table2 and visualize: a bad value is caught before table1 runs
    _one_line_error(_run(["experiment", "all", "--out", str(out), "--set", "n_synthetic=x"]),
                    "'n_synthetic' expects int")
    _one_line_error(_run(["experiment", "all", "--out", str(out), "--set", "n_warps=1"]), "is now 'n_synthetic'")
    assert fast_experiments == [] and not out.exists()
    r = _run(["experiment", "all", "--out", str(out), "--set", "seed=3", "--preset", "paper"])
    assert r.exit_code == 0, r.output
    assert [n for n, _ in fast_experiments] == list(experiments.EXPERIMENTS)
    assert all(c["seed"] == 3 for n, c in fast_experiments if n != "table1")
    assert (out / "report.md").is_file() and (out / "table2" / MARKER).is_file()
    # rerunning into the same report folder is allowed; a foreign subfolder is refused before any work
    assert _run(["experiment", "all", "--out", str(out)]).exit_code == 0
    n = len(fast_experiments)
    (out / "table4" / MARKER).unlink()
    _one_line_error(_run(["experiment", "all", "--out", str(out)]), "table4", "not a convcorr report")
    assert len(fast_experiments) == n


def test_out_folder_policy_and_force(fast_experiments, tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("x")
    _one_line_error(_run(["experiment", "table2", "--out", str(foreign)]), "not a convcorr report", "--force")
    assert fast_experiments == []
    assert _run(["experiment", "table2", "--out", str(foreign), "--force"]).exit_code == 0
    assert (foreign / "chapter1.tex").read_text() == "x"
    _one_line_error(_run(["experiment", "table3", "--out", str(foreign)]), "holds a report of 'table2'")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    _one_line_error(_run(["visualize", "--out", str(tmp_path / "link")]), "symlink")


def test_internal_errors_keep_their_traceback(monkeypatch, tmp_path):
    def bug(*a, **k):
        return 1 / 0

    monkeypatch.setattr(experiments.get_experiment("table1"), "main", bug)
    r = _run(["experiment", "table1", "--out", str(tmp_path / "t1")])
    assert r.exit_code == 1
    assert "Traceback" in r.output and "ZeroDivisionError" in r.output and "bug in convcorr" in r.output


def test_debug_shows_tracebacks_of_user_errors():
    r = _run(["--debug", "experiment", "table3", "--set", "nope=1"])
    assert r.exit_code == 2 and "Traceback" in r.output and "no option 'nope'" in r.output


def test_new_commands_get_the_error_policy_for_free():
    from convcorr.core.errors import DataError

    @cli.command("zz-probe")
    def probe():
        raise DataError("/data/x.json: malformed JSON")

    try:
        _one_line_error(_run(["zz-probe"]), "/data/x.json: malformed JSON")
    finally:
        cli.commands.pop("zz-probe")
    assert isinstance(cli, click.Group)


def test_values_that_cannot_work_are_refused_before_any_work(fast_experiments):
    cases = [(["table3", "--set", "backbone=vgg"], "option 'backbone' names an unknown backbone 'vgg'"),
             (["table3", "--set", "layers=['conv9']"], "option 'layers' names layer(s) ['conv9']"),
             (["table3", "--set", "backbone=efficientnet_lite0"], "that efficientnet_lite0 does not have"),
             (["table2", "--set", "features=['alexnet:conv9']"], "unusable feature spec 'alexnet:conv9'"),
             (["table2", "--set", "features=['vgg:conv1']"], "unusable feature spec 'vgg:conv1'"),
             (["table2", "--set", "matchers=['foo']"], "unknown matcher(s) ['foo']"),
             (["table2", "--set", "baselines=['align']"], "unknown baseline(s) ['align']"),
             (["table2", "--set", "categories=['dog']"], "unknown embedded categories ['dog']"),
             (["table2", "--set", "n_queries=-1"], "option 'n_queries' must be >= 0"),
             (["table2", "--set", "matcher_options.flow.beta=1e999"], "option 'matcher_options' must be finite"),
             (["table2", "--set", "matcher_options.flow.radius=2", "--set", "matcher_options.flow.radius_px=9"],
              "give radius (cells) or radius_px (pixels), not both"),
             (["table1", "--set", "backbones=['vgg']"], "unknown backbone 'vgg'"),
             (["pairs", "--set", "pair_by=foo"], "option 'pair_by' must be one of"),
             (["pairs", "--set", "dataset=cooco"], "unknown data set 'cooco'; did you mean 'coco'"),
             (["visualize", "--set", "reference_layer=conv9"], "option 'reference_layer' names layer(s) ['conv9']")]
    for args, msg in cases:
        _one_line_error(_run(["experiment", *args]), f"experiment '{args[0]}'", msg)
    assert fast_experiments == []
    # valid combinations pass
    conf = experiments.resolve_conf("table3", "default", {"backbone": "efficientnet_lite0", "layers": ["stage3"]})
    assert conf["layers"] == ["stage3"]


def test_align_refuses_a_foreign_out_folder(tmp_path, shared):
    a = shared / "keypoints" / "faces-ibug68"
    img = next(p for p in sorted(a.iterdir()) if p.suffix in (".jpg", ".png"))
    (tmp_path / "notes.txt").write_text("mine")
    _one_line_error(_run(["align", str(img), str(img), "--out", str(tmp_path)]), "not a convcorr report", "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ------------------------------------------------------------------------------------------ parallel flags (#11)
def test_parallel_flags_become_the_experiment_options(monkeypatch, tmp_path):
    from convcorr import experiments

    seen = {}
    monkeypatch.setattr(experiments, "run", lambda name, out, preset, overrides, force=False: seen.update(
        name=name, overrides=overrides) or tmp_path / "report.md")
    r = CliRunner().invoke(cli, ["experiment", "pairs", "--workers", "3", "--executor", "ray", "--ray-address",
                                 "10.0.0.1:6379", "--resume", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert seen["overrides"] == {"workers": 3, "executor": "ray", "ray_address": "10.0.0.1:6379", "resume": True}
    r = CliRunner().invoke(cli, ["experiment", "pairs", "--out", str(tmp_path)])
    assert r.exit_code == 0 and seen["overrides"] == {}  # nothing given: the presets' values
    r = CliRunner().invoke(cli, ["visualize", "--workers", "2", "--out", str(tmp_path)])
    assert r.exit_code == 0 and seen["name"] == "visualize" and seen["overrides"] == {"workers": 2}


def test_parallel_flags_are_checked_before_any_work(tmp_path):
    r = CliRunner().invoke(cli, ["experiment", "table2", "--workers", "0", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "--workers" in r.output
    r = CliRunner().invoke(cli, ["experiment", "table2", "--executor", "dask", "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "dask" in r.output
    r = CliRunner().invoke(cli, ["experiment", "table2", "--workers", "2", "--set", "workers=3",
                                 "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "given both" in r.output
    for bad, msg in (("workers=0", "must be >= 1"), ("executor='dask'", "must be one of"),
                     ("workers=1.5", "expects int")):
        r = CliRunner().invoke(cli, ["experiment", "table2", "--set", bad, "--out", str(tmp_path / "d")])
        assert r.exit_code == 2 and msg in r.output, (bad, r.output)
    assert not any((tmp_path / d).exists() for d in "abcd")  # refused before the output folder was made


def test_every_experiment_takes_the_parallel_options():
    from convcorr.experiments import EXPERIMENTS, get_experiment
    from convcorr.experiments.workers import PARALLEL_OPTIONS

    for name in EXPERIMENTS:
        for preset, conf in get_experiment(name).CONFIGS.items():
            assert set(PARALLEL_OPTIONS) <= set(conf), (name, preset)


# ------------------------------------------------------------------------------- --list and --print-config (#15)
def test_list_shows_presets_and_every_option_with_its_help(fast_experiments):
    for name in experiments.EXPERIMENTS:
        r = _run(["experiment", name, "--list"])
        assert r.exit_code == 0, r.output
        assert r.output == experiments.describe(name)
        mod = experiments.get_experiment(name)
        assert all(p in r.output for p in mod.CONFIGS)
        for key, o in experiments.options(name).items():
            assert f"  {key} : {o.type_name} = " in r.output and o.help in r.output, (name, key)
    r = _run(["experiment", "all", "--list"])
    assert r.exit_code == 0 and all(f"{n}: " in r.output for n in experiments.EXPERIMENTS)
    assert fast_experiments == []  # nothing ran


def test_print_config_is_the_resolved_configuration(fast_experiments, tmp_path):
    import json

    sets = ["--set", "n_synthetic=1", "--set", "matcher_options.flow.n_iter=3", "--workers", "2"]
    r = _run(["experiment", "table2", "--preset", "strict", "--print-config", "--out", str(tmp_path / "o")] + sets)
    assert r.exit_code == 0, r.output
    want = experiments.resolve_conf("table2", "strict", {"n_synthetic": 1, "matcher_options.flow.n_iter": 3,
                                                         "workers": 2})
    assert json.loads(r.output) == want and want["matcher_options"]["flow"]["n_iter"] == 3
    r = _run(["experiment", "all", "--print-config", "--preset", "paper", "--set", "seed=3"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc == {n: {"preset": p, "config": c} for n, (p, c) in experiments.plan_all("paper", {"seed": 3}).items()}
    assert fast_experiments == [] and not (tmp_path / "o").exists()  # nothing ran, no folder made
    _one_line_error(_run(["experiment", "table2", "--print-config", "--set", "size=3"]), "is now 'input_size'")


def test_experiment_help_mentions_list_and_print_config():
    r = _run(["experiment", "--help"])
    assert r.exit_code == 0 and "--list" in r.output and "--print-config" in r.output
    flat = "".join(r.output.split())  # the usage line lists the experiments (click wraps it anywhere)
    assert all(n in flat for n in experiments.EXPERIMENTS)
