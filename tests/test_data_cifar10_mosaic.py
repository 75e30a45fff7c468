"""CIFAR-10 mosaics (``dseh_jax.data.cifar10_mosaic``): every cell traced back to its photo."""
import numpy as np
import pytest

from dseh_jax.data.cifar10_mosaic import build_cifar10_mosaic
from dseh_jax.data.registry import NAMES, load_dataset
from test_data_cifar10 import CLASSES, _fixture_images, write_folder, write_python

NQ, NT, NR = 12, 40, 30
SIZES = {"num_query": NQ, "num_train": NT, "num_retrieval": NR}


@pytest.fixture(scope="module")
def photos():
  """The fixture's uint8 photos ``[70, 32, 32, 3]`` (7 per class) and their classes."""
  images, train_labels, test_labels = _fixture_images()
  return images, np.concatenate([train_labels, test_labels])


@pytest.fixture(scope="module")
def python_dir(tmp_path_factory):
  return write_python(tmp_path_factory.mktemp("py"), *_fixture_images())


@pytest.fixture(scope="module")
def folder_dir(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp("folder"), *_fixture_images())


def _build(path, **kw):
  return build_cifar10_mosaic(str(path), **{**SIZES, **kw})


def _trace(inputs, photos, scale=255.0):
  """Source photo of every 16×16 quadrant of ``inputs [n, 32, 32, 3]`` by brute force
  against the float64 2×2 means of all photos: ``[n, 4]`` photo indices, -1 for an all-zero
  (empty) quadrant. Fails when a quadrant matches no photo or several."""
  images = photos[0].astype(np.float64)
  cells = images.reshape(-1, 16, 2, 16, 2, 3).mean(axis=(2, 4)) / scale     # [m, 16, 16, 3]
  cells = cells.reshape(len(cells), -1)
  n = len(inputs)
  quads = inputs.astype(np.float64).reshape(n, 2, 16, 2, 16, 3).transpose(0, 1, 3, 2, 4, 5)
  quads = quads.reshape(n * 4, -1)
  out = np.full(n * 4, -1)
  for i, q in enumerate(quads):
    if not np.any(q):
      continue
    err = np.abs(cells - q).max(axis=1)
    order = np.argsort(err)
    assert err[order[0]] < 1e-5 * (255.0 / scale), f"quadrant {i} matches no photo"
    assert err[order[1]] > 1e-3 * (255.0 / scale), f"quadrant {i} matches several photos"
    out[i] = order[0]
  return out.reshape(n, 4)


def _check_labels(labels, sources, photo_classes):
  for row, src in zip(labels, sources):
    expected = np.zeros(10)
    expected[photo_classes[src[src >= 0]]] = 1.0
    np.testing.assert_array_equal(row, expected)


@pytest.mark.parametrize("layout", ["python", "folder"])
def test_every_quadrant_is_a_shrunk_photo_and_labels_are_its_classes(layout, python_dir,
                                                                    folder_dir, photos):
  path = python_dir if layout == "python" else folder_dir
  data = _build(path, seed=1, min_photos=4, max_photos=4)
  assert data.name == "cifar10_mosaic" and data.class_names == CLASSES
  assert data.stats["layout"] == layout and data.stats["photos_per_pool"] == [10, 30, 30]
  traced = {}
  for name, split in data.splits().items():
    assert split.inputs.shape == (len(split), 32, 32, 3) and split.inputs.dtype == np.float32
    sources = _trace(split.inputs, photos)
    assert np.all(sources >= 0)                             # four photos in every mosaic
    _check_labels(split.labels, sources, photos[1])
    counts = split.labels.sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= 4
    traced[name] = sources
  q = np.unique(traced["query"])
  t = np.unique(traced["train"])
  r = np.unique(traced["database"][NT:])                    # the retrieval mosaics
  # query photos never appear in a train or retrieval mosaic; train and retrieval pools too
  assert not np.intersect1d(q, t).size and not np.intersect1d(q, r).size
  assert not np.intersect1d(t, r).size
  # stratified pools of 1 / 3 / 3 photos per class
  assert len(q) <= 10 and len(np.unique(photos[1][q])) == len(q)
  assert np.bincount(photos[1][t], minlength=10).max() <= 3
  assert np.bincount(photos[1][r], minlength=10).max() <= 3


def test_one_to_four_photos_and_empty_cells_are_black(python_dir, photos):
  data = _build(python_dir, seed=2, num_train=120)
  sources = _trace(data.train.inputs, photos)
  filled = (sources >= 0).sum(axis=1)
  assert set(filled.tolist()) == {1, 2, 3, 4}               # min 1 .. max 4, all drawn
  _check_labels(data.train.labels, sources, photos[1])
  counts = data.train.labels.sum(axis=1)
  assert np.all(counts >= 1) and np.all(counts <= filled)
  two = _build(python_dir, seed=2, min_photos=2, max_photos=3)
  filled = (_trace(two.query.inputs, photos) >= 0).sum(axis=1)
  assert filled.min() >= 2 and filled.max() <= 3


