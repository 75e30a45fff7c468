"""The split container shared by every dataset loader (SPEC §6).

A retrieval dataset has three splits:

* ``train``: the points the networks learn from (LabNet's buffers have one row each);
* ``query``: the points that are encoded and searched for;
* ``database``: the points that are ranked for every query.

Whether ``train`` is part of ``database`` is a protocol choice made by the loader
(the authors' code: yes).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a retrieval dataset.

  Attributes:
    inputs: ``[n, H, W, C]`` float32 images (NHWC) or ``[n, d]`` float32 features: a
      numpy array, or a lazy array-like (``.shape``, ``.dtype``, ``len()`` and
      ``__getitem__`` with an int, a slice or an int array) such as
      ``dseh_jax.input_pipeline.ImageArray`` that decodes images on access.
    labels: ``[n, c]`` float32 multi-hot labels (single-label sets are one-hot).
    ids: ``[n]`` int64 stable identifiers; the same source item has the same id in
      every split it appears in, so overlaps between splits can be counted.
  """
  inputs: np.ndarray
  labels: np.ndarray
  ids: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])


@dataclasses.dataclass(frozen=True)
class RetrievalData:
  """A dataset with ``train``, ``query`` and ``database`` splits.

  ``stats`` holds what the loader counted (removed images, split sizes, overlaps between
  splits by id; see ``dseh_jax.data.listing.overlap_report``); empty when it has none.
  """
  name: str
  train: Split
  query: Split
  database: Split
  class_names: tuple[str, ...]
  stats: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train.inputs.shape[1:])

  def splits(self) -> dict[str, Split]:
    return {"train": self.train, "query": self.query, "database": self.database}

  def validate(self) -> "RetrievalData":
    """Checks shapes, dtypes and values of every split; returns ``self``."""
    for split_name, split in self.splits().items():
      validate_split(split, f"{self.name}:{split_name}", self.num_classes,
                     self.input_shape)
    return self


def validate_split(split: Split, where: str, num_classes: int,
                   input_shape: tuple[int, ...]) -> None:
  """Raises ``ValueError`` naming ``where`` and the field when ``split`` is malformed.

  Lazy inputs (anything but a numpy array) are checked by ``.shape``, ``.dtype`` and
  ``len()`` only, so validating never decodes a whole image set.
  """
  n = split.labels.shape[0]
  if split.labels.ndim != 2 or split.labels.shape[1] != num_classes:
    raise ValueError(f"{where}: field 'labels' has shape {split.labels.shape}; "
                     f"expected [n, {num_classes}]")
  if not np.all((split.labels == 0) | (split.labels == 1)):
    raise ValueError(f"{where}: field 'labels' must hold only 0 and 1")
  if split.inputs.shape[0] != n:
    raise ValueError(f"{where}: field 'inputs' has {split.inputs.shape[0]} rows; "
                     f"expected {n} (one per label row)")
  if tuple(split.inputs.shape[1:]) != tuple(input_shape):
    raise ValueError(f"{where}: field 'inputs' has item shape "
                     f"{tuple(split.inputs.shape[1:])}; expected {tuple(input_shape)}")
  if split.inputs.dtype != np.float32:
    raise ValueError(f"{where}: field 'inputs' has dtype {split.inputs.dtype}; "
                     "expected float32")
  if len(split.inputs) != n:
    raise ValueError(f"{where}: field 'inputs' has len() {len(split.inputs)} but shape "
                     f"{tuple(split.inputs.shape)}")
  if isinstance(split.inputs, np.ndarray) and not np.all(np.isfinite(split.inputs)):
    raise ValueError(f"{where}: field 'inputs' holds NaN or infinite values")
  if split.ids.shape != (n,) or not np.issubdtype(split.ids.dtype, np.integer):
    raise ValueError(f"{where}: field 'ids' has shape {split.ids.shape} and dtype "
                     f"{split.ids.dtype}; expected ({n},) integers")
