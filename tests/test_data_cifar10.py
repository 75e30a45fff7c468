"""CIFAR-10 loader (SPEC §6): protocol, both on-disk layouts, registry and config."""
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from dseh_jax import configs
from dseh_jax.data import cifar10
from dseh_jax.data.registry import NAMES, load_dataset

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
TRAIN_PER_BATCH = 8       # 5 batches: 40 official train images, 4 per class
TEST_PER_CLASS = 3        # 30 official test images
QPC, TPC = 2, 3           # query / train per class in the tests


def _fixture_images():
  """Seeded uint8 ``[n, 32, 32, 3]`` images and interleaved labels of the fixture set."""
  rng = np.random.default_rng(1234)
  n_train, n_test = 5 * TRAIN_PER_BATCH, 10 * TEST_PER_CLASS
  train_labels = rng.permutation(np.repeat(np.arange(10), n_train // 10))
  test_labels = rng.permutation(np.repeat(np.arange(10), TEST_PER_CLASS))
  images = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
  return images, train_labels, test_labels


def _write_batch(path, images, labels):
  rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)   # HWC -> CHW rows
  with open(path, "wb") as f:
    pickle.dump({b"batch_label": b"fixture", b"labels": [int(v) for v in labels],
                 b"data": np.ascontiguousarray(rows), b"filenames": [b"x.png"] * len(images)},
                f)


def write_python(root, images, train_labels, test_labels, nested=True):
  folder = root / "cifar-10-batches-py" if nested else root
  folder.mkdir(parents=True, exist_ok=True)
  for b in range(5):
    s = slice(b * TRAIN_PER_BATCH, (b + 1) * TRAIN_PER_BATCH)
    _write_batch(folder / f"data_batch_{b + 1}", images[s], train_labels[s])
  _write_batch(folder / "test_batch", images[len(train_labels):], test_labels)
  with open(folder / "batches.meta", "wb") as f:
    pickle.dump({b"label_names": [n.encode() for n in CLASSES], b"num_vis": 3072}, f)
  return root


def write_folder(root, images, train_labels, test_labels, suffix=".png"):
  """``root/{train,test}/<class>/<official index>.png``: within a class, the same order as
  the batches."""
  for split, labels, offset in (("train", train_labels, 0),
                                ("test", test_labels, len(train_labels))):
    for j, k in enumerate(labels):
      folder = root / split / CLASSES[k]
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(images[offset + j]).save(folder / f"{j:05d}{suffix}")
  return root


@pytest.fixture(scope="module")
def fixture_set():
  return _fixture_images()


@pytest.fixture(scope="module")
def python_dir(tmp_path_factory, fixture_set):
  return write_python(tmp_path_factory.mktemp("py"), *fixture_set)


@pytest.fixture(scope="module")
def folder_dir(tmp_path_factory, fixture_set):
  return write_folder(tmp_path_factory.mktemp("folder"), *fixture_set)


def _build(path, **kw):
  kw = {"query_per_class": QPC, "train_per_class": TPC, **kw}
  return cifar10.build_cifar10(str(path), **kw)


# ---------------------------------------------------------------------------------------
# The protocol, on labels alone.


def test_protocol_sizes_classes_and_disjointness():
  rng = np.random.default_rng(0)
  train_labels = rng.integers(0, 10, 600)
  test_labels = rng.integers(0, 10, 200)
  idx = cifar10.cifar10_protocol(train_labels, test_labels, seed=3, query_per_class=5,
                                 train_per_class=20)
  labels = np.concatenate([train_labels, test_labels])
  assert idx.query.shape == (50,) and idx.train.shape == (200,)
  assert idx.database.shape == (800 - 50,)
  np.testing.assert_array_equal(np.bincount(labels[idx.query], minlength=10), [5] * 10)
  np.testing.assert_array_equal(np.bincount(labels[idx.train], minlength=10), [20] * 10)
  assert np.all(idx.query >= 600) and np.all(idx.train < 600)     # test / official train
  assert not np.intersect1d(idx.query, idx.train).size
  assert not np.intersect1d(idx.query, idx.database).size
  assert np.isin(idx.train, idx.database).all()
  np.testing.assert_array_equal(np.sort(np.concatenate([idx.query, idx.database])),
                                np.arange(800))
  for split in (idx.query, idx.train, idx.database):
    assert np.all(np.diff(split) > 0) and split.dtype == np.int64


def test_protocol_is_seeded():
  rng = np.random.default_rng(1)
  train_labels, test_labels = rng.integers(0, 10, 300), rng.integers(0, 10, 100)
  run = lambda s: cifar10.cifar10_protocol(train_labels, test_labels, seed=s,
                                           query_per_class=3, train_per_class=10)
  a, b, c = run(0), run(0), run(1)
  for split in ("query", "train", "database"):
    np.testing.assert_array_equal(getattr(a, split), getattr(b, split))
  assert not np.array_equal(a.query, c.query) and not np.array_equal(a.train, c.train)


def test_protocol_too_few_images_names_class_and_split():
  train_labels = np.repeat(np.arange(10), 4)
  test_labels = np.delete(np.repeat(np.arange(10), 4), 3 * 4)    # cat: 3 images, others 4
  with pytest.raises(ValueError, match="class 'cat' has 3 official test images; "
                                       "query_per_class=4"):
    cifar10.cifar10_protocol(train_labels, test_labels, seed=0, query_per_class=4,
                             train_per_class=1, class_names=CLASSES)
  with pytest.raises(ValueError, match="class '0' has 4 official train images; "
                                       "train_per_class=5"):
    cifar10.cifar10_protocol(train_labels, test_labels, seed=0, query_per_class=1,
                             train_per_class=5)
  with pytest.raises(ValueError, match="train_labels.*expected 0..9"):
    cifar10.cifar10_protocol(np.array([0, 10]), test_labels, seed=0)


# ---------------------------------------------------------------------------------------
# The python batches.


def test_python_layout_splits_and_pixels(python_dir, fixture_set):
  images, train_labels, test_labels = fixture_set
  data = _build(python_dir, seed=5)
  labels = np.concatenate([train_labels, test_labels])
  expected = cifar10.cifar10_protocol(train_labels, test_labels, seed=5, query_per_class=QPC,
                                      train_per_class=TPC)
  assert data.class_names == CLASSES and data.input_shape == (32, 32, 3)
  assert data.stats["layout"] == "python"
  assert data.stats["split_sizes"] == {"train": 30, "query": 20, "database": 50}
  assert data.stats["overlaps"]["query&train"] == data.stats["overlaps"]["query&database"] == 0
  assert data.stats["overlaps"]["train&database"] == 30
  for name, split in data.splits().items():
    np.testing.assert_array_equal(split.ids, getattr(expected, name))
    np.testing.assert_array_equal(split.labels, np.eye(10, dtype=np.float32)[labels[split.ids]])
    assert split.inputs.dtype == np.float32 and split.labels.dtype == np.float32
    np.testing.assert_allclose(split.inputs, images[split.ids] / np.float32(255), rtol=1e-6)
  assert np.all(data.train.ids < 40) and np.all(data.query.ids >= 40)
  assert not np.intersect1d(data.query.ids, data.database.ids).size
  np.testing.assert_array_equal(np.sort(np.concatenate([data.query.ids, data.database.ids])),
                                np.arange(70))


def test_python_rows_are_chw_and_become_hwc(tmp_path):
  images = np.zeros((70, 32, 32, 3), np.uint8)
  train_labels = np.repeat(np.arange(10), 4)
  test_labels = np.repeat(np.arange(10), 3)
  write_python(tmp_path, images, train_labels, test_labels)
  # Hand-edit one raw row: channel G (second 1,024 block) at row 5, column 7 of image 0.
  path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
  with open(path, "rb") as f:
    batch = pickle.load(f, encoding="bytes")
  batch[b"data"][0, 1024 + 5 * 32 + 7] = 200
  batch[b"data"][0, 2 * 1024 + 0 * 32 + 31] = 17              # B at row 0, column 31
  with open(path, "wb") as f:
    pickle.dump(batch, f)
  hwc, _ = cifar10.read_batch(str(path))
  assert hwc[0, 5, 7, 1] == 200 and hwc[0, 0, 31, 2] == 17 and hwc.sum() == 217
  data = _build(tmp_path, train_per_class=4, flatten=True, scale=100.0)
  assert data.input_shape == (3072,)
  row = data.database.inputs[np.flatnonzero(data.database.ids == 0)[0]]
  assert row[(5 * 32 + 7) * 3 + 1] == np.float32(2.0)        # HWC flatten order, / scale
  assert row[(0 * 32 + 31) * 3 + 2] == np.float32(0.17)
  assert np.count_nonzero(row) == 2


def test_python_layout_in_data_dir_itself(tmp_path, fixture_set):
  write_python(tmp_path, *fixture_set, nested=False)
  assert cifar10.detect_layout(str(tmp_path)) == "python"
  assert len(_build(tmp_path).query) == 20


def test_python_batch_bad_field_names_file(tmp_path, fixture_set):
  write_python(tmp_path, *fixture_set)
  path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
  with open(path, "wb") as f:
    pickle.dump({b"data": np.zeros((8, 3000), np.uint8), b"labels": [0] * 8}, f)
  with pytest.raises(ValueError, match="data_batch_3: field b'data'.*expected \\[n, 3072\\]"):
    _build(tmp_path)


# ---------------------------------------------------------------------------------------
# The image folders; both layouts together.


def test_folder_layout_matches_python_layout(folder_dir, python_dir, fixture_set):
  images = fixture_set[0]
  a, b = _build(python_dir, seed=2), _build(folder_dir, seed=2)
  assert b.stats["layout"] == "folder" and b.class_names == a.class_names
  for (name, sa), sb in zip(a.splits().items(), b.splits().values()):
    assert len(sa) == len(sb), name
    for k in range(10):   # the same images per class, in the same within-class order
      ra, rb = sa.labels[:, k] == 1, sb.labels[:, k] == 1
      np.testing.assert_array_equal(sa.inputs[ra], sb.inputs[rb])
    # folder ids number the sorted listing: train first, then test
    assert np.all(sb.ids[sb.ids < 40] < 40)
  np.testing.assert_allclose(a.query.inputs * 255, images[a.query.ids], atol=1e-4)


def test_jpeg_folder_decodes(tmp_path, fixture_set):
  images, train_labels, test_labels = fixture_set
  write_folder(tmp_path, np.full_like(images, 128), train_labels, test_labels, ".jpg")
  first = sorted(os.listdir(tmp_path / "test" / "cat"))[0]
  os.rename(tmp_path / "test" / "cat" / first, tmp_path / "test" / "cat" / "x.JPEG")
  data = _build(tmp_path, layout="folder")
  assert data.stats["images"] == {"train": 40, "test": 30}
  np.testing.assert_allclose(data.database.inputs, 128 / 255, atol=3 / 255)


def test_auto_layout_prefers_python_batches(tmp_path, fixture_set):
  write_folder(tmp_path, *fixture_set)
  assert cifar10.detect_layout(str(tmp_path)) == "folder"
  write_python(tmp_path, *fixture_set)
  assert cifar10.detect_layout(str(tmp_path)) == "python"
  assert _build(tmp_path, layout="folder").stats["layout"] == "folder"


def test_wrong_size_or_broken_image_names_file(tmp_path, fixture_set):
  write_folder(tmp_path, *fixture_set)
  bad = tmp_path / "train" / "dog" / "zz.png"
  Image.fromarray(np.zeros((32, 30, 3), np.uint8)).save(bad)
  with pytest.raises(ValueError, match="zz.png: image is 30x32; expected 32x32"):
    _build(tmp_path)
  bad.write_bytes(b"not an image")
  with pytest.raises(ValueError, match="zz.png: cannot decode"):
    _build(tmp_path)


def test_errors_missing_folder_layout_and_too_few(tmp_path, python_dir):
  with pytest.raises(ValueError, match="nowhere: folder not found"):
    _build(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty: neither cifar-10-batches-py/data_batch_1 nor"):
    _build(tmp_path / "empty")
  with pytest.raises(ValueError, match="empty.*train: folder not found"):
    _build(tmp_path / "empty", layout="folder")
  with pytest.raises(ValueError, match="layout='npz'"):
    _build(python_dir, layout="npz")
  with pytest.raises(ValueError, match="class 'airplane' has 4 official train images; "
                                       "train_per_class=5"):
    _build(python_dir, train_per_class=5)


# ---------------------------------------------------------------------------------------
# Registry and config.


def test_registry_loads_seeded_and_checks_options(python_dir):
  assert "cifar10" in NAMES
  kwargs = {"data_dir": str(python_dir), "query_per_class": 2, "train_per_class": 3}
  data = load_dataset({"name": "cifar10", "kwargs": kwargs}, seed=0)
  direct = _build(python_dir, seed=0)
  np.testing.assert_array_equal(data.train.ids, direct.train.ids)
  assert len(data.query) == 20 and data.input_shape == (32, 32, 3)
  run7 = load_dataset({"name": "cifar10", "kwargs": kwargs}, seed=7)
  assert run7.stats["seed"] == 7
  fixed = load_dataset({"name": "cifar10", "kwargs": {**kwargs, "seed": 0}}, seed=7)
  np.testing.assert_array_equal(fixed.query.ids, data.query.ids)
  with pytest.raises(ValueError, match="cifar10.*data_dir"):
    load_dataset({"name": "cifar10", "kwargs": {"data_dir": ""}})
  with pytest.raises(ValueError, match="\\['image_size'\\] are not options of dataset "
                                       "'cifar10'"):
    load_dataset({"name": "cifar10", "kwargs": {**kwargs, "image_size": 32}})


@pytest.mark.parametrize("choices", ["paper", "code"])
def test_config_builds(choices):
  c = configs.get_config("cifar10", choices)
  assert c.data.name == "cifar10" and c.data.kwargs.data_dir == ""
  assert "seed" not in c.data.kwargs
  assert c.imgnet.backbone == "mini_cnnf" and c.eval.top_k == 1000
  assert c.imgnet.optimizer.lr_mult_pretrained == c.imgnet.optimizer.lr_mult_new == 1.0
  assert (c.labnet.loss.s == 0.999) == (choices == "code")
