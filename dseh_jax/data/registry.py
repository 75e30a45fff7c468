"""``load_dataset(data_config)``: the dataset named by a config's ``data`` section."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from dseh_jax.data.digits_mosaic import build_digits_mosaic
from dseh_jax.data.splits import RetrievalData, Split

FEATURE_FIELDS = ("x_train", "y_train", "x_query", "y_query", "x_database", "y_database")


def load_feature_npz(path: str, *, name: str = "features") -> RetrievalData:
  """Precomputed features (SPEC §4 feature mode) from an ``.npz`` holding
  ``x_train [n, d], y_train [n, c], x_query, y_query, x_database, y_database``.

  Ids are row numbers offset per split (train, query, database), since the file has none.
  """
  try:
    arrays = np.load(path)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: cannot read as .npz ({e})") from e
  with arrays:
    missing = [f for f in FEATURE_FIELDS if f not in arrays.files]
    if missing:
      raise ValueError(f"{path}: missing field(s) {missing}; expected {list(FEATURE_FIELDS)}")
    fields = {f: arrays[f] for f in FEATURE_FIELDS}
  splits, offset = {}, 0
  for split in ("train", "query", "database"):
    x, y = fields[f"x_{split}"], fields[f"y_{split}"]
    if x.ndim != 2:
      raise ValueError(f"{path}: field 'x_{split}' has shape {x.shape}; expected [n, d]")
    if not np.issubdtype(x.dtype, np.floating):
      raise ValueError(f"{path}: field 'x_{split}' has dtype {x.dtype}; expected floats")
    n = x.shape[0]
    splits[split] = Split(x.astype(np.float32), np.asarray(y, np.float32),
                          np.arange(offset, offset + n, dtype=np.int64))
    offset += n
  c = splits["train"].labels.shape[1] if splits["train"].labels.ndim == 2 else 0
  data = RetrievalData(name, splits["train"], splits["query"], splits["database"],
                       tuple(str(i) for i in range(c)))
  try:
    return data.validate()
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e


def load_dataset(data_config: Mapping[str, Any]) -> RetrievalData:
  """Builds or reads the dataset ``data_config["name"]`` with ``data_config["kwargs"]``.

  Names: ``digits_mosaic`` and ``digits_single`` (embedded), ``features_npz``
  (``kwargs.path``).
  """
  name = data_config["name"]
  kwargs = dict(data_config.get("kwargs", {}) or {})
  if name == "digits_mosaic":
    return build_digits_mosaic(**kwargs)
  if name == "digits_single":
    return build_digits_mosaic(single_label=True, **kwargs)
  if name == "features_npz":
    if "path" not in kwargs:
      raise ValueError("data.name='features_npz' needs data.kwargs.path (an .npz file)")
    return load_feature_npz(kwargs.pop("path"), **kwargs)
  raise ValueError(
      f"dataset {name!r} has no loader in this version; available: digits_mosaic, "
      "digits_single, features_npz (precomputed features: set data.name=features_npz, "
      "data.kwargs.path=FILE.npz and imgnet.backbone=none)")
