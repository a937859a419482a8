import numpy as np
import pytest

from convcorr.core.geometry import RFGeometry
from convcorr.methods.reconstruction import (FeatureDatabase, average_rf, build_databases, extract_patches, patch_start,
                                             reconstruct, uniform_rf_reconstruct)

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 100, 50]], np.uint8)


def onehot_db(copies=1, index="flat", **kw):
    """Database of one-hot features e_i, each at the centre of a constant-colour 8x8 image of colour i."""
    db = FeatureDatabase(4, index, **kw)
    for c in range(copies):
        for i, col in enumerate(COLOURS):
            j = db.add_images([np.tile(col, (8, 8, 1))])[0]
            db.add(np.eye(4)[i][None] * (1 + c), j, [[3.5, 3.5]], group=i)
    return db


def test_patch_start_tiles_and_centres():
    # odd size: exactly centred; even size: stride patches of consecutive columns tile without gaps
    assert patch_start([5.0], 11)[0] == 0
    starts = patch_start(5.0 + 4 * np.arange(4), 4)
    assert np.all(np.diff(starts) == 4) and starts[0] == 3


def test_extract_patches_zero_padding():
    img = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3)
    p = extract_patches(img, None, [[0, 0], [2, 2]], 3)
    assert p.shape == (2, 3, 3, 3)
    assert np.all(p[0, 0] == 0) and np.all(p[0, :, 0] == 0)  # outside the image: black
    np.testing.assert_array_equal(p[0, 1:, 1:], img[:2, :2])
    np.testing.assert_array_equal(p[1], img[1:4, 1:4])
    # stores of different sizes: pixels beyond an image's own size are outside
    db = FeatureDatabase(2)
    db.add_images([np.full((2, 2, 3), 9, np.uint8), np.full((4, 4, 3), 7, np.uint8)])
    q = extract_patches(db.images, [0, 1], [[1, 1], [1, 1]], 3, db.image_hw)
    assert q[0, 2, 2].sum() == 0 and q[0, 1, 1, 0] == 9 and np.all(q[1] == 7)


def test_reconstruct_onehot_exact_colours():
    geom = RFGeometry(size=7, stride=4, offset=2)  # column c centred at 2 + 4c: stride patches start at 4c
    labels = np.array([[0, 1, 2], [3, 2, 1]])
    grid = np.eye(4)[labels] * np.array([[1.0], [5.0]])[:, :, None]  # norms differ: cosine ignores them
    for copies, k in ((1, 1), (3, 3)):
        db = onehot_db(copies)
        out, ids = reconstruct(grid, geom, db, k, (8, 12), return_ids=True)
        assert out.shape == (8, 12, 3) and out.dtype == np.uint8 and ids.shape == (2, 3, k)
        for r in range(2):
            for c in range(3):
                assert np.all(out[4 * r:4 * r + 4, 4 * c:4 * c + 4] == COLOURS[labels[r, c]])
        # precomputed neighbours give the same images (the uniform-rf control reuses them)
        np.testing.assert_array_equal(reconstruct(grid, geom, db, k, (8, 12), ids=ids), out)
        np.testing.assert_array_equal(uniform_rf_reconstruct(grid, geom, db, k, (8, 12), ids=ids),
                                      uniform_rf_reconstruct(grid, geom, db, k, (8, 12)))
    # uncovered border pixels stay black
    out = reconstruct(grid, geom, onehot_db(), 1, (10, 14))
    assert np.all(out[8:] == 0) and np.all(out[:, 12:] == 0)


def test_reconstruct_excludes_groups():
    geom = RFGeometry(size=4, stride=4, offset=1.5)
    db = onehot_db()
    grid = np.eye(4)[[[0]]]
    out = reconstruct(grid, geom, db, 1, (4, 4), exclude_groups=[0])
    assert not np.all(out == COLOURS[0])


