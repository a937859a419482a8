"""Property-based fuzzing of every loader with truncated, malformed and hostile inputs (issue #10).

For every input the loader must either raise a DataError naming a file or folder of the data set, or return a
correct result: image paths inside the data root, visible keypoints finite, keypoint names unique, boxes finite
and non-empty. It must never raise another exception and never open a file outside the data root (tracked with
an audit hook on ``open`` while the loader runs with ``check_images=True``).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convcorr.core.errors import DataError
from convcorr.core.types import Instance, Pair
from convcorr.datasets import (load_berkeley_xml, load_coco_keypoints, load_cub, load_ibug_folder, load_pf_pascal_pairs,
                               load_pf_willow_pairs, load_spair)

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------------------------------- open tracking
_TRACK: dict = {"on": False, "opened": []}


def _audit(event, args):
    if _TRACK["on"] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        p = args[0]
        _TRACK["opened"].append(os.fsdecode(p) if not isinstance(p, os.PathLike) else os.fspath(p))


sys.addaudithook(_audit)


class Sandbox:
    """base/secret/secret.jpg (outside the root, must never be read) and base/root/ (the data root)."""

    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="ccfuzz-")
        self.base = Path(self._tmp.name).resolve()
        self.root = self.base / "root"
        self.root.mkdir()
        (self.base / "secret").mkdir()
        self.secret = self.base / "secret" / "secret.jpg"
        _img(self.secret)

    def close(self):
        self._tmp.cleanup()

    def hostile(self, kind: str, stem: str = "secret", ext: str = ".jpg") -> str:
        """An image name (relative to the root, or absolute) that points at the secret file."""
        if kind == "dotdot":
            return f"../secret/{stem}{ext}"
        if kind == "deep":
            return f"a/b/../../../secret/{stem}{ext}"
        if kind == "abs":
            return str(self.base / "secret" / f"{stem}{ext}")
        if kind == "symlink":
            (self.root / "lnk").mkdir(exist_ok=True)
            link = self.root / "lnk" / f"{stem}{ext}"
            if not link.is_symlink():
                link.symlink_to(self.secret)
            return f"lnk/{stem}{ext}"
        if kind == "symdir":
            link = self.root / "sd"
            if not link.is_symlink():
                link.symlink_to(self.base / "secret", target_is_directory=True)
            return f"sd/{stem}{ext}"
        raise AssertionError(kind)


def _img(path: Path, hw=(30, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*hw, 3), 90, np.uint8)).save(path)


HOSTILE = st.sampled_from(["dotdot", "deep", "abs", "symlink", "symdir"])
ODD_NAMES = st.one_of(st.sampled_from(["", " ", "a\x00b", ".", "..", "/", "x" * 300, "é/ü.jpg", "C:\\x.jpg",
                                       "\\\\srv\\x.jpg", "ok.jpg"]),
                      st.text(min_size=0, max_size=12))
NUMBER = st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308]), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 30, 10 ** 30),
                   st.sampled_from(["nan", "inf", "-inf", "1e400", "", "x", "1,5"]), st.none(), st.booleans(),
                   st.lists(st.integers(-5, 5), max_size=3))


def _check_outcome(sb: Sandbox, call):
    """Run ``call`` with open tracking; assert a DataError naming a data-set path, or a correct result."""
    _TRACK["opened"].clear()
    _TRACK["on"] = True
    try:
        try:
            out = call()
        finally:
            _TRACK["on"] = False
    except DataError as exc:
        msg = str(exc)
        assert str(sb.base) in msg, f"DataError does not name a file of the data set: {msg}"
        out = None
    secret = os.path.realpath(sb.secret)
    for p in _TRACK["opened"]:
        assert os.path.realpath(p) != secret, f"read outside the data root: {p}"
        if str(sb.base) in os.path.realpath(p):
            assert os.path.realpath(p).startswith(str(sb.root)), f"read outside the data root: {p}"
    if out is None:
        return None
    insts = out if isinstance(out, list) else [out]
    flat = []
    for x in insts:
        flat += [x.source, x.target] if isinstance(x, Pair) else [x]
    for inst in flat:
        assert isinstance(inst, Instance)
        if inst.image_path is not None:
            real = os.path.realpath(inst.image_path)
            assert real.startswith(str(sb.root) + os.sep), f"image path outside the root: {inst.image_path}"
        assert len(set(inst.keypoint_names)) == len(inst.keypoint_names)
        assert np.all(np.isfinite(inst.keypoints[inst.visible]))
        x0, y0, x1, y1 = inst.bbox
        assert np.all(np.isfinite(inst.bbox)) and x1 > x0 and y1 > y0
    return out


def _expect_error(sb: Sandbox, call, pattern: str):
    """Like :func:`_check_outcome` but the call must fail with a DataError matching ``pattern``."""
    import re

    def wrapped():
        try:
            call()
        except DataError as exc:
            assert re.search(pattern, str(exc)), str(exc)
            raise
        raise AssertionError(f"no DataError matching {pattern!r}")

    assert _check_outcome(sb, wrapped) is None


def _mutate(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data[: cut % (len(data) + 1)])
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    return bytes(b)


MUTATION = st.tuples(st.integers(0, 10 ** 6), st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                                        max_size=4))


# ----------------------------------------------------------------------------------------------------- COCO
def _coco(sb: Sandbox, file_name="img/a.jpg", kps=None, bbox=None, names=None, cat_id=1, image_id=1):
    _img(sb.root / "img" / "a.jpg")
    d = {"images": [{"id": 1, "file_name": file_name}],
         "categories": [{"id": 1, "name": "cat", "keypoints": names if names is not None else ["a", "b", "c"]}],
         "annotations": [{"id": 7, "image_id": image_id, "category_id": cat_id,
                          "keypoints": kps if kps is not None else [5, 6, 2, 10, 12, 2, 0, 0, 0],
                          "bbox": bbox if bbox is not None else [1, 2, 30, 20]}]}
    p = sb.root / "ann.json"
    p.write_text(json.dumps(d, allow_nan=True))
    return p


@SETTINGS
@given(field=st.sampled_from(["file_name", "kp", "bbox", "names", "cat_id", "image_id"]), pos=st.integers(0, 8),
       val=NUMBER, name=ODD_NAMES,
       names=st.sampled_from([["a", "a", "c"], ["a", "b"], [], ["a", "b", 3], "abc", None]))
def test_fuzz_coco_fields(field, pos, val, name, names):
    sb = Sandbox()
    try:
        kp, bbox = [5, 6, 2, 10, 12, 2, 0, 0, 0], [1, 2, 30, 20]
        kw = {}
        if field == "kp":
            kp[pos] = val
        elif field == "bbox":
            bbox[pos % 4] = val
        elif field == "file_name":
            kw["file_name"] = name
        elif field == "names":
            kw["names"] = names
        else:
            kw[field] = val
        p = _coco(sb, kps=kp, bbox=bbox, **kw)
        _check_outcome(sb, lambda: load_coco_keypoints(p, sb.root, check_images=True))
    finally:
        sb.close()


@SETTINGS
@given(kind=HOSTILE)
def test_fuzz_coco_hostile_names(kind):
    sb = Sandbox()
    try:
        p = _coco(sb, sb.hostile(kind))
        _expect_error(sb, lambda: load_coco_keypoints(p, sb.root, check_images=True), "ann.json.*(escapes|absolute)")
    finally:
        sb.close()


@SETTINGS
@given(m=MUTATION)
def test_fuzz_coco_bytes(m):
    sb = Sandbox()
    try:
        p = _coco(sb)
        p.write_bytes(_mutate(p.read_bytes(), *m))
        _check_outcome(sb, lambda: load_coco_keypoints(p, sb.root, check_images=True))
    finally:
        sb.close()


# ------------------------------------------------------------------------------------------------- Berkeley
def _berkeley(sb: Sandbox, image="2007_000001", x="10", y="12", xmin="2", w="30", names=("L_Eye", "Nose")):
    _img(sb.root / "JPEGImages" / "2007_000001.jpg")
    from xml.sax.saxutils import escape, quoteattr

    kps = "".join(f'<keypoint name="{n}" visible="1" x="{x}" y="{y}"/>' for n in names)
    xml = (f'<annotation><image>{escape(image)}</image><category>cat</category>'
           f'<visible_bounds height="20" width={quoteattr(str(w))} xmin={quoteattr(str(xmin))} ymin="3"/>'
           f'<keypoints>{kps}<keypoint name="R_Eye" visible="1" x="20" y="14"/></keypoints></annotation>')
    p = sb.root / "annotations" / "a.xml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(xml)
    return p


XMLSAFE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)


@SETTINGS
@given(field=st.sampled_from(["image", "x", "xmin", "w", "names"]), image=ODD_NAMES.filter(lambda s: "\x00" not in s),
       val=st.one_of(NUMBER.map(str), XMLSAFE), names=st.sampled_from([["L_Eye", "L_Eye"], [], ["R_Eye"]]))
def test_fuzz_berkeley_fields(field, image, val, names):
    from xml.sax.saxutils import quoteattr

    sb = Sandbox()
    try:
        kw = {"image": image} if field == "image" else {"names": names} if field == "names" else {}
        if field in ("xmin", "w"):
            kw[field] = val
        p = _berkeley(sb, **kw)
        if field == "x":
            p.write_text(p.read_text().replace('x="10"', "x=" + quoteattr(val)))
        _check_outcome(sb, lambda: load_berkeley_xml(sb.root / "annotations", sb.root / "JPEGImages",
                                                     check_images=True))
    finally:
        sb.close()


@SETTINGS
@given(kind=HOSTILE)
def test_fuzz_berkeley_hostile_names(kind):
    sb = Sandbox()
    try:
        p = _berkeley(sb, sb.hostile(kind, ext=".jpg")[: -len(".jpg")])
        if kind in ("symlink", "symdir"):  # links live below the image root
            for l in ("lnk", "sd"):
                if (sb.root / l).is_symlink() or (sb.root / l).exists():
                    os.replace(sb.root / l, sb.root / "JPEGImages" / l)
        _expect_error(sb, lambda: load_berkeley_xml(p, sb.root / "JPEGImages", check_images=True), "a.xml.*(escapes|absolute)")
    finally:
        sb.close()


@SETTINGS
@given(m=MUTATION)
def test_fuzz_berkeley_bytes(m):
    sb = Sandbox()
    try:
        p = _berkeley(sb)
        p.write_bytes(_mutate(p.read_bytes(), *m))
        _check_outcome(sb, lambda: load_berkeley_xml(p, sb.root / "JPEGImages", check_images=True))
    finally:
        sb.close()


# ------------------------------------------------------------------------------------------------ PF-PASCAL
def _pf(sb: Sandbox, src="JPEGImages/a.jpg", cls="8", xa="1;10;20", ya="2;12;5"):
    _img(sb.root / "JPEGImages" / "a.jpg")
    _img(sb.root / "JPEGImages" / "b.jpg")
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["source_image", "target_image", "class", "XA", "YA", "XB", "YB"])
    w.writerow([src, "JPEGImages/b.jpg", cls, xa, ya, "3;11;21", "4;13;6"])
    p = sb.root / "pairs.csv"
    p.write_text(buf.getvalue())
    return p


@SETTINGS
@given(field=st.sampled_from(["src", "cls", "xa"]), src=ODD_NAMES.filter(lambda s: "\x00" not in s),
       val=NUMBER.map(str), pos=st.integers(0, 3), xa=st.text(max_size=6))
def test_fuzz_pfpascal_fields(field, src, val, pos, xa):
    sb = Sandbox()
    try:
        kw = {}
        if field == "src":
            kw["src"] = src
        elif field == "cls":
            kw["cls"] = val
        else:
            vals = ["1", "10", "20"]
            if pos < 3:
                vals[pos] = val
                kw["xa"] = ";".join(vals)
            else:
                kw["xa"] = xa
        p = _pf(sb, **kw)
        _check_outcome(sb, lambda: load_pf_pascal_pairs(p, sb.root, check_images=True))
    finally:
        sb.close()


@SETTINGS
@given(kind=HOSTILE)
def test_fuzz_pfpascal_hostile_names(kind):
    sb = Sandbox()
    try:
        p = _pf(sb, sb.hostile(kind))
        _expect_error(sb, lambda: load_pf_pascal_pairs(p, sb.root, check_images=True), "pairs.csv:2.*(escapes|absolute)")
    finally:
        sb.close()


@SETTINGS
@given(m=MUTATION)
def test_fuzz_pfpascal_bytes(m):
    sb = Sandbox()
    try:
        p = _pf(sb)
        p.write_bytes(_mutate(p.read_bytes(), *m))
        _check_outcome(sb, lambda: load_pf_pascal_pairs(p, sb.root, check_images=True))
    finally:
        sb.close()


# ------------------------------------------------------------------------------------------------ PF-WILLOW
def _willow(sb: Sandbox, src="PF-dataset/car(G)/a.png", vals=None):
    _img(sb.root / "PF-dataset" / "car(G)" / "a.png")
    _img(sb.root / "PF-dataset" / "car(G)" / "b.png")
    import csv
    import io

    v = vals if vals is not None else [str(1 + j) for j in range(10)] + [str(2 + j) for j in range(10)] * 3
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["imageA", "imageB"] + [f"c{j}" for j in range(40)])
    w.writerow([src, "PF-dataset/car(G)/b.png"] + v)
    p = sb.root / "test_pairs.csv"
    p.write_text(buf.getvalue())
    return p


@SETTINGS
@given(field=st.sampled_from(["src", "val", "ncols"]), src=ODD_NAMES.filter(lambda s: "\x00" not in s),
       val=NUMBER.map(str), pos=st.integers(0, 39), n=st.integers(0, 45))
def test_fuzz_pfwillow_fields(field, src, val, pos, n):
    sb = Sandbox()
    try:
        v = [str(1 + j) for j in range(10)] + [str(2 + j) for j in range(10)] * 3
        kw = {}
        if field == "src":
            kw["src"] = src
        elif field == "val":
            v[pos] = val
        else:
            v = v[:n] if n < 40 else v + ["1"] * (n - 40)
        p = _willow(sb, vals=v, **kw)
        _check_outcome(sb, lambda: load_pf_willow_pairs(p, sb.root, check_images=True))
    finally:
        sb.close()


@SETTINGS
@given(kind=HOSTILE)
def test_fuzz_pfwillow_hostile_names(kind):
    sb = Sandbox()
    try:
        name = sb.hostile(kind)
        if kind in ("symlink", "symdir"):  # needs a <class>/<image> part
            name = name if "/" in name else f"x/{name}"
        p = _willow(sb, name)
        _expect_error(sb, lambda: load_pf_willow_pairs(p, sb.root, check_images=True),
                      "test_pairs.csv:2.*(escapes|absolute)")
    finally:
        sb.close()


@SETTINGS
@given(m=MUTATION)
def test_fuzz_pfwillow_bytes(m):
    sb = Sandbox()
    try:
        p = _willow(sb)
        p.write_bytes(_mutate(p.read_bytes(), *m))
        _check_outcome(sb, lambda: load_pf_willow_pairs(p, sb.root, check_images=True))
    finally:
        sb.close()


# ---------------------------------------------------------------------------------------------------- SPair
def _spair(sb: Sandbox, **over):
    _img(sb.root / "JPEGImages" / "cat" / "a.jpg")
    _img(sb.root / "JPEGImages" / "cat" / "b.jpg")
    d = {"src_imname": "a.jpg", "trg_imname": "b.jpg", "category": "cat", "kps_ids": [3, 7],
         "src_kps": [[1, 2], [10, 12]], "trg_kps": [[5, 6], [20, 22]], "src_bndbox": [0, 0, 30, 25],
         "trg_bndbox": [2, 2, 35, 28]}
    d.update(over)
    p = sb.root / "PairAnnotation" / "test" / "p.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(d, allow_nan=True))
    return p


@SETTINGS
@given(field=st.sampled_from(["src_imname", "category", "src_kps", "kps_ids", "src_bndbox", "shape"]),
       name=ODD_NAMES, val=NUMBER, pos=st.integers(0, 3),
       shape=st.sampled_from([[[1, 2]], [1, 2, 3, 4], [[1, 2, 3], [4, 5, 6]], [], "x", None, {"a": 1}]))
def test_fuzz_spair_fields(field, name, val, pos, shape):
    sb = Sandbox()
    try:
        kps, ids, box = [[1, 2], [10, 12]], [3, 7], [0, 0, 30, 25]
        kw = {}
        if field in ("src_imname", "category"):
            kw[field] = name if pos % 2 else val
        elif field == "src_kps":
            kps[pos % 2][pos // 2 % 2] = val
        elif field == "kps_ids":
            ids[pos % 2] = val if pos < 2 else 3  # pos >= 2: duplicate ids
        elif field == "src_bndbox":
            box[pos] = val
        else:
            kw["src_kps"] = shape
        _spair(sb, **dict(dict(src_kps=kps, kps_ids=ids, src_bndbox=box), **kw))
        _check_outcome(sb, lambda: load_spair(sb.root, "test", check_images=True))
    finally:
        sb.close()


@SETTINGS
@given(kind=HOSTILE, where=st.sampled_from(["imname", "category"]))
def test_fuzz_spair_hostile_names(kind, where):
    sb = Sandbox()
    try:
        if where == "imname":
            _spair(sb, src_imname="../../" + sb.hostile(kind) if kind in ("dotdot", "deep") else sb.hostile(kind))
        else:
            _spair(sb, category="../../../secret/x" if kind != "abs" else str(sb.base / "secret"),
                   src_imname="secret.jpg" if kind != "abs" else "secret.jpg")
        try:
            _check_outcome(sb, lambda: load_spair(sb.root, "test", check_images=True))
        except DataError as exc:
            assert "p.json" in str(exc)
    finally:
        sb.close()


@SETTINGS
@given(m=MUTATION)
def test_fuzz_spair_bytes(m):
    sb = Sandbox()
    try:
        p = _spair(sb)
        p.write_bytes(_mutate(p.read_bytes(), *m))
        _check_outcome(sb, lambda: load_spair(sb.root, "test", check_images=True))
    finally:
        sb.close()


# ------------------------------------------------------------------------------------------------------ CUB
def _cub(sb: Sandbox, name="001.A/x.jpg", box="1 2.0 3.0 20.0 10.0", loc="1 1 5.0 6.0 1", parts="1 back\n2 beak\n"):
    _img(sb.root / "images" / "001.A" / "x.jpg")
    (sb.root / "parts").mkdir(exist_ok=True)
    (sb.root / "images.txt").write_text(f"1 {name}\n")
    (sb.root / "bounding_boxes.txt").write_text(box + "\n")
    (sb.root / "parts" / "parts.txt").write_text(parts)
    (sb.root / "parts" / "part_locs.txt").write_text(loc + "\n1 2 7.0 8.0 1\n")
    return sb.root


@SETTINGS
@given(field=st.sampled_from(["name", "box", "loc", "parts"]),
       name=ODD_NAMES.filter(lambda s: "\n" not in s and "\r" not in s), val=NUMBER.map(str), pos=st.integers(0, 4),
       parts=st.sampled_from(["1 back\n1 beak\n", "1 back\n2 back\n", "", "x y\n", "1\n"]))
def test_fuzz_cub_fields(field, name, val, pos, parts):
    sb = Sandbox()
    try:
        box, loc = ["1", "2.0", "3.0", "20.0", "10.0"], ["1", "1", "5.0", "6.0", "1"]
        kw = {}
        if field == "name":
            kw["name"] = name
        elif field == "box":
            box[pos] = val
        elif field == "loc":
            loc[pos] = val
        else:
            kw["parts"] = parts
        _cub(sb, box=" ".join(box), loc=" ".join(loc), **kw)
        _check_outcome(sb, lambda: load_cub(sb.root, check_images=True))
    finally:
        sb.close()


@SETTINGS
@given(kind=HOSTILE)
def test_fuzz_cub_hostile_names(kind):
    sb = Sandbox()
    try:
        name = sb.hostile(kind)
        if kind in ("dotdot", "deep"):
            name = "../" + name  # relative to root/images
        if kind in ("symlink", "symdir"):
            for l in ("lnk", "sd"):
                if (sb.root / l).is_symlink() or (sb.root / l).exists():
                    (sb.root / "images").mkdir(exist_ok=True)
                    os.replace(sb.root / l, sb.root / "images" / l)
        _cub(sb, name)
        _expect_error(sb, lambda: load_cub(sb.root, check_images=True), "images.txt.*(escapes|absolute)")
    finally:
        sb.close()


@SETTINGS
@given(m=MUTATION, which=st.sampled_from(["images.txt", "bounding_boxes.txt", "parts/parts.txt",
                                          "parts/part_locs.txt"]))
def test_fuzz_cub_bytes(m, which):
    sb = Sandbox()
    try:
        _cub(sb)
        p = sb.root / which
        p.write_bytes(_mutate(p.read_bytes(), *m))
        _check_outcome(sb, lambda: load_cub(sb.root, check_images=True))
    finally:
        sb.close()


# ----------------------------------------------------------------------------------------------------- iBUG
def _ibug(sb: Sandbox, pts_text=None, ljson=None):
    folder = sb.root / "faces"
    folder.mkdir(exist_ok=True)
    _img(folder / "a.jpg")
    (folder / "a.pts").write_text(pts_text if pts_text is not None else
                                  "version: 1\nn_points: 3\n{\n2 3\n20 4\n10 15\n}\n")
    if ljson is not None:
        (folder / "b.ljson").write_text(ljson)
    return folder


@SETTINGS
@given(field=st.sampled_from(["n", "pts", "ljson"]), val=NUMBER, pos=st.integers(0, 5),
       lj=st.lists(st.one_of(st.none(), st.lists(NUMBER, max_size=3)), max_size=4))
def test_fuzz_ibug_fields(field, val, pos, lj):
    sb = Sandbox()
    try:
        n, pts, ljson = "3", ["2", "3", "20", "4", "10", "15"], None
        if field == "n":
            n = str(val)
        elif field == "pts":
            pts[pos] = str(val)
        else:
            pts_ok = [[3, 2], [4, 20], [15, 10]]
            if lj:
                pts_ok[pos % 3] = lj[0]
            ljson = json.dumps({"groups": {"LJSON": {"landmarks": {"points": pts_ok if lj else val}}}},
                               allow_nan=True)
        text = f"version: 1\nn_points: {n}\n{{\n" + "\n".join(" ".join(pts[i:i + 2]) for i in (0, 2, 4)) + "\n}\n"
        folder = _ibug(sb, text, ljson)
        _check_outcome(sb, lambda: load_ibug_folder(folder, n_points=None))
    finally:
        sb.close()


def test_ibug_image_symlinked_outside_is_refused():
    sb = Sandbox()
    try:
        folder = _ibug(sb)
        (folder / "a.jpg").unlink()
        (folder / "a.jpg").symlink_to(sb.secret)
        _expect_error(sb, lambda: load_ibug_folder(folder, n_points=None), "escapes")
        (insts,) = [load_ibug_folder(folder, n_points=None, allow_outside_root=True)]
        assert os.path.realpath(insts[0].image_path) == str(sb.secret)  # explicit opt-out
    finally:
        sb.close()


@SETTINGS
@given(m=MUTATION)
def test_fuzz_ibug_bytes(m):
    sb = Sandbox()
    try:
        folder = _ibug(sb)
        p = folder / "a.pts"
        p.write_bytes(_mutate(p.read_bytes(), *m))
        _check_outcome(sb, lambda: load_ibug_folder(folder, n_points=None))
    finally:
        sb.close()


# ------------------------------------------------------------------------------------------- images as input
@SETTINGS
@given(m=MUTATION)
def test_fuzz_corrupt_images_via_check_images(m):
    sb = Sandbox()
    try:
        p = _coco(sb)
        img = sb.root / "img" / "a.jpg"
        img.write_bytes(_mutate(img.read_bytes(), *m))
        _check_outcome(sb, lambda: load_coco_keypoints(p, sb.root, check_images=True))
    finally:
        sb.close()
