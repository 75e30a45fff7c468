"""Mean average precision of Hamming ranking (SPEC §6).

For a query ``q`` the database is ranked by Hamming distance
``d_H(q, x) = (K − q·x) / 2``; ties keep database order (a stable sort), so the ranking and
the MAP are fully determined by the codes. An item is relevant when it shares a label with
the query. ``AP@k = (1/R_k) Σ_{r ≤ k, rel(r)} P(r)`` with ``R_k`` the number of relevant
items in the top ``k`` (``k`` = all by default) and ``P(r)`` the precision at rank ``r``.
A query with no relevant item in its top ``k`` scores 0 and still counts in the mean
(the authors' code).
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def binarize(x: np.ndarray) -> np.ndarray:
  """``sign`` with ``sign(0) = +1``, as int8 ``{-1, +1}``."""
  return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int8)


def hamming_distance(query_codes: np.ndarray, database_codes: np.ndarray) -> np.ndarray:
  """``[nq, nd]`` int32 distances between ``{-1,+1}`` codes ``[nq, K]`` and ``[nd, K]``."""
  for name, codes in (("query_codes", query_codes), ("database_codes", database_codes)):
    if not np.all(np.abs(codes) == 1):
      raise ValueError(f"{name} must hold only -1 and +1 (use binarize first)")
  k = query_codes.shape[1]
  inner = query_codes.astype(np.int32) @ database_codes.astype(np.int32).T
  return (k - inner) // 2


def mean_average_precision(query_codes: np.ndarray, database_codes: np.ndarray,
                           query_labels: np.ndarray, database_labels: np.ndarray, *,
                           top_k: Optional[int] = None, chunk_size: int = 256) -> float:
  """MAP (or MAP@top_k) of Hamming ranking with stable tie order; see the module docstring.

  Args:
    query_codes, database_codes: ``[nq, K]``, ``[nd, K]`` codes in ``{-1, +1}``.
    query_labels, database_labels: ``[nq, c]``, ``[nd, c]`` multi-hot labels.
    top_k: evaluate the first ``top_k`` ranks only; ``None``: the whole database.
    chunk_size: queries per chunk (memory ``O(chunk_size × nd)``).
  """
  nq, nd = query_codes.shape[0], database_codes.shape[0]
  if query_labels.shape[0] != nq or database_labels.shape[0] != nd:
    raise ValueError("codes and labels disagree on the number of rows: "
                     f"query {nq} vs {query_labels.shape[0]}, "
                     f"database {nd} vs {database_labels.shape[0]}")
  if nq == 0 or nd == 0:
    raise ValueError(f"MAP needs at least one query and one database item; got {nq} and {nd}")
  if top_k is not None and int(top_k) < 1:
    raise ValueError(f"top_k={top_k}; expected None (whole ranking) or a positive count")
  k = nd if top_k is None else min(int(top_k), nd)
  ranks = np.arange(1, k + 1, dtype=np.float64)
  db_labels = database_labels.astype(np.float32)
  total = 0.0
  for start in range(0, nq, chunk_size):
    dist = hamming_distance(query_codes[start:start + chunk_size], database_codes)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    relevant = (query_labels[start:start + chunk_size].astype(np.float32) @ db_labels.T) > 0
    rel = np.take_along_axis(relevant, order, axis=1).astype(np.float64)
    hits = np.cumsum(rel, axis=1)
    n_rel = hits[:, -1]
    precision_sum = np.sum(rel * hits / ranks, axis=1)
    total += float(np.sum(np.where(n_rel > 0, precision_sum / np.maximum(n_rel, 1), 0.0)))
  return total / nq


def bit_balance(codes: np.ndarray) -> float:
  """Mean over bits of ``|mean_i b_ik|`` for ``{-1,+1}`` codes ``[n, K]``: 0 = balanced."""
  return float(np.mean(np.abs(np.mean(codes.astype(np.float64), axis=0))))


def distinct_codes(codes: np.ndarray) -> int:
  """``nh``: the number of distinct rows of ``codes`` ``[n, K]`` (SPEC §7 Table 2)."""
  return int(np.unique(binarize(codes), axis=0).shape[0])