def test_cosine_not_l2_ranking():
    db = FeatureDatabase(2)
    db.add_images([np.zeros((4, 4, 3), np.uint8)])
    db.add(np.array([[10.0, 1.0], [0.5, 0.5]]), 0, np.zeros((2, 2)))
    q = np.array([[1.0, 0.0]])
    # L2: ||q - a|| = 9.06 > ||q - b|| = 0.71, so L2 would rank b first; cosine: 0.995 (a) > 0.707 (b)
    sims, ids = db.search(q, 2)
    assert ids[0].tolist() == [0, 1]
    np.testing.assert_allclose(sims[0], [10 / np.hypot(10, 1), np.sqrt(0.5)], rtol=1e-5)


def test_average_rf_of_identical_patches_is_the_patch():
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, (11, 11, 3), dtype=np.uint8)
    geom = RFGeometry(size=11, stride=4, offset=5)
    db = FeatureDatabase(3)
    seed = np.array([1.0, 2.0, 0.5])
    for j, (x, y) in enumerate([(5, 5), (20, 7), (9, 18), (14, 14), (6, 19)]):
        img = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
        img[y - 5:y + 6, x - 5:x + 6] = patch
        db.add_images([img])
        db.add(seed[None] * (j + 1), j, [[x, y]])
    db.add(np.array([[0.0, 0.0, 1.0]]), 0, [[20, 20]])  # a dissimilar distractor
    np.testing.assert_array_equal(average_rf(db, seed, 5, geom), patch)
    assert average_rf(db, seed, 6, geom, as_float=True).dtype == np.float32


def test_uniform_rf_overlap_average_by_hand():
    # two columns 2 px apart with rf 5: column 0 covers x 0..4, column 1 covers x 2..6; overlap x 2..4 averages
    geom = RFGeometry(size=5, stride=2, offset=2)
    db = FeatureDatabase(2)
    db.add_images([np.full((5, 5, 3), 200, np.uint8), np.full((5, 5, 3), 100, np.uint8)])
    db.add(np.eye(2), [0, 1], [[2, 2], [2, 2]])
    grid = np.eye(2)[None]  # (1, 2, 2): column 0 -> image 0 (200), column 1 -> image 1 (100)
    out = uniform_rf_reconstruct(grid, geom, db, 1, (5, 8))
    assert np.all(out[:, 0:2] == 200) and np.all(out[:, 2:5] == 150) and np.all(out[:, 5:7] == 100)
    assert np.all(out[:, 7] == 0)


@pytest.mark.parametrize("index", ["flat", "flat16", "sq8", "ivf", "ivf16", "hnsw"])
def test_faiss_search_matches_bruteforce(index):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 32)).astype(np.float32)
    Q = rng.standard_normal((40, 32)).astype(np.float32)
    groups = rng.integers(0, 5, len(X))
    kw = {"ivf": dict(nlist=16, nprobe=16), "ivf16": dict(nlist=16, nprobe=16), "hnsw": dict(ef_search=256),
          "sq8": dict(train_size=1000)}.get(index, {})
    db = FeatureDatabase(32, index, **kw)
    db.add_images([np.zeros((2, 2, 3), np.uint8)])
    for a in range(0, len(X), 700):  # several batches (IVF trains on the first ones)
        db.add(X[a:a + 700], 0, np.zeros((len(X[a:a + 700]), 2)), groups[a:a + 700])
    assert len(db) == 3000
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    S = Qn @ Xn.T
    for excl in (None, [2, 3]):
        Sx = S if excl is None else np.where(np.isin(groups, excl)[None], -np.inf, S)
        ref = np.argsort(-Sx, axis=1)[:, :10]
        sims, ids = db.search(Q, 10, exclude_groups=excl)
        if index in ("hnsw", "flat16", "ivf16", "sq8"):  # approximate / compressed vectors: near-perfect recall
            assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref)]) > 0.95
            got = np.take_along_axis(Sx, ids, 1)  # true similarities of the returned ids
            np.testing.assert_allclose(sims, got, atol=0.06 if index == "sq8" else 2e-4)  # sq8: 8-bit codes
        else:
            np.testing.assert_array_equal(ids, ref)
            np.testing.assert_allclose(sims, np.take_along_axis(Sx, ref, 1), atol=1e-5)
        if excl is not None:
            assert not np.isin(groups[ids], excl).any()


