"""Berkeley PASCAL VOC 2011 keypoint XML loader on the real fixtures (values converted by hand from the XML)."""
import numpy as np
import pytest
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.datasets import load_berkeley_xml, load_dataset
from convcorr.datasets.berkeley import BERKELEY_KEYPOINTS

CAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotation><image>2007_000528</image><category>cat</category>
<visible_bounds height="{h}" width="195.00" xmin="124.00" ymin="68.00"/>
<keypoints><keypoint name="L_Eye" visible="1" x="273.66" y="158.26" z="0.00"/>
<keypoint name="Nose" visible="0" x="243.42" y="180.01" z="0.00"/></keypoints></annotation>"""


@pytest.fixture
def xml_dir(shared):
    return shared / "keypoints" / "berkeley-pascal2011-xml"


def test_cat_values_are_zero_based(xml_dir):
    (cat,) = load_berkeley_xml(xml_dir / "cat" / "2007_000528_1.xml")
    # visible_bounds xmin=124 ymin=68 width=195 height=242 (1-based) -> (123, 67, 318, 309)
    np.testing.assert_allclose(cat.bbox, [123, 67, 318, 309])
    assert cat.bbox_size == 242 and cat.category == "cat" and cat.id == "cat/2007_000528_1"
    # L_Eye x=273.66 y=158.26, R_F_Paw x=128.04 y=267.38 -> minus 1
    np.testing.assert_allclose(cat.keypoints[cat.keypoint_names.index("L_Eye")], [272.66, 157.26])
    np.testing.assert_allclose(cat.keypoints[cat.keypoint_names.index("R_F_Paw")], [127.04, 266.38])
    # standard animal list: 16 names, the 10 annotated ones visible, TailBase absent
    assert cat.keypoint_names == tuple(sorted(BERKELEY_KEYPOINTS["cat"])) and len(cat.keypoint_names) == 16
    assert cat.visible.sum() == 10
    t = cat.keypoint_names.index("TailBase")
    assert not cat.visible[t] and np.isnan(cat.keypoints[t]).all()
    assert cat.image_path is None and cat.meta["image_id"] == "2007_000528"


def test_folder_categories_and_meta(xml_dir, tmp_path):
    insts = load_berkeley_xml(xml_dir, images=tmp_path)
    assert [i.category for i in insts] == ["aeroplane", "cat", "person"]
    person = insts[2]
    np.testing.assert_allclose(person.bbox, [61, 189, 82, 242])  # xmin 62 ymin 190 w 21 h 53
    assert person.meta["subcategory"] == "Female" and person.visible.sum() == 8
    assert "foreground" not in person.keypoint_names  # a polyline segment, not a keypoint
    assert insts[0].keypoint_names == tuple(sorted(insts[0].keypoint_names)) and len(insts[0].keypoint_names) == 14
    assert insts[1].image_path == tmp_path / "2007_000528.jpg"
    assert [i.id for i in load_berkeley_xml(xml_dir, category="person")] == ["person/2008_000003_0"]
    assert len(load_dataset("berkeley", annotations=xml_dir)) == 3


def test_occluded_points_keep_position(tmp_path):
    f = tmp_path / "c.xml"
    f.write_text(CAT_XML.format(h="242.00"))
    (c,) = load_berkeley_xml(f)
    n = c.keypoint_names.index("Nose")
    assert not c.visible[n]
    np.testing.assert_allclose(c.keypoints[n], [242.42, 179.01])


def test_bad_input_names_the_file(xml_dir, tmp_path):
    with pytest.raises(DataError, match="nope.xml"):
        load_berkeley_xml(tmp_path / "nope.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><image>x</image>")
    with pytest.raises(DataError, match="bad.xml"):
        load_berkeley_xml(bad)
    nobox = tmp_path / "nobox.xml"
    nobox.write_text("<annotation><image>x</image><category>cat</category><keypoints/></annotation>")
    with pytest.raises(DataError, match="nobox.xml"):
        load_berkeley_xml(nobox)
    empty = tmp_path / "empty.xml"
    empty.write_text(CAT_XML.format(h="0.00"))
    with pytest.raises(DataError, match="empty.xml.*empty or invalid bounding box"):
        load_berkeley_xml(empty)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="empty_dir: no Berkeley keypoint XML"):
        load_berkeley_xml(tmp_path / "empty_dir")


def test_images_checked(xml_dir, tmp_path):
    insts = load_berkeley_xml(xml_dir / "cat", images=tmp_path)
    with pytest.raises(DataError, match="2007_000528.jpg"):
        insts[0].load()  # missing image
    (tmp_path / "2007_000528.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match="2007_000528.jpg.*cannot decode"):
        load_berkeley_xml(xml_dir / "cat", images=tmp_path, check_images=True)
    Image.fromarray(np.zeros((100, 150, 3), np.uint8)).save(tmp_path / "2007_000528.jpg")
    with pytest.raises(DataError, match="2007_000528.jpg.*outside the 150x100 image"):
        load_berkeley_xml(xml_dir / "cat", images=tmp_path, check_images=True)
    Image.fromarray(np.zeros((375, 500, 3), np.uint8)).save(tmp_path / "2007_000528.jpg")  # the VOC image size
    (cat,) = load_berkeley_xml(xml_dir / "cat", images=tmp_path, check_images=True)
    assert cat.image.shape == (375, 500, 3)
