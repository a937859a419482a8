"""Reports: atomic writes, marked output folders, refusal of foreign folders and symlinks."""
import json
import os

import numpy as np
import pytest

from convcorr.core.errors import ConfigError
from convcorr.runtime.io import atomic_write_text
from convcorr.viz import report as rep_mod
from convcorr.viz.report import MARKER, Report, markdown_table, prepare_out_dir, read_marker


def test_save_writes_report_results_and_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = prepare_out_dir(tmp_path / "r", "table9")
    r = Report(out, "Table 9", {"a": 1})
    r.section("Results", markdown_table([{"m": "x", "v": 0.5}]))
    fig = plt.figure()
    r.figure(fig, "f.png", "a figure")
    r.results["pck"] = {"0.1": np.float32(0.25), "bad": float("nan")}
    path = r.save()
    assert path == out / "report.md" and "| x | 0.500 |" in path.read_text()
    d = json.loads((out / "results.json").read_text())
    assert d["results"]["pck"] == {"0.1": 0.25, "bad": None} and d["figures"] == ["f.png"]
    assert (out / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert read_marker(out)["experiment"] == "table9"
    assert sorted(os.listdir(out)) == sorted([MARKER, "f.png", "report.md", "results.json"])  # no temporaries


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "results.json"
    atomic_write_text(p, '{"old": 1}')

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rep_mod.os, "fsync", full_disk)  # the write fails half-way (disk full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(p, '{"new": 2}' * 1000)
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_write_replaces_a_symlink_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = prepare_out_dir(tmp_path / "r", "t")
    (out / "report.md").symlink_to(victim)
    atomic_write_text(out / "report.md", "new report")
    assert victim.read_text() == "precious"
    assert not (out / "report.md").is_symlink() and (out / "report.md").read_text() == "new report"


def test_prepare_out_dir_policy(tmp_path):
    # new and empty folders are fine and get marked
    assert read_marker(prepare_out_dir(tmp_path / "new" / "deep", "table2")) ["experiment"] == "table2"
    (tmp_path / "empty").mkdir()
    prepare_out_dir(tmp_path / "empty", "table2")
    # a previous report of the same experiment is reused
    prepare_out_dir(tmp_path / "empty", "table2")
    # another experiment's report is refused
    with pytest.raises(ConfigError, match="holds a report of 'table2', not 'table3'"):
        prepare_out_dir(tmp_path / "empty", "table3")
    # a foreign non-empty folder is refused; --force allows it
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="not empty and is not a convcorr report.*--force"):
        prepare_out_dir(tmp_path / "mine", "table2")
    prepare_out_dir(tmp_path / "mine", "table2", force=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "x"
    # a symlinked folder is refused even when empty
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(ConfigError, match="symlink"):
        prepare_out_dir(tmp_path / "link", "table2")
    assert not os.listdir(tmp_path / "target")
    prepare_out_dir(tmp_path / "link", "table2", force=True)
    # a path under a file, or a file in place of the folder: always refused
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="afile is a file"):
        prepare_out_dir(tmp_path / "afile" / "out", "table2", force=True)
    with pytest.raises(ConfigError, match="not a folder"):
        prepare_out_dir(tmp_path / "afile", "table2", force=True)
    # a corrupt marker does not count as a report
    (tmp_path / "empty" / MARKER).write_text("{broken")
    with pytest.raises(ConfigError, match="not a convcorr report"):
        prepare_out_dir(tmp_path / "empty", "table2")


def test_marker_module_constant():
    assert rep_mod.MARKER.startswith(".")


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.md", "x")
        assert (os.stat(tmp_path / "a.md").st_mode & 0o777) == 0o644  # not mkstemp's 0600
    finally:
        os.umask(old)


def test_markdown_table_escapes_pipes_in_cells():
    from convcorr.viz.report import markdown_table

    md = markdown_table([{"fit": "rho(a, b | c)", "v": 0.5}])
    row = md.splitlines()[2]
    assert row == "| rho(a, b \\| c) | 0.500 |"
    # every row has the same number of unescaped separators as the header
    assert all(line.replace("\\|", "").count("|") == 3 for line in md.splitlines())


def test_results_record_provenance_and_report_shows_it(tmp_path, monkeypatch):
    import convcorr

    monkeypatch.setattr("sys.argv", ["/venv/bin/convcorr", "experiment", "table9", "--set", "k=`3`"])
    out = prepare_out_dir(tmp_path / "r", "table9")
    Report(out, "Table 9", {"k": 3}).save()
    d = json.loads((out / "results.json").read_text())
    meta = d["meta"]
    assert d["config"] == {"k": 3}
    assert {"title", "created", "python", "machine", "torch", "device"} <= set(meta)  # the keys of older reports
    assert meta["convcorr"] == convcorr.__version__
    assert meta["command"] == ["/venv/bin/convcorr", "experiment", "table9", "--set", "k=`3`"]
    assert meta["device"] in ("cpu", "cuda") and "gpu" in meta and meta["platform"]
    assert meta["versions"]["numpy"] == np.__version__ and meta["torch"] == meta["versions"]["torch"]
    assert meta["git"] is None or set(meta["git"]) == {"commit", "dirty"}
    line = (out / "report.md").read_text().splitlines()[2]
    assert line.startswith("_Generated ") and f"by convcorr {convcorr.__version__} (" in line
    assert line.endswith("command `` convcorr experiment table9 --set 'k=`3`' ``._")  # a backtick inside the code
    if meta["git"]:
        assert f"commit {meta['git']['commit'][:12]}" in line


def test_provenance_line_without_a_checkout():
    line = rep_mod.provenance_line({"convcorr": "0.1.0", "git": None,
                                    "command": ["/x/src/convcorr/cli.py", "experiment", "table1"]})
    assert line == "convcorr 0.1.0 (not a git checkout), command `convcorr experiment table1`"
    line = rep_mod.provenance_line({"convcorr": "0.1.0", "git": {"commit": "a" * 40, "dirty": True}, "command": []})
    assert line == f"convcorr 0.1.0 (commit {'a' * 12}, modified), command unknown"


def test_two_saves_compare_equal_apart_from_provenance_and_timings(tmp_path, monkeypatch):
    from tests_helpers_results import strip_timings

    docs = []
    for i, argv in enumerate((["convcorr", "experiment", "t"], ["python", "-m", "convcorr.cli", "experiment", "t"])):
        monkeypatch.setattr("sys.argv", argv)
        monkeypatch.setattr("convcorr.runtime.provenance.git_state", lambda i=i: {"commit": str(i) * 40, "dirty": bool(i)})
        r = Report(tmp_path / str(i), "T", {"a": 1})
        r.results = {"pck": 0.5, "seconds": float(i), "timing": {"x": i}}
        r.save()
        docs.append(json.loads((tmp_path / str(i) / "results.json").read_text()))
    assert docs[0] != docs[1] and strip_timings(docs[0]) == strip_timings(docs[1])
    docs[1]["meta"]["versions"]["numpy"] = "0.0"  # a different library version is a difference
    assert strip_timings(docs[0]) != strip_timings(docs[1])
