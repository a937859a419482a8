import numpy as np
import pytest
import torch

from convcorr.numerics.mrf.batch import align_pairs, bp_flow_batch, distance_transform_sq_torch
from convcorr.numerics.mrf.kernels import distance_transform_sq, flow_energy
from convcorr.numerics.mrf.solve import bp_flow


def brute_dt2_shifted(f, w, sy, sx):
    ly, lx = f.shape
    ys, xs = np.mgrid[0:ly, 0:lx]
    return np.array([[(f + w * ((ys - i - sy) ** 2 + (xs - j - sx) ** 2)).min() for j in range(lx)]
                     for i in range(ly)])


@pytest.mark.parametrize("w", [0.0, 0.003, 0.5, 3.0])
def test_dt_torch_equals_numba_and_brute_force(w):
    rng = np.random.default_rng(int(w * 100) + 1)
    f = rng.random((4, 9, 7)) * 4
    f[1, :4] = np.inf  # infinite rows and entries, as forbidden labels
    f[1, 6, 2] = np.inf
    f[2, :, :5] = np.inf
    out = distance_transform_sq_torch(torch.tensor(f), w).numpy()
    np.testing.assert_allclose(out, distance_transform_sq(f, w), rtol=1e-12)
    out32 = distance_transform_sq_torch(torch.tensor(f, dtype=torch.float32), w).numpy()
    np.testing.assert_allclose(out32, distance_transform_sq(f, w), rtol=1e-6)


@pytest.mark.parametrize("sy,sx", [(0, 1), (-1, 0), (2, -3)])
def test_dt_torch_shifted_queries(sy, sx):
    rng = np.random.default_rng(sy * 10 + sx + 50)
    f = rng.random((3, 6, 8)) * 3
    # scalar shifts and per-array shifts (tensors) give the brute-force transform at shifted queries
    a = distance_transform_sq_torch(torch.tensor(f), 0.4, sy, sx).numpy()
    b = distance_transform_sq_torch(torch.tensor(f), 0.4, torch.full((3,), sy), torch.full((3,), sx)).numpy()
    for n in range(3):
        np.testing.assert_allclose(a[n], brute_dt2_shifted(f[n], 0.4, sy, sx), rtol=1e-12)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def noisy_shift(h, w, c, dx, dy, seed, noise=0.5):
    rng = np.random.default_rng(seed)
    ft = rng.standard_normal((h, w, c))
    fs = rng.standard_normal((h, w, c))
    ys, xs = np.mgrid[0:h, 0:w]
    ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
    fs[ok] = ft[(ys + dy)[ok], (xs + dx)[ok]] + noise * rng.standard_normal((ok.sum(), c))
    return fs, ft


def assert_agree(ref, res, fs, ft, beta, **kw):
    """Issue #11's criterion: same labelling on >= 99% of columns and energy within 1e-4 relative."""
    same = np.mean(np.all(ref.flow == res.flow, -1))
    assert same >= 0.99, same
    assert abs(res.energy - ref.energy) <= 1e-4 * abs(ref.energy)
    # the reported energy is the energy of the returned flow (float64 recomputation)
    e = flow_energy(fs, ft, res.flow, beta, outside_cost=kw.get("outside_cost"))
    assert res.energy == pytest.approx(e, rel=1e-5)


OPTIONS = [
    dict(),
    dict(schedule="sync"),
    dict(damping=0.5),
    dict(radius=3),
    dict(radius=2, outside_cost=0.5),  # outside labels take part in messages: window layout
    dict(coarse_to_fine=True, coarse_size=6),
    dict(beta=0.05, schedule="sync", damping=0.3),
    dict(beta=0.0),
]


@pytest.mark.parametrize("kw", OPTIONS, ids=[str(k) for k in OPTIONS])
@pytest.mark.parametrize("kernel", ["numba", "torch"])
def test_agrees_with_numba_reference_on_random_problems(kw, kernel):
    kw = dict(kw)
    beta = kw.pop("beta", 3e-3)
    fs, ft = noisy_shift(11, 10, 24, 2, -1, seed=len(str(kw)))
    ref = bp_flow(fs, ft, beta=beta, backend="numba", **kw)
    res = bp_flow_batch(fs[None], ft[None], beta=beta, kernel=kernel, **kw)[0]
    assert_agree(ref, res, fs, ft, beta, **kw)
    assert res.n_iter == ref.n_iter


