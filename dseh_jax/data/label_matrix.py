"""The check of a multi-hot label matrix read from a file (features, HDF5 layouts)."""
from __future__ import annotations

import numpy as np


def check_label_matrix(values, path: str, field: str, n: int, rows: str) -> np.ndarray:
  """``values`` as float32 ``[n, c]`` of 0 and 1, or a one-line ``ValueError`` naming the
  file, the field and what was expected (``rows``: what each row belongs to)."""
  values = np.asarray(values)
  if values.ndim != 2 or values.shape[0] != n:
    raise ValueError(f"{path}: field {field!r} has shape {values.shape}; expected [{n}, c] "
                     f"({rows})")
  if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
    raise ValueError(f"{path}: field {field!r} has dtype {values.dtype}; expected numbers")
  bad = np.argwhere(~((values == 0) | (values == 1)))
  if bad.shape[0]:
    r, c = bad[0]
    raise ValueError(f"{path}: field {field!r} must hold only 0 and 1; row {r} column {c} "
                     f"is {values[r, c].item()!r}")
  return values.astype(np.float32)


def class_names_for(class_names, width: int, source: str) -> tuple[str, ...]:
  """``class_names`` (or ``"0"…"c-1"`` when empty) checked against ``width`` label columns;
  ``source``: what has that many columns, for the error message."""
  names = tuple(class_names) or tuple(str(k) for k in range(width))
  if len(names) != width:
    raise ValueError(f"class_names lists {len(names)} names; {source} has {width} columns")
  return names
