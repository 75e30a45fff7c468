"""Tests for dseh_jax.evaluation against brute-force Python (SPEC §6)."""
from __future__ import annotations

import numpy as np
import pytest

from dseh_jax import evaluation


# --------------------------------------------------------------------------- references

def ref_hamming(q, x):
  """Number of positions where two code rows differ."""
  return sum(1 for a, b in zip(q, x) if a != b)


def ref_map(qcodes, dcodes, qlabels, dlabels, top_k=None):
  """Brute-force MAP: stable Hamming ranking, AP over relevant ranks within the top k."""
  nq, nd = len(qcodes), len(dcodes)
  k = nd if top_k is None else min(top_k, nd)
  total = 0.0
  for i in range(nq):
    dist = [ref_hamming(qcodes[i], dcodes[j]) for j in range(nd)]
    order = sorted(range(nd), key=lambda j: (dist[j], j))[:k]
    qset = {c for c, v in enumerate(qlabels[i]) if v}
    hits = 0
    precisions = []
    for rank, j in enumerate(order, start=1):
      if qset & {c for c, v in enumerate(dlabels[j]) if v}:
        hits += 1
        precisions.append(hits / rank)
    total += sum(precisions) / len(precisions) if precisions else 0.0
  return total / nq


def random_case(seed, bits, nq=7, nd=40, classes=3):
  rng = np.random.default_rng(seed)
  qcodes = rng.choice([-1, 1], size=(nq, bits)).astype(np.int8)
  dcodes = rng.choice([-1, 1], size=(nd, bits)).astype(np.int8)
  qlabels = (rng.random((nq, classes)) < 0.3).astype(np.int64)
  dlabels = (rng.random((nd, classes)) < 0.3).astype(np.int64)
  return qcodes, dcodes, qlabels, dlabels


# --------------------------------------------------------------------------- MAP

@pytest.mark.parametrize("top_k", [None, 1, 5, 40, 100])
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_matches_brute_force(seed, bits, top_k):
  """Many ties (4/8 bits, 40 items): equal to the brute force for every chunk size."""
  qc, dc, ql, dl = random_case(seed, bits)
  want = ref_map(qc.tolist(), dc.tolist(), ql.tolist(), dl.tolist(), top_k)
  for chunk in (1, 3, 256):
    got = evaluation.mean_average_precision(qc, dc, ql, dl, top_k=top_k, chunk_size=chunk)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"chunk {chunk}")


def test_map_float_codes_and_bool_labels():
  """Codes as float ±1 and labels as bool give the same number."""
  qc, dc, ql, dl = random_case(9, 6, nq=5, nd=25, classes=4)
  want = ref_map(qc.tolist(), dc.tolist(), ql.tolist(), dl.tolist(), 10)
  got = evaluation.mean_average_precision(qc.astype(np.float32), dc.astype(np.float32),
                                          ql.astype(bool), dl.astype(bool), top_k=10)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_map_hand_case():
  """One query, four items; the tie at distance 1 is broken by database order.

  query = [+1,+1,+1,+1], label {0}.
    d0 = [-1,+1,+1,+1]  dist 1, label {1}    irrelevant
    d1 = [+1,+1,+1,+1]  dist 0, label {0,1}  relevant
    d2 = [+1,-1,+1,+1]  dist 1, label {0}    relevant
    d3 = [-1,-1,-1,+1]  dist 3, label {2}    irrelevant
  Ranking: d1, d0, d2, d3 → relevance 1, 0, 1, 0.
  AP = (1/1 + 2/3) / 2 = 5/6.  (Reversed tie d1, d2, d0 would give 1.)
  AP@1 = 1; AP@2 = 1/1 = 1; AP@3 = 5/6.
  """
  q = np.array([[1, 1, 1, 1]], np.int8)
  db = np.array([[-1, 1, 1, 1], [1, 1, 1, 1], [1, -1, 1, 1], [-1, -1, -1, 1]], np.int8)
  ql = np.array([[1, 0, 0]])
  dl = np.array([[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]])
  assert evaluation.mean_average_precision(q, db, ql, dl) == pytest.approx(5 / 6, abs=1e-12)
  assert evaluation.mean_average_precision(q, db, ql, dl, top_k=1) == pytest.approx(1.0)
  assert evaluation.mean_average_precision(q, db, ql, dl, top_k=2) == pytest.approx(1.0)
  assert evaluation.mean_average_precision(q, db, ql, dl, top_k=3) == pytest.approx(5 / 6)
  # Relevant item only at the last rank: AP = (1/4) / 1.
  dl2 = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
  assert evaluation.mean_average_precision(q, db, ql, dl2) == pytest.approx(0.25)
  # ... and outside the top 3: scores 0.
  assert evaluation.mean_average_precision(q, db, ql, dl2, top_k=3) == 0.0


