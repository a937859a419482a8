"""Nothing moves in the numbers: every experiment's default run gives the results (and figure list) that the code
before the restructuring into layered subpackages (commit 9fee9a9) wrote, kept in tests/data/results-9fee9a9/
(results.json without timings; the configuration is not compared, some options were renamed since)."""
import json
from pathlib import Path

import pytest

from tests_helpers_results import strip_timings

DATA = Path(__file__).parent / "data" / "results-9fee9a9"
NAMES = sorted(p.stem for p in DATA.glob("*.json"))


def test_every_built_in_experiment_has_a_reference():
    from convcorr.experiments import EXPERIMENTS

    assert set(NAMES) == {"table1", "table2", "table3", "table4", "visualize", "pairs", "backbones"}
    assert set(NAMES) <= set(EXPERIMENTS.names())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_default_run_equals_the_results_before_the_restructuring(name, tmp_path, shared):
    from convcorr.experiments import run

    run(name, tmp_path / name, "default")
    now = strip_timings(json.loads((tmp_path / name / "results.json").read_text()))
    before = json.loads((DATA / f"{name}.json").read_text())
    assert now["figures"] == before["figures"]
    assert now["results"] == before["results"]
