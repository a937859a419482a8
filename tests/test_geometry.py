import numpy as np

from convcorr.core.geometry import RFGeometry, scale_points


def unpadded_grid_shape(g: RFGeometry, input_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) columns whose whole rf lies inside an (H, W) input: the output size of an unpadded layer."""
    half = (g.size - 1) / 2.0
    f = lambda n: int(np.floor((n - 1 - half - g.offset) / g.stride)) + 1
    return f(input_hw[0]), f(input_hw[1])


def test_column_pixel_roundtrip_by_hand():
    g = RFGeometry(size=11, stride=4, offset=5)  # AlexNet conv1
    assert g.column_centers(3).tolist() == [5, 9, 13]
    assert g.column_to_pixel(np.array([[2, 1]])).tolist() == [[13, 9]]
    # (12, 6.9) is nearest to the centres x=13 (col 2) and y=5 (row 0)
    assert g.pixel_to_column(np.array([[12.0, 6.9]])).tolist() == [[2, 0]]
    assert g.pixel_to_column(np.array([[1000.0, -50.0]]), grid_hw=(55, 55)).tolist() == [[54, 0]]
    assert unpadded_grid_shape(g, (227, 227)) == (55, 55)  # AlexNet conv1 on 227 x 227


def test_rf_contains():
    g = RFGeometry(size=11, stride=4, offset=5)
    assert g.rf_contains(np.array([0, 0]), np.array([10.0, 0.0]))
    assert not g.rf_contains(np.array([0, 0]), np.array([10.5, 0.0]))


def test_grid_centers_shape_and_order():
    g = RFGeometry(size=3, stride=2, offset=1)
    c = g.grid_centers((2, 3))
    assert c.shape == (2, 3, 2)
    assert c[1, 2].tolist() == [5.0, 3.0]  # (x, y)


def test_scale_points_pixel_centres():
    xy = np.array([[-0.5, -0.5], [99.5, 49.5]])  # image corners of a 100x50 (W x H) image
    out = scale_points(xy, (50, 100), (100, 200))
    assert np.allclose(out, [[-0.5, -0.5], [199.5, 99.5]])
