"""The plug-in registries: the Registry itself, and plug-ins added from OUTSIDE the package through entry points
(a fake installed distribution on sys.path) and used through the command line."""
import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from convcorr.backbones import BACKBONES
from convcorr.cli import cli
from convcorr.datasets import DATASETS
from convcorr.features import DENSE_FEATURES
from convcorr.experiments import EXPERIMENTS
from convcorr.matchers import MATCHERS
from convcorr.core.registry import DuplicateName, PluginError, Registry, UnknownName

REGISTRIES = (BACKBONES, MATCHERS, DATASETS, EXPERIMENTS, DENSE_FEATURES)


def write_distribution(site, name: str, entry_points: dict, modules: dict | None = None) -> None:
    """A fake installed distribution in folder ``site``: ``<name>-0.1.dist-info`` with METADATA and
    entry_points.txt ({group: {entry name: "module:attr"}}), plus module files {relative path: source}."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in entry_points.items()))
    for rel, src in (modules or {}).items():
        p = site / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(src))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path for fake distributions; every registry forgets what was loaded from it afterwards."""
    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    for r in REGISTRIES:
        r._load_builtins()
    saved = [(r, dict(r._entries)) for r in REGISTRIES]
    for r in REGISTRIES:
        r.refresh()
    before = set(sys.modules)
    yield d
    for r, entries in saved:
        r._entries.clear()
        r._entries.update(entries)
        r.refresh()
    for m in set(sys.modules) - before:
        if m.startswith(("convcorr_toy", "thing_plugin")):
            del sys.modules[m]


# ------------------------------------------------------------------------------------------------ Registry alone
def test_decorator_facts_names_and_mapping_access():
    reg = Registry("thing")

    @reg.register("alpha", colour="red", size=lambda: 3)
    class Alpha:
        pass

    @reg.register("beta")
    def beta():
        return "b"

    assert Alpha.__name__ == "Alpha" and beta() == "b"  # the decorator returns the object unchanged
    assert reg.get("alpha") is Alpha and reg["beta"] is beta
    assert reg.names() == ["alpha", "beta"] and list(reg) == ["alpha", "beta"] and len(reg) == 2
    assert "alpha" in reg and "gamma" not in reg and 3 not in reg
    facts = reg.facts("alpha")
    assert facts["colour"] == "red" and facts["size"]() == 3 and reg.facts("beta") == {}
    assert reg.fact("beta", "colour", "none") == "none"
    facts["colour"] = "blue"  # a copy
    assert reg.fact("alpha", "colour") == "red"


def test_duplicate_name_refused_same_definition_allowed():
    reg = Registry("thing")

    class A:
        pass

    class B:
        pass

    reg.add("a", A)
    reg.add("a", A)  # the same object again (e.g. a module imported twice): fine
    with pytest.raises(DuplicateName, match=r"thing 'a' is already registered .*A.*B"):
        reg.add("a", B)
    assert reg.get("a") is A
    for bad in ("", " a", None):
        with pytest.raises(ValueError, match="non-empty string"):
            reg.add(bad, B)


def test_unknown_name_suggests_the_closest():
    reg = Registry("matcher", hint="(or build one)")
    for n in ("flow", "nn", "mnn", "softargmax"):
        reg.add(n, object())
    with pytest.raises(UnknownName) as e:
        reg.get("fow")
    msg = str(e.value)
    assert msg.startswith("unknown matcher 'fow'; did you mean 'flow'?") and msg.endswith(
        "available: flow, mnn, nn, softargmax (or build one)")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)  # a ConfigError
    assert "did you mean" not in str(reg.unknown("zzzzzz"))


def test_on_register_checks_and_refuses():
    def only_classes(name, obj, facts):
        if not isinstance(obj, type):
            raise TypeError(f"{name}: not a class")

    reg = Registry("thing", on_register=only_classes)
    with pytest.raises(TypeError, match="not a class"):
        reg.add("x", 3)
    assert "x" not in reg


