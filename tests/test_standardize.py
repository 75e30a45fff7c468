"""``data.standardize``: z-scoring by the training split's moments, against float64 numpy."""
import numpy as np
import pytest

from dseh_jax.data.registry import load_dataset, read_dataset
from dseh_jax.data.splits import RetrievalData, Split
from dseh_jax.data.standardize import standardize


def _split(rng, n, shape, loc, scale, num_classes=3, id0=0):
  x = (loc + scale * rng.standard_normal((n,) + shape)).astype(np.float32)
  labels = np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, n)]
  return Split(x, labels, np.arange(id0, id0 + n, dtype=np.int64))


def _data(shape, *, seed=0, constant_dim=None):
  """Train, query and database drawn from different distributions, so that a split
  z-scored by its own moments would differ clearly from one z-scored by train's."""
  rng = np.random.default_rng(seed)
  loc = np.linspace(-3.0, 5.0, shape[-1])
  scale = np.linspace(0.2, 4.0, shape[-1])
  train = _split(rng, 50, shape, loc, scale)
  query = _split(rng, 12, shape, loc + 2.0, 3.0 * scale, id0=50)
  database = _split(rng, 30, shape, loc - 1.0, 0.5 * scale, id0=62)
  if constant_dim is not None:
    for s, value in ((train, 2.5), (query, 7.0), (database, -1.0)):
      s.inputs[..., constant_dim] = value
  return RetrievalData("toy", train, query, database, ("a", "b", "c"),
                       stats={"seed": 11}).validate()


def _reference(data):
  """Per last-axis moments of train in float64 (population std), applied to every split."""
  x = data.train.inputs.astype(np.float64).reshape(-1, data.train.inputs.shape[-1])
  mean, std = x.mean(axis=0), np.sqrt(((x - x.mean(axis=0)) ** 2).mean(axis=0))
  div = np.where(std < 1e-6, 1.0, std)
  return {name: (s.inputs.astype(np.float64) - mean) / div
          for name, s in data.splits().items()}, mean, std


@pytest.mark.parametrize("shape", [(6,), (4, 5, 3)], ids=["features", "images"])
def test_zscore_uses_train_moments_for_every_split(shape):
  data = _data(shape)
  out = standardize(data, "zscore")
  expected, mean, std = _reference(data)
  for name, split in out.splits().items():
    assert split.inputs.dtype == np.float32 and split.inputs.shape == (len(split),) + shape
    np.testing.assert_allclose(split.inputs, expected[name], rtol=1e-5, atol=2e-5,
                               err_msg=name)
    # labels and ids pass through untouched
    np.testing.assert_array_equal(split.labels, data.splits()[name].labels)
    np.testing.assert_array_equal(split.ids, data.splits()[name].ids)
  # train: mean 0 and std 1 per dimension / channel
  flat = out.train.inputs.astype(np.float64).reshape(-1, shape[-1])
  np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(flat.std(axis=0), 1.0, atol=1e-5)
  # the queries were not standardised by their own moments (which would give 0 / 1)
  q = out.query.inputs.astype(np.float64).reshape(-1, shape[-1])
  own = (q - q.mean(axis=0)) / q.std(axis=0)
  assert np.abs(q - own).max() > 1.0
  assert q.std(axis=0).mean() > 2.0                  # 3x train's spread, in its units
  stats = out.stats["standardize"]
  assert stats["mode"] == "zscore" and stats["constant_dims"] == 0
  assert stats["mean_of_means"] == pytest.approx(mean.mean(), rel=1e-9)
  assert stats["mean_of_stds"] == pytest.approx(std.mean(), rel=1e-9)
  assert out.stats["seed"] == 11                      # the loader's stats are kept
  assert "standardize" not in data.stats              # the input is not modified
  assert out.name == data.name and out.class_names == data.class_names
  out.validate()


