"""Hamming-ranking metrics with an explicit tie policy (SPEC §6, Figs. 3–4).

For a query ``q`` every database item ``x`` gets the Hamming distance ``d(q, x) ∈ 0…K``
and is *relevant* when it shares at least one label with ``q``. Ranking by distance leaves
the order inside a group of equal distances open; this module makes that choice explicit:

* ``stable``: ties keep database order (what a stable sort returns). Deterministic.
* ``tie_aware``: the expectation over a uniformly random order inside every tie group
  (McFee & Lanckriet 2010; He et al., CVPR 2018). It depends only on the per-query counts
  ``n_d`` (items at distance ``d``) and ``r_d`` (relevant items at distance ``d``), and has a
  closed form (see :func:`tie_aware_average_precision`).
* ``random``: ties in a uniformly random order drawn from ``seed`` (one database
  permutation per evaluation, then ``stable``).

Definitions (``R`` = relevant items in the whole database, ``rel(i)`` = item at rank ``i``
is relevant, ``hits(i)`` = relevant items in ranks ``1…i``):

* ``AP = (1/R) Σ_{i: rel(i)} hits(i) / i`` over the whole ranking;
* ``AP@k = (1/R_k) Σ_{i ≤ k: rel(i)} hits(i) / i`` with ``R_k = hits(k)`` (the HashNet
  convention; it is 0 when the top ``k`` holds no relevant item);
* ``P@N = hits(N) / N`` (SPEC Fig. 4);
* precision and recall within Hamming radius ``ρ``: ``Σ_{d ≤ ρ} r_d / Σ_{d ≤ ρ} n_d`` and
  ``Σ_{d ≤ ρ} r_d / R`` (SPEC Fig. 3 sweeps ``ρ = 0…K``); a query with nothing within
  the radius has precision 0.

A query with ``R = 0`` (no relevant item in the database) scores ``AP = 0`` and recall 0.
``zero_relevant="count_as_zero"`` (the authors' code; the default) keeps those queries in
every mean, ``"skip"`` leaves them out; the report says which, and how many there were.

Speed: the distances and relevance flags of a block of queries against the whole database
are one fused XLA kernel over bit-packed codes and label masks (population count of XOR,
AND of masks), producing one byte per pair (``2 d + rel``). Per query, the tie-aware
metrics need only a histogram of those bytes (a linear-time radix sort of the bytes, then
``O(K)``), the stable MAP a radix argsort of the distances (which also yields the
histogram), and stable MAP@k / P@N only the items within the cut-off distance. numpy's
sorts release the GIL, so blocks of queries run in parallel on a thread pool, and memory
stays ``O(block × n_database)`` bytes at any database size.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from dseh_jax.evaluation import codes as codes_lib

TIE_POLICIES = ("stable", "tie_aware", "random")
ZERO_RELEVANT_POLICIES = ("count_as_zero", "skip")

# Per-dataset default cut-off of MAP@k (SPEC §6, the HashNet protocol).
DEFAULT_TOP_K = {"nus_wide21": 5000, "coco": 5000, "coco_hashing": 5000,
                 "imagenet100": 1000, "imagenet100_hashing": 1000}

DEFAULT_PRECISION_AT = (1, 5, 10, 20, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900,
                        1000)


# --------------------------------------------------------------------------- kernel

@functools.partial(jax.jit, static_argnames=("key_dtype",))
def _pair_keys(q_words, q_labels, db_words_t, db_labels_t, key_dtype):
  """``[c, nd]`` keys ``2 d + rel`` for a block of queries.

  Args:
    q_words: ``[c, W]`` uint32 packed query codes; ``db_words_t``: ``[W, nd]``.
    q_labels: ``[c, L]`` uint32 label masks; ``db_labels_t``: ``[L, nd]``.
  """
  dist = jnp.zeros((q_words.shape[0], db_words_t.shape[1]), key_dtype)
  for w in range(q_words.shape[1]):
    dist = dist + jax.lax.population_count(
        q_words[:, w, None] ^ db_words_t[None, w, :]).astype(key_dtype)
  shared = jnp.zeros(dist.shape, jnp.bool_)
  for w in range(q_labels.shape[1]):
    shared = shared | ((q_labels[:, w, None] & db_labels_t[None, w, :]) != 0)
  return dist * 2 + shared.astype(key_dtype)


def _key_dtype(num_bits: int):
  """Bytes while every key ``2d + rel`` and the search bound ``2K + 2`` fit in them."""
  return jnp.uint8 if 2 * num_bits + 2 <= 255 else jnp.uint16


# --------------------------------------------------------------------------- scan

@dataclasses.dataclass
class _Scan:
  """What one pass over the database yields per query."""
  items: np.ndarray                     # [nq, K + 1] n_d
  relevant: np.ndarray                  # [nq, K + 1] r_d
  stable_ap: Optional[np.ndarray]       # [nq] stable AP over the whole ranking
  stable_prefix: Optional[np.ndarray]   # [nq, L] relevance of the first L stable ranks


def _row_from_sort(keys: np.ndarray, bins: int, ranks: np.ndarray, want_ap: bool,
                   prefix: int):
  """One query's ``(n_d, r_d, stable AP, relevance of the first prefix ranks)`` from a
  stable (radix) sort of its ``keys`` ``[nd]`` by distance; the counts come from the
  sorted keys, whose groups are contiguous runs of ``2d`` and ``2d + 1``."""
  order = np.argsort(keys >> 1, kind="stable")
  sorted_keys = keys.take(order)
  # Same dtype as the keys: a wider needle would make numpy convert the whole row.
  bounds = np.searchsorted(sorted_keys, (2 * np.arange(bins + 1)).astype(keys.dtype))
  # 0-based ranks of the relevant items (nonzero on a bool view is ~6x faster than on uint8)
  low = sorted_keys & 1
  pos = np.flatnonzero(low.view(bool) if low.dtype.itemsize == 1 else low.astype(bool))
  items = np.diff(bounds)
  relevant = np.diff(np.searchsorted(pos, bounds))
  ap = None
  if want_ap:
    ratio = pos + 1.0                                      # ranks of the relevant items
    np.divide(ranks[:pos.size], ratio, out=ratio)          # hits / rank (no BLAS dot: its
    ap = float(ratio.sum() / pos.size) if pos.size else 0.0  # threads oversubscribe)
  rel_prefix = low[:prefix].astype(bool) if prefix else None
  return items, relevant, ap, rel_prefix


def _row_from_counts(keys: np.ndarray, bins: int, prefix: int):
  """One query's ``(n_d, r_d, relevance of the first prefix stable ranks)`` from a
  histogram of its ``keys``; only the items within the cut-off distance are sorted."""
  # A radix sort of the byte keys, then the run boundaries: a histogram that, unlike
  # np.bincount, releases the GIL, so the worker threads run in parallel.
  sorted_keys = np.sort(keys, kind="stable")
  counts = np.diff(np.searchsorted(sorted_keys, np.arange(2 * bins + 1).astype(keys.dtype)))
  items = counts[0::2] + counts[1::2]
  relevant = counts[1::2]
  rel_prefix = None
  if prefix:
    cut = int(np.searchsorted(np.cumsum(items), prefix))   # first d with n_{≤d} ≥ prefix
    cand = np.flatnonzero(keys <= 2 * cut + 1)             # in database order
    cand_keys = keys.take(cand)
    order = np.argsort(cand_keys >> 1, kind="stable")[:prefix]
    rel_prefix = (cand_keys.take(order) & 1).astype(bool)
  return items, relevant, rel_prefix


def _scan(q_words, q_labels, db_words, db_labels, num_bits: int, *, want_stable_ap: bool,
          stable_prefix: int, chunk_size: int, num_threads: int) -> _Scan:
  nq, nd = q_words.shape[0], db_words.shape[0]
  key_dtype = _key_dtype(num_bits)
  bins = num_bits + 1
  db_w = jnp.asarray(np.ascontiguousarray(db_words.T))
  db_l = jnp.asarray(np.ascontiguousarray(db_labels.T))
  chunk_size = max(1, min(int(chunk_size), nq))
  items = np.zeros((nq, bins), np.int64)
  relevant = np.zeros((nq, bins), np.int64)
  stable_ap = np.zeros(nq) if want_stable_ap else None
  prefix = min(int(stable_prefix), nd)
  rel_prefix = np.zeros((nq, prefix), bool) if prefix else None
  # A full sort per query when the stable order of every item is needed; else histograms.
  full_sort = want_stable_ap or prefix >= nd
  ranks = np.arange(1, nd + 1, dtype=np.float64) if want_stable_ap else None

  def block(start: int) -> None:
    stop = min(start + chunk_size, nq)
    qw, ql = q_words[start:stop], q_labels[start:stop]
    if stop - start < chunk_size:             # pad: one compiled shape for every block
      pad = chunk_size - (stop - start)
      qw = np.concatenate([qw, np.repeat(qw[:1], pad, 0)])
      ql = np.concatenate([ql, np.repeat(ql[:1], pad, 0)])
    keys = np.asarray(_pair_keys(qw, ql, db_w, db_l, key_dtype))
    for i in range(stop - start):
      row = start + i
      if full_sort:
        items[row], relevant[row], ap, rp = _row_from_sort(keys[i], bins, ranks,
                                                           want_stable_ap, prefix)
        if want_stable_ap:
          stable_ap[row] = ap
      else:
        items[row], relevant[row], rp = _row_from_counts(keys[i], bins, prefix)
      if prefix:
        rel_prefix[row] = rp

  starts = range(0, nq, chunk_size)
  if num_threads <= 1:
    for s in starts:
      block(s)
  else:
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
      for f in [pool.submit(block, s) for s in starts]:
        f.result()
  return _Scan(items, relevant, stable_ap, rel_prefix)


# --------------------------------------------------------------------------- closed forms

def _harmonic(n: int) -> np.ndarray:
  """``H[m] = Σ_{i=1}^m 1/i`` for ``m = 0…n`` (float64)."""
  return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def _expected_group_sum(before_items, before_rel, m, x, H):
  """``E[Σ_{relevant p ≤ m} hits(p) / rank(p)]`` over the first ``m`` positions of a tie
  group holding ``x`` relevant items among those ``m`` positions, in uniformly random
  order, after ``before_items`` items of which ``before_rel`` are relevant.

  Position ``p`` is relevant with probability ``x/m``; given that, the relevant items among
  the ``p − 1`` earlier positions number ``(p − 1)(x − 1)/(m − 1)`` on average, so the sum is
  ``(x/m) Σ_p (before_rel + 1 + (p − 1)(x − 1)/(m − 1)) / (before_items + p)``, which
  harmonic numbers ``H`` give in closed form.
  """
  m = np.asarray(m, np.float64)
  x = np.asarray(x, np.float64)
  safe_m = np.maximum(m, 1.0)
  h1 = H[(before_items + m).astype(np.int64)] - H[np.asarray(before_items, np.int64)]
  slope = np.where(m > 1, (x - 1.0) / np.maximum(m - 1.0, 1.0), 0.0)
  total = (before_rel + 1.0) * h1 + slope * (m - (before_items + 1.0) * h1)
  return np.where(m > 0, x / safe_m * total, 0.0)


def tie_aware_average_precision(items: np.ndarray, relevant: np.ndarray,
                                top_k: Optional[int] = None) -> np.ndarray:
  """Expected AP (or AP@top_k) under a uniformly random order inside tie groups.

  Args:
    items: ``[nq, K + 1]`` counts ``n_d`` of database items at distance ``d``.
    relevant: ``[nq, K + 1]`` counts ``r_d`` of relevant items at distance ``d``.
    top_k: ``None`` for the whole ranking.

  Returns:
    ``[nq]`` float64. For the whole ranking ``AP = (1/R) Σ_d E_d`` with ``E_d`` from
    :func:`_expected_group_sum` (``m = n_d``, ``x = r_d``), ``O(K)`` per query. For AP@k the
    group ``t`` holding rank ``k`` is cut after ``m = k − N_t`` of its ``n_t`` items; the
    relevant items ``X`` among them follow a hypergeometric law and ``R_k = R_{<t} + X``,
    so ``E[AP@k] = Σ_x P(X = x) (Σ_{d<t} E_d + E_t(m, x)) / (R_{<t} + x)`` exactly
    (``O(min(k, r_t))`` per query).
  """
  items = np.asarray(items, np.int64)
  relevant = np.asarray(relevant, np.int64)
  nq, _ = items.shape
  nd = int(items[0].sum()) if nq else 0
  H = _harmonic(nd)
  before = np.cumsum(items, axis=1) - items
  before_rel = np.cumsum(relevant, axis=1) - relevant
  full = _expected_group_sum(before, before_rel, items, relevant, H)     # [nq, K + 1]
  if top_k is None or top_k >= nd:
    total_rel = relevant.sum(axis=1)
    return np.where(total_rel > 0, full.sum(axis=1) / np.maximum(total_rel, 1), 0.0)
  k = int(top_k)
  out = np.zeros(nq)
  cut = np.argmax(np.cumsum(items, axis=1) >= k, axis=1)     # group holding rank k
  for i in range(nq):
    t = cut[i]
    n_t, r_t, n_b, r_b = items[i, t], relevant[i, t], before[i, t], before_rel[i, t]
    m = k - n_b
    head = full[i, :t].sum()
    lo, hi = max(0, m - (n_t - r_t)), min(m, r_t)
    x = np.arange(lo, hi + 1)
    log_p = (_log_comb(r_t, x) + _log_comb(n_t - r_t, m - x) - _log_comb(n_t, m))
    p = np.exp(log_p)
    num = head + _expected_group_sum(n_b, r_b, m, x, H)
    den = r_b + x
    out[i] = float(np.sum(p * np.where(den > 0, num / np.maximum(den, 1), 0.0)))
  return out


def _log_comb(n, k):
  n = np.asarray(n, np.float64)
  k = np.asarray(k, np.float64)
  return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def tie_aware_precision_at(items: np.ndarray, relevant: np.ndarray,
                           ns: Sequence[int]) -> np.ndarray:
  """``[nq, len(ns)]`` expected ``P@N`` under random tie order: the group ``t`` holding
  rank ``N`` contributes ``(N − N_t) r_t / n_t`` relevant items on average."""
  items = np.asarray(items, np.int64)
  relevant = np.asarray(relevant, np.int64)
  cum = np.cumsum(items, axis=1)
  cum_rel = np.cumsum(relevant, axis=1)
  out = np.zeros((items.shape[0], len(ns)))
  rows = np.arange(items.shape[0])
  for j, n in enumerate(ns):
    t = np.argmax(cum >= n, axis=1)
    before = cum[rows, t] - items[rows, t]
    before_rel = cum_rel[rows, t] - relevant[rows, t]
    frac = relevant[rows, t] / np.maximum(items[rows, t], 1)
    out[:, j] = (before_rel + (n - before) * frac) / n
  return out


def prefix_average_precision(rel_prefix: np.ndarray, k: int) -> np.ndarray:
  """``[nq]`` AP@k from the relevance ``[nq, ≥ k]`` of the first ranks of each query."""
  rel = rel_prefix[:, :k].astype(np.float64)
  hits = np.cumsum(rel, axis=1)
  ranks = np.arange(1, rel.shape[1] + 1)
  n_rel = hits[:, -1]
  total = np.sum(rel * hits / ranks, axis=1)
  return np.where(n_rel > 0, total / np.maximum(n_rel, 1), 0.0)


def radius_precision_recall(items: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, ...]:
  """``(precision, recall, empty)`` ``[nq, K + 1]`` within Hamming radius ``ρ = 0…K``:
  ``empty`` marks queries with nothing within the radius (their precision is 0)."""
  retrieved = np.cumsum(items, axis=1)
  hits = np.cumsum(relevant, axis=1)
  total_rel = relevant.sum(axis=1, keepdims=True)
  precision = np.where(retrieved > 0, hits / np.maximum(retrieved, 1), 0.0)
  recall = np.where(total_rel > 0, hits / np.maximum(total_rel, 1), 0.0)
  return precision, recall, retrieved == 0


# --------------------------------------------------------------------------- report

@dataclasses.dataclass
class RetrievalReport:
  """Every number of one evaluation; ``to_dict()`` is JSON-ready.

  ``map[policy]`` is MAP over the whole ranking, ``map_at[k][policy]`` MAP@k,
  ``precision_at[policy]`` the mean ``P@N`` for ``precision_at_n``, ``pr_curve`` the mean
  precision and recall within radius ``0…K`` and ``radius`` those at ``radius_value``.
  ``per_query_ap[policy]`` and ``per_query_ap_at[k][policy]`` keep every query's AP (all
  queries, whatever the zero-relevant policy) for significance tests.
  """
  num_queries: int
  num_database: int
  num_bits: int
  zero_relevant: str
  zero_relevant_queries: int
  queries_averaged: int
  ties: tuple[str, ...]
  seed: int
  map: dict[str, float]
  map_at: dict[int, dict[str, float]]
  precision_at_n: list[int]
  precision_at: dict[str, list[float]]
  pr_curve: dict[str, list[float]]
  radius_value: int
  radius: dict[str, float]
  per_query_ap: dict[str, np.ndarray] = dataclasses.field(repr=False)
  per_query_ap_at: dict[int, dict[str, np.ndarray]] = dataclasses.field(repr=False)

  def to_dict(self, per_query: bool = False) -> dict[str, Any]:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if not f.name.startswith("per_query")}
    out["ties"] = list(self.ties)
    out["map_at"] = {str(k): v for k, v in self.map_at.items()}
    if per_query:
      out["per_query_ap"] = {p: v.tolist() for p, v in self.per_query_ap.items()}
      out["per_query_ap_at"] = {str(k): {p: v.tolist() for p, v in d.items()}
                                for k, d in self.per_query_ap_at.items()}
    return out


def _check_inputs(q_codes, db_codes, q_labels, db_labels, num_bits):
  q_words, k = codes_lib.as_packed(q_codes, num_bits, "query_codes")
  db_words, k_db = codes_lib.as_packed(db_codes, k, "database_codes")
  nq, nd = q_words.shape[0], db_words.shape[0]
  q_labels, db_labels = np.asarray(q_labels), np.asarray(db_labels)
  if q_labels.ndim != 2 or db_labels.ndim != 2:
    raise ValueError(f"labels must be [n, num_classes]; got query {q_labels.shape}, "
                     f"database {db_labels.shape}")
  if q_labels.shape[0] != nq or db_labels.shape[0] != nd:
    raise ValueError("codes and labels disagree on the number of rows: "
                     f"query {nq} vs {q_labels.shape[0]}, database {nd} vs "
                     f"{db_labels.shape[0]}")
  if q_labels.shape[1] != db_labels.shape[1]:
    raise ValueError(f"query labels have {q_labels.shape[1]} classes, database labels "
                     f"{db_labels.shape[1]}")
  if nq == 0 or nd == 0:
    raise ValueError(f"evaluation needs at least one query and one database item; got "
                     f"{nq} and {nd}")
  return (q_words, codes_lib.pack_labels(q_labels, "query_labels"), db_words,
          codes_lib.pack_labels(db_labels, "database_labels"), k)


def _mean(values: np.ndarray, keep: np.ndarray) -> float:
  return float(np.mean(values[keep])) if np.any(keep) else 0.0


def evaluate_retrieval(query_codes: np.ndarray, database_codes: np.ndarray,
                       query_labels: np.ndarray, database_labels: np.ndarray, *,
                       num_bits: Optional[int] = None,
                       top_k: Union[int, Sequence[int], None] = (),
                       ties: Union[str, Sequence[str]] = ("stable", "tie_aware"),
                       zero_relevant: str = "count_as_zero",
                       precision_at_n: Sequence[int] = DEFAULT_PRECISION_AT,
                       radius: int = 2, full_map: bool = True, seed: int = 0,
                       chunk_size: int = 128,
                       num_threads: Optional[int] = None) -> RetrievalReport:
  """MAP, MAP@k, P@N, PR by radius and P/R within ``radius`` in one pass (module docstring).

  Args:
    query_codes, database_codes: ``{-1, +1}`` codes ``[n, K]`` or packed uint32 words
      (then ``num_bits``).
    query_labels, database_labels: ``[n, c]`` multi-hot labels.
    top_k: cut-off(s) of MAP@k (e.g. 5000 for NUS-WIDE, see ``DEFAULT_TOP_K``).
    ties: policies among ``TIE_POLICIES``; each gets its own MAP, MAP@k and P@N.
    zero_relevant: ``"count_as_zero"`` or ``"skip"``.
    precision_at_n: the ``N`` of the P@N curve (values above the database size are
      dropped).
    full_map: compute MAP over the whole ranking (the stable one costs a sort per query).
    seed: the tie order of the ``random`` policy.
    chunk_size: queries per block; memory ``≈ 2 × chunk_size × n_database`` bytes per
      thread.
    num_threads: worker threads (default: the CPU count, at most 4).
  """
  ties = (ties,) if isinstance(ties, str) else tuple(ties)
  bad = [t for t in ties if t not in TIE_POLICIES]
  if bad or not ties:
    raise ValueError(f"ties={ties}; expected one or more of {TIE_POLICIES}")
  if zero_relevant not in ZERO_RELEVANT_POLICIES:
    raise ValueError(f"zero_relevant={zero_relevant!r}; expected one of "
                     f"{ZERO_RELEVANT_POLICIES}")
  top_ks = () if top_k is None else ((top_k,) if isinstance(top_k, (int, np.integer))
                                     else tuple(top_k))
  if any(int(k) < 1 for k in top_ks):
    raise ValueError(f"top_k={top_k}; expected positive cut-offs")
  q_words, q_lab, db_words, db_lab, k_bits = _check_inputs(
      query_codes, database_codes, query_labels, database_labels, num_bits)
  nq, nd = q_words.shape[0], db_words.shape[0]
  top_ks = tuple(sorted({min(int(k), nd) for k in top_ks}))
  ns = [int(n) for n in precision_at_n if 1 <= int(n) <= nd]
  prefix = max(top_ks + tuple(ns) + (0,))
  if num_threads is None:
    num_threads = max(1, min(4, os.cpu_count() or 1))
  scan_args = dict(chunk_size=chunk_size, num_threads=num_threads)

  per_ap: dict[str, np.ndarray] = {}
  per_ap_at: dict[int, dict[str, np.ndarray]] = {k: {} for k in top_ks}
  precision: dict[str, list[float]] = {}
  need_stable = "stable" in ties
  base = _scan(q_words, q_lab, db_words, db_lab, k_bits,
               want_stable_ap=need_stable and full_map,
               stable_prefix=prefix if need_stable else 0, **scan_args)
  total_rel = base.relevant.sum(axis=1)
  keep = np.ones(nq, bool) if zero_relevant == "count_as_zero" else total_rel > 0

  def from_stable(name: str, scan: _Scan) -> None:
    if full_map:
      per_ap[name] = scan.stable_ap
    for k in top_ks:
      per_ap_at[k][name] = prefix_average_precision(scan.stable_prefix, k)
    hits = np.cumsum(scan.stable_prefix, axis=1) if ns else None
    precision[name] = [_mean(hits[:, n - 1] / n, keep) for n in ns]

  if need_stable:
    from_stable("stable", base)
  if "tie_aware" in ties:
    if full_map:
      per_ap["tie_aware"] = tie_aware_average_precision(base.items, base.relevant)
    for k in top_ks:
      per_ap_at[k]["tie_aware"] = tie_aware_average_precision(base.items, base.relevant, k)
    if ns:
      p = tie_aware_precision_at(base.items, base.relevant, ns)
      precision["tie_aware"] = [_mean(p[:, j], keep) for j in range(len(ns))]
    else:
      precision["tie_aware"] = []
  if "random" in ties:
    perm = np.random.default_rng(seed).permutation(nd)
    shuffled = _scan(q_words, q_lab, db_words[perm], db_lab[perm], k_bits,
                     want_stable_ap=full_map, stable_prefix=prefix, **scan_args)
    from_stable("random", shuffled)

  r_precision, r_recall, empty = radius_precision_recall(base.items, base.relevant)
  rho = int(np.clip(radius, 0, k_bits))
  return RetrievalReport(
      num_queries=nq, num_database=nd, num_bits=k_bits, zero_relevant=zero_relevant,
      zero_relevant_queries=int(np.sum(total_rel == 0)), queries_averaged=int(keep.sum()),
      ties=ties, seed=int(seed),
      map={p: _mean(v, keep) for p, v in per_ap.items()},
      map_at={k: {p: _mean(v, keep) for p, v in d.items()} for k, d in per_ap_at.items()},
      precision_at_n=ns, precision_at=precision,
      pr_curve={"radius": list(range(k_bits + 1)),
                "precision": [_mean(r_precision[:, j], keep) for j in range(k_bits + 1)],
                "recall": [_mean(r_recall[:, j], keep) for j in range(k_bits + 1)]},
      radius_value=rho,
      radius={"precision": _mean(r_precision[:, rho], keep),
              "recall": _mean(r_recall[:, rho], keep),
              "empty_queries": int(np.sum(empty[:, rho]))},
      per_query_ap=per_ap, per_query_ap_at=per_ap_at)


def mean_average_precision(query_codes: np.ndarray, database_codes: np.ndarray,
                           query_labels: np.ndarray, database_labels: np.ndarray, *,
                           top_k: Optional[int] = None, ties: str = "stable",
                           zero_relevant: str = "count_as_zero",
                           num_bits: Optional[int] = None, seed: int = 0,
                           chunk_size: int = 128,
                           num_threads: Optional[int] = None) -> float:
  """MAP (``top_k=None``) or MAP@top_k of Hamming ranking under one tie policy."""
  if top_k is not None and int(top_k) < 1:
    raise ValueError(f"top_k={top_k}; expected None (whole ranking) or a positive count")
  report = evaluate_retrieval(
      query_codes, database_codes, query_labels, database_labels, num_bits=num_bits,
      top_k=() if top_k is None else int(top_k), ties=ties, zero_relevant=zero_relevant,
      precision_at_n=(), full_map=top_k is None, seed=seed, chunk_size=chunk_size,
      num_threads=num_threads)
  if top_k is None:
    return report.map[ties]
  return next(iter(report.map_at.values()))[ties]