def test_entry_point_loaded_lazily(site):
    write_distribution(site, "thing-plugin", {"convcorr.tests.things": {
        "decorated": "thing_plugin_a:Decorated", "plain": "thing_plugin_b:Plain"}}, {
        "thing_plugin_a.py": """
            from tests_registry_things import THINGS

            @THINGS.register("decorated", colour="green")
            class Decorated:
                pass
            """,
        "thing_plugin_b.py": """
            class Plain:  # no decorator: registered under the entry point's name, without facts
                pass
            """,
        "tests_registry_things.py": """
            from convcorr.core.registry import Registry

            THINGS = Registry("thing", group="convcorr.tests.things")
            """})
    from tests_registry_things import THINGS

    THINGS.add("builtin", object())
    assert THINGS.get("builtin") is not None and "decorated" in THINGS  # found, not imported
    assert "thing_plugin_a" not in sys.modules and "thing_plugin_b" not in sys.modules
    assert THINGS.fact("decorated", "colour") == "green"  # its own decorator ran on import
    assert "thing_plugin_a" in sys.modules and "thing_plugin_b" not in sys.modules
    assert THINGS.names() == ["builtin", "decorated", "plain"]  # listing loads every installed plug-in
    assert THINGS.get("plain").__name__ == "Plain" and THINGS.facts("plain") == {}
    del sys.modules["tests_registry_things"]


def test_broken_entry_point_names_the_distribution(site):
    write_distribution(site, "convcorr-broken-plugin", {"convcorr.matchers": {
        "broken": "convcorr_toy_missing_module:Thing"}})
    from convcorr.matchers import get_matcher

    with pytest.raises(PluginError) as e:
        get_matcher("broken")
    msg = str(e.value)
    assert "cannot load matcher 'broken'" in msg and "distribution 'convcorr-broken-plugin' 0.1" in msg
    assert "convcorr_toy_missing_module" in msg and "ModuleNotFoundError" in msg
    assert get_matcher("nn").name == "nn"  # the other matchers still work
    with pytest.raises(PluginError, match="convcorr-broken-plugin"):
        MATCHERS.names()


def test_entry_point_to_a_module_that_registers_nothing(site):
    write_distribution(site, "convcorr-empty-plugin", {"convcorr.datasets": {"emptyset": "convcorr_toy_empty"}},
                       {"convcorr_toy_empty.py": "X = 1\n"})
    with pytest.raises(PluginError, match="registers no dataset named 'emptyset'"):
        DATASETS.get("emptyset")


# --------------------------------------------------------------------------------- plug-ins from another package
TOY_PLUGIN = '''
    """A plug-in package outside convcorr: a backbone, a matcher and a data set, each registered by its decorator."""
    import numpy as np
    import torch
    import torch.nn as nn

    from convcorr.backbones import BACKBONES, Backbone, WeightsStatus
    from convcorr.datasets import DATASETS
    from convcorr.matchers import MATCHERS, Matcher
    from convcorr.core.types import Instance, Pair

    MATCHER_CALLS = []


    @BACKBONES.register("toynet", default_weights="fixed", offline_available=lambda: WeightsStatus(True, "built in"))
    class ToyNet(Backbone):
        """One 4x4 stride-4 convolution with 8 channels (fixed weights): layer "toy1"."""

        input_size = 32

        def __init__(self, weights=None):
            super().__init__()
            conv = nn.Conv2d(3, 8, 4, stride=4)
            with torch.no_grad():
                g = torch.Generator().manual_seed(0)
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
                conv.bias.zero_()
            self.layer_names = ("toy1",)  # on the object: no class-level contract
            self.global_layer = ""
            self.stages = nn.ModuleDict({"toy1": nn.Sequential(conv, nn.ReLU())})

        def normalize(self, x):
            return x / 255.0


    @MATCHERS.register("toymatch")
    class SameColumnMatcher(Matcher):
        """Every source column matches the target column at the same grid position."""

        def __init__(self, k: int = 1, seed: int | None = None):
            self.options = {"k": k, "seed": seed}

        def match_grid(self, source, target):
            MATCHER_CALLS.append((source.grid_hw, source.channels))
            h, w = source.grid_hw
            c, r = np.meshgrid(np.arange(w, dtype=float), np.arange(h, dtype=float))
            return {"grid_match": np.stack([c, r], -1), "score": np.ones((h, w)), "score_kind": "similarity",
                    "energy": -1.0}


    def _instance(i, image, xy):
        xy = np.asarray(xy, float)
        return Instance(id=f"toy/{i}", category="toy", bbox=np.array([0.0, 0.0, 31.0, 31.0]),
                        keypoint_names=("a", "b"), keypoints=xy, visible=np.ones(len(xy), bool), image=image)


    @DATASETS.register("toyset", kind="pairs")
    def toy_pairs(root=None, annotations=None, images=None, shift: int = 4):
        """Two pairs of random 32x32 images; the target is the source moved ``shift`` pixels to the right."""
        rng = np.random.default_rng(0)
        out = []
        for i in range(2):
            a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            b = np.roll(a, shift, axis=1)
            kp = [[10.0, 12.0], [17.0, 20.0]]
            out.append(Pair(_instance(2 * i, a, kp), _instance(2 * i + 1, b, np.add(kp, [shift, 0]))))
        return out
'''