def test_map_query_without_relevant_items_counts_as_zero():
  """Two queries: one perfect (AP 1), one with nothing relevant (AP 0) → MAP 0.5."""
  q = np.array([[1, 1], [-1, -1]], np.int8)
  db = np.array([[1, 1], [1, -1], [-1, -1]], np.int8)
  ql = np.array([[1, 0, 0], [0, 0, 1]])
  dl = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
  # Query 0: ranking db0 (d 0, rel), db1 (d 1), db2 (d 2) → AP 1. Query 1: no item has class 2.
  assert evaluation.mean_average_precision(q, db, ql, dl) == pytest.approx(0.5, abs=1e-12)
  # A query with no label at all is likewise 0.
  ql0 = np.array([[1, 0, 0], [0, 0, 0]])
  assert evaluation.mean_average_precision(q, db, ql0, dl) == pytest.approx(0.5, abs=1e-12)


def test_map_row_count_mismatch_raises():
  qc, dc, ql, dl = random_case(0, 4, nq=3, nd=5)
  with pytest.raises(ValueError):
    evaluation.mean_average_precision(qc, dc, ql[:2], dl)
  with pytest.raises(ValueError):
    evaluation.mean_average_precision(qc, dc, ql, dl[:4])


# --------------------------------------------------------------------------- helpers

@pytest.mark.parametrize("bits", [1, 5, 16, 64])
def test_hamming_distance_matches_bit_count(bits):
  rng = np.random.default_rng(bits)
  q = rng.choice([-1, 1], size=(6, bits)).astype(np.int8)
  x = rng.choice([-1, 1], size=(9, bits)).astype(np.int8)
  got = evaluation.hamming_distance(q, x)
  want = [[ref_hamming(q[i].tolist(), x[j].tolist()) for j in range(9)] for i in range(6)]
  np.testing.assert_array_equal(got, np.array(want))
  assert got.shape == (6, 9)


def test_binarize():
  """sign with sign(0) = +1, int8 values in {−1, +1}."""
  x = np.array([[-2.5, -1e-30, 0.0, -0.0], [1e-30, 3.0, -7.0, 0.5]], np.float32)
  got = evaluation.binarize(x)
  assert got.dtype == np.int8
  want = [[-1 if v < 0 else 1 for v in row] for row in x.tolist()]
  np.testing.assert_array_equal(got, np.array(want))


@pytest.mark.parametrize("seed", [0, 1])
def test_bit_balance(seed):
  """Mean over bits of |mean over codes|, by Python loops; 0 for a balanced set."""
  rng = np.random.default_rng(seed)
  codes = rng.choice([-1, 1], size=(11, 6)).astype(np.int8)
  n, k = codes.shape
  want = sum(abs(sum(int(codes[i, b]) for i in range(n)) / n) for b in range(k)) / k
  assert evaluation.bit_balance(codes) == pytest.approx(want, abs=1e-12)
  balanced = np.array([[1, -1, 1], [-1, 1, -1]], np.int8)
  assert evaluation.bit_balance(balanced) == 0.0
  constant = np.ones((4, 3), np.int8)
  assert evaluation.bit_balance(constant) == 1.0


def test_distinct_codes():
  """Number of distinct sign patterns (0 counts as +1)."""
  codes = np.array([[0.5, -0.2, 1.0], [0.0, -1.0, 2.0], [1.0, -1e-9, 3.0],
                    [-1.0, -1.0, 1.0], [-0.3, -2.0, 0.1], [1.0, 1.0, 1.0]], np.float32)
  want = len({tuple(1 if v >= 0 else -1 for v in row) for row in codes.tolist()})
  assert want == 3
  assert evaluation.distinct_codes(codes) == want
  rng = np.random.default_rng(4)
  codes = rng.choice([-1, 1], size=(50, 4)).astype(np.int8)
  assert evaluation.distinct_codes(codes) == len({tuple(r) for r in codes.tolist()})
  assert evaluation.distinct_codes(np.ones((7, 5))) == 1


def test_bad_arguments_are_clear_errors():
  import pytest  # pylint: disable=import-outside-toplevel
  from dseh_jax import evaluation as ev  # pylint: disable=import-outside-toplevel
  codes = np.ones((3, 4), np.int8)
  labels = np.ones((3, 2), np.float32)
  with pytest.raises(ValueError, match="top_k"):
    ev.mean_average_precision(codes, codes, labels, labels, top_k=0)
  with pytest.raises(ValueError, match="at least one query"):
    ev.mean_average_precision(codes[:0], codes, labels[:0], labels)
  with pytest.raises(ValueError, match="-1 and \\+1"):
    ev.hamming_distance(np.zeros((1, 4)), codes)
