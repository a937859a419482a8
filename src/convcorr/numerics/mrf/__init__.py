"""The paper's flow MRF: sum ||fs(p) - ft(p + w(p))||^2 + beta sum ||w(p) - w(q)||^2 over 4-neighbours, solved by
loopy min-sum belief propagation with squared-distance-transform messages.

- :mod:`.common`: :class:`FlowResult` and the argument checks of every solver;
- :mod:`.kernels`: the numba kernels (distance transforms, data cost, message updates) and the float64 reference;
- :mod:`.batch`: the batched float32 solver (numba kernel on CPU, torch on CUDA);
- :mod:`.solve`: :func:`bp_flow`, the one entry point, which checks its input and picks a solver.
"""
from .batch import align_pairs, bp_flow_batch
from .common import FlowResult
from .kernels import data_cost, distance_transform_sq, flow_energy
from .solve import bp_flow

__all__ = ["FlowResult", "bp_flow", "bp_flow_batch", "align_pairs", "data_cost", "distance_transform_sq",
           "flow_energy"]
