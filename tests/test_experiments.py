"""experiments/__init__: option types, conf checks, plans for `all`, output folders (issue #10)."""
import pytest

from convcorr import experiments
from convcorr.core.errors import ConfigError
from convcorr.experiments import CliValue, check_option, options, plan_all, resolve_conf
from convcorr.experiments.options import COMMON_OPTIONS, RENAMED, Option, undeclared


def test_every_option_is_declared_with_a_help_line():
    common_used = set()
    for name in experiments.EXPERIMENTS:
        mod = experiments.get_experiment(name)
        keys = {k for c in mod.CONFIGS.values() for k in c}
        assert undeclared(mod) == [], f"{name}: preset keys without a declaration"
        own = {o.name for o in mod.OPTIONS}
        assert len(own) == len(mod.OPTIONS), f"{name}: an option declared twice"
        assert own <= keys, f"{name}: declared options no preset has: {sorted(own - keys)}"
        common_used |= keys - own
        for key, o in options(name).items():
            assert o.help and "\n" not in o.help and len(o.help) <= 110 and o.help != "(undeclared)", (name, key)
            assert o.type and o.type != (None,), (name, key)
        # every preset value is valid under its declaration (type, element type, length, allowed values)
        for preset, conf in mod.CONFIGS.items():
            for key, value in conf.items():
                assert check_option(name, key, value) == value, (name, preset, key)
    assert set(COMMON_OPTIONS) <= common_used, f"shared options no experiment uses: {set(COMMON_OPTIONS) - common_used}"
    # a renamed option is gone everywhere (no silent alias)
    for name in experiments.EXPERIMENTS:
        assert not set(RENAMED) & set(options(name)), name


def test_option_type_names():
    assert Option("a", (list, None), "h", item=str).type_name == "list[str] | None"
    assert Option("a", float, "h").type_name == "float" and Option("a", (str, None), "h").type_name == "str | None"
    assert Option("a", (list, int), "h", item=int).type_name == "list[int] | int"


def test_check_option_types_and_conversions():
    assert check_option("table2", "strength", 1) == 1.0 and isinstance(check_option("table2", "strength", 1), float)
    assert check_option("table2", "n_queries", None) is None
    assert check_option("table3", "layers", ("conv3",)) == ["conv3"]
    assert check_option("table4", "neighbourhood", 3) == 3 and check_option("table4", "neighbourhood", [1, 3]) == [1, 3]
    assert check_option("table2", "root", CliValue(2011, "2011")) == "2011"  # str options keep the raw text
    assert check_option("table2", "root", CliValue(None, "none")) is None
    assert check_option("table3", "backbone", CliValue(None, "none")) == "none"
    assert check_option("table3", "radii", [10, 20]) == [10, 20]
    assert check_option("table3", "Cs", [1, 0.5]) == [1, 0.5]  # ints accepted in a float list
    for key, value, msg in (("n_queries", "abc", "expects int or None"), ("n_queries", 2.5, "expects int"),
                            ("n_queries", True, "expects int"), ("features", "alexnet:conv4", "expects list"),
                            ("features", [4], "expects a list of str"), ("strength", "x", "expects float"),
                            ("exclude_same_source", 1, "expects bool"), ("retrieval_backbone", 3, "expects str")):
        with pytest.raises(ConfigError, match=f"experiment 'table2': option '{key}' {msg}"):
            check_option("table2", key, value)
    with pytest.raises(ConfigError, match="'radii' expects a list of int"):
        check_option("table3", "radii", [12.5])


def test_resolve_conf_errors_name_the_experiment():
    with pytest.raises(KeyError, match="experiment 'table3' has no option 'x'"):
        resolve_conf("table3", "default", {"x": 1})
    with pytest.raises(ValueError, match="experiment 'table4' has no preset 'strict'"):
        resolve_conf("table4", "strict")
    with pytest.raises(ConfigError, match="unknown experiment 'table9'"):
        resolve_conf("table9")


