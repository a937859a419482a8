"""The same command twice gives the same results.json, apart from the timestamp and timings (Tables 2-4)."""
import json

import pytest
from tests_helpers_results import strip_timings as _strip

from convcorr.experiments import run

SMALL = {
    "table2": {"categories": ["face"], "n_queries": 2, "k": 2, "top": 1, "n_synthetic": 1,
               "features": ["alexnet:conv4", "sift:step=8,bin=8"], "matcher_options.flow.n_iter": 2,
               "beta_grid": [1e-2, 1e-1],
               "n_boot": 50},
    "table3": {"categories": ["face"], "n_synthetic": 1, "radii": [20], "layers": ["conv2"], "folds": 2,
               "Cs": [0.1, 10.0], "n_response": 2, "n_response_instances": 1, "response_window": 4,
               "max_types": 6, "n_boot": 50},
    "table4": {"categories": ["face"], "n_synthetic": 1, "max_types": 3, "mining_rounds": 1, "input_size": 200,
               "n_init": 200, "n_add": 200, "n_figure": 1, "n_boot": 50},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_command_same_results(tmp_path, shared, name):
    out = []
    for k in range(2):
        run(name, tmp_path / str(k), "default", SMALL[name])
        out.append(_strip(json.loads((tmp_path / str(k) / "results.json").read_text())))
    assert out[0]["results"] and out[0] == out[1]
