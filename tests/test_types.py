"""load_image (16-bit, EXIF orientation, pixel limit, corrupt files) and the error types."""
import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import ConfigError, DataError, UserError
from convcorr.core.images import load_image, max_image_pixels


def test_error_types():
    assert issubclass(DataError, ValueError) and issubclass(DataError, UserError)
    assert issubclass(ConfigError, KeyError) and issubclass(ConfigError, ValueError)
    assert str(ConfigError("experiment 'x' has no option 'y'")) == "experiment 'x' has no option 'y'"  # unquoted


def test_16bit_grey_png_is_rescaled_not_clipped(tmp_path):
    a = np.array([[0, 257, 32896], [65535, 1000, 60000]], dtype=np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    img = load_image(p)
    assert img.shape == (2, 3, 3) and img.dtype == np.uint8
    want = np.rint(a / 65535 * 255).astype(np.uint8)
    np.testing.assert_array_equal(img[..., 0], want)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_32bit_and_float_grey(tmp_path):
    p = tmp_path / "i32.tif"
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32)).save(p)
    np.testing.assert_array_equal(load_image(p)[0, :, 0], [0, 100, 255])  # 8-bit range kept
    p = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(p)
    np.testing.assert_array_equal(load_image(p)[0, :, 1], [0, 128, 255])


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # stored 20 high x 40 wide, red block at top-left
    a[:8, :8] = (255, 0, 0)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif, quality=100)
    img = load_image(p)
    assert img.shape == (40, 20, 3)  # displayed upright: 40 high x 20 wide
    assert img[2, -3, 0] > 200 and img[2, -3, 1] < 60  # the stored top-left corner shows at the top-right
    assert img[-3, 2, 0] < 60


def test_palette_rgba_and_grey_modes(tmp_path):
    for mode in ("P", "RGBA", "LA", "L", "1", "CMYK"):
        p = tmp_path / f"m{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        Image.new(mode, (5, 4)).save(p)
        img = load_image(p)
        assert img.shape == (4, 5, 3) and img.dtype == np.uint8


def test_pixel_limit_refuses_bombs_from_the_header(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("L", (300, 200)).save(p)
    with pytest.raises(DataError, match=r"big.png: image of 300x200 = 60000 pixels exceeds the limit of 59999"):
        load_image(p, max_pixels=59999)
    monkeypatch.setenv("CONVCORR_MAX_IMAGE_PIXELS", "1000")
    assert max_image_pixels() == 1000
    with pytest.raises(DataError, match="CONVCORR_MAX_IMAGE_PIXELS"):
        load_image(p)
    monkeypatch.setenv("CONVCORR_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="CONVCORR_MAX_IMAGE_PIXELS"):
        load_image(p)


def test_huge_declared_size_is_refused_without_decoding(tmp_path):
    # a PNG header declaring 100000 x 100000 pixels (10 gigapixels) with almost no data: PIL's own bomb error
    # (over 2x its limit) or ours, both DataErrors naming the file, never a traceback or a memory blow-up
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    p = tmp_path / "bomb.png"
    p.write_bytes(png)
    with pytest.raises(DataError, match="bomb.png"):
        load_image(p)


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,
                                     b"\xff\xd8\xff\xe0" + b"\x00" * 10])
def test_corrupt_images_name_the_file(tmp_path, content):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(DataError, match="bad.png"):
        load_image(p)


def test_truncated_image_names_the_file(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DataError, match="t.jpg"):
        load_image(p)
    with pytest.raises(DataError, match="nope.jpg: image file not found"):
        load_image(tmp_path / "nope.jpg")
