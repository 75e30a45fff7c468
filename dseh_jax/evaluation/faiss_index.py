"""Export of packed codes to a FAISS binary index, and a parity check against our search.

FAISS (``faiss-cpu``) is an optional extra: this module imports without it, and every
function that needs it raises :class:`MissingExtraError` naming the extra.

FAISS binary indexes store codes as whole bytes (``d`` bits, ``d % 8 == 0``), byte ``j``
holding bits ``8j … 8j+7``: the first ``d / 8`` bytes of
:func:`dseh_jax.evaluation.codes.packed_to_bytes`. A code length that is not a multiple of 8
is refused unless ``pad=True``, which appends zero bits to every code; padding every code
with the same zeros leaves all Hamming distances unchanged.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Union

import numpy as np

from dseh_jax.evaluation import codes as codes_lib
from dseh_jax.atomic_io import atomic_write
from dseh_jax.evaluation.search import hamming_top_k

EXTRA = "faiss-cpu"


class MissingExtraError(ImportError):
  """An optional dependency is not installed."""


def import_faiss() -> Any:
  """The ``faiss`` module, or :class:`MissingExtraError` naming the extra to install."""
  try:
    import faiss  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingExtraError(
        f"FAISS export needs the optional extra {EXTRA!r}, which is not installed: "
        f"pip install {EXTRA} (the exact search in dseh_jax.evaluation.search needs "
        "nothing extra)") from e
  return faiss


def faiss_dimension(num_bits: int, pad: bool = False) -> int:
  """FAISS's ``d`` for ``num_bits``-bit codes: ``num_bits`` itself, or rounded up to a
  multiple of 8 with ``pad``; a ``ValueError`` explains the byte rule otherwise."""
  num_bits = int(num_bits)
  if num_bits < 1:
    raise ValueError(f"num_bits={num_bits}; expected a positive code length")
  if num_bits % 8 == 0:
    return num_bits
  if not pad:
    raise ValueError(
        f"FAISS binary indexes store whole bytes, so the code length must be a multiple of "
        f"8; num_bits={num_bits} is not. Pass pad=True (--faiss_pad) to append "
        f"{-num_bits % 8} zero bits to every code (Hamming distances are unchanged)")
  return -(-num_bits // 8) * 8


def faiss_bytes(packed: np.ndarray, num_bits: int, pad: bool = False) -> np.ndarray:
  """``[n, d / 8]`` uint8 codes in FAISS's layout from ``[n, ceil(K/32)]`` packed words."""
  packed, num_bits = codes_lib.as_packed(packed, num_bits, "packed")
  d = faiss_dimension(num_bits, pad)
  return np.ascontiguousarray(codes_lib.packed_to_bytes(packed)[:, :d // 8])


def build_faiss_index(packed: np.ndarray, num_bits: int, *, pad: bool = False) -> Any:
  """A ``faiss.IndexBinaryFlat`` (exact Hamming search) holding ``packed`` in row order."""
  faiss = import_faiss()
  data = faiss_bytes(packed, num_bits, pad)
  index = faiss.IndexBinaryFlat(faiss_dimension(num_bits, pad))
  index.add(data)
  return index


def export_faiss_index(packed: np.ndarray, num_bits: int, path: str, *,
                       pad: bool = False) -> Any:
  """Builds the index of :func:`build_faiss_index` and writes it to ``path`` atomically
  (readable with ``faiss.read_index_binary``); returns the index."""
  faiss = import_faiss()
  index = build_faiss_index(packed, num_bits, pad=pad)
  blob = np.asarray(faiss.serialize_index_binary(index), np.uint8)
  atomic_write(path, lambda f: f.write(blob.tobytes()))
  return index


def read_faiss_index(path: str) -> Any:
  """``faiss.read_index_binary(path)`` with a clear error for a missing file."""
  faiss = import_faiss()
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such FAISS index file")
  return faiss.read_index_binary(path)


@dataclasses.dataclass(frozen=True)
class FaissParity:
  """Outcome of :func:`check_faiss_parity`.

  ``distance_mismatches``: queries whose top-k distances differ from ours.
  ``id_mismatches``: queries where, at some distance below the row's cut-off distance, the
  set of returned ids differs, or where a returned item is not at the distance FAISS
  reports (ids at the cut-off distance may legitimately differ: any of the tied items may
  fill the last places).
  """
  num_queries: int
  top_k: int
  distance_mismatches: int
  id_mismatches: int
  first_bad_query: Optional[int]

  @property
  def ok(self) -> bool:
    return self.distance_mismatches == 0 and self.id_mismatches == 0


def check_faiss_parity(index: Union[Any, str], query_packed: np.ndarray,
                       database_packed: np.ndarray, num_bits: int, top_k: int, *,
                       pad: bool = False) -> FaissParity:
  """Searches ``index`` (or the index file at that path) with the queries and compares
  with :func:`dseh_jax.evaluation.search.hamming_top_k` over ``database_packed`` (the codes
  the index was built from, in the same order)."""
  if isinstance(index, str):
    index = read_faiss_index(index)
  q_words, num_bits = codes_lib.as_packed(query_packed, num_bits, "query_packed")
  db_words, _ = codes_lib.as_packed(database_packed, num_bits, "database_packed")
  if index.ntotal != db_words.shape[0] or index.d != faiss_dimension(num_bits, pad):
    raise ValueError(f"the FAISS index holds {index.ntotal} codes of {index.d} bits; the "
                     f"database has {db_words.shape[0]} codes of {num_bits} bits")
  ours_idx, ours_dist = hamming_top_k(q_words, db_words, top_k, num_bits=num_bits)
  k = ours_idx.shape[1]
  f_dist, f_idx = index.search(faiss_bytes(q_words, num_bits, pad), k)
  dist_bad = np.any(f_dist != ours_dist, axis=1)
  id_bad = np.zeros(q_words.shape[0], bool)
  for i in range(q_words.shape[0]):
    row = f_idx[i]
    if np.any(row < 0) or np.unique(row).size != k:
      id_bad[i] = True
      continue
    true = codes_lib.hamming_distance(q_words[i:i + 1], db_words[row], num_bits=num_bits)[0]
    below = ours_dist[i] < ours_dist[i, -1]
    id_bad[i] = bool(np.any(true != f_dist[i])) or (
        set(row[f_dist[i] < ours_dist[i, -1]].tolist()) != set(ours_idx[i, below].tolist()))
  bad = np.flatnonzero(dist_bad | id_bad)
  return FaissParity(num_queries=int(q_words.shape[0]), top_k=int(k),
                     distance_mismatches=int(dist_bad.sum()), id_mismatches=int(id_bad.sum()),
                     first_bad_query=int(bad[0]) if bad.size else None)