def test_database_ids_and_overlaps(python_dir):
  data = _build(python_dir, seed=0)
  assert (len(data.query), len(data.train), len(data.database)) == (NQ, NT, NT + NR)
  np.testing.assert_array_equal(data.query.ids, np.arange(NQ))
  np.testing.assert_array_equal(data.train.ids, np.arange(NQ, NQ + NT))
  np.testing.assert_array_equal(data.database.ids, np.arange(NQ, NQ + NT + NR))
  np.testing.assert_array_equal(data.database.inputs[:NT], data.train.inputs)
  np.testing.assert_array_equal(data.database.labels[:NT], data.train.labels)
  all_ids = np.concatenate([data.query.ids, data.database.ids])
  assert np.unique(all_ids).size == all_ids.size
  assert data.stats["overlaps"]["query&train"] == data.stats["overlaps"]["query&database"] == 0
  assert data.stats["overlaps"]["train&database"] == NT
  assert all(data.stats["overlaps"][f"{s}_repeated"] == 0
             for s in ("query", "train", "database"))
  apart = _build(python_dir, seed=0, database_includes_train=False)
  np.testing.assert_array_equal(apart.database.ids, np.arange(NQ + NT, NQ + NT + NR))
  np.testing.assert_array_equal(apart.database.inputs, data.database.inputs[NT:])
  np.testing.assert_array_equal(apart.train.inputs, data.train.inputs)
  assert apart.stats["overlaps"]["train&database"] == 0


def test_flatten_scale_and_seed(python_dir, photos):
  a = _build(python_dir, seed=5)
  flat = _build(python_dir, seed=5, flatten=True)
  assert flat.input_shape == (3072,)
  for sa, sf in zip(a.splits().values(), flat.splits().values()):
    np.testing.assert_array_equal(sf.inputs, sa.inputs.reshape(len(sa), -1))   # HWC order
    np.testing.assert_array_equal(sf.labels, sa.labels)
  raw = _build(python_dir, seed=5, scale=1.0)
  np.testing.assert_allclose(raw.query.inputs, a.query.inputs * 255.0, rtol=1e-5, atol=1e-4)
  sources = _trace(raw.query.inputs, photos, scale=1.0)
  np.testing.assert_array_equal(sources, _trace(a.query.inputs, photos))
  again, other = _build(python_dir, seed=5), _build(python_dir, seed=6)
  for name in ("query", "train", "database"):
    np.testing.assert_array_equal(getattr(a, name).inputs, getattr(again, name).inputs)
    np.testing.assert_array_equal(getattr(a, name).labels, getattr(again, name).labels)
  assert not np.array_equal(a.train.inputs, other.train.inputs)
  assert not np.array_equal(a.query.inputs, other.query.inputs)


def test_errors(python_dir, tmp_path):
  for name, bad in (("num_query", 0), ("num_train", 2.5), ("num_retrieval", True),
                    ("num_query", -3)):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
      _build(python_dir, **{name: bad})
  for lo, hi in ((0, 4), (1, 5), (3, 2), (1.5, 4), (True, 4)):
    with pytest.raises(ValueError, match="min_photos=.*max_photos=.*1 <= min_photos <= "
                                         "max_photos <= 4"):
      _build(python_dir, min_photos=lo, max_photos=hi)
  with pytest.raises(ValueError, match="layout='npz'"):
    _build(python_dir, layout="npz")
  for bad in (0.0, -255.0, float("nan")):
    with pytest.raises(ValueError, match="scale="):
      _build(python_dir, scale=bad)
  with pytest.raises(ValueError, match="folder not found"):
    _build(tmp_path / "nowhere")
  # two photos per class cannot be cut into three pools
  images, _, _ = _fixture_images()
  write_folder(tmp_path / "small", images[:20], np.arange(10), np.arange(10))
  with pytest.raises(ValueError, match="has only 2 source images; too few to split"):
    _build(tmp_path / "small")


def test_registry(python_dir):
  assert "cifar10_mosaic" in NAMES
  kwargs = {"data_dir": str(python_dir), **SIZES}
  data = load_dataset({"name": "cifar10_mosaic", "kwargs": kwargs}, seed=3)
  direct = _build(python_dir, seed=3)
  assert data.stats["seed"] == 3
  np.testing.assert_array_equal(data.train.inputs, direct.train.inputs)
  fixed = load_dataset({"name": "cifar10_mosaic", "kwargs": {**kwargs, "seed": 3}}, seed=9)
  np.testing.assert_array_equal(fixed.query.inputs, data.query.inputs)
  with pytest.raises(ValueError, match=r"\['num_photos'\] are not options of dataset "
                                       r"'cifar10_mosaic'"):
    load_dataset({"name": "cifar10_mosaic", "kwargs": {**kwargs, "num_photos": 4}})
  with pytest.raises(ValueError, match="cifar10_mosaic.*data_dir"):
    load_dataset({"name": "cifar10_mosaic", "kwargs": {"data_dir": ""}})
