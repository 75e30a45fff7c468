"""USPS (``dseh_jax.data.usps``): the table formats, the per-class protocol, the registry."""
import numpy as np
import pytest
import scipy.io

from dseh_jax.data import usps
from dseh_jax.data.registry import NAMES, load_dataset

QPC, TPC = 2, 3
PER_CLASS = np.array([7, 5, 6, 9, 5, 8, 6, 7, 5, 10])      # items of gnd 1..10


def _table(seed=0):
  """uint8 pixels ``[n, 256]`` and classes 1..10 interleaved (not sorted by class)."""
  rng = np.random.default_rng(seed)
  gnd = rng.permutation(np.repeat(np.arange(1, 11), PER_CLASS))
  fea = rng.integers(0, 256, (gnd.size, 256), dtype=np.uint8)
  return fea, gnd


@pytest.fixture(scope="module")
def table():
  return _table()


@pytest.fixture(scope="module")
def mat_path(tmp_path_factory, table):
  fea, gnd = table
  path = tmp_path_factory.mktemp("usps") / "USPS.mat"
  scipy.io.savemat(str(path), {"fea": fea, "gnd": gnd.reshape(-1, 1).astype(np.float64)})
  return path


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory, table):
  fea, gnd = table
  path = tmp_path_factory.mktemp("usps") / "usps.npz"
  np.savez(path, x=fea, y=gnd - 1)                # classes 0..9 here
  return path


def _build(path, **kw):
  return usps.build_usps(str(path), **{"query_per_class": QPC, "train_per_class": TPC, **kw})


def test_read_table_maps_classes_from_zero(mat_path, table):
  fea, gnd = table
  x, classes = usps.read_table(str(mat_path))
  assert x.shape == (fea.shape[0], 256) and x.dtype == np.float64
  np.testing.assert_array_equal(x, fea.astype(np.float64))
  np.testing.assert_array_equal(classes, gnd - 1)
  assert classes.dtype == np.int64


def test_split_sizes_disjointness_and_database(mat_path, table):
  fea, gnd = table
  n = fea.shape[0]
  data = _build(mat_path, seed=4)
  cls = gnd - 1
  q, t, db = data.query.ids, data.train.ids, data.database.ids
  np.testing.assert_array_equal(np.bincount(cls[q], minlength=10), [QPC] * 10)
  np.testing.assert_array_equal(np.bincount(cls[t], minlength=10), [TPC] * 10)
  np.testing.assert_array_equal(np.bincount(cls[db], minlength=10), PER_CLASS - QPC)
  assert not np.intersect1d(q, t).size and not np.intersect1d(q, db).size
  assert np.isin(t, db).all()                                  # train is in the database
  np.testing.assert_array_equal(np.sort(np.concatenate([q, db])), np.arange(n))
  for ids in (q, t, db):
    assert np.unique(ids).size == ids.size
  assert data.stats["split_sizes"] == {"query": 20, "train": 30, "database": n - 20}
  assert data.stats["overlaps"]["query&train"] == 0
  assert data.stats["overlaps"]["query&database"] == 0
  assert data.stats["overlaps"]["train&database"] == 30
  assert data.stats["seed"] == 4 and data.name == "usps"


def test_pixels_labels_and_ids_agree(mat_path, table):
  fea, gnd = table
  data = _build(mat_path, seed=1)
  assert data.class_names == tuple(str(c) for c in range(10)) and data.input_shape == (256,)
  for name, split in data.splits().items():
    assert split.inputs.dtype == np.float32 and split.labels.dtype == np.float32
    np.testing.assert_allclose(split.inputs, fea[split.ids].astype(np.float64) / 255.0,
                               rtol=1e-6, atol=0, err_msg=name)
    one_hot = np.zeros((len(split), 10))
    one_hot[np.arange(len(split)), gnd[split.ids] - 1] = 1.0   # gnd 1..10 -> columns 0..9
    np.testing.assert_array_equal(split.labels, one_hot, err_msg=name)
  scaled = _build(mat_path, seed=1, scale=16.0)
  np.testing.assert_allclose(scaled.train.inputs, fea[scaled.train.ids] / 16.0, rtol=1e-6)


def test_as_images(mat_path, table):
  fea, _ = table
  flat = _build(mat_path, seed=2)
  images = _build(mat_path, seed=2, as_images=True)
  assert images.input_shape == (16, 16, 1)
  for a, b in zip(flat.splits().values(), images.splits().values()):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(b.inputs[..., 0], a.inputs.reshape(-1, 16, 16))
  i = images.query.ids[0]
  np.testing.assert_allclose(images.query.inputs[0, 3, 5, 0], fea[i, 3 * 16 + 5] / 255.0,
                             rtol=1e-6)


