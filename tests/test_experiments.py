"""experiments/__init__: option types, conf checks, plans for `all`, output folders (issue #10)."""
import pytest

from convcorr import experiments
from convcorr.core.errors import ConfigError
from convcorr.experiments import CliValue, check_option, option_types, plan_all, resolve_conf


def test_every_option_has_a_type():
    # an option whose presets are all None must declare its type (OPTION_TYPES / COMMON_OPTION_TYPES)
    for name in experiments.EXPERIMENTS:
        mod = experiments.get_experiment(name)
        for key in {k for c in mod.CONFIGS.values() for k in c}:
            types = option_types(name, key)
            assert types and types != (None,), f"{name}.{key} has no declared type"


def test_check_option_types_and_conversions():
    assert check_option("table2", "beta", 1) == 1.0 and isinstance(check_option("table2", "beta", 1), float)
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
                            ("features", [4], "expects a list of str"), ("beta", "x", "expects float"),
                            ("coarse_to_fine", 1, "expects bool"), ("retrieval_backbone", 3, "expects str")):
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
    with pytest.raises(ConfigError, match="experiment 'table2': option 'n_warps' expects int"):
        plan_all("default", {"n_warps": "x"})


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