def test_compressed_index_memory_and_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2000, 64)).astype(np.float32)
    sizes = {}
    for kind in ("flat", "flat16", "sq8"):
        db = FeatureDatabase(64, kind, train_size=500)
        db.add(X, 0, np.zeros((len(X), 2)), 0)
        db.finalize()
        sizes[kind] = db.nbytes()["index"]
        if kind == "flat16":
            db.save(tmp_path / "db16")
            db2 = FeatureDatabase.load(tmp_path / "db16")
            np.testing.assert_array_equal(db2.search(X[:5], 3)[1], db.search(X[:5], 3)[1])
    assert sizes == {"flat": 2000 * 64 * 4, "flat16": 2000 * 64 * 2, "sq8": 2000 * 64}


def test_build_databases_preallocated_store_equals_list():
    from convcorr.methods.reconstruction import _ImageStore

    rng = np.random.default_rng(0)
    ims = [rng.integers(0, 255, (6, 5, 3), dtype=np.uint8) for _ in range(5)]
    for n in (5, 3, None):  # exact count, too few expected (falls back to a list), unknown
        st = _ImageStore(n)
        st.extend(ims[:2])
        st.extend(ims[2:])
        imgs, hw = st.finish()
        np.testing.assert_array_equal(imgs, np.stack(ims))
        assert hw.tolist() == [[6, 5]] * 5
    st = _ImageStore(4)
    st.extend([ims[0], np.zeros((7, 5, 3), np.uint8)])  # sizes differ: zero-padded stack
    imgs, hw = st.finish()
    assert imgs.shape == (2, 7, 5, 3) and hw.tolist() == [[6, 5], [7, 5]]


def test_save_load_roundtrip(tmp_path):
    db = onehot_db(2)
    npz, fidx = db.save(tmp_path / "db")
    assert npz.is_file() and fidx.is_file()
    db2 = FeatureDatabase.load(tmp_path / "db")
    assert len(db2) == len(db) == 8
    np.testing.assert_array_equal(db2.images, db.images)
    np.testing.assert_array_equal(db2.group, db.group)
    q = np.eye(4)
    np.testing.assert_array_equal(db2.search(q, 2)[1], db.search(q, 2)[1])
    with pytest.raises(FileNotFoundError, match="missing"):
        FeatureDatabase.load(tmp_path / "missing")


class FakeBackbone:
    """Grid features = mean colour of each 4x4 cell (3-d), stride 4, offset 1.5, rf 4."""

    def rf(self, layer):
        return RFGeometry(size=4, stride=4, offset=1.5)

    def extract(self, images, layers, size=None, batch_size=16):
        x = np.stack(images).astype(np.float32)
        n, H, W, _ = x.shape
        g = x.reshape(n, H // 4, 4, W // 4, 4, 3).mean((2, 4)) + 1.0
        return {l: g for l in layers}


def test_build_database_provenance_and_caps():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (8, 12, 3), dtype=np.uint8) for _ in range(5)]
    db = build_databases(FakeBackbone(), iter(imgs), ["x"], groups=range(5), n_images=5, batch_size=2)["x"]
    assert len(db) == 5 * 6 and db.images.shape == (5, 8, 12, 3)
    # each vector's stride patch is the cell it was computed from
    j = 13
    cell = db.patches(np.array([j]), 4)[0]
    i, (x, y) = db.image_idx[j], db.xy[j]
    np.testing.assert_array_equal(cell, imgs[i][int(y - 1.5):int(y + 2.5), int(x - 1.5):int(x + 2.5)])
    assert db.group[j] == i
    # the database reconstructs one of its own images exactly (k=1: every cell finds itself)
    grid = FakeBackbone().extract([imgs[2]], ["x"])["x"][0]
    np.testing.assert_array_equal(reconstruct(grid, FakeBackbone().rf("x"), db, 1, (8, 12)), imgs[2])
    dbs = build_databases(FakeBackbone(), imgs, ["a", "b"], max_vectors={"a": 7, "b": 100}, per_image=2)
    assert len(dbs["a"]) == 7 and len(dbs["b"]) == 10
    assert dbs["a"].images is dbs["b"].images


