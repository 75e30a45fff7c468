"""What makes two runs the same run: the training config and a fingerprint of the data.

A workdir holds one run (at one or more bit lengths). Its identity, kept in
``workdir/run.json`` and in every checkpoint, is

* the **training view** of the config: every field except those that only decide how the
  codes are evaluated or how the run is bookkept (:data:`NOT_TRAINING`), so that e.g.
  ``eval.top_k`` may change between runs of one workdir (the codes are re-evaluated) while a
  changed learning rate is refused, naming the field;
* the **data fingerprint** (:func:`data_fingerprint`): a BLAKE2b digest of every split's ids,
  labels and inputs (array bytes; for image files their paths, sizes and modification
  times), so that a changed data file is noticed even when its path is the same.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np

from dseh_jax.data.splits import RetrievalData

# Prefixes of the fields that do not change what is trained (dotted names).
NOT_TRAINING = ("bits", "eval.", "on_collapse", "collapse_nh_fraction",
                "collapse_min_bit_agreement", "checkpoint_every_epochs",
                "checkpoint_min_seconds", "checkpoints_to_keep", "data.check_images")


class RunMismatchError(ValueError):
  """A workdir or checkpoint holds another run than the one asked for."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists and tuples kept as values)."""
  out: dict[str, Any] = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = list(value) if isinstance(value, tuple) else value
  return out


# Fields added after runs were made: at these values they train what configs without them
# trained, so they stay out of the identity and old workdirs resume.
SILENT_DEFAULTS = {"imgnet.compute_dtype": "float32"}


def training_view(config_json: Mapping[str, Any]) -> dict[str, Any]:
  """The dotted fields of a config (as JSON) that determine what is trained."""
  view = {k: v for k, v in flatten(config_json).items()
          if not any(k == p or (p.endswith(".") and k.startswith(p)) for p in NOT_TRAINING)}
  view.setdefault("method", "dseh")          # configs before methods trained DSEH
  for field, default in SILENT_DEFAULTS.items():   # newer fields at their old behaviour
    if view.get(field) == default:
      del view[field]
  return view


def evaluation_view(config_json: Mapping[str, Any]) -> dict[str, Any]:
  """The dotted ``eval.*`` fields of a config (as JSON): what scores the codes."""
  return {k: v for k, v in flatten(config_json).items() if k.startswith("eval.")}


def differing_fields(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 6) -> str:
  """``"labnet.optimizer.lr: 0.001 → 0.0003, …"`` for the dotted fields that differ."""
  names = sorted(set(old) | set(new))
  diffs = [f"{k}: {old.get(k, '(absent)')!r} → {new.get(k, '(absent)')!r}"
           for k in names if old.get(k, "(absent)") != new.get(k, "(absent)")]
  more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
  return ", ".join(diffs[:limit]) + more


def _hash_array(h, array: np.ndarray) -> None:
  array = np.ascontiguousarray(array)
  h.update(f"{array.dtype.str}{array.shape}".encode())
  if array.dtype == object:
    h.update(json.dumps([str(x) for x in array.reshape(-1)]).encode())
  else:
    h.update(memoryview(array.reshape(-1).view(np.uint8)))


def _hash_inputs(h, inputs: Any) -> None:
  """Arrays by content; lazy images by preprocessing + their source (see module doc)."""
  if isinstance(inputs, np.ndarray):
    _hash_array(h, inputs)
    return
  h.update(f"{type(inputs).__name__}{getattr(inputs, 'shape', '')}".encode())
  for name in ("image_size", "resize_to"):
    h.update(f"{name}={getattr(inputs, name, '')}".encode())
  mean = getattr(inputs, "mean", None)
  if mean is not None:
    _hash_array(h, np.asarray(mean))
  source = getattr(inputs, "source", None)
  if source is None:
    _hash_array(h, np.asarray(inputs))
  elif hasattr(source, "fingerprint"):
    h.update(str(source.fingerprint()).encode())
  elif hasattr(source, "path"):                      # files on disk: path, size, mtime
    for i in range(len(source)):
      path = source.path(i)
      try:
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
      except OSError:
        h.update(f"{path}\0missing\n".encode())
  else:
    for i in range(len(source)):
      h.update(bytes(source[i]))


def data_fingerprint(data: RetrievalData) -> str:
  """A hex digest of every split's ids, labels and inputs (module docstring)."""
  h = hashlib.blake2b(digest_size=16)
  h.update(str(data.name).encode())
  for split_name, split in data.splits().items():
    h.update(split_name.encode())
    _hash_array(h, np.asarray(split.ids))
    _hash_array(h, np.asarray(split.labels))
    _hash_inputs(h, split.inputs)
  return h.hexdigest()


def identity(config_json: Mapping[str, Any], fingerprint: str | None) -> dict[str, Any]:
  """The identity record of a run (what ``run.json`` and checkpoints store); a ``None``
  fingerprint (a checkpoint of an older version) matches any data."""
  return {"training_config": training_view(config_json), "data_fingerprint": fingerprint}


def check_same_run(stored: Mapping[str, Any], current: Mapping[str, Any], where: str,
                   fixes: Iterable[str] = ("use another --workdir",)) -> None:
  """Raises :class:`RunMismatchError` naming the differing fields or data of two identity
  records (:func:`identity`); ``where`` names the stored record (a file)."""
  fix = " or ".join(fixes)
  if stored.get("training_config") != current["training_config"]:
    raise RunMismatchError(
        f"{where} holds a run with a different training config "
        f"({differing_fields(stored.get('training_config', {}), current['training_config'])})"
        f"; {fix}, or rerun with the stored values to resume")
  if stored.get("data_fingerprint") not in (None, current["data_fingerprint"]):
    raise RunMismatchError(
        f"{where} holds a run on different data (fingerprint {stored['data_fingerprint']}, "
        f"now {current['data_fingerprint']}): a data file changed since that run"
        f"{_data_source(current['training_config'])}; {fix}, or restore the original data "
        "to resume")


def _data_source(training_config: Mapping[str, Any]) -> str:
  """`` (data.name='features', data.kwargs.path='f.npz')``: where the data come from."""
  named = [f"{k}={training_config[k]!r}" for k in ("data.name", "data.kwargs.path",
                                                    "data.kwargs.data_dir")
           if training_config.get(k)]
  return f" ({', '.join(named)})" if named else ""
