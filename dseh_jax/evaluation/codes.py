"""Binary codes: ``sign``, bit packing and Hamming distances (SPEC §1, §6).

Codes live in three forms:

* ``{-1, +1}`` rows ``[n, K]`` (what ``sign`` of a network output gives; ``sign(0) = +1``);
* ``{0, 1}`` bit rows ``[n, K]`` (``bit = (code + 1) / 2``);
* packed rows ``[n, ceil(K / 32)]`` of ``uint32`` words: bit ``k`` of a code is bit
  ``k % 32`` of word ``k // 32``; unused high bits of the last word are 0. A 64-bit code
  takes 8 bytes instead of 64.

The Hamming distance of two ``{-1, +1}`` codes is ``(K − q·x) / 2``; of two packed codes it
is the population count of their XOR. Both are offered; they agree exactly.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

WORD_BITS = 32


def binarize(x: np.ndarray) -> np.ndarray:
  """``sign`` with ``sign(0) = +1``, as int8 ``{-1, +1}``."""
  return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int8)


def num_words(num_bits: int) -> int:
  """``uint32`` words per packed ``num_bits``-bit code."""
  return -(-int(num_bits) // WORD_BITS)


def _as_bits(codes: np.ndarray, values: str, name: str) -> np.ndarray:
  codes = np.asarray(codes)
  if codes.ndim != 2:
    raise ValueError(f"{name} has shape {codes.shape}; expected [n, num_bits]")
  if values == "pm1":
    if not np.all(np.abs(codes) == 1):
      raise ValueError(f"{name} must hold only -1 and +1 (use binarize first), or pass "
                       "values='01' for {0, 1} bits")
    return codes > 0
  if values == "01":
    if not np.all((codes == 0) | (codes == 1)):
      raise ValueError(f"{name} must hold only 0 and 1 for values='01'")
    return codes > 0
  raise ValueError(f"values={values!r}; expected 'pm1' ({{-1, +1}}) or '01' ({{0, 1}})")


def pack_codes(codes: np.ndarray, *, values: str = "pm1", name: str = "codes") -> np.ndarray:
  """Packs ``[n, K]`` codes in ``{-1, +1}`` (``values='pm1'``) or ``{0, 1}`` (``'01'``)
  into ``[n, ceil(K / 32)]`` ``uint32`` words (see the module docstring for bit order)."""
  bits = _as_bits(codes, values, name)
  n, k = bits.shape
  padded = np.zeros((n, num_words(k) * WORD_BITS), dtype=bool)
  padded[:, :k] = bits
  packed = np.packbits(padded, axis=1, bitorder="little")          # [n, 4 W] bytes
  return np.ascontiguousarray(packed).view("<u4").astype(np.uint32, copy=False)


def unpack_codes(packed: np.ndarray, num_bits: int, *, values: str = "pm1") -> np.ndarray:
  """Inverse of :func:`pack_codes`: ``[n, W]`` words → ``[n, num_bits]`` int8 codes."""
  packed = np.asarray(packed)
  check_packed(packed, num_bits, "packed")
  as_bytes = np.ascontiguousarray(packed.astype("<u4", copy=False)).view(np.uint8)
  bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :num_bits].astype(np.int8)
  if values == "01":
    return bits
  if values == "pm1":
    return (2 * bits - 1).astype(np.int8)
  raise ValueError(f"values={values!r}; expected 'pm1' or '01'")


def packed_to_bytes(packed: np.ndarray) -> np.ndarray:
  """``[n, W]`` uint32 words → ``[n, 4 W]`` uint8 (little-endian: byte ``j`` holds bits
  ``8 j … 8 j + 7``), the layout of byte-oriented indexes such as FAISS binary indexes."""
  return np.ascontiguousarray(np.asarray(packed, dtype="<u4")).view(np.uint8)


def check_packed(packed: np.ndarray, num_bits: int, name: str) -> None:
  """Raises ``ValueError`` unless ``packed`` is ``[n, ceil(num_bits / 32)]`` uint32 with
  the unused high bits of its last word clear."""
  if int(num_bits) < 1:
    raise ValueError(f"num_bits={num_bits}; expected a positive code length")
  w = num_words(num_bits)
  if packed.dtype != np.uint32 or packed.ndim != 2 or packed.shape[1] != w:
    raise ValueError(f"{name} has dtype {packed.dtype} and shape {packed.shape}; expected "
                     f"uint32 [n, {w}] words for {num_bits}-bit codes (use pack_codes)")
  spare = w * WORD_BITS - int(num_bits)
  if spare and packed.size:
    mask = np.uint32(((1 << spare) - 1) << (WORD_BITS - spare))
    if np.any(packed[:, -1] & mask):
      raise ValueError(f"{name} has bits set beyond bit {num_bits}; it was not packed from "
                       f"{num_bits}-bit codes")


def as_packed(codes: np.ndarray, num_bits: Optional[int] = None,
              name: str = "codes") -> tuple[np.ndarray, int]:
  """``(packed words, num_bits)`` from either packed ``uint32`` words (``num_bits``
  required) or ``{-1, +1}`` codes ``[n, K]`` (any numeric dtype)."""
  codes = np.asarray(codes)
  if codes.dtype == np.uint32:
    if num_bits is None:
      raise ValueError(f"{name} is packed (uint32 words); pass num_bits as well")
    check_packed(codes, num_bits, name)
    return codes, int(num_bits)
  if codes.ndim != 2:
    raise ValueError(f"{name} has shape {codes.shape}; expected [n, num_bits]")
  if num_bits is not None and codes.shape[1] != int(num_bits):
    raise ValueError(f"{name} has {codes.shape[1]} bits per row; num_bits={num_bits}")
  return pack_codes(codes, name=name), int(codes.shape[1])


def pack_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
  """``[n, c]`` multi-hot labels → ``[n, ceil(c / 32)]`` uint32 label masks; two items
  share a label exactly when the AND of their masks is non-zero."""
  labels = np.asarray(labels)
  if labels.ndim != 2:
    raise ValueError(f"{name} has shape {labels.shape}; expected [n, num_classes]")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError(f"{name} must hold only 0 and 1 (multi-hot)")
  return pack_codes(labels, values="01", name=name)


def popcount(words: np.ndarray) -> np.ndarray:
  """Number of set bits of each unsigned integer."""
  return np.bitwise_count(words)


def hamming_distance(query_codes: np.ndarray, database_codes: np.ndarray, *,
                     num_bits: Optional[int] = None, method: str = "popcount",
                     chunk_size: int = 1024) -> np.ndarray:
  """``[nq, nd]`` int32 Hamming distances.

  Args:
    query_codes, database_codes: ``{-1, +1}`` codes ``[n, K]`` or packed ``uint32`` words
      (then ``num_bits`` is required).
    method: ``"popcount"`` (XOR of packed words, population count) or ``"matmul"``
      (``(K − q·x) / 2`` with an integer matrix product on the unpacked codes).
    chunk_size: queries per block, bounding the temporary memory.
  """
  q, k = as_packed(query_codes, num_bits, "query_codes")
  db, k_db = as_packed(database_codes, num_bits if num_bits is not None else k,
                       "database_codes")
  if k != k_db:
    raise ValueError(f"query codes have {k} bits, database codes {k_db}")
  out = np.empty((q.shape[0], db.shape[0]), np.int32)
  if method == "matmul":
    db_pm = unpack_codes(db, k).astype(np.int32)
    for s in range(0, q.shape[0], chunk_size):
      out[s:s + chunk_size] = (k - unpack_codes(q[s:s + chunk_size], k).astype(np.int32)
                               @ db_pm.T) // 2
    return out
  if method != "popcount":
    raise ValueError(f"method={method!r}; expected 'popcount' or 'matmul'")
  for s in range(0, q.shape[0], chunk_size):
    block = q[s:s + chunk_size]
    acc = np.zeros((block.shape[0], db.shape[0]), np.int32)
    for w in range(q.shape[1]):
      acc += popcount(block[:, w, None] ^ db[None, :, w])
    out[s:s + chunk_size] = acc
  return out


def bit_balance(codes: np.ndarray) -> float:
  """Mean over bits of ``|mean_i b_ik|`` for ``{-1,+1}`` codes ``[n, K]``: 0 = balanced."""
  return float(np.mean(np.abs(np.mean(np.asarray(codes, np.float64), axis=0))))


def distinct_codes(codes: np.ndarray) -> int:
  """``nh``: the number of distinct rows of ``codes`` ``[n, K]`` (SPEC §7 Table 2)."""
  return int(np.unique(binarize(codes), axis=0).shape[0])
