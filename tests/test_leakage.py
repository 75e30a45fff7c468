"""Leakage guard: overlap counts against plain set arithmetic, and the refusal."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dseh_jax.evaluation.leakage import check_protocol, overlap_report


def _brute(query, database, train):
  db, tr = set(database.tolist()), set(train.tolist())
  return (sum(1 for q in query.tolist() if q in db), sum(1 for q in query.tolist() if q in tr),
          sum(1 for t in train.tolist() if t in db))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_match_set_arithmetic(seed):
  rng = np.random.default_rng(seed)
  query = rng.integers(0, 400, 120)            # repeats on purpose: rows are counted
  database = rng.integers(200, 1000, 500)
  train = rng.integers(0, 300, 150)
  r = overlap_report(query, database, train)
  assert (r.query_in_database, r.query_in_train, r.train_in_database) == _brute(
      query, database, train)
  assert (r.num_query, r.num_database, r.num_train) == (120, 500, 150)
  db = set(database.tolist())
  expected = [int(q) for q in query if q in db][:5]
  assert list(r.query_in_database_examples) == expected


def test_clean_protocol_passes_and_train_in_database_is_allowed():
  # The authors' protocol: database = train ∪ retrieval; queries disjoint from both.
  query, train, retrieval = np.arange(0, 10), np.arange(10, 30), np.arange(30, 60)
  database = np.concatenate([train, retrieval])
  r = check_protocol(overlap_report(query, database, train), where="toy")
  assert (r.query_in_database, r.query_in_train, r.train_in_database) == (0, 0, 20)


def test_query_in_database_is_refused_unless_allowed():
  query, database = np.array([5, 6, 7, 8]), np.arange(7, 100)
  r = overlap_report(query, database)
  assert r.query_in_database == 2 and r.query_in_train is None
  with pytest.raises(ValueError, match=r"coco run: query leakage: 2 of 4 queries are also "
                                       r"in the database \(ids e\.g\. \[7, 8\]\)"):
    check_protocol(r, where="coco run")
  assert check_protocol(r, allow_query_in_database=True) is r


def test_query_in_train_is_refused_unless_allowed():
  r = overlap_report(np.array([1, 2, 3]), np.array([10, 11]), np.array([3, 4]))
  assert (r.query_in_database, r.query_in_train) == (0, 1)
  with pytest.raises(ValueError, match=r"1 of 3 queries are also training items.*"
                                       r"--allow_overlap"):
    check_protocol(r, allow_query_in_database=True)
  check_protocol(r, allow_query_in_train=True)


def test_both_leaks_are_named_together():
  r = overlap_report(np.array([1, 2]), np.array([1]), np.array([2]))
  with pytest.raises(ValueError) as e:
    check_protocol(r, where="w")
  assert "also in the database" in str(e.value) and "also training items" in str(e.value)


def test_to_dict_is_json_ready():
  r = overlap_report(np.array([1, 2]), np.array([2, 3]), np.array([9]))
  d = json.loads(json.dumps(r.to_dict()))
  assert d["query_in_database"] == 1 and d["query_in_database_examples"] == [2]
  assert d["train_in_database"] == 0


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.int64), np.array([1.5, 2.0])])
def test_bad_ids_are_refused(bad):
  with pytest.raises(ValueError, match="query_ids .* expected \\[n\\] integer ids"):
    overlap_report(bad, np.arange(3))
