"""Tests for the embedded digits-mosaic dataset."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dseh_jax.data.digits_mosaic import build_digits_mosaic, save_preview

SMALL = dict(num_query=120, num_train=300, num_retrieval=400)


@pytest.fixture(scope="module")
def source():
  """Source digits scaled as the spec says, and a pixel-bytes -> index lookup."""
  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)
  lookup = {images[i].tobytes(): i for i in range(images.shape[0])}
  assert len(lookup) == images.shape[0]  # the sources are pairwise distinct
  return images, np.asarray(digits.target), lookup


@pytest.fixture(scope="module")
def data():
  return build_digits_mosaic(seed=3)


def decode(inputs: np.ndarray, lookup: dict, grid: int = 2, cell: int = 8
           ) -> np.ndarray:
  """Maps every cell of ``[n, H, W, 1]`` mosaics to a source index (-1: blank)."""
  n = inputs.shape[0]
  out = np.full((n, grid, grid), -1, np.int64)
  for i in range(n):
    for r in range(grid):
      for c in range(grid):
        tile = np.ascontiguousarray(
            inputs[i, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell, 0])
        if not tile.any():
          continue
        assert tile.tobytes() in lookup, f"mosaic {i} cell ({r},{c}) is no source digit"
        out[i, r, c] = lookup[tile.tobytes()]
  return out


def test_shapes_dtypes_and_range(data):
  assert data.name == "digits_mosaic"
  assert data.class_names == tuple("0123456789")
  assert data.num_classes == 10
  assert data.input_shape == (16, 16, 1)
  sizes = {"train": 2000, "query": 500, "database": 6000}
  for name, split in data.splits().items():
    assert split.inputs.shape == (sizes[name], 16, 16, 1)
    assert split.inputs.dtype == np.float32
    assert split.labels.shape == (sizes[name], 10)
    assert split.labels.dtype == np.float32
    assert split.ids.shape == (sizes[name],)
    assert split.ids.dtype == np.int64
    assert split.inputs.min() >= 0.0 and split.inputs.max() <= 1.0
    assert split.inputs.max() == 1.0  # scaled by 16, so full-ink pixels reach 1
  data.validate()
  all_ids = np.concatenate([data.query.ids, data.train.ids,
                            data.database.ids[len(data.train):]])
  assert np.unique(all_ids).size == all_ids.size


def test_labels_are_set_of_classes_present(data, source):
  _, targets, lookup = source
  for split in (data.query, data.train, data.database):
    idx = decode(split.inputs[:60], lookup)
    for i in range(idx.shape[0]):
      cells = idx[i][idx[i] >= 0]
      assert 1 <= cells.size <= 4
      expected = np.zeros(10, np.float32)
      expected[targets[cells]] = 1.0
      np.testing.assert_array_equal(split.labels[i], expected)


def test_source_pools_are_disjoint(source):
  _, targets, lookup = source
  d = build_digits_mosaic(seed=5, **SMALL)
  used = {}
  for name in ("query", "train", "database"):
    idx = decode(getattr(d, name).inputs, lookup)
    used[name] = set(idx[idx >= 0].tolist())
  assert used["query"]
  assert not used["query"] & used["train"]
  assert not used["query"] & used["database"]
  # Each pool holds every class (stratified cut).
  for name in ("query", "train", "database"):
    assert set(targets[sorted(used[name])].tolist()) == set(range(10))
  # Train mosaics are in the database too, so check retrieval-only rows vs train.
  retrieval = build_digits_mosaic(seed=5, database_includes_train=False, **SMALL)
  r_idx = decode(retrieval.database.inputs, lookup)
  assert not set(r_idx[r_idx >= 0].tolist()) & used["train"]


def test_determinism():
  a = build_digits_mosaic(seed=11, **SMALL)
  b = build_digits_mosaic(seed=11, **SMALL)
  for name in ("train", "query", "database"):
    for field in ("inputs", "labels", "ids"):
      x, y = getattr(getattr(a, name), field), getattr(getattr(b, name), field)
      assert x.dtype == y.dtype
      np.testing.assert_array_equal(x, y)
  c = build_digits_mosaic(seed=12, **SMALL)
  assert not np.array_equal(a.train.inputs, c.train.inputs)
  assert not np.array_equal(a.query.inputs, c.query.inputs)


def test_no_global_random_state():
  np.random.seed(0)
  before = np.random.get_state()[1].copy()
  a = build_digits_mosaic(seed=1, **SMALL)
  np.testing.assert_array_equal(np.random.get_state()[1], before)
  np.random.seed(123)
  b = build_digits_mosaic(seed=1, **SMALL)
  np.testing.assert_array_equal(a.train.inputs, b.train.inputs)


def test_single_label_is_one_hot(source):
  _, targets, lookup = source
  d = build_digits_mosaic(seed=2, single_label=True, **SMALL)
  assert d.name == "digits_single"
  for split in d.splits().values():
    np.testing.assert_array_equal(split.labels.sum(axis=1), 1.0)
  idx = decode(d.train.inputs, lookup)
  filled = (idx >= 0).reshape(len(d.train), -1)
  np.testing.assert_array_equal(filled.sum(axis=1), 1)
  # The single digit is not always in the same cell.
  assert np.unique(np.argmax(filled, axis=1)).size == 4
  src = idx.reshape(len(d.train), -1).max(axis=1)
  np.testing.assert_array_equal(np.argmax(d.train.labels, axis=1), targets[src])


def test_multi_label_positive_counts(data, source):
  _, _, lookup = source
  counts = data.train.labels.sum(axis=1)
  assert counts.min() >= 1 and counts.max() <= 4
  assert set(np.unique(counts).tolist()) == {1.0, 2.0, 3.0, 4.0}
  # The number of filled cells is drawn uniformly from 1..4.
  idx = decode(data.train.inputs, lookup)
  filled = (idx >= 0).reshape(len(data.train), -1).sum(axis=1)
  freq = np.bincount(filled, minlength=5)[1:] / filled.size
  np.testing.assert_allclose(freq, 0.25, atol=0.05)
  # Repeated classes count once, so the label count never exceeds the digits.
  assert np.all(counts <= filled)
  assert np.any(counts < filled)


def test_database_includes_train():
  with_train = build_digits_mosaic(seed=4, **SMALL)
  without = build_digits_mosaic(seed=4, database_includes_train=False, **SMALL)
  assert len(with_train.database) == SMALL["num_train"] + SMALL["num_retrieval"]
  assert len(without.database) == SMALL["num_retrieval"]
  train_ids = set(with_train.train.ids.tolist())
  assert train_ids <= set(with_train.database.ids.tolist())
  assert not train_ids & set(without.database.ids.tolist())
  assert not set(with_train.query.ids.tolist()) & set(with_train.database.ids.tolist())
  # Train rows come first and are the train mosaics themselves.
  n = SMALL["num_train"]
  np.testing.assert_array_equal(with_train.database.inputs[:n], with_train.train.inputs)
  np.testing.assert_array_equal(with_train.database.ids[:n], with_train.train.ids)
  np.testing.assert_array_equal(with_train.database.inputs[n:], without.database.inputs)
  np.testing.assert_array_equal(without.train.inputs, with_train.train.inputs)


def test_grid_and_cell_size(source):
  images, targets, _ = source
  d = build_digits_mosaic(seed=0, grid=3, min_digits=2, max_digits=20,
                          cell_size=16, **SMALL)
  assert d.input_shape == (48, 48, 1)
  # Each 16x16 cell is a source digit upscaled 2x (or blank).
  lookup = {np.repeat(np.repeat(images[i], 2, 0), 2, 1).tobytes(): i
            for i in range(images.shape[0])}
  idx = decode(d.train.inputs[:40], lookup, grid=3, cell=16)
  filled = (idx >= 0).reshape(40, -1).sum(axis=1)
  assert filled.min() >= 2 and filled.max() <= 9
  for i in range(40):
    expected = np.zeros(10, np.float32)
    expected[targets[idx[i][idx[i] >= 0]]] = 1.0
    np.testing.assert_array_equal(d.train.labels[i], expected)


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_digits=3, max_digits=2), "max_digits"),
    (dict(grid=0), "grid"),
    (dict(min_digits=0), "min_digits"),
    (dict(num_query=0), "num_query"),
    (dict(num_train=0), "num_train"),
    (dict(num_retrieval=-1), "num_retrieval"),
    (dict(cell_size=0), "cell_size"),
    (dict(grid=1, min_digits=2, max_digits=2), "min_digits"),
    (dict(grid=2.5), "grid"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    build_digits_mosaic(**kwargs)


def test_save_preview(tmp_path):
  d = build_digits_mosaic(seed=0, **SMALL)
  path = tmp_path / "preview.png"
  save_preview(d, str(path), n=10)
  raw = path.read_bytes()
  assert len(raw) > 1000
  assert raw[:8] == b"\x89PNG\r\n\x1a\n"
  assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]  # no temp left

