"""The shared folder is found next to the checkout whatever the current directory."""
from convcorr.runtime import paths


def test_repo_is_the_checkout_root():
    assert (paths._REPO / "pyproject.toml").is_file() and (paths._REPO / "src" / "convcorr").is_dir()


def test_shared_folder_next_to_the_checkout_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVCORR_SHARED", raising=False)
    (tmp_path / "shared" / "weights").mkdir(parents=True)
    monkeypatch.setattr(paths, "_REPO", tmp_path / "checkout")
    monkeypatch.chdir("/")  # neither the current folder nor its parent holds shared/
    assert paths.shared_root() == (tmp_path / "shared").resolve()