TOY_EXPERIMENT = '''
    """A toy experiment: the toy data set's keypoints transferred by the toy matcher on toy-backbone features."""
    import json
    from pathlib import Path

    import numpy as np

    from convcorr.datasets import load_dataset
    from convcorr.features import get_features
    from convcorr.experiments import register_experiment
    from convcorr.matchers import get_matcher

    CONFIGS = {"default": {"dataset": "toyset", "root": None, "features": "toynet:toy1", "matcher": "toymatch"}}


    @register_experiment("toy")
    def main(conf, out_dir):
        pairs = load_dataset(conf["dataset"], root=conf["root"])
        feats, matcher = get_features(conf["features"]), get_matcher(conf["matcher"])
        errors = []
        for p in pairs:
            c = matcher.match(feats(p.source.image), feats(p.target.image))
            errors += list(np.linalg.norm(c.transfer(p.source.keypoints) - p.target.keypoints, axis=1))
        results = {"pairs": len(pairs), "mean_error": float(np.mean(errors)), "features": feats.spec}
        out = Path(out_dir)
        (out / "results.json").write_text(json.dumps({"config": conf, "results": results}))
        (out / "report.md").write_text(f"# Toy\\n\\nmean error {results['mean_error']:.2f} px\\n")
        return out / "report.md"
'''


@pytest.fixture
def toy_plugin(site):
    write_distribution(site, "convcorr-toy-plugin", {
        "convcorr.backbones": {"toynet": "convcorr_toy_plugin:ToyNet"},
        "convcorr.matchers": {"toymatch": "convcorr_toy_plugin:SameColumnMatcher"},
        "convcorr.datasets": {"toyset": "convcorr_toy_plugin:toy_pairs"},
        "convcorr.experiments": {"toy": "convcorr_toy_plugin.experiment:main"}},
        {"convcorr_toy_plugin/__init__.py": TOY_PLUGIN, "convcorr_toy_plugin/experiment.py": TOY_EXPERIMENT})
    return site


