"""Provenance of a run: version, commit, command, machine and library versions; never failing without git."""
import ast
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import convcorr
from convcorr.runtime import provenance as prov


def test_provenance_records_version_command_machine_and_libraries():
    p = prov.provenance(device="cpu", argv=["convcorr", "experiment", "table1", "--out", "/tmp/x"])
    assert p["convcorr"] == convcorr.__version__
    assert p["command"] == ["convcorr", "experiment", "table1", "--out", "/tmp/x"]
    assert p["device"] == "cpu" and p["gpu"] is None
    assert p["python"].count(".") == 2 and p["platform"] and p["machine"]
    assert set(p["versions"]) == {"torch", "numpy", "scipy", "scikit-learn", "faiss", "numba", "torchvision", "timm"}
    assert p["versions"]["numpy"] == np.__version__
    import torch

    assert p["versions"]["torch"] == torch.__version__


def test_command_defaults_to_sys_argv(monkeypatch):
    monkeypatch.setattr(prov.sys, "argv", ["prog", "--flag"])
    assert prov.provenance(device="cpu")["command"] == ["prog", "--flag"]


def test_a_library_that_is_not_installed_is_none():
    assert prov._dist_version("surely-not-an-installed-distribution-xyz") is None


def test_git_commit_of_this_checkout():
    root = Path(prov.__file__).resolve().parents[3]  # <root>/src/convcorr/runtime/provenance.py
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not run from a git checkout")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    state = prov.git_state()
    assert state["commit"] == head and re.fullmatch(r"[0-9a-f]{40}", head) and isinstance(state["dirty"], bool)


def test_no_git_executable_gives_none(monkeypatch):
    def missing(*a, **k):
        raise FileNotFoundError(2, "No such file or directory: 'git'")

    monkeypatch.setattr(prov.subprocess, "run", missing)
    assert prov.git_state() is None
    assert prov.provenance(device="cpu")["git"] is None


def test_git_failing_or_hanging_gives_none(monkeypatch):
    for exc in (subprocess.CalledProcessError(128, "git"), subprocess.TimeoutExpired("git", 5)):
        def fail(*a, _exc=exc, **k):
            raise _exc

        monkeypatch.setattr(prov.subprocess, "run", fail)
        assert prov.git_state() is None


def test_an_installed_copy_is_not_a_checkout(tmp_path, monkeypatch):
    # site-packages/convcorr: no pyproject.toml two levels up -> no commit, even inside another repository
    monkeypatch.setattr(prov, "_package_dir", lambda: tmp_path / "lib" / "site-packages" / "convcorr")
    assert prov.git_state() is None


def test_a_checkout_inside_another_repository_is_not_claimed(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    outer = tmp_path / "outer"
    (outer / "vendor" / "src" / "convcorr").mkdir(parents=True)
    (outer / "vendor" / "pyproject.toml").write_text("")
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    monkeypatch.setattr(prov, "_package_dir", lambda: outer / "vendor" / "src" / "convcorr")
    assert prov.git_state() is None  # the repository found is outer's, not convcorr's


def test_dirty_means_tracked_files_modified(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path / "repo"
    (root / "src" / "convcorr").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\n")
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    git("add", "pyproject.toml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    monkeypatch.setattr(prov, "_package_dir", lambda: root / "src" / "convcorr")
    (root / "notes.txt").write_text("untracked")
    assert prov.git_state() == {"commit": git("rev-parse", "HEAD").strip(), "dirty": False}
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert prov.git_state()["dirty"] is True


def test_device_info():
    assert prov.device_info("cpu") == {"device": "cpu", "gpu": None}
    import torch

    if torch.cuda.is_available():
        assert prov.device_info("cuda")["gpu"] == torch.cuda.get_device_name(0)


def test_the_module_imports_nothing_of_convcorr():
    tree = ast.parse(Path(prov.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("convcorr"), ast.dump(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("convcorr") for a in node.names)
