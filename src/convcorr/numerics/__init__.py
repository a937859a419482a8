"""Numerical kernels: dense SIFT (:mod:`.sift`), dense flow fields and image warps (:mod:`.warp`), the flow MRF
solvers (:mod:`.mrf`) and receptive-field geometry (:mod:`.rf`). Depends only on :mod:`convcorr.core`."""