def test_rectangular_grids_and_layouts_agree():
    fs, _ = noisy_shift(7, 9, 16, 1, 1, seed=3)
    _, ft = noisy_shift(6, 8, 16, 1, 1, seed=4)
    ref = bp_flow(fs, ft, beta=0.02, radius=5, backend="numba")
    for layout in ("grid", "window"):
        res = bp_flow_batch(fs[None], ft[None], beta=0.02, radius=5, layout=layout)[0]
        assert_agree(ref, res, fs, ft, 0.02)


def test_batch_equals_single_and_keeps_order():
    pairs = [noisy_shift(9, 9, 16, dx, dy, seed=s) for s, (dx, dy) in enumerate([(1, 0), (-2, 1), (0, 3), (2, 2)])]
    fs = np.stack([p[0] for p in pairs])
    ft = np.stack([p[1] for p in pairs])
    for schedule in ("checkerboard", "sync"):
        batch = bp_flow_batch(fs, ft, schedule=schedule)
        for b, (s, t) in enumerate(pairs):
            one = bp_flow_batch(s[None], t[None], schedule=schedule)[0]
            np.testing.assert_array_equal(batch[b].flow, one.flow)
            assert batch[b].energies == pytest.approx(one.energies, rel=1e-6)
            assert batch[b].n_iter == one.n_iter  # pairs stop early independently
    # align_pairs groups by shape; results in input order
    mixed = [pairs[0], noisy_shift(6, 7, 16, 1, 0, seed=9), pairs[1]]
    out = align_pairs(mixed, batch_size=2)
    np.testing.assert_array_equal(out[0].flow, bp_flow_batch(fs[:1], ft[:1])[0].flow)
    np.testing.assert_array_equal(out[1].flow, bp_flow(*mixed[1], backend="torch", device="cpu").flow)


def test_recovers_shift_and_default_backend():
    fs, ft = noisy_shift(10, 10, 32, -3, 2, seed=4, noise=0.2)
    res = bp_flow(fs, ft)  # backend "auto"
    ys, xs = np.mgrid[0:10, 0:10]
    ok = (ys + 2 < 10) & (xs - 3 >= 0)
    assert np.all(res.flow[ok] == [-3, 2])


def test_bad_arguments():
    z = np.zeros((2, 3, 3, 4))
    with pytest.raises(ValueError, match="kernel"):
        bp_flow_batch(z, z, kernel="cuda")
    with pytest.raises(ValueError, match="pairs"):
        bp_flow_batch(z, z[:1])
    with pytest.raises(ValueError, match="backend"):
        bp_flow(z[0], z[0], backend="jax")
    with pytest.raises(ValueError, match="same shape"):
        bp_flow_batch([z[0], z[0, :2]], [z[0], z[0]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_cpu():
    fs, ft = noisy_shift(12, 12, 32, 1, -2, seed=11)
    a = bp_flow_batch(fs[None], ft[None], device="cpu")[0]
    b = bp_flow_batch(fs[None], ft[None], device="cuda")[0]
    assert np.mean(np.all(a.flow == b.flow, -1)) >= 0.99


def test_agrees_on_real_alexnet_conv4_faces(shared):
    from convcorr.backbones import get_backbone
    from convcorr.datasets import embedded_instances

    faces = embedded_instances("face")[:3]
    acts = get_backbone("alexnet").extract([f.load() for f in faces], ["conv4"])["conv4"]  # (3, 13, 13, 384)
    for i, j in [(0, 1), (2, 0)]:
        ref = bp_flow(acts[i], acts[j], beta=3e-3, backend="numba")
        for kernel in ("numba", "torch"):
            res = bp_flow_batch(acts[i][None], acts[j][None], beta=3e-3, kernel=kernel)[0]
            assert_agree(ref, res, acts[i], acts[j], 3e-3)