def test_plan_all():
    plan = plan_all("strict", {"seed": 4, "n_queries": CliValue(2, "2")})
    assert plan["table2"][0] == "strict" and plan["table3"][0] == "default"  # fallback where absent
    assert plan["table2"][1]["n_queries"] == 2 and plan["table3"][1]["seed"] == 4
    assert "seed" not in plan["table1"][1]
    with pytest.raises(ConfigError, match="no experiment has option"):
        plan_all("default", {"sed": 1})
    with pytest.raises(ConfigError, match="no experiment has a preset 'strct'"):
        plan_all("strct")
    with pytest.raises(ConfigError, match="experiment 'table2': option 'n_synthetic' expects int"):
        plan_all("default", {"n_synthetic": "x"})
    with pytest.raises(ConfigError, match="no experiment has option.*'n_warps'.*is now 'n_synthetic'"):
        plan_all("default", {"n_warps": 1})
    with pytest.raises(ConfigError, match="did you mean 'n_queries'"):
        plan_all("default", {"n_querys": 1})
    with pytest.raises(ConfigError, match="no experiment has a preset 'strct'; did you mean 'strict'"):
        plan_all("strct")
    # a dotted key goes to the experiments that have its dict option
    plan = plan_all("default", {"matcher_options.flow.n_iter": 3})
    assert plan["table2"][1]["matcher_options"]["flow"]["n_iter"] == 3
    assert plan["pairs"][1]["matcher_options"]["flow"] == {"radius_px": 64.0, "n_iter": 3}
    assert plan["backbones"][1]["matcher_options"] == {"flow": {"n_iter": 3}}


def test_unknown_names_get_the_closest_valid_ones():
    with pytest.raises(ConfigError, match=r"experiment 'table2' has no option 'n_querys'; did you mean 'n_queries'"):
        resolve_conf("table2", "default", {"n_querys": 3})
    with pytest.raises(ConfigError, match=r"has no option 'zzz'; choose from \['baselines'"):
        resolve_conf("table2", "default", {"zzz": 3})
    with pytest.raises(ConfigError, match="experiment 'table2' has no preset 'strct'; did you mean 'strict'"):
        resolve_conf("table2", "strct")
    with pytest.raises(ConfigError, match="unknown experiment 'tabel3'; did you mean 'table3'"):
        resolve_conf("tabel3")
    with pytest.raises(ConfigError, match="option 'pairs' must be one of .*got 'cros'; did you mean 'cross'"):
        resolve_conf("pairs", "default", {"pairs": "cros"})


@pytest.mark.parametrize("name, old, value, new", [
    ("table2", "n_warps", 2, "--set n_synthetic=2"), ("visualize", "n_warps", 2, "--set n_synthetic=2"),
    ("table3", "size", 200, "--set input_size=200"), ("pairs", "size", 200, "--set input_size=200"),
    ("backbones", "matcher", "mnn", "--set matchers='[\"mnn\"]'"),
    ("backbones", "pck_protocol", "paper", "--set pck_protocols='[\"paper\"]'"),
    ("table4", "C", 2.0, "--set Cs='[2.0]'"),
    ("table2", "beta", 0.01, "--set matcher_options.flow.beta=0.01"),
    ("table2", "coarse_to_fine", CliValue(True, "true"), "--set matcher_options.flow.coarse_to_fine=true"),
])
def test_an_old_name_is_an_error_naming_the_new_one(name, old, value, new):
    with pytest.raises(ConfigError) as e:
        resolve_conf(name, "default", {old: value})
    want_new = new.split("--set ", 1)[1].split("=", 1)[0]
    assert str(e.value) == f"experiment {name!r}: option {old!r} is now {want_new!r} ({new})"


