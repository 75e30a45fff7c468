"""Protocol split builders (SPEC §6): sizes, disjointness, per-class counts, seeding."""
import numpy as np
import pytest

from dseh_jax.data import protocols


def _multilabel(rng, n=400, c=6, p=0.3):
  y = (rng.random((n, c)) < p).astype(np.float32)
  y[np.arange(n), rng.integers(0, c, n)] = 1
  return y


def test_per_class_split_sizes_disjointness_and_class_counts():
  y = _multilabel(np.random.default_rng(0))
  s = protocols.per_class_split(y, query_per_class=5, train_per_class=12, seed=3)
  assert s.query.shape == (30,) and s.train.shape == (72,)
  assert len(set(s.query.tolist())) == 30 and len(set(s.train.tolist())) == 72
  assert not set(s.query.tolist()) & set(s.train.tolist())
  # Every class has at least per_class members in each split (drawn for it).
  assert np.all(y[s.query].sum(0) >= 5) and np.all(y[s.train].sum(0) >= 12)
  # Database (default) = every non-query image, train included.
  expected_db = sorted(set(range(400)) - set(s.query.tolist()))
  assert s.database.tolist() == expected_db


def test_per_class_split_database_without_train():
  y = _multilabel(np.random.default_rng(1))
  s = protocols.per_class_split(y, query_per_class=3, train_per_class=4, seed=0,
                                database_includes_train=False)
  rest = set(range(400)) - set(s.query.tolist()) - set(s.train.tolist())
  assert s.database.tolist() == sorted(rest)


def test_single_label_per_class_split_is_exact_per_class():
  rng = np.random.default_rng(2)
  classes = rng.integers(0, 5, 300)
  y = np.eye(5, dtype=np.float32)[classes]
  s = protocols.per_class_split(y, query_per_class=4, train_per_class=7, seed=1)
  np.testing.assert_array_equal(np.bincount(classes[s.query], minlength=5), [4] * 5)
  np.testing.assert_array_equal(np.bincount(classes[s.train], minlength=5), [7] * 5)


def test_per_class_split_is_seeded():
  y = _multilabel(np.random.default_rng(3))
  a = protocols.per_class_split(y, query_per_class=4, train_per_class=6, seed=7)
  b = protocols.per_class_split(y, query_per_class=4, train_per_class=6, seed=7)
  c = protocols.per_class_split(y, query_per_class=4, train_per_class=6, seed=8)
  for field in ("query", "train", "database"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert set(a.query.tolist()) != set(c.query.tolist())


def test_per_class_split_too_few_images_names_the_class():
  y = np.zeros((20, 2), np.float32)
  y[:, 0] = 1
  y[:3, 1] = 1
  with pytest.raises(ValueError, match="class 'rare' has .* images left for the train"):
    protocols.per_class_split(y, query_per_class=1, train_per_class=3, seed=0,
                              class_names=("common", "rare"))


def test_random_split():
  s = protocols.random_split(50, num_query=8, num_train=12, seed=4)
  assert s.query.shape == (8,) and s.train.shape == (12,)
  assert not set(s.query.tolist()) & set(s.train.tolist())
  assert s.database.tolist() == sorted(set(range(50)) - set(s.query.tolist()))
  t = protocols.random_split(50, num_query=8, num_train=12, seed=4,
                             database_includes_train=False)
  np.testing.assert_array_equal(s.query, t.query)
  assert t.database.tolist() == sorted(set(range(50)) - set(s.query.tolist())
                                       - set(s.train.tolist()))
  u = protocols.random_split(50, num_query=8, num_train=12, seed=5)
  assert set(u.query.tolist()) != set(s.query.tolist())
  with pytest.raises(ValueError, match="exceed the 50 usable images"):
    protocols.random_split(50, num_query=40, num_train=11, seed=0)


def test_top_classes_breaks_ties_by_name():
  counts = np.array([5, 9, 7, 7, 1])
  names = ("e", "a", "d", "b", "c")
  # Ranked: a(9), b(7), d(7), e(5), c(1): with k=2 the 7-7 tie goes to "b".
  assert protocols.top_classes(counts, names, 2).tolist() == [1, 3]
  assert protocols.top_classes(counts, names, 3).tolist() == [1, 2, 3]
  with pytest.raises(ValueError, match="num_classes=6"):
    protocols.top_classes(counts, names, 6)
