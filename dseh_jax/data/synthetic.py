"""Seeded synthetic data shaped like the real sets, for benchmarks and tests (no download).

:func:`nus_shaped_labels` draws NUS-WIDE-21-like multi-hot labels (21 concepts with the
real set's skewed frequencies, co-occurring through latent scenes);
:func:`labelled_features` turns labels into feature vectors whose geometry follows them.
"""
from __future__ import annotations

import numpy as np

# Rough NUS-WIDE-21 concept frequencies among labelled images (sky, clouds, person, ...).
NUS_FREQUENCIES = np.array([.34, .25, .25, .16, .13, .10, .09, .09, .08, .06, .06, .05, .05,
                            .05, .05, .04, .04, .04, .03, .03, .03])


def nus_shaped_labels(rows: int = 10_500, seed: int = 0) -> np.ndarray:
  """``[rows, 21]`` float32 multi-hot: each row picks one of 6 latent scenes that raise
  the odds of their concepts, then draws each concept independently; a row left empty gets
  one concept drawn by frequency."""
  rng = np.random.default_rng(seed)
  concepts = len(NUS_FREQUENCIES)
  scenes = rng.random((6, concepts)) < 0.25                 # concepts each scene favours
  scene = rng.integers(0, 6, size=rows)
  p = np.clip(NUS_FREQUENCIES[None, :] * np.where(scenes[scene], 2.5, 0.6), 0, 0.95)
  labels = rng.random((rows, concepts)) < p
  empty = ~labels.any(axis=1)
  labels[empty, rng.choice(concepts, size=empty.sum(),
                           p=NUS_FREQUENCIES / NUS_FREQUENCIES.sum())] = 1
  return labels.astype(np.float32)


def labelled_features(labels: np.ndarray, dim: int, *, noise: float = 1.0,
                      seed: int = 0) -> np.ndarray:
  """``[n, dim]`` float32 features ``labels @ A + noise·N(0, 1)`` with one seeded random
  direction ``A [c, dim]`` per label (ReLU-like: clipped at 0, as fc7 features)."""
  rng = np.random.default_rng([seed, 1])
  directions = rng.standard_normal((labels.shape[1], dim)).astype(np.float32)
  out = labels.astype(np.float32) @ directions
  out += noise * rng.standard_normal(out.shape, dtype=np.float32)
  return np.maximum(out, 0.0)
