import numpy as np

from convcorr.core.arrays import l2_normalize


def test_l2_normalize_by_hand():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]]))
    np.testing.assert_array_equal(out, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])  # the zero vector stays zero
    assert out.dtype == np.float64 and out.flags.c_contiguous


def test_l2_normalize_last_axis_of_a_grid():
    grid = np.zeros((2, 3, 2))
    grid[..., 0] = 5.0
    grid[1, 2] = [6.0, 8.0]
    out = l2_normalize(grid)
    np.testing.assert_array_equal(out[0, 0], [1.0, 0.0])
    np.testing.assert_array_equal(out[1, 2], [0.6, 0.8])


def test_l2_normalize_dtype():
    x = np.array([[3, 4]], dtype=np.int64)
    assert l2_normalize(x).dtype == np.float64
    f32 = l2_normalize(x, dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32, np.array([[0.6, 0.8]], np.float32))
    h = np.array([[0.0, 2.0]], dtype=np.float16)
    assert l2_normalize(h, dtype=h.dtype).dtype == np.float16


def test_l2_normalize_eps_floors_the_norm():
    tiny = np.array([[3e-10, 4e-10]])                      # norm 5e-10
    np.testing.assert_allclose(l2_normalize(tiny), [[0.6, 0.8]])                       # above eps=1e-12: unit
    np.testing.assert_allclose(l2_normalize(tiny, eps=1e-8), [[3e-2, 4e-2]])           # below eps: x / eps
    np.testing.assert_array_equal(l2_normalize(np.zeros((1, 3)), eps=1e-8), np.zeros((1, 3)))
