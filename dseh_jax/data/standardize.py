"""Input standardisation from training statistics (``data.standardize``).

Raw pixels (0..1) and descriptors on arbitrary scales give the from-scratch semantic layer
very different starting regimes; z-scoring with the training split's statistics puts every
dataset on one scale, so one learning rate works across them (README, "Retrieval quality
on real data"). Only the training split's statistics are used, so nothing is learnt from
the queries or the database.

Modes:

* ``"none"``: inputs as loaded;
* ``"zscore"``: feature vectors ``[n, d]``: per dimension; in-memory images ``[n, H, W, C]``:
  per channel. Lazy image arrays (decoded on access, mean already subtracted) are left as
  they are.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from dseh_jax.data.splits import RetrievalData

MODES = ("none", "zscore")
MIN_STD = 1e-6                # a constant input dimension is centred, not divided

log = logging.getLogger("dseh_jax")


def training_moments(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard deviation over every axis but the last (float64 sums):
  ``[n, d]`` → per dimension, ``[n, H, W, C]`` → per channel. Both ``[d]`` / ``[C]``."""
  x = np.asarray(inputs, np.float64).reshape(-1, inputs.shape[-1])
  return x.mean(axis=0), x.std(axis=0)


def standardize(data: RetrievalData, mode: str = "zscore") -> RetrievalData:
  """``data`` with every split's inputs z-scored by the training split's moments.

  Returns ``data`` unchanged for ``mode="none"`` and for lazy (non-numpy) inputs; the
  moments go into ``stats["standardize"]``.
  """
  if mode not in MODES:
    raise ValueError(f"data.standardize={mode!r}; expected one of {MODES}")
  if mode == "none":
    return data
  if not isinstance(data.train.inputs, np.ndarray):
    log.info("data.standardize=%r: %s has lazy image inputs (mean already subtracted); "
             "left as they are", mode, data.name)
    return data
  mean, std = training_moments(data.train.inputs)
  constant = std < MIN_STD
  scale = (1.0 / np.where(constant, 1.0, std)).astype(np.float32)
  shift = mean.astype(np.float32)
  splits = {name: dataclasses.replace(split, inputs=((split.inputs - shift) * scale)
                                      .astype(np.float32))
            for name, split in data.splits().items()}
  stats = dict(data.stats or {})
  stats["standardize"] = {"mode": mode, "mean_of_means": float(mean.mean()),
                          "mean_of_stds": float(std.mean()),
                          "constant_dims": int(np.sum(constant))}
  return dataclasses.replace(data, stats=stats, **splits)
