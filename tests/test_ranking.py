"""Ranking metrics and packed codes against brute force on small cases with many ties
(SPEC §6): enumerated tie orders for the tie-aware policy, Python sorts for the stable one,
direct counting for the curves."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dseh_jax import evaluation
from dseh_jax.evaluation import ranking


# --------------------------------------------------------------------------- references

def ref_distances(q, db):
  return [[sum(a != b for a, b in zip(qr, xr)) for xr in db] for qr in q]


def ref_relevant(ql, dl):
  return [[bool(set(np.flatnonzero(a)) & set(np.flatnonzero(b))) for b in dl] for a in ql]


def ref_ap(rel_in_order, k=None):
  """AP@k of one ranked relevance list (0 when nothing relevant in the top k)."""
  rel = rel_in_order if k is None else rel_in_order[:k]
  hits, total = 0, 0.0
  for rank, r in enumerate(rel, start=1):
    if r:
      hits += 1
      total += hits / rank
  return total / hits if hits else 0.0


def tie_orders(dist_row):
  """Every ranking that sorts by distance, over all orders inside the tie groups."""
  groups = [[j for j, d in enumerate(dist_row) if d == v] for v in sorted(set(dist_row))]
  for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
    yield [j for p in perms for j in p]


def ref_metrics(q, db, ql, dl, k=None, ns=()):
  """Per-query (stable AP, tie-aware AP, stable P@N list, tie-aware P@N list)."""
  dist, rel = ref_distances(q, db), ref_relevant(ql, dl)
  out = []
  for i in range(len(q)):
    stable = sorted(range(len(db)), key=lambda j: (dist[i][j], j))
    s_ap = ref_ap([rel[i][j] for j in stable], k)
    s_pn = [sum(rel[i][j] for j in stable[:n]) / n for n in ns]
    aps, pns, count = 0.0, np.zeros(len(ns)), 0
    for order in tie_orders(dist[i]):
      aps += ref_ap([rel[i][j] for j in order], k)
      pns += [sum(rel[i][j] for j in order[:n]) / n for n in ns]
      count += 1
    out.append((s_ap, aps / count, s_pn, list(pns / count)))
  return out


def case(seed, bits=3, nq=4, nd=7, classes=3, p_label=0.35):
  rng = np.random.default_rng(seed)
  q = rng.choice([-1, 1], size=(nq, bits)).astype(np.int8)
  db = rng.choice([-1, 1], size=(nd, bits)).astype(np.int8)
  ql = (rng.random((nq, classes)) < p_label).astype(np.int64)
  dl = (rng.random((nd, classes)) < p_label).astype(np.int64)
  return q, db, ql, dl


# --------------------------------------------------------------------------- codes

@pytest.mark.parametrize("bits", [1, 7, 8, 31, 32, 33, 64, 100])
def test_pack_unpack_round_trip(bits):
  rng = np.random.default_rng(bits)
  codes = rng.choice([-1, 1], size=(9, bits)).astype(np.int8)
  packed = evaluation.pack_codes(codes)
  assert packed.dtype == np.uint32 and packed.shape == (9, math.ceil(bits / 32))
  np.testing.assert_array_equal(evaluation.unpack_codes(packed, bits), codes)
  bits01 = (codes > 0).astype(np.int8)
  np.testing.assert_array_equal(evaluation.pack_codes(bits01, values="01"), packed)
  np.testing.assert_array_equal(evaluation.unpack_codes(packed, bits, values="01"), bits01)
  # bit k of the code is bit k % 32 of word k // 32
  for row in range(9):
    for k in range(bits):
      assert bool(packed[row, k // 32] >> np.uint32(k % 32) & np.uint32(1)) == (codes[row, k] > 0)


def test_packed_bytes_layout():
  codes = np.array([[1, -1, -1, -1, -1, -1, -1, -1, -1, 1] + [-1] * 6])
  as_bytes = evaluation.packed_to_bytes(evaluation.pack_codes(codes))
  np.testing.assert_array_equal(as_bytes, [[1, 2, 0, 0]])


@pytest.mark.parametrize("bits", [5, 32, 70])
def test_hamming_popcount_matmul_brute_force(bits):
  rng = np.random.default_rng(bits)
  q = rng.choice([-1, 1], size=(6, bits))
  db = rng.choice([-1, 1], size=(11, bits))
  want = np.array(ref_distances(q.tolist(), db.tolist()))
  for method in ("popcount", "matmul"):
    for chunk in (1, 4, 100):
      got = evaluation.hamming_distance(q, db, method=method, chunk_size=chunk)
      np.testing.assert_array_equal(got, want)
  got = evaluation.hamming_distance(evaluation.pack_codes(q), evaluation.pack_codes(db),
                                    num_bits=bits)
  np.testing.assert_array_equal(got, want)


def test_code_errors_name_the_problem():
  with pytest.raises(ValueError, match="only -1 and \\+1"):
    evaluation.pack_codes(np.array([[0, 1]]))
  with pytest.raises(ValueError, match="only 0 and 1"):
    evaluation.pack_codes(np.array([[-1, 1]]), values="01")
  packed = evaluation.pack_codes(np.ones((2, 10)))
  with pytest.raises(ValueError, match="pass num_bits"):
    evaluation.hamming_distance(packed, packed)
  with pytest.raises(ValueError, match="beyond bit 4"):
    evaluation.hamming_distance(packed, packed, num_bits=4)
  with pytest.raises(ValueError, match="uint32 \\[n, 1\\]"):
    evaluation.unpack_codes(packed.astype(np.int64), 10)
  with pytest.raises(ValueError, match="method="):
    evaluation.hamming_distance(np.ones((1, 3)), np.ones((1, 3)), method="fast")


# --------------------------------------------------------------------------- MAP

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("top_k", [None, 1, 3, 5, 7])
def test_map_stable_and_tie_aware_match_enumeration(seed, top_k):
  q, db, ql, dl = case(seed)
  ref = ref_metrics(q.tolist(), db.tolist(), ql, dl, top_k)
  report = evaluation.evaluate_retrieval(q, db, ql, dl, top_k=top_k if top_k else (),
                                         precision_at_n=(), chunk_size=3)
  if top_k is None:
    np.testing.assert_allclose(report.per_query_ap["stable"], [r[0] for r in ref],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(report.per_query_ap["tie_aware"], [r[1] for r in ref],
                               rtol=0, atol=1e-12)
  else:
    at = report.map_at[min(top_k, 7)]
    per = report.per_query_ap_at[min(top_k, 7)]
    np.testing.assert_allclose(per["stable"], [r[0] for r in ref], rtol=0, atol=1e-12)
    np.testing.assert_allclose(per["tie_aware"], [r[1] for r in ref], rtol=0, atol=1e-12)
    assert at["tie_aware"] == pytest.approx(np.mean([r[1] for r in ref]), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_tie_aware_large_groups_match_enumeration(seed):
  """One query, 8 items in 2–3 tie groups (up to 8! orders), cut inside a group."""
  rng = np.random.default_rng(100 + seed)
  q = np.ones((1, 2), np.int8)
  db = rng.choice([-1, 1], size=(8, 2)).astype(np.int8)
  db[:4] = 1                                          # a group of at least 4
  ql = np.array([[1, 0]])
  dl = (rng.random((8, 2)) < 0.5).astype(int)
  dl[0] = [1, 0]
  for k in (None, 2, 5, 6):
    ref = ref_metrics(q.tolist(), db.tolist(), ql, dl, k)[0][1]
    got = ranking.tie_aware_average_precision(
        *_counts(q, db, ql, dl), top_k=k)[0]
    assert got == pytest.approx(ref, abs=1e-12), k


def _counts(q, db, ql, dl):
  dist = np.array(ref_distances(q.tolist(), db.tolist()))
  rel = np.array(ref_relevant(ql, dl))
  bins = q.shape[1] + 1
  items = np.stack([np.bincount(d, minlength=bins) for d in dist])
  relevant = np.stack([np.bincount(d, weights=r, minlength=bins) for d, r in zip(dist, rel)])
  return items, relevant.astype(np.int64)


def test_tie_aware_equals_stable_without_ties():
  """Distinct distances: every policy gives the same ranking."""
  q = np.ones((1, 6), np.int8)
  db = np.ones((7, 6), np.int8)
  for j in range(7):
    db[j, :j] = -1                                    # distance j
  rng = np.random.default_rng(0)
  ql = np.array([[1, 1]])
  dl = (rng.random((7, 2)) < 0.5).astype(int)
  r = evaluation.evaluate_retrieval(q, db, ql, dl, top_k=4, ties=ranking.TIE_POLICIES,
                                    precision_at_n=(1, 3, 7))
  assert r.map["stable"] == pytest.approx(r.map["tie_aware"], abs=1e-12)
  assert r.map["stable"] == pytest.approx(r.map["random"], abs=1e-12)
  assert r.map_at[4]["stable"] == pytest.approx(r.map_at[4]["tie_aware"], abs=1e-12)
  np.testing.assert_allclose(r.precision_at["stable"], r.precision_at["tie_aware"])


@pytest.mark.parametrize("seed", range(3))
def test_random_policy_is_stable_order_of_a_seeded_permutation(seed):
  q, db, ql, dl = case(seed, bits=4, nq=5, nd=30, p_label=0.6)
  perm = np.random.default_rng(7).permutation(30)
  dist, rel = ref_distances(q.tolist(), db[perm].tolist()), ref_relevant(ql, dl[perm])
  want = [ref_ap([rel[i][j] for j in sorted(range(30), key=lambda j: (dist[i][j], j))])
          for i in range(5)]
  assert np.mean(want) > 0
  r = evaluation.evaluate_retrieval(q, db, ql, dl, ties="random", seed=7, precision_at_n=())
  assert r.map["random"] == pytest.approx(np.mean(want), abs=1e-12)
  other = evaluation.evaluate_retrieval(q, db, ql, dl, ties="random", seed=7,
                                        precision_at_n=())
  assert other.map["random"] == r.map["random"]


@pytest.mark.parametrize("seed", range(4))
def test_stable_map_larger_case_matches_python_sort(seed):
  """8-bit codes, 300 items: heavy ties; the prefix path for MAP@k and the full sort."""
  q, db, ql, dl = case(seed, bits=8, nq=9, nd=300, classes=5, p_label=0.2)
  dist, rel = ref_distances(q.tolist(), db.tolist()), ref_relevant(ql, dl)
  for k in (None, 1, 17, 150, 300):
    want = []
    for i in range(len(q)):
      order = sorted(range(300), key=lambda j: (dist[i][j], j))
      want.append(ref_ap([rel[i][j] for j in order], k))
    got = evaluation.mean_average_precision(q, db, ql, dl, top_k=k, chunk_size=4)
    assert got == pytest.approx(np.mean(want), abs=1e-12), k


@pytest.mark.parametrize("bits", [126, 127])
def test_key_width_boundary(bits):
  """The byte/16-bit key switch: every path matches the brute force on both sides."""
  q, db, ql, dl = case(bits, bits=bits, nq=3, nd=25, p_label=0.5)
  db[5:9] = db[4]                                     # ties
  dist, rel = ref_distances(q.tolist(), db.tolist()), ref_relevant(ql, dl)
  orders = [sorted(range(25), key=lambda j: (dist[i][j], j)) for i in range(3)]
  want = np.mean([ref_ap([rel[i][j] for j in orders[i]]) for i in range(3)])
  want_k = np.mean([ref_ap([rel[i][j] for j in orders[i]], 7) for i in range(3)])
  r = evaluation.evaluate_retrieval(q, db, ql, dl, top_k=7, precision_at_n=())
  assert r.map["stable"] == pytest.approx(want, abs=1e-12)
  assert r.map_at[7]["stable"] == pytest.approx(want_k, abs=1e-12)
  items, relevant = _counts(q, db, ql, dl)
  np.testing.assert_allclose(r.per_query_ap["tie_aware"],
                             ranking.tie_aware_average_precision(items, relevant), atol=1e-12)
  only_hist = evaluation.evaluate_retrieval(q, db, ql, dl, ties="tie_aware", full_map=False,
                                            top_k=7, precision_at_n=())
  assert only_hist.pr_curve == r.pr_curve


def test_long_codes_use_wide_keys():
  """130 bits (keys 2d + rel above 255) still match the brute force."""
  q, db, ql, dl = case(3, bits=130, nq=3, nd=20)
  dist, rel = ref_distances(q.tolist(), db.tolist()), ref_relevant(ql, dl)
  want = np.mean([ref_ap([rel[i][j] for j in sorted(range(20), key=lambda j: (dist[i][j], j))])
                  for i in range(3)])
  assert evaluation.mean_average_precision(q, db, ql, dl) == pytest.approx(want, abs=1e-12)


# --------------------------------------------------------------------------- curves

@pytest.mark.parametrize("seed", range(4))
def test_precision_at_n_matches_enumeration(seed):
  q, db, ql, dl = case(seed)
  ns = (1, 2, 4, 7)
  ref = ref_metrics(q.tolist(), db.tolist(), ql, dl, None, ns)
  r = evaluation.evaluate_retrieval(q, db, ql, dl, precision_at_n=ns + (50,))
  assert r.precision_at_n == list(ns)                 # N above the database size dropped
  np.testing.assert_allclose(r.precision_at["stable"], np.mean([x[2] for x in ref], 0),
                             atol=1e-12)
  np.testing.assert_allclose(r.precision_at["tie_aware"], np.mean([x[3] for x in ref], 0),
                             atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_pr_curve_and_radius_match_direct_counting(seed):
  q, db, ql, dl = case(seed, bits=6, nq=5, nd=25)
  dist = np.array(ref_distances(q.tolist(), db.tolist()))
  rel = np.array(ref_relevant(ql, dl))
  r = evaluation.evaluate_retrieval(q, db, ql, dl, radius=2, precision_at_n=())
  for rho in range(7):
    precisions, recalls = [], []
    for i in range(5):
      inside = dist[i] <= rho
      found = int(np.sum(inside & rel[i]))
      precisions.append(found / inside.sum() if inside.sum() else 0.0)
      recalls.append(found / rel[i].sum() if rel[i].sum() else 0.0)
    assert r.pr_curve["precision"][rho] == pytest.approx(np.mean(precisions), abs=1e-12)
    assert r.pr_curve["recall"][rho] == pytest.approx(np.mean(recalls), abs=1e-12)
    if rho == 2:
      assert r.radius["precision"] == pytest.approx(np.mean(precisions), abs=1e-12)
      assert r.radius["empty_queries"] == int(np.sum((dist <= 2).sum(1) == 0))


# --------------------------------------------------------------------------- policies, paths

def test_zero_relevant_policies():
  q = np.array([[1, 1], [1, -1]])
  db = np.array([[1, 1], [-1, -1], [1, -1]])
  ql = np.array([[1, 0, 0], [0, 0, 1]])               # query 1 has no relevant item
  dl = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
  zero = evaluation.evaluate_retrieval(q, db, ql, dl, precision_at_n=())
  skip = evaluation.evaluate_retrieval(q, db, ql, dl, zero_relevant="skip",
                                       precision_at_n=())
  # query 0: ranking 0 (d0, rel), 2 (d1, rel), 1 (d2) -> AP 1
  assert zero.map["stable"] == pytest.approx(0.5) and skip.map["stable"] == pytest.approx(1.0)
  assert zero.zero_relevant_queries == skip.zero_relevant_queries == 1
  assert (zero.queries_averaged, skip.queries_averaged) == (2, 1)
  assert zero.to_dict()["zero_relevant"] == "count_as_zero"


def test_packed_unpacked_chunked_threaded_paths_agree():
  q, db, ql, dl = case(11, bits=12, nq=37, nd=400, classes=6, p_label=0.2)
  kwargs = dict(top_k=(10, 100), ties=("stable", "tie_aware"), precision_at_n=(1, 10, 50))
  ref = evaluation.evaluate_retrieval(q, db, ql, dl, chunk_size=1000, num_threads=1,
                                      **kwargs).to_dict(per_query=True)
  for chunk, threads in ((1, 1), (5, 2), (16, 3)):
    got = evaluation.evaluate_retrieval(evaluation.pack_codes(q), evaluation.pack_codes(db),
                                        ql, dl, num_bits=12, chunk_size=chunk,
                                        num_threads=threads, **kwargs)
    assert got.to_dict(per_query=True) == ref


def test_input_errors():
  q, db, ql, dl = case(0)
  with pytest.raises(ValueError, match="ties="):
    evaluation.evaluate_retrieval(q, db, ql, dl, ties="optimistic")
  with pytest.raises(ValueError, match="zero_relevant="):
    evaluation.evaluate_retrieval(q, db, ql, dl, zero_relevant="drop")
  with pytest.raises(ValueError, match="number of rows"):
    evaluation.evaluate_retrieval(q, db, ql[:2], dl)
  with pytest.raises(ValueError, match="classes"):
    evaluation.evaluate_retrieval(q, db, ql[:, :2], dl)
  with pytest.raises(ValueError, match="query labels must hold only 0 and 1|query_labels"):
    evaluation.evaluate_retrieval(q, db, ql * 2, dl)
  with pytest.raises(ValueError, match="top_k"):
    evaluation.evaluate_retrieval(q, db, ql, dl, top_k=0)
  with pytest.raises(ValueError, match="database_codes has 4 bits per row; num_bits=3"):
    evaluation.evaluate_retrieval(q, np.ones((7, 4)), ql, dl)