def test_outside_plugins_run_through_the_cli(toy_plugin, tmp_path):
    assert "convcorr_toy_plugin" not in sys.modules  # nothing imported before a name is asked for
    res = CliRunner().invoke(cli, ["backbones"])
    assert res.exit_code == 0, res.output
    assert "== toynet: pretrained weights available: built in" in res.output
    rows = {l.split()[0]: l.split()[1:] for l in res.output.splitlines() if l.strip()}
    assert rows["toy1"][:2] == ["4", "4"]  # rf size 4, stride 4: traced from the toy network
    out = tmp_path / "toy-run"
    res = CliRunner().invoke(cli, ["experiment", "toy", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())["results"]
    # identical columns matched (displacement 0) while the target moved 4 px: every point is 4 px off
    assert results == {"pairs": 2, "mean_error": 4.0, "features": "toynet:toy1"}
    from convcorr_toy_plugin import MATCHER_CALLS

    assert MATCHER_CALLS == [((8, 8), 8)] * 2  # 32x32 images -> 8x8 grids of the toy backbone's 8 channels
    assert "toy" in EXPERIMENTS.names() and "toyset" in DATASETS.names()
    res = CliRunner().invoke(cli, ["experiment", "tyo", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "did you mean 'toy'" in res.output


def test_outside_dataset_through_the_data_options(toy_plugin):
    from convcorr.datasets import pools as protocols

    pairs = protocols.build_pairs({"dataset": "toyset"})
    assert len(pairs) == 2 and all(p.source.meta["pair_kind"] == "listed" for p in pairs)
    assert [i.id for i in protocols.build_pool({"dataset": "toyset"})] == ["toy/0", "toy/1", "toy/2", "toy/3"]


def test_top_level_options_named_like_matcher_parameters_do_not_reach_it(toy_plugin):
    from convcorr.experiments import resolve_conf
    from convcorr.experiments.table2 import matcher_options, method_configs

    conf = resolve_conf("table2", "default", {"features": ["sift"], "matchers": ["toymatch", "flow"]})
    assert conf["k"] == 8 and conf["seed"] == 0  # table2's neighbour count and seed ...
    assert matcher_options(conf, "toymatch") == {}  # ... are not the matcher's k and seed
    mc = {k.split(" + ")[-1]: tc for k, tc in method_configs(conf).items() if " + " in k}
    assert mc["toymatch"].matcher_options == {}
    assert mc["flow"].matcher_options == {"beta": 3e-3, "n_iter": 8, "radius_px": 64.0,
                                                 "coarse_to_fine": False, "normalize": True}
    # the matcher's own options come from matcher_options[name]
    conf2 = dict(conf, matcher_options={"toymatch": {"k": 3}})
    assert matcher_options(conf2, "toymatch") == {"k": 3}


def test_builtin_plugins_are_registered_with_their_facts():
    assert BACKBONES.names()[:5] == ["alexnet", "efficientnet_lite0", "squeezenet1_0", "mobilenet_v1", "mobilenet_v2"]
    assert {"flow", "nn", "mnn", "softargmax"} <= set(MATCHERS.names())
    assert {"sift", "backbone"} <= set(DENSE_FEATURES.names())
    assert EXPERIMENTS.names()[:7] == ["table1", "table2", "table3", "table4", "visualize", "pairs", "backbones"]
    kinds = {n: DATASETS.fact(n, "kind") for n in DATASETS.names()}
    assert kinds == {"embedded": "instances", "synthetic": "instances", "coco": "instances", "ap10k": "instances",
                     "cub": "instances", "berkeley": "instances", "spair": "pairs", "pf-pascal": "pairs",
                     "pf-willow": "pairs", "ibug": "instances"}
    assert DATASETS.fact("cub", "pair_by") == "class" and DATASETS.fact("synthetic", "pairs") == "synthetic"


def test_loader_arguments_map_the_data_options_in_one_place(tmp_path):
    from convcorr.datasets.pools import loader_arguments

    assert loader_arguments({"dataset": "coco", "json": "a.json", "images": "im", "root": None,
                             "strip_prefix": None, "truncate_names": False}) == {
        "annotations": "a.json", "images": "im", "truncate_names": False}
    assert loader_arguments({"dataset": "pf-willow", "csv": "p.csv", "strip_components": 1}) == {
        "annotations": "p.csv", "strip_components": 1}
    assert loader_arguments({"dataset": "spair", "root": "r", "split": "val", "seed": 3}) == {"root": "r",
                                                                                              "split": "val"}
    with pytest.raises(KeyError, match=r"\['json', 'csv'\] both give the annotations"):
        loader_arguments({"dataset": "coco", "json": "a.json", "csv": "b.csv"})


def test_matcher_declared_options():
    from convcorr.matchers import matcher_option_names

    assert matcher_option_names("softargmax") == ("window", "temperature")
    assert matcher_option_names("nn") == ()
    flow = matcher_option_names("flow")
    assert flow[:6] == ("beta", "radius", "radius_px", "n_iter", "coarse_to_fine", "normalize")
    assert "damping" in flow  # bp_flow options passed through **bp_kw
