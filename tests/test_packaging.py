"""The repository as a distribution: a license, a citation file, a license string in pyproject, no binary files."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tracked_files() -> list[str]:
    """Paths tracked by git in this checkout (skips when git or the checkout is absent, e.g. in an sdist)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True,
                             timeout=30).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pytest.skip("not a git checkout")
    return [p for p in out.decode().split("\0") if p]


def is_binary(data: bytes) -> bool:
    """A null byte or bytes that are not UTF-8 text."""
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_binary_check_tells_text_from_binary(tmp_path):
    assert not is_binary("Table 1 — rf 131 px\n".encode())
    assert is_binary(b"PK\x03\x04\x14\x00\x00\x00")  # the start of a zip / wheel
    assert is_binary(b"\x89PNG\r\n\x1a\n")
    assert is_binary("caf\xe9".encode("latin-1"))


def test_repository_tracks_no_binary_files():
    files = tracked_files()
    assert "pyproject.toml" in files and not any(f.endswith(".whl") for f in files)
    binary = [f for f in files if (ROOT / f).is_file() and is_binary((ROOT / f).read_bytes())]
    assert binary == [], f"binary files tracked: {binary}"


def test_license_and_pyproject_license_string():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "the convcorr authors" in text
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]


def test_citation_file_names_the_software_and_the_paper():
    text = (ROOT / "CITATION.cff").read_text()
    try:
        import yaml
    except ImportError:  # no YAML parser: the lines that matter
        assert "cff-version: 1.2.0" in text.splitlines() and "Do Convnets Learn Correspondence?" in text
        return
    cff = yaml.safe_load(text)
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["license"] == "BSD-3-Clause"
    import convcorr

    assert cff["version"] == convcorr.__version__
    paper = next(r for r in cff["references"] if r["title"] == "Do Convnets Learn Correspondence?")
    assert [a["family-names"] for a in paper["authors"]] == ["Long", "Zhang", "Darrell"]
    assert paper["year"] == 2014 and "NIPS 2014" in paper["collection-title"]
