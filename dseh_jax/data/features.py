"""Precomputed feature files for feature mode (SPEC §4): ``.npz``, ``.mat`` and ``.h5``.

Every format holds the same six arrays: ``x_train [n, d]``, ``y_train [n, c]``,
``x_query``, ``y_query``, ``x_database``, ``y_database`` (features float, labels 0/1);
optionally ``ids_train``, ``ids_query``, ``ids_database`` (``[n]`` integers, the same
item with the same id in every split). Without them the ids are row numbers offset per
split (train, query, database), so no overlap between splits can be seen.

``.mat`` files are MATLAB v5 (``scipy.io.savemat``); v7.3 files are HDF5 underneath and
must be saved as ``.h5`` instead (MATLAB writes them transposed).
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from dseh_jax.data.hdf5_layout import read_hdf5_datasets
from dseh_jax.data.label_matrix import check_label_matrix
from dseh_jax.data.listing import SPLITS, overlap_report
from dseh_jax.data.splits import RetrievalData, Split

FEATURE_FIELDS = ("x_train", "y_train", "x_query", "y_query", "x_database", "y_database")
ID_FIELDS = ("ids_train", "ids_query", "ids_database")
SUFFIXES = (".npz", ".mat", ".h5", ".hdf5")


def _read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    arrays = np.load(path, allow_pickle=False)
  except FileNotFoundError as e:
    raise ValueError(f"{path}: file not found") from e
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read as .npz ({e})") from e
  if not hasattr(arrays, "files"):
    raise ValueError(f"{path}: holds a single array; expected an .npz archive of fields "
                     f"{list(FEATURE_FIELDS)}")
  with arrays:
    return {f: arrays[f] for f in arrays.files if f in FEATURE_FIELDS + ID_FIELDS}


def _read_mat(path: str) -> dict[str, np.ndarray]:
  import scipy.io  # pylint: disable=import-outside-toplevel
  try:
    arrays = scipy.io.loadmat(path)
  except FileNotFoundError as e:
    raise ValueError(f"{path}: file not found") from e
  except NotImplementedError as e:   # MATLAB v7.3 (HDF5 inside)
    raise ValueError(f"{path}: MATLAB v7.3 file; save it with -v7 or as .h5 ({e})") from e
  except (OSError, ValueError, TypeError) as e:
    raise ValueError(f"{path}: cannot read as a MATLAB v5 .mat file ({e})") from e
  out = {}
  for f in FEATURE_FIELDS + ID_FIELDS:
    if f in arrays:
      value = np.asarray(arrays[f])
      # MATLAB has no 1-D arrays: an id vector comes back as [1, n] or [n, 1].
      out[f] = value.reshape(-1) if f in ID_FIELDS and 1 in value.shape[:2] else value
  return out


def _read_h5(path: str) -> dict[str, np.ndarray]:
  return read_hdf5_datasets(path, FEATURE_FIELDS + ID_FIELDS, required=False)


READERS = {".npz": _read_npz, ".mat": _read_mat, ".h5": _read_h5, ".hdf5": _read_h5}


def features_from_arrays(fields: Mapping[str, np.ndarray], path: str,
                         name: str = "features") -> RetrievalData:
  """Checks the six (or nine) arrays read from ``path``; errors name the file and field.

  Returns:
    ``RetrievalData`` with float32 ``[n, d]`` inputs, float32 labels and int64 ids;
    ``stats`` holds the split sizes and the overlap report by id.
  """
  missing = [f for f in FEATURE_FIELDS if f not in fields]
  if missing:
    raise ValueError(f"{path}: missing field(s) {missing}; expected {list(FEATURE_FIELDS)}")
  given_ids = [f for f in ID_FIELDS if f in fields]
  if given_ids and len(given_ids) != len(ID_FIELDS):
    raise ValueError(f"{path}: has {given_ids} but not all of {list(ID_FIELDS)}")
  dim = width = None
  splits, offset = {}, 0
  for split in SPLITS:
    xf, yf = f"x_{split}", f"y_{split}"
    x, y = np.asarray(fields[xf]), np.asarray(fields[yf])
    if x.ndim != 2:
      raise ValueError(f"{path}: field {xf!r} has shape {x.shape}; expected [n, d]")
    if not np.issubdtype(x.dtype, np.floating):
      raise ValueError(f"{path}: field {xf!r} has dtype {x.dtype}; expected floats")
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{path}: field {xf!r} holds NaN or infinite values")
    dim = x.shape[1] if dim is None else dim
    if x.shape[1] != dim:
      raise ValueError(f"{path}: field {xf!r} has {x.shape[1]} columns; expected {dim} "
                       "(as x_train)")
    n = x.shape[0]
    y = check_label_matrix(y, path, yf, n, rows=f"one row per row of {xf!r}")
    width = y.shape[1] if width is None else width
    if y.shape[1] != width:
      raise ValueError(f"{path}: field {yf!r} has shape {y.shape}; expected [{n}, {width}] "
                       "(label width of y_train)")
    if given_ids:
      ids = np.asarray(fields[f"ids_{split}"])
      if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: field 'ids_{split}' has shape {ids.shape} and dtype "
                         f"{ids.dtype}; expected [{n}] integers")
      ids = ids.astype(np.int64)
    else:
      ids = np.arange(offset, offset + n, dtype=np.int64)
    offset += n
    splits[split] = Split(x.astype(np.float32), y.astype(np.float32), ids)
  stats = {"split_sizes": {s: len(splits[s]) for s in SPLITS},
           "overlaps": overlap_report({s: splits[s].ids for s in SPLITS}),
           "ids_from_file": bool(given_ids)}
  data = RetrievalData(name, splits["train"], splits["query"], splits["database"],
                       tuple(str(i) for i in range(width)), stats=stats)
  try:
    return data.validate()
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e


def load_feature_file(path: str, *, name: str = "features") -> RetrievalData:
  """Reads ``.npz``, ``.mat`` (v5) or ``.h5``/``.hdf5`` features by the file suffix."""
  suffix = os.path.splitext(str(path))[1].lower()
  if suffix not in READERS:
    raise ValueError(f"{path}: unknown feature file suffix {suffix!r}; expected one of "
                     f"{list(SUFFIXES)}")
  return features_from_arrays(READERS[suffix](str(path)), str(path), name)


def load_feature_npz(path: str, *, name: str = "features") -> RetrievalData:
  """Precomputed features (SPEC §4 feature mode) from an ``.npz`` (see the module doc)."""
  return features_from_arrays(_read_npz(str(path)), str(path), name)