def test_bad_input_messages():
    db = FeatureDatabase(4)
    with pytest.raises(ValueError, match=r"features: expected \(N, 4\)"):
        db.add(np.zeros((2, 3)), 0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="index="):
        FeatureDatabase(4, "lsh")


def test_save_is_atomic_no_temp_files_and_loads(tmp_path, monkeypatch):
    db = onehot_db(2)
    npz, fidx = db.save(tmp_path / "db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.faiss", "db.npz"]  # no temp files left
    with np.load(npz) as z:
        np.testing.assert_array_equal(z["images"], db.images)
    assert len(FeatureDatabase.load(tmp_path / "db")) == 8
    # a save that fails half-way leaves the earlier complete files and no temp file

    def broken(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    before = npz.read_bytes()
    with pytest.raises(OSError, match="disk full"):
        db.save(tmp_path / "db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.faiss", "db.npz"] and npz.read_bytes() == before
    monkeypatch.undo()
    np.testing.assert_array_equal(FeatureDatabase.load(tmp_path / "db").search(np.eye(4), 2)[1],
                                  db.search(np.eye(4), 2)[1])


def test_spill_databases_equals_build_databases(tmp_path):
    from convcorr.methods.reconstruction import SpilledDatabases, spill_databases

    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (8, 12, 3), dtype=np.uint8) for _ in range(7)]
    kw = dict(groups=range(7), max_vectors={"a": 9, "b.1": 100}, per_image=3, batch_size=2, seed=4)
    dbs = build_databases(FakeBackbone(), iter(imgs), ["a", "b.1"], **kw)
    sp = spill_databases(FakeBackbone(), iter(imgs), ["a", "b.1"], tmp_path / "spill", **kw)
    assert sp.n_images == 7 and sp.layers == ["a", "b.1"]
    q = rng.standard_normal((6, 3)).astype(np.float32)
    for l, n in (("a", 9), ("b.1", 21)):
        d = sp.open(l, chunk_bytes=24)  # 2 vectors per chunk
        assert len(d) == len(dbs[l]) == n
        for attr in ("image_idx", "xy", "group", "images"):
            np.testing.assert_array_equal(getattr(d, attr), getattr(dbs[l], attr))
        np.testing.assert_array_equal(d.search(q, 3)[1], dbs[l].search(q, 3)[1])
        assert isinstance(d.images, np.memmap)
    # a trained index does not depend on the chunk size (its first chunk is exactly the training set)
    a = sp.open("b.1", "sq8", train_size=10, chunk_bytes=12)
    b = sp.open("b.1", "sq8", train_size=10)
    np.testing.assert_array_equal(a.search(q, 4)[0], b.search(q, 4)[0])
    # meta.json is written last: without it the folder is incomplete
    assert SpilledDatabases.complete(tmp_path / "spill", ["a"]) is not None
    assert SpilledDatabases.complete(tmp_path / "spill", ["a", "c"]) is None
    (tmp_path / "spill" / "meta.json").unlink()
    assert SpilledDatabases.complete(tmp_path / "spill", ["a"]) is None
    with pytest.raises(FileNotFoundError, match="meta.json"):
        SpilledDatabases(tmp_path / "spill")
    with pytest.raises(ValueError, match=r"images\[1\]: size"):
        spill_databases(FakeBackbone(), [imgs[0], np.zeros((12, 8, 3), np.uint8)], ["a"], tmp_path / "bad",
                        batch_size=1)


def test_reserve_keeps_contents():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    for kind in ("flat", "flat16", "hnsw"):
        a, b = FeatureDatabase(16, kind), FeatureDatabase(16, kind)
        b.reserve(len(X))
        for db in (a, b):
            for c in range(0, 300, 70):
                db.add(X[c:c + 70], 0, np.zeros((len(X[c:c + 70]), 2)), 0)
        assert len(b) == 300 and b.nbytes()["index"] == a.nbytes()["index"]
        np.testing.assert_array_equal(a.search(X[:9], 5)[1], b.search(X[:9], 5)[1])