def test_images_are_per_channel_not_per_pixel():
  data = _data((4, 5, 3))
  out = standardize(data, "zscore")
  # per-pixel z-scoring would make every pixel position mean 0 over the training set;
  # per-channel leaves pixel means scattered around 0.
  x = data.train.inputs.astype(np.float64)
  mean_c = x.mean(axis=(0, 1, 2))
  std_c = x.std(axis=(0, 1, 2))
  np.testing.assert_allclose(out.train.inputs[0, 2, 3], (x[0, 2, 3] - mean_c) / std_c,
                             rtol=1e-5, atol=1e-5)
  pixel_means = out.train.inputs.astype(np.float64).mean(axis=0)
  assert np.abs(pixel_means).max() > 0.05


def test_constant_dimension_is_centred_not_divided():
  data = _data((5,), constant_dim=2)
  out = standardize(data, "zscore")
  assert all(np.all(np.isfinite(s.inputs)) for s in out.splits().values())
  np.testing.assert_array_equal(out.train.inputs[:, 2], 0.0)
  np.testing.assert_allclose(out.query.inputs[:, 2], 7.0 - 2.5, atol=1e-6)
  np.testing.assert_allclose(out.database.inputs[:, 2], -1.0 - 2.5, atol=1e-6)
  assert out.stats["standardize"]["constant_dims"] == 1
  expected, _, _ = _reference(data)
  for name, split in out.splits().items():
    np.testing.assert_allclose(split.inputs, expected[name], rtol=1e-5, atol=2e-5)


def test_constant_channel_of_images_is_counted():
  data = _data((3, 3, 2), constant_dim=0)
  out = standardize(data, "zscore")
  assert out.stats["standardize"]["constant_dims"] == 1
  np.testing.assert_array_equal(out.train.inputs[..., 0], 0.0)
  np.testing.assert_allclose(out.train.inputs[..., 1].astype(np.float64).std(), 1.0,
                             atol=1e-5)


def test_none_returns_the_same_object_and_bad_mode_names_the_field():
  data = _data((4,))
  assert standardize(data, "none") is data
  with pytest.raises(ValueError, match=r"data\.standardize='Zscore'"):
    standardize(data, "Zscore")
  with pytest.raises(ValueError, match=r"data\.standardize"):
    load_dataset({"name": "digits_mosaic", "standardize": "l2",
                  "kwargs": {"num_query": 4, "num_train": 8, "num_retrieval": 8}})


class _Lazy:
  """A minimal lazy image array: shape, dtype, len() and indexing; not a numpy array."""

  def __init__(self, n):
    self.shape, self.dtype = (n, 4, 4, 3), np.dtype(np.float32)
    self.reads = 0

  def __len__(self):
    return self.shape[0]

  def __getitem__(self, index):
    self.reads += 1
    return np.ones((len(np.arange(self.shape[0])[index]),) + self.shape[1:], np.float32)


def test_lazy_inputs_are_left_untouched():
  labels = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
  splits = [Split(_Lazy(4), labels, np.arange(4) + 4 * i) for i in range(3)]
  data = RetrievalData("lazy", *splits, ("x", "y")).validate()
  out = standardize(data, "zscore")
  assert out is data
  assert all(s.inputs.reads == 0 for s in splits)          # nothing was decoded


def test_load_dataset_standardizes_digits_mosaic():
  kwargs = {"num_query": 20, "num_train": 60, "num_retrieval": 40, "seed": 3}
  raw = read_dataset({"name": "digits_mosaic", "kwargs": kwargs})
  out = load_dataset({"name": "digits_mosaic", "kwargs": kwargs, "standardize": "zscore"})
  x = out.train.inputs.astype(np.float64)
  assert x.shape == (60, 16, 16, 1)
  np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
  r = raw.train.inputs.astype(np.float64)
  mean, std = r.mean(), r.std()
  np.testing.assert_allclose(out.query.inputs, (raw.query.inputs - mean) / std,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.database.inputs, (raw.database.inputs - mean) / std,
                             rtol=1e-5, atol=1e-5)
  # default: no standardisation
  plain = load_dataset({"name": "digits_mosaic", "kwargs": kwargs})
  np.testing.assert_array_equal(plain.train.inputs, raw.train.inputs)
  assert "standardize" not in (plain.stats or {})
