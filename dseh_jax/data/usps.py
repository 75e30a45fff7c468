"""USPS handwritten digits (a single-label development set) from one labelled table.

Reads ``USPS.mat`` as distributed with many course and clustering toolkits: ``fea``
``[n, 256]`` (16×16 grey pixels, 0..255) and ``gnd`` ``[n, 1]`` (classes 1..10); an ``.npz``
with ``x`` and ``y`` works the same. The split follows the CIFAR-10 deep-hashing protocol
(SPEC §6): ``query_per_class`` queries per class, ``train_per_class`` training points per
class from the rest, database = every non-query item (train included), all seeded. Inputs
are ``pixel / scale`` feature vectors ``[n, 256]`` (feature mode) or ``[n, 16, 16, 1]``
images (``as_images=True``).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import scipy.io

from dseh_jax.data.listing import overlap_report
from dseh_jax.data.splits import RetrievalData, Split

SEED_SALT = 0x05B5
FIELDS = {".mat": ("fea", "gnd"), ".npz": ("x", "y")}


def read_table(path: str) -> tuple[np.ndarray, np.ndarray]:
  """``(features [n, d] float64, classes [n] int64 from 0)`` of a ``.mat`` or ``.npz``."""
  x, classes, _ = read_labelled_table(path)
  return x, classes


def read_labelled_table(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """:func:`read_table` and the file's label value of every class (``gnd`` 1..10 for
  USPS.mat), so that messages can name a class as the file does."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in FIELDS:
    raise ValueError(f"{path}: unknown suffix {suffix!r}; expected .mat (fea, gnd) or .npz "
                     "(x, y)")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such file (the labelled table: fea and gnd)")
  table = scipy.io.loadmat(path) if suffix == ".mat" else dict(np.load(path))
  x_name, y_name = FIELDS[suffix]
  for name in (x_name, y_name):
    if name not in table:
      raise ValueError(f"{path}: field {name!r} is missing; expected {FIELDS[suffix]}")
  x = np.asarray(table[x_name], np.float64)
  y = np.asarray(table[y_name]).reshape(-1)
  if x.ndim != 2 or x.shape[0] != y.shape[0]:
    raise ValueError(f"{path}: field {x_name!r} has shape {x.shape} for {y.shape[0]} labels "
                     f"in {y_name!r}; expected [n, d] with one row per label")
  if not np.issubdtype(y.dtype, np.integer) and not np.all(y == np.round(y)):
    raise ValueError(f"{path}: field {y_name!r} must hold integer classes")
  classes = np.unique(y)
  return x, np.searchsorted(classes, y).astype(np.int64), classes


def per_class_protocol(classes: np.ndarray, *, seed: int, query_per_class: int,
                       train_per_class: int, file_labels: Optional[np.ndarray] = None
                       ) -> dict[str, np.ndarray]:
  """Sorted row indices of ``query``, ``train`` (disjoint from the queries) and
  ``database`` (every non-query row) drawn per class from ``default_rng([seed, salt])``.
  ``file_labels[c]``, when given, names class ``c`` in errors (its value in the file)."""
  for name, value in (("query_per_class", query_per_class),
                      ("train_per_class", train_per_class)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
      raise ValueError(f"usps: {name} must be an int >= 0; got {value!r}")
  rng = np.random.default_rng([int(seed), SEED_SALT])
  query, train = [], []
  for c in range(int(classes.max()) + 1):
    members = rng.permutation(np.flatnonzero(classes == c))
    if members.size < query_per_class + train_per_class:
      name = c if file_labels is None else f"{file_labels[c]:g} (column {c})"
      raise ValueError(f"class {name} has {members.size} items; query_per_class="
                       f"{query_per_class} + train_per_class={train_per_class} requested")
    query.append(members[:query_per_class])
    train.append(members[query_per_class:query_per_class + train_per_class])
  query, train = np.sort(np.concatenate(query)), np.sort(np.concatenate(train))
  database = np.setdiff1d(np.arange(classes.shape[0]), query)
  return {"query": query, "train": train, "database": database}


def build_usps(path: str, *, seed: int = 0, query_per_class: int = 100,
               train_per_class: int = 500, scale: float = 255.0,
               as_images: bool = False) -> RetrievalData:
  """USPS (module docstring) as a validated ``RetrievalData`` named ``usps``."""
  x, classes, file_labels = read_labelled_table(str(path))
  index = per_class_protocol(classes, seed=seed, query_per_class=query_per_class,
                             train_per_class=train_per_class, file_labels=file_labels)
  inputs = (x / float(scale)).astype(np.float32)
  if as_images:
    side = int(round(np.sqrt(x.shape[1])))
    if side * side != x.shape[1]:
      raise ValueError(f"{path}: {x.shape[1]} features are not a square image")
    inputs = inputs.reshape(-1, side, side, 1)
  one_hot = np.eye(int(classes.max()) + 1, dtype=np.float32)
  splits = {name: Split(inputs[i], one_hot[classes[i]], i.astype(np.int64))
            for name, i in index.items()}
  names = tuple(str(c) for c in range(one_hot.shape[0]))
  stats = {"seed": int(seed), "split_sizes": {k: int(v.size) for k, v in index.items()},
           "overlaps": overlap_report(index)}
  return RetrievalData("usps", splits["train"], splits["query"], splits["database"], names,
                       stats=stats).validate()