def test_seeded(mat_path):
  a, b, c = _build(mat_path, seed=0), _build(mat_path, seed=0), _build(mat_path, seed=1)
  for name in ("query", "train", "database"):
    np.testing.assert_array_equal(getattr(a, name).ids, getattr(b, name).ids)
    np.testing.assert_array_equal(getattr(a, name).inputs, getattr(b, name).inputs)
  assert not np.array_equal(a.query.ids, c.query.ids)
  assert not np.array_equal(a.train.ids, c.train.ids)


def test_npz_gives_the_same_dataset(mat_path, npz_path):
  a, b = _build(mat_path, seed=3), _build(npz_path, seed=3)
  for (name, sa), sb in zip(a.splits().items(), b.splits().values()):
    np.testing.assert_array_equal(sa.ids, sb.ids, err_msg=name)
    np.testing.assert_array_equal(sa.inputs, sb.inputs, err_msg=name)
    np.testing.assert_array_equal(sa.labels, sb.labels, err_msg=name)


def test_errors(tmp_path, table):
  fea, gnd = table
  scipy.io.savemat(str(tmp_path / "nognd.mat"), {"fea": fea})
  with pytest.raises(ValueError, match="field 'gnd' is missing"):
    _build(tmp_path / "nognd.mat")
  np.savez(tmp_path / "nox.npz", y=gnd)
  with pytest.raises(ValueError, match="field 'x' is missing"):
    _build(tmp_path / "nox.npz")
  # too few items in a class: gnd 2 (the first with 5 items), named as in the file
  with pytest.raises(ValueError, match=r"class 2 \(column 1\) has 5 items; "
                                       r"query_per_class=2 \+ train_per_class=4"):
    _build(_write(tmp_path / "t.mat", fea, gnd), train_per_class=4)
  with pytest.raises(ValueError, match="class 1 has 5 items"):
    usps.per_class_protocol(gnd - 1, seed=0, query_per_class=3, train_per_class=3)
  for bad in (-1, 1.5, True):
    with pytest.raises(ValueError, match="query_per_class must be an int >= 0"):
      _build(tmp_path / "t.mat", query_per_class=bad)
  with pytest.raises(ValueError, match=r"unknown suffix '\.csv'"):
    _build(tmp_path / "USPS.csv")
  with pytest.raises(FileNotFoundError, match="no such file"):
    _build(tmp_path / "missing.mat")
  np.savez(tmp_path / "rows.npz", x=fea[:-1], y=gnd)
  with pytest.raises(ValueError, match="one row per label"):
    _build(tmp_path / "rows.npz")
  np.savez(tmp_path / "frac.npz", x=fea, y=gnd + 0.5)
  with pytest.raises(ValueError, match="integer classes"):
    _build(tmp_path / "frac.npz")
  np.savez(tmp_path / "odd.npz", x=fea[:, :250], y=gnd)
  with pytest.raises(ValueError, match="not a square image"):
    _build(tmp_path / "odd.npz", as_images=True)


def _write(path, fea, gnd):
  scipy.io.savemat(str(path), {"fea": fea, "gnd": gnd.reshape(-1, 1)})
  return path


def test_registry(mat_path):
  assert "usps" in NAMES
  kwargs = {"path": str(mat_path), "query_per_class": 2, "train_per_class": 3}
  data = load_dataset({"name": "usps", "kwargs": kwargs}, seed=0)
  direct = _build(mat_path, seed=0)
  for name in ("query", "train", "database"):
    np.testing.assert_array_equal(getattr(data, name).ids, getattr(direct, name).ids)
  assert len(data.query) == 20 and len(data.train) == 30 and data.input_shape == (256,)
  run7 = load_dataset({"name": "usps", "kwargs": kwargs}, seed=7)
  assert run7.stats["seed"] == 7
  assert not np.array_equal(run7.query.ids, data.query.ids)
  fixed = load_dataset({"name": "usps", "kwargs": {**kwargs, "seed": 0}}, seed=7)
  np.testing.assert_array_equal(fixed.query.ids, data.query.ids)
  # an empty data_dir (as the CLI fills it) is ignored for a table dataset
  empty_dir = load_dataset({"name": "usps", "kwargs": {**kwargs, "data_dir": ""}}, seed=0)
  np.testing.assert_array_equal(empty_dir.train.ids, data.train.ids)
  with pytest.raises(ValueError, match=r"\['train_per_clas'\] are not options of dataset "
                                       r"'usps'"):
    load_dataset({"name": "usps", "kwargs": {"path": str(mat_path), "train_per_clas": 3}})
  with pytest.raises(ValueError, match="needs data.kwargs.path"):
    load_dataset({"name": "usps", "kwargs": {}})
