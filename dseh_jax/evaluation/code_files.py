"""Packed code files: one split's binary codes, ids and labels in one ``.npz`` (SPEC §6).

A code file holds the ``sign`` codes of one split (``query``, ``database``, ``train`` or
any other name) in the packed form of :mod:`dseh_jax.evaluation.codes` and everything a
search or an evaluation needs beside them:

==========  ==========================  ==================================================
field       type                        meaning
==========  ==========================  ==================================================
format      str                         ``"dseh_jax.codes"``
version     int                         :data:`FORMAT_VERSION`
packed      uint32 ``[n, ceil(K/32)]``  codes, bit ``k`` = bit ``k % 32`` of word ``k // 32``
num_bits    int                         ``K``
ids         int64 ``[n]``               item ids (the dataset's stable ids, SPEC §6)
split       str                         the split's name
labels      uint8 ``[n, c]`` (optional) multi-hot labels
meta        str                         JSON object: method, dataset, config hash, …
==========  ==========================  ==================================================

Files are written atomically and read with ``allow_pickle=False``; every defect raises a
``ValueError`` naming the file and the field.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from typing import Any, Mapping, Optional

import numpy as np

from dseh_jax.evaluation import codes as codes_lib
from dseh_jax.atomic_io import atomic_write

FORMAT = "dseh_jax.codes"
FORMAT_VERSION = 1
REQUIRED_FIELDS = ("format", "version", "packed", "num_bits", "ids", "split", "meta")


@dataclasses.dataclass(frozen=True)
class CodeFile:
  """The contents of one code file (module docstring).

  Attributes:
    packed: ``[n, ceil(num_bits / 32)]`` uint32 packed codes.
    num_bits: the code length ``K``.
    ids: ``[n]`` int64 item ids.
    split: the split's name.
    labels: ``[n, c]`` uint8 multi-hot labels, or ``None``.
    meta: a JSON-able dict (method, dataset, config hash, …).
  """
  packed: np.ndarray
  num_bits: int
  ids: np.ndarray
  split: str
  labels: Optional[np.ndarray] = None
  meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return int(self.packed.shape[0])

  def codes(self) -> np.ndarray:
    """``[n, num_bits]`` int8 codes in ``{-1, +1}``."""
    return codes_lib.unpack_codes(self.packed, self.num_bits)


def config_hash(config: Mapping[str, Any]) -> str:
  """First 16 hex digits of the SHA-256 of ``config`` as canonical JSON (sorted keys), so
  code files from the same configuration can be matched."""
  text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _check(path: str, field: str, ok: bool, expected: str, got: Any) -> None:
  if not ok:
    raise ValueError(f"{path}: field {field!r} is {got}; expected {expected}")


def validate_code_file(c: CodeFile, path: str = "<code file>") -> CodeFile:
  """Raises ``ValueError`` naming ``path`` and the field unless ``c`` is consistent;
  returns ``c``."""
  _check(path, "num_bits", isinstance(c.num_bits, (int, np.integer)) and c.num_bits >= 1,
         "a positive integer", repr(c.num_bits))
  packed = np.asarray(c.packed)
  words = codes_lib.num_words(c.num_bits)
  _check(path, "packed", packed.dtype == np.uint32 and packed.ndim == 2
         and packed.shape[1] == words,
         f"uint32 [n, {words}] words for {c.num_bits}-bit codes",
         f"{packed.dtype} {packed.shape}")
  try:
    codes_lib.check_packed(packed, int(c.num_bits), "packed")
  except ValueError as e:
    raise ValueError(f"{path}: field 'packed': {e}") from None
  n = packed.shape[0]
  ids = np.asarray(c.ids)
  _check(path, "ids", ids.shape == (n,) and np.issubdtype(ids.dtype, np.integer),
         f"({n},) integers, one per code", f"{ids.dtype} {ids.shape}")
  _check(path, "split", isinstance(c.split, str) and bool(c.split), "a non-empty string",
         repr(c.split))
  if c.labels is not None:
    labels = np.asarray(c.labels)
    _check(path, "labels", labels.ndim == 2 and labels.shape[0] == n,
           f"[{n}, num_classes] multi-hot rows, one per code", f"shape {labels.shape}")
    _check(path, "labels", bool(np.all((labels == 0) | (labels == 1))), "only 0 and 1",
           "holding other values")
  _check(path, "meta", isinstance(c.meta, Mapping), "a JSON object", type(c.meta).__name__)
  try:
    json.dumps(dict(c.meta))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{path}: field 'meta' is not JSON-serialisable ({e})") from None
  return c


def save_code_file(path: str, codes: np.ndarray, ids: np.ndarray, *, split: str,
                   num_bits: Optional[int] = None, labels: Optional[np.ndarray] = None,
                   meta: Optional[Mapping[str, Any]] = None) -> CodeFile:
  """Writes one split's codes to ``path`` (``.npz``) atomically; returns what was written.

  Args:
    codes: ``{-1, +1}`` codes ``[n, K]`` or packed uint32 words ``[n, ceil(K/32)]`` (then
      ``num_bits`` is required).
    ids: ``[n]`` integer item ids.
    split: the split's name (``"query"``, ``"database"``, …).
    labels: optional ``[n, c]`` multi-hot labels (stored as uint8).
    meta: optional JSON-able dict (e.g. ``{"method": "DSEH", "dataset": …,
      "config_hash": config_hash(config)}``).
  """
  try:
    packed, k = codes_lib.as_packed(codes, num_bits, "codes")
  except ValueError as e:
    raise ValueError(f"{path}: field 'packed': {e}") from None
  c = CodeFile(packed=packed, num_bits=int(k), ids=np.asarray(ids), split=split,
               labels=None if labels is None else np.asarray(labels),
               meta=dict(meta or {}))
  validate_code_file(c, path)
  fields = dict(format=np.str_(FORMAT), version=np.int64(FORMAT_VERSION), packed=packed,
                num_bits=np.int64(k), ids=c.ids.astype(np.int64), split=np.str_(split),
                meta=np.str_(json.dumps(dict(c.meta), sort_keys=True)))
  if c.labels is not None:
    fields["labels"] = c.labels.astype(np.uint8)
  atomic_write(path, lambda f: np.savez(f, **fields))
  return dataclasses.replace(c, ids=fields["ids"], labels=fields.get("labels"))


def _scalar(path: str, data: Mapping[str, np.ndarray], field: str, kind: str) -> Any:
  value = data[field]
  if value.shape != ():
    raise ValueError(f"{path}: field {field!r} has shape {value.shape}; expected a scalar "
                     f"{kind}")
  if kind == "str":
    _check(path, field, value.dtype.kind == "U", "a string", f"of dtype {value.dtype}")
    return str(value)
  _check(path, field, np.issubdtype(value.dtype, np.integer), "an integer",
         f"of dtype {value.dtype}")
  return int(value)


def load_code_file(path: str) -> CodeFile:
  """Reads and validates a code file written by :func:`save_code_file`."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      data = {name: npz[name] for name in npz.files}
  except FileNotFoundError:
    raise ValueError(f"{path}: no such code file") from None
  except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
    raise ValueError(f"{path}: not a readable .npz code file ({e})") from None
  missing = [f for f in REQUIRED_FIELDS if f not in data]
  if missing:
    raise ValueError(f"{path}: missing field(s) {missing}; a code file (format "
                     f"{FORMAT!r}) has {list(REQUIRED_FIELDS)} and optionally 'labels'")
  fmt = _scalar(path, data, "format", "str")
  _check(path, "format", fmt == FORMAT, repr(FORMAT), repr(fmt))
  version = _scalar(path, data, "version", "int")
  _check(path, "version", version == FORMAT_VERSION, str(FORMAT_VERSION), version)
  meta_text = _scalar(path, data, "meta", "str")
  try:
    meta = json.loads(meta_text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: field 'meta' is not valid JSON ({e})") from None
  c = CodeFile(packed=data["packed"], num_bits=_scalar(path, data, "num_bits", "int"),
               ids=data["ids"], split=_scalar(path, data, "split", "str"),
               labels=data.get("labels"), meta=meta)
  return validate_code_file(c, path)