def test_an_old_name_the_experiment_never_had_is_plainly_unknown():
    # table1 has no n_synthetic: 'n_warps' is not "now 'n_synthetic'" there
    with pytest.raises(ConfigError, match="experiment 'table1' has no option 'n_warps'"):
        resolve_conf("table1", "default", {"n_warps": 1})


def test_dotted_keys_set_one_entry_of_a_dict_option():
    conf = resolve_conf("table2", "default", {"matcher_options.flow.beta": 1, "matcher_options.nn": {}})
    assert conf["matcher_options"] == {"flow": {"beta": 1.0, "radius_px": 64.0, "n_iter": 8, "coarse_to_fine": False,
                                                "normalize": True}, "nn": {}}
    assert isinstance(conf["matcher_options"]["flow"]["beta"], float)  # the preset's type (int -> float)
    assert experiments.get_experiment("table2").CONFIGS["default"]["matcher_options"]["flow"]["beta"] == 3e-3
    # a plain key replaces the whole dict
    assert resolve_conf("table2", "default", {"matcher_options": {}})["matcher_options"] == {}
    for over, msg in (({"matcher_options.flow.beta": True}, "'matcher_options.flow.beta' expects float"),
                      ({"matcher_options.flow.beta": 1e999}, "option 'matcher_options' must be finite"),
                      ({"matcher_options.flow.nope": 1}, "unusable options for matcher 'flow'"),
                      ({"matcher_options.flw.beta": 1.0}, "unknown matcher 'flw'; did you mean 'flow'"),
                      ({"n_queries.a": 1}, "option 'n_queries' is not a dict"),
                      ({"matcher_options..beta": 1}, "empty part")):
        with pytest.raises(ConfigError, match=msg):
            resolve_conf("table2", "default", over)


def test_one_item_list_options():
    assert resolve_conf("backbones", "default", {"matchers": ["mnn"]})["matchers"] == ["mnn"]
    with pytest.raises(ConfigError, match="option 'matchers' takes a list of exactly 1 here, got 2"):
        resolve_conf("backbones", "default", {"matchers": ["nn", "mnn"]})
    with pytest.raises(ConfigError, match="option 'Cs' takes a list of exactly 1"):
        resolve_conf("table4", "default", {"Cs": [1.0, 2.0]})


def test_describe_lists_presets_and_every_option_with_type_default_and_help():
    for name in experiments.EXPERIMENTS:
        text = experiments.describe(name)
        mod = experiments.get_experiment(name)
        assert all(p in text.split("Presets: ", 1)[1].split("\n", 1)[0] for p in mod.CONFIGS)
        lines = text.splitlines()
        for key, o in options(name).items():
            i = next(i for i, l in enumerate(lines) if l.startswith(f"  {key} : "))
            assert lines[i].startswith(f"  {key} : {o.type_name} = ") and lines[i + 1].strip().startswith(o.help)
    text = experiments.describe("table2")
    assert '  n_synthetic : int = 3  [paper: 0]' in text
    assert '  n_queries : int | None = 4  [paper: null; strict: 6]' in text


BUILTIN = ("table1", "table2", "table3", "table4", "visualize", "pairs", "backbones")


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_experiment_computes_apart_from_rendering(name):
    # compute(conf, out_dir=None) -> a Results dataclass; render(results, out_dir) writes it; main = both
    import dataclasses
    import inspect
    import typing

    mod = experiments.get_experiment(name)
    assert list(inspect.signature(mod.compute).parameters) == ["conf", "out_dir"]
    assert inspect.signature(mod.compute).parameters["out_dir"].default is None
    results = typing.get_type_hints(mod.compute)["return"]
    assert dataclasses.is_dataclass(results) and "conf" in {f.name for f in dataclasses.fields(results)}
    assert list(inspect.signature(mod.render).parameters) == ["res", "out_dir"]
    assert typing.get_type_hints(mod.render)["res"] is results
    src = inspect.getsource(mod.main)
    assert "render(compute(conf, out_dir), out_dir)" in src
