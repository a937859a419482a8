"""The parallel options shared by every experiment (convcorr.experiments.workers)."""
from convcorr.experiments.workers import (PARALLEL_OPTIONS, all_saved, config_hash, run_conf_tasks, task_dir, unit_key,
                                          with_parallel_options)


def test_options_added_to_every_preset_without_overriding():
    out = with_parallel_options({"a": {"x": 1}, "b": {"x": 2, "workers": 4}})
    assert out["a"] == {"x": 1, **PARALLEL_OPTIONS}
    assert out["b"]["workers"] == 4 and out["b"]["resume"] is False


def test_config_hash_ignores_only_the_parallel_options(tmp_path):
    conf = {"beta": 0.003, "features": ["alexnet:conv4"], **PARALLEL_OPTIONS}
    h = config_hash(conf)
    assert len(h) == 12
    assert config_hash(dict(conf, workers=8, executor="ray", ray_address="x:1", resume=True)) == h
    assert config_hash(dict(conf, beta=0.03)) != h
    assert task_dir(conf, tmp_path, "pairs") is None  # resume off: nothing kept
    assert task_dir(dict(conf, resume=True), tmp_path, "pairs") == tmp_path / "tasks" / f"pairs-{h}"


def test_unit_keys_are_file_name_safe_and_distinct():
    assert unit_key("svm", "face", "conv4") == "svm-face-conv4"
    k = unit_key("timm:resnet50", "layer3")
    assert k.startswith("timm_resnet50-layer3.") and "/" not in k and ":" not in k
    assert unit_key("a:b", "c") != unit_key("a_b", "c") != unit_key("a/b", "c")


def _square(t, shared, add):
    return t * t + shared + add


def test_run_conf_tasks_resumes_from_saved_units(tmp_path):
    conf = {"x": 1, **PARALLEL_OPTIONS, "resume": True}
    keys = [unit_key("t", i) for i in range(4)]
    assert not all_saved(conf, tmp_path, "sq", keys)
    out = run_conf_tasks(_square, range(4), conf, tmp_path, "sq", shared=10, kwargs={"add": 1},
                         key=lambda t: unit_key("t", t))
    assert out == [11, 12, 15, 20]
    assert all_saved(conf, tmp_path, "sq", keys)
    assert not all_saved(dict(conf, x=2), tmp_path, "sq", keys)  # another configuration: nothing saved
    assert not all_saved(dict(conf, resume=False), tmp_path, "sq", keys)
    assert run_conf_tasks(_square, range(4), dict(conf, workers=2), tmp_path, "sq", shared=10, kwargs={"add": 1},
                          key=lambda t: unit_key("t", t)) == out
