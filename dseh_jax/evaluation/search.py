"""Exact Hamming top-k search over packed codes (SPEC §6: Hamming ranking).

For every query the ``top_k`` database items with the smallest Hamming distance are
returned, nearest first, with ties kept in database order: exactly the first ``top_k``
entries of a stable sort of the query's distance row (the ``stable`` tie policy of
:mod:`dseh_jax.evaluation.ranking`).

Queries are processed in blocks. For a block of ``c`` queries a jitted kernel computes the
``[c, n_database]`` distances (population count of the XOR of packed words, one byte per
pair up to 255 bits), the next block's distances computing while the host selects this
block's neighbours. On the host, per query, a strided sample of the distances estimates a
cut-off distance ``t``; the items within ``t`` (raised until at least ``top_k`` are), taken
in database order, are sorted (stably) and the first ``top_k`` kept.
Memory is ``O(c · n_database)`` bytes, with ``c`` chosen from ``max_block_bytes`` unless
given.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dseh_jax.evaluation import codes as codes_lib
from dseh_jax.atomic_io import atomic_write
from dseh_jax.evaluation.code_files import CodeFile

# Host bytes per (query, database) pair of a block: the distances (uint8 or uint16).
_BYTES_PER_PAIR = 2
RESULT_FORMAT = "dseh_jax.search"


@functools.partial(jax.jit, static_argnames=("dtype",))
def _block_distances(q_words: jax.Array, db_words_t: jax.Array, dtype) -> jax.Array:
  """``[c, nd]`` Hamming distances of ``q_words`` ``[c, W]`` to ``db_words_t`` ``[W, nd]``."""
  dist = jnp.zeros((q_words.shape[0], db_words_t.shape[1]), dtype)
  for w in range(q_words.shape[1]):
    dist = dist + jax.lax.population_count(
        q_words[:, w, None] ^ db_words_t[None, w, :]).astype(dtype)
  return dist


def _stable_top_k(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """``(indices, distances)`` ``[c, k]`` of the ``k`` smallest entries of every row of
  ``dist`` ``[c, nd]`` (small non-negative ints), ties in column order: the first ``k`` of
  a stable argsort of the row.

  Per row, a strided sample of about 16k entries estimates the distance ``t`` within which
  about ``2k`` items lie; the items within ``t`` (in column order, found in one pass) are
  stably sorted; ``t`` grows until at least ``k`` lie within it, so the result is exact.
  """
  c, nd = dist.shape
  indices = np.empty((c, k), np.int64)
  distances = np.empty((c, k), np.int32)
  stride = max(1, nd // 16384)
  for i in range(c):
    row = dist[i]
    sampled = np.cumsum(np.bincount(row[::stride])) * stride     # ≈ items within d
    cut = int(np.searchsorted(sampled, 2 * k))
    while True:
      cand = np.flatnonzero(row <= cut)                          # in database order
      if cand.size >= k:
        break
      cut += 1
    order = cand[np.argsort(row[cand], kind="stable")[:k]]
    indices[i] = order
    distances[i] = row[order]
  return indices, distances


def hamming_top_k(query_codes: np.ndarray, database_codes: np.ndarray, top_k: int, *,
                  num_bits: Optional[int] = None, chunk_size: Optional[int] = None,
                  max_block_bytes: int = 256 << 20) -> tuple[np.ndarray, np.ndarray]:
  """Exact Hamming top-k with ties in database order.

  Args:
    query_codes, database_codes: ``{-1, +1}`` codes ``[n, K]`` or packed uint32 words
      (then ``num_bits``).
    top_k: items per query (capped at the database size).
    chunk_size: queries per block; default: as many as ``max_block_bytes`` allows.
    max_block_bytes: the host memory one block may use.

  Returns:
    ``(indices [nq, k] int64, distances [nq, k] int32)``: database rows, nearest first.
  """
  q, k_bits = codes_lib.as_packed(query_codes, num_bits, "query_codes")
  db, k_db = codes_lib.as_packed(database_codes, num_bits if num_bits is not None else k_bits,
                                 "database_codes")
  if k_bits != k_db:
    raise ValueError(f"query codes have {k_bits} bits, database codes {k_db}")
  if int(top_k) < 1:
    raise ValueError(f"top_k={top_k}; expected a positive count")
  nq, nd = q.shape[0], db.shape[0]
  if nd == 0:
    raise ValueError("the database holds no codes; nothing to search")
  k = min(int(top_k), nd)
  if chunk_size is None:
    chunk_size = max(1, int(max_block_bytes) // (_BYTES_PER_PAIR * nd))
  chunk_size = max(1, min(int(chunk_size), nq))
  dtype = jnp.uint8 if k_bits <= 255 else jnp.uint16
  db_t = jnp.asarray(np.ascontiguousarray(db.T))
  indices = np.empty((nq, k), np.int64)
  distances = np.empty((nq, k), np.int32)
  def dispatch(start: int):
    """The block of queries from ``start``, its distances computing (asynchronously)."""
    stop = min(start + chunk_size, nq)
    block = q[start:stop]
    if stop - start < chunk_size:                  # one compiled shape for every block
      block = np.concatenate([block, np.repeat(block[:1], chunk_size - (stop - start), 0)])
    return start, stop, _block_distances(block, db_t, dtype)

  pending = dispatch(0)
  while pending is not None:
    start, stop, dist = pending
    # The next block's distances are computed while the host selects this block's top k.
    pending = dispatch(stop) if stop < nq else None
    indices[start:stop], distances[start:stop] = _stable_top_k(
        np.asarray(dist)[:stop - start], k)
  return indices, distances


@dataclasses.dataclass(frozen=True)
class SearchResult:
  """Top-k neighbours of every query.

  Attributes:
    query_ids: ``[nq]`` ids of the queries.
    indices: ``[nq, k]`` database rows, nearest first.
    ids: ``[nq, k]`` database ids of those rows.
    distances: ``[nq, k]`` Hamming distances.
    num_bits: the code length.
    meta: JSON-able provenance (input files, overlap report, …).
  """
  query_ids: np.ndarray
  indices: np.ndarray
  ids: np.ndarray
  distances: np.ndarray
  num_bits: int
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def top_k(self) -> int:
    return int(self.indices.shape[1])


def check_same_run(meta_a: Mapping[str, Any], path_a: str, meta_b: Mapping[str, Any],
                   path_b: str, allow_mixed: bool = False) -> list[str]:
  """Refuses two code files of different runs (``config_hash`` in their ``meta``).

  Raises ``ValueError`` naming both files and hashes unless ``allow_mixed``; returns the
  warnings to report (mixed runs allowed, or a file without a ``config_hash``).
  """
  ha, hb = meta_a.get("config_hash"), meta_b.get("config_hash")
  if not ha or not hb:
    missing = " and ".join(p for p, h in ((path_a, ha), (path_b, hb)) if not h)
    return [f"no config_hash in {missing} (an older code file?); cannot check that "
            f"{path_a} and {path_b} come from the same run"]
  if ha == hb:
    return []
  msg = f"{path_a} (config_hash {ha}) and {path_b} (config_hash {hb}) come from different runs"
  if not allow_mixed:
    raise ValueError(f"{msg}; re-encode both with the same run (experiments/encode.py) or "
                     "pass --allow_mixed_runs")
  return [f"{msg}; searching anyway (--allow_mixed_runs)"]


def search_code_files(query: CodeFile, database: CodeFile, top_k: int, *,
                      chunk_size: Optional[int] = None,
                      meta: Optional[Mapping[str, Any]] = None) -> SearchResult:
  """:func:`hamming_top_k` of two code files, with ids attached."""
  if query.num_bits != database.num_bits:
    raise ValueError(f"query codes have {query.num_bits} bits, database codes "
                     f"{database.num_bits}; both files must come from the same code length")
  indices, distances = hamming_top_k(query.packed, database.packed, top_k,
                                     num_bits=query.num_bits, chunk_size=chunk_size)
  return SearchResult(query_ids=np.asarray(query.ids, np.int64), indices=indices,
                      ids=np.asarray(database.ids, np.int64)[indices], distances=distances,
                      num_bits=int(query.num_bits), meta=dict(meta or {}))


def save_search_result(path: str, result: SearchResult) -> None:
  """Writes ``result`` to ``path`` (``.npz``) atomically."""
  fields = dict(format=np.str_(RESULT_FORMAT), query_ids=result.query_ids,
                indices=result.indices, ids=result.ids, distances=result.distances,
                num_bits=np.int64(result.num_bits), top_k=np.int64(result.top_k),
                meta=np.str_(json.dumps(dict(result.meta), sort_keys=True)))
  atomic_write(path, lambda f: np.savez(f, **fields))


def load_search_result(path: str) -> SearchResult:
  """Reads a file written by :func:`save_search_result`."""
  with np.load(path, allow_pickle=False) as npz:
    data = {name: npz[name] for name in npz.files}
  missing = [f for f in ("format", "query_ids", "indices", "ids", "distances", "num_bits",
                         "meta") if f not in data]
  if missing or str(data["format"]) != RESULT_FORMAT:
    raise ValueError(f"{path}: not a search result file (format {RESULT_FORMAT!r}); "
                     f"missing field(s) {missing}")
  return SearchResult(query_ids=data["query_ids"], indices=data["indices"], ids=data["ids"],
                      distances=data["distances"], num_bits=int(data["num_bits"]),
                      meta=json.loads(str(data["meta"])))
